# %% [markdown]
# # Calibration
#
# **Question.** How well calibrated are dense training and static, SET, RigL and CigL at density
# 0.05, without and with MOON? Temperature scaling fitted on the validation split is the reference a
# post-hoc fix reaches.
#
# **Default.** The runs of the paper-length study (`studies/paper.yaml`, `paper` preset) at
# densities 1 and 0.05, shared with the sweep chapter. The post-hoc chapter reads the same runs.
#
# **What to look at.** ECE per setting for baseline and MOON with the temperature-scaled reference,
# the table of ECE, adaptive ECE, NLL and Brier (mean ± std over seeds), and the reliability
# diagrams of one seed of one model.

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
from moon.report import conclusions, figures, run_figures, stats, tables
from moon.report.frame import results_frame
from moon.study import collect

Markdown(shown)

# %% tags=["remove-input"] mystnb={"figure": {"caption": "ECE per setting, baseline filled and MOON hollow, with 95% intervals; black diamonds: after temperature scaling. Lower is better."}}
figures.calibration_overview(frame)

# %% tags=["remove-input", "hide-output"]
tables.calibration_table(frame)

# %% tags=["remove-input"]
first = results[0].config
run_figures.reliability_diagram([r for r in results if r.config["seed"] == first["seed"]
                                 and r.config["model"] == first["model"]
                                 and r.config.get("alpha_final", 1.0) == 1.0][:6])

# %% [markdown]
# ## MOON's one knob: α_final
#
# The paper-length study also ran MOON on the MLP with RigL at 0.05 at `alpha_final` 0.3 and 3
# (5 seeds each; 1 is the main grid's MOON). Each value against the same baselines, paired by seed;
# the other pages leave these runs out, so no page pools them into "MOON".

# %% tags=["remove-input"]
sweep_runs = collect(study, out_dir, preset=preset, exact=run_missing,
                     only={"model": ["mlp"], "method": ["rigl"], "density": [0.05]})
sweep = stats.alpha_sweep_frame(results_frame(sweep_runs), ["id.ece", "id.ts_ece",
                                "ood.near.msp.auroc", "ood.far.msp.auroc", "id.accuracy"])
display(tables.alpha_sweep_table(sweep))
Markdown(conclusions.alpha_sweep_conclusion(sweep))

# %% tags=["remove-input"]
Markdown(conclusions.calibration_conclusion(frame))
