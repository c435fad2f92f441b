# %% [markdown]
# # Theory: what the unknown class learns
#
# **Question.** Where does the extra class take probability mass? On a 2-D toy problem (three
# Gaussian blobs), confidence maps of dense and sparse MLPs without and with the unknown class; and
# the analytic region (reference section 1.4) where a misclassified sample pushes the unknown logit
# up: `h α² (1−u) / (1+αu)² > 1 + α/(1+αu)`, with `h` the sample's cross-entropy and `u` its
# unknown-class probability.
#
# **Default.** Five toy models on overlapping blobs, a few seconds each on a CPU.
#
# **What to look at.** The unknown class only rises for confidently wrong samples, and only when α
# is large: at α = 1 a wrong sample needs `h > 2` (p_y < 0.135); at α = 0.01, `h > 10⁴` (never). With
# the auto-tuned α it therefore takes little mass even where the classes overlap; the last panel,
# with a fixed α of 5, shows where it goes once α is large (dashed: p(unknown) = 0.5, when reached).

# %% tags=["parameters"]
preset = None
out_dir = 'runs/theory_unknown_class'  # where the result files go
# RunConfig fields: seed, density, alpha_final   (written out by scripts/make_notebooks.py)

# %% tags=["remove-input"]
from moon.notebook import chapter
chapter(globals(), ['seed', 'density', 'alpha_final'])
from moon import theory

models = theory.toy_models(density, alpha_final, seed, epochs=15 if preset == "smoke" else 60)
theory.plot_confidence_maps(models, data=theory.toy_data(seed=seed, std=1.0))

# %% tags=["remove-input"]
theory.plot_unknown_region()

# %% tags=["remove-input"]
summary = theory.unknown_mass_summary(models, theory.toy_data(seed=seed, std=1.0))
summary.round(3)

# %% tags=["remove-input"]
from IPython.display import Markdown
Markdown(theory.unknown_class_conclusion(summary))
