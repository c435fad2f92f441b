# %% [markdown]
# # Cost
#
# **Question.** What do sparse training and MOON cost, and what does a sparse model gain at
# inference? Theoretical training FLOPs per image at each density (RigL paper's accounting),
# measured training time and throughput, peak memory, MOON's time against its base method (the paper
# claims no significant extra cost), and the measured speed and size of the exported sparse models.
#
# **Default.** Reads (and if needed runs) the paper-length study, like the sweep chapter, and the
# inference benchmark's result (`bench/sparse_inference.py` writes
# `book/results/sparse_inference/inference.json`) and the training benchmark's
# (`bench/train_sparse.py`: `book/results/train_sparse/train_sparse.json`). The studies trained with
# masks applied by value (`kernel=masked`), so their training times do not shrink with density; the
# CSR trainer (`kernel=csr`) is what skipping inactive weights buys in training.
# On the CPU, peak memory is the process's peak RSS; the study ran two workers side by side.
#
# **What to look at.** The training-cost table, then the inference speed-up of the CSR export over
# the dense masked model against the FLOP ratio, and the stored sizes.

# %% tags=["parameters"]
preset = 'paper'
out_dir = 'runs/paper'              # where the result files go
study = 'paper'                     # a name in studies/ or a YAML path
only = {'alpha_final': [1.0]}       # axis -> values to keep (None: the whole grid of the preset)
run_missing = True                  # run the cells not finished yet (False: show the finished ones)
inference = 'book/results/sparse_inference/inference.json'  # the inference benchmark's result file
train_sparse = 'book/results/train_sparse/train_sparse.json'  # the training benchmark's result file
# RunConfig fields: study   (those of moon.notebook.STUDY_FIELDS, written out by scripts/make_notebooks.py)

# %% tags=["remove-input"]
from moon.notebook import study_chapter
results, frame, shown = study_chapter(globals(), extra=('inference', 'train_sparse'))

from IPython.display import Markdown, display
from moon.report import conclusions, figures, tables

Markdown(shown)

# %% tags=["remove-input"]
tables.cost_table(frame)

# %% tags=["remove-input"]
import json
from pathlib import Path
measured = json.loads(Path(inference).read_text()) if Path(inference).exists() else None
figures.inference_figure(measured) if measured else Markdown(f"No inference benchmark at `{inference}`: run `python bench/sparse_inference.py`.")

# %% tags=["remove-input"]
tables.inference_table(measured) if measured else None

# %% tags=["remove-input"]
training = json.loads(Path(train_sparse).read_text()) if Path(train_sparse).exists() else None
if training:
    display(Markdown(f"**Training on CSR kernels** (`bench/train_sparse.py`, RigL + MOON, batch 128; "
                     f"{training['label']}): training images per second of the masked trainer, and "
                     "the CSR trainer's speed against it, median [range] of interleaved rounds."))
    display(tables.train_sparse_table(training))
else:
    display(Markdown(f"No training benchmark at `{train_sparse}`: run `python bench/train_sparse.py`."))

# %% tags=["remove-input"]
Markdown(conclusions.cost_conclusion(frame, measured))
