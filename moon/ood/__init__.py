"""Out-of-distribution evaluation: the OOD sets (:mod:`.sets`), logit scores (:mod:`.scores`) and
fitted detectors (:mod:`.detectors`)."""
