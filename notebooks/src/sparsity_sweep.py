# %% [markdown]
# # Sparsity against reliability
#
# **Questions.** Does sparsity hurt reliability (accuracy, calibration, OOD detection)? Does MOON
# restore it? The paper-length study (`studies/paper.yaml`): the MLP (LeNet-300-100) with dense
# training, SET and RigL at densities 0.1, 0.05 and 0.02, static and CigL at 0.05; LeNet-5 with dense
# and RigL at 0.05; each without and with MOON (unknown class, auto-tuned α, weight averaging).
#
# **Default.** The `paper` preset: 100 epochs on all training images, 5 seeds for the MLP and 3 for
# LeNet-5 (`make study`, about 5 hours on a 2-core CPU with two workers; finished runs are reused and
# an interrupted study resumes). `-p preset smoke` runs a small grid in a few minutes.
#
# **What to look at.** The headline figure (MOON − baseline, paired by seed), the metrics against
# density as small multiples (baseline solid, MOON dashed, dense as grey lines), the same effects as
# heatmaps, and the primary endpoints the study declared before it ran, with their minimum detectable
# effects and Holm-adjusted p-values.

# %% tags=["parameters"]
preset = 'paper'
out_dir = 'runs/paper'              # where the result files go
study = 'paper'                     # a name in studies/ or a YAML path
only = {'alpha_final': [1.0]}       # axis -> values to keep (None: the whole grid of the preset)
run_missing = True                  # run the cells not finished yet (False: show the finished ones)
# RunConfig fields: study   (those of moon.notebook.STUDY_FIELDS, written out by scripts/make_notebooks.py)

# %% tags=["remove-input"]
from moon.notebook import study_chapter
results, frame, shown = study_chapter(globals())

from IPython.display import Markdown
from moon.report import conclusions, figures, headline, stats, tables

Markdown(shown)

# %% tags=["remove-input"] mystnb={"figure": {"caption": "MOON \u2212 baseline per setting, paired by seed, with 95% intervals (filled: the interval excludes 0; grey band: the smallest change the seeds detect). Right of 0 is better for AUROC and accuracy, left of 0 for ECE."}}
figures.headline_figure(headline.moon_effects(frame))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Each metric against density, baseline solid and MOON dashed, mean over seeds with 95% intervals; grey lines: dense. Higher is better for AUROC and accuracy, lower for ECE."}}
figures.density_panels(frame)

# %% tags=["remove-input"] mystnb={"figure": {"caption": "MOON \u2212 baseline per method and density (points): blue better, red worse, grey where the 95% interval includes 0."}}
figures.effect_heatmap(headline.moon_effects(frame), title='MOON − baseline')

# %% tags=["remove-input"]
figures.effect_heatmap(stats.sparsity_effect_frame(frame), title='plain sparse − dense')

# %% [markdown]
# ## Primary endpoints
#
# Declared in the study file before it ran: MOON − baseline for SET and RigL at the three densities
# on the MLP, in near- and far-OOD AUROC (MSP), accuracy and ECE, Holm-adjusted as one family.
# "detectable" is the smallest difference these seeds detect with 80% power.

# %% tags=["remove-input", "hide-output"]
from moon.study import load_study
endpoints = load_study(study).endpoints
tables.endpoints_table(stats.primary_endpoints(frame, endpoints)) if endpoints.get("primary") else None

# %% [markdown]
# ## All comparisons

# %% tags=["remove-input", "hide-output"]
tables.paired_moon_table(frame)

# %% tags=["remove-input", "hide-output"]
tables.sparsity_effect_table(frame)

# %% tags=["remove-input"]
Markdown(conclusions.sweep_conclusion(frame))
