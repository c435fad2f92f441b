# %% [markdown]
# # Post-hoc detectors: does DICE add to MOON?
#
# **Question.** The cheap post-hoc detectors (MSP, temperature-scaled MSP, energy, GEN, DICE, ReAct,
# ASH, SCALE, ViM, fDBD, Mahalanobis, relative Mahalanobis, KNN) on dense and sparse models without and
# with MOON: which work, and do post-hoc sparsification of the last layer (DICE) and MOON add up?
#
# **Default.** The runs of the calibration chapter: the paper-length study at densities 1 and 0.05.
#
# **What to look at.** Near- and far-OOD AUROC per detector and setting, and the paired gain of DICE
# over plain energy on the same runs, without and with MOON (the "MOON − baseline" rows: the gain on
# MOON runs minus the gain on their baselines; near 0 means the two add up). Last, DICE's AUROC
# against its percentile *p* (0, 50, 70, 90, 95, 99; *p* = 0 is plain energy) for dense and sparse
# models, from the sweep every evaluation stores.

# %% tags=["parameters"]
preset = 'paper'
out_dir = 'runs/paper'              # where the result files go
study = 'paper'                     # a name in studies/ or a YAML path
only = {'density': [1.0, 0.05], 'alpha_final': [1.0]}  # axis -> values to keep (None: the whole grid of the preset)
run_missing = True                  # run the cells not finished yet (False: show the finished ones)
# RunConfig fields: study   (those of moon.notebook.STUDY_FIELDS, written out by scripts/make_notebooks.py)

# %% tags=["remove-input"]
from moon.notebook import study_chapter
results, frame, shown = study_chapter(globals())

from IPython.display import Markdown, display
from moon.report import conclusions, figures, stats, tables

Markdown(shown)

# %% tags=["remove-input"]
figures.detector_heatmap(frame)

# %% tags=["remove-input", "hide-output"]
tables.posthoc_table(frame, kind="near")

# %% tags=["remove-input", "hide-output"]
tables.posthoc_table(frame, kind="far")

# %% tags=["remove-input", "hide-output"]
tables.posthoc_gain_table(frame)

# %% tags=["remove-input"]
sweep = stats.dice_sweep_frame(frame)
if sweep.empty:   # result files written before the evaluation stored extra.dice_sweep
    display(Markdown("These results have no DICE sweep (`extra.dice_sweep`)."))
else:
    display(figures.dice_sweep_plot(sweep))
    display(tables.dice_sweep_table(sweep))

# %% tags=["remove-input"]
Markdown(conclusions.posthoc_conclusion(frame))
