# %% [markdown]
# # One run: train, evaluate, look
#
# **Question.** How accurate, how well calibrated and how good at spotting OOD inputs is one
# configuration of sparse training, with or without MOON?
#
# **Default.** MOON on RigL at density 0.05, LeNet-5 on the embedded Fashion-MNIST benchmark, 20
# epochs: a few minutes on a 2-core CPU (`-p preset smoke`: under a minute). Results go to
# `runs/ood_eval/<configuration>` (or `-p out_dir DIR`); a folder holding another configuration's
# result is never written (`-p overwrite True` replaces it), and `-p resume True` reuses a finished
# run of the same configuration or continues an interrupted one.
#
# **What to look at.** The ID metrics (accuracy, NLL, Brier, ECE over the K known classes; `ts_*`
# after temperature scaling on the validation split), the OOD tables (AUROC and FPR@95%TPR in %, every
# detector on every OOD set, with near, far and noise means), the reliability diagram, and the score
# histograms of ID test images against each OOD set.
#
# ```
# papermill notebooks/ood_eval.ipynb out.ipynb -p density 0.02 -p method set
# ```

# %% tags=["parameters"]
preset = None
out_dir = None                      # None: runs/ood_eval/<its configuration>
# RunConfig fields: all   (written out by scripts/make_notebooks.py)

# %% tags=["remove-input"]
from moon.notebook import chapter
chapter(globals())
import moon
from moon.configure import from_namespace
from moon.report import run_figures, tables
from moon.rundir import run_folder_name

cfg = from_namespace(globals(), preset)
out_dir = out_dir or f"runs/ood_eval/{run_folder_name(cfg, preset)}"
result = moon.run(cfg, out_dir)
print(f"{result.status}: {out_dir}/result.json, measured density {result.masks['density']:.4f}")
tables.id_table(result)

# %% tags=["remove-input"]
tables.ood_table(result, "auroc", names=True)

# %% tags=["remove-input"]
tables.ood_table(result, "fpr95", names=True)

# %% tags=["remove-input"]
run_figures.reliability_diagram(result)

# %% tags=["remove-input"]
run_figures.score_histograms(result, "msp")

# %% tags=["remove-input"]
run_figures.plot_history(result)

# %% tags=["remove-input"]
from IPython.display import Markdown
from moon.report import conclusions
Markdown(conclusions.run_conclusion(result))
