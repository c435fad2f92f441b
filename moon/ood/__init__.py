"""Out-of-distribution evaluation: the OOD sets and their groups (:mod:`.sets`; the images that
Python packages ship are read in :mod:`.shipped`), logit scores (:mod:`.scores`), fitted
detectors (:mod:`.detectors`; on penultimate features, built on pytorch-ood:
:mod:`.feature_detectors`) and the one registry of every score and detector (:mod:`.registry`)."""
