# %% [markdown]
# # Ablation: MOON's parts
#
# **Question.** Which part of MOON does what? On LeNet-5 with RigL at density 0.05: the unknown
# class (with the auto-tuned α, or a fixed α), weight averaging, all of MOON, and MOON with the
# released code's behaviours (`as_released`: Bernoulli masks, the frozen drop rate, the 1% weight
# stash, burst averaging); see `studies/ablation.yaml`.
#
# **Default.** The `cpu` preset (10 epochs on 15,000 training images; seven variants, three seeds:
# 21 runs), about ten minutes on a 2-core CPU with two workers (`make study-cpu`). `-p preset quick`
# trains on all images with one seed and six variants, `-p preset smoke` runs in a few minutes.
# Finished runs are reused.
#
# **What to look at.** Each variant's change against "none" (paired by seed, 95% intervals) as a
# dot plot; the table of means below it.

# %% tags=["parameters"]
preset = 'cpu'
out_dir = 'runs/ablation'           # where the result files go
study = 'ablation'                  # a name in studies/ or a YAML path
only = None                         # axis -> values to keep (None: the whole grid of the preset)
run_missing = True                  # run the cells not finished yet (False: show the finished ones)
# RunConfig fields: study   (those of moon.notebook.STUDY_FIELDS, written out by scripts/make_notebooks.py)

# %% tags=["remove-input"]
from moon.notebook import study_chapter
results, frame, shown = study_chapter(globals())

from IPython.display import Markdown
from moon.report import conclusions, figures, tables

Markdown(shown)

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Each MOON part's change against no part, paired by seed, with 95% intervals; right of 0 is better for AUROC and accuracy, left of 0 for ECE."}}
figures.ablation_plot(frame)

# %% tags=["remove-input", "hide-output"]
tables.ablation_table(frame)

# %% tags=["remove-input"]
Markdown(conclusions.ablation_conclusion(frame))
