# %% [markdown]
# # Theory: DICE and the variance of the outputs
#
# **Question.** DICE argues that keeping only the largest contributions of the last layer reduces
# the variance of the outputs, more for OOD inputs than for ID ones, which separates them. Does that
# hold on a trained model of ours, and how does the separation (AUROC) move with DICE's percentile
# p? (p = 0 is the plain energy score.)
#
# **Default.** Trains, or reuses from `out_dir`, the default run (MOON on RigL at density 0.05,
# LeNet-5, 20 epochs: a few minutes on a 2-core CPU), then sweeps p.
#
# **What to look at.** The mean variance of the masked known-class logits for ID and each OOD set
# against p, and the AUROC of DICE's energy score against p.

# %% tags=["parameters"]
preset = None
out_dir = None                      # None: runs/ood_eval/<its configuration>
# RunConfig fields: all   (written out by scripts/make_notebooks.py)

# %% tags=["remove-input"]
from moon.notebook import chapter
chapter(globals())
import moon
from moon import theory
from moon.configure import from_namespace
from moon.data import load_id
from moon.evaluate import outputs_for
from moon.rundir import run_folder_name
from moon.runner import load_model

cfg = from_namespace(globals(), preset)
out_dir = out_dir or f"runs/ood_eval/{run_folder_name(cfg, preset)}"
result = moon.run(cfg.replace(resume=True), out_dir)  # trains, or reuses the finished run
model, cfg = load_model(out_dir)
outputs = outputs_for(model, load_id(cfg.dataset), cfg, "cpu")
sweep = theory.dice_variance_sweep(model, outputs.pop("train"), outputs, num_known=model.head.out_features - int(cfg.unknown_class))
theory.dice_variance_table(sweep)

# %% tags=["remove-input"]
theory.plot_dice_variance(sweep)

# %% tags=["remove-input"]
from IPython.display import Markdown
Markdown(theory.dice_variance_conclusion(sweep))
