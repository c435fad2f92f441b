# %% [markdown]
# # Is this the paper's regime?
#
# **Question.** MOON is meant for models that fit their training data and are over-confident, sparse
# ones more than dense ones; its unknown class should take mass from confidently wrong samples once
# training error is small and α is large. Do our runs live there? Per epoch: training accuracy,
# validation ECE and fitted temperature, and MOON's unknown-class probability on the training data.
#
# **Default.** The paper-length study (`paper` preset, `studies/paper.yaml`) beside the short
# schedule (`cpu` preset: 10 epochs on 15,000 images, `studies/full.yaml`). Like the sweep chapter
# it trains the paper-length study's missing runs (hours; `-p run_missing False` shows only the
# finished ones, as the book does); the short-schedule runs are read as they ran, never trained here.
#
# **What to look at.** The regime answers (does dense fit and over-confide, is sparse more
# over-confident than dense, how large is training error when α reaches 0.5), the curves, the
# unknown class's share of the probability, and the regime contrast: does the sign of MOON's ECE
# change follow the baseline's fitted temperature across both studies?
#
# **Then the regime study** (`studies/regime.yaml`, `make study-regime`): the same schedule on
# fewer training images (fixed nested subsets) and on a wider MLP, to find where sparse training
# hurts and to test MOON, part by part, there. Its cells are read as they ran, never trained here.

# %% tags=["parameters"]
preset = 'paper'
out_dir = 'runs/paper'              # where the result files go
study = 'paper'                     # a name in studies/ or a YAML path
only = {'alpha_final': [1.0]}       # axis -> values to keep (None: the whole grid of the preset)
run_missing = True                  # run the cells not finished yet (False: show the finished ones)
short_study = 'full'                # the short-schedule study
short_dir = 'runs/full-cpu'         # its result folder
short_preset = 'cpu'                # its preset
regime_dir = 'book/results/regime'  # the regime study's result folder
pilot_dir = 'book/results/regime-pilot'  # its pilot's result folder
# RunConfig fields: study   (those of moon.notebook.STUDY_FIELDS, written out by scripts/make_notebooks.py)

# %% tags=["remove-input"]
from moon.notebook import study_chapter
results, frame, shown = study_chapter(globals(), extra=('short_study', 'short_dir', 'short_preset', 'regime_dir', 'pilot_dir'))

import pandas as pd
from IPython.display import Markdown, display
from moon.report import conclusions, figures, stats, tables
from moon.report.frame import describe_runs, results_frame
from moon.study import collect

Markdown(shown)

# %% [markdown]
# ## The paper-length study: all 55,000 images

# %% tags=["remove-input"]
from moon.report import regime
short_runs = collect(short_study, short_dir, preset=short_preset, exact=False)
short = results_frame(short_runs) if short_runs else None
answers = regime.verdict(regime.regime_frame(results))
frames = {f"{study} ({int(frame['epochs'].max())} epochs)": frame}
if short is not None:
    frames[f"{short_study} ({int(short['epochs'].max())} epochs)"] = short
link = regime.temperature_link(frames)
Markdown(conclusions.regime_conclusion(answers, link))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "Per epoch, one seed of the paper-length study: training accuracy, validation ECE (lower is better), fitted temperature (above 1: over-confident) and MOON's unknown-class probability on the training data."}}
keep = [r for r in results if r.config["seed"] == min(x.config["seed"] for x in results)
        and (r.config["method"] == "dense" or r.config["density"] == 0.05)
        and r.config.get("alpha_final", 1.0) == 1.0 and r.config["method"] in ("dense", "rigl")]
figures.regime_curves(keep)

# %% tags=["remove-input"]
masses = regime.regime_frame(results)
masses = masses[masses["moon"]]
(100 * masses.groupby(["model", "method", "density"])[["unknown_mass_train", "unknown_mass_id_test"]].mean()).round(4).rename(
    columns={"unknown_mass_train": "p(unknown), training data, last epoch (%)",
             "unknown_mass_id_test": "p(unknown), ID test (%)"})

# %% tags=["remove-input"] mystnb={"figure": {"caption": "MOON's ECE change (below 0: MOON better calibrated) against its baseline's fitted temperature (above 1: over-confident), one dot per pair, a colour per study."}}
figures.temperature_scatter(link)

# %% [markdown]
# ## Fewer images: where sparse training hurts
#
# The regime study trains the MLP (and LeNet-5 at 5,000) on fixed nested subsets of the training
# set with the paper's schedule; the paper-length study above is its 55,000-image point. Its
# primary families are declared per training-set size in `studies/regime.yaml` (premise: sparse −
# dense baseline; MOON − baseline; RigL and SET at 0.05), Holm within each family at each size.

# %% tags=["remove-input"]
from moon.report import regime_figures, regime_map
from moon.study import load_study
pilot_runs = collect("regime-pilot", pilot_dir, preset="paper", exact=False)
regime_runs = collect("regime", regime_dir, preset="paper", exact=False)
regime_study = results_frame(regime_runs) if regime_runs else None
if pilot_runs:
    display(Markdown(regime_map.pilot_markdown(regime_map.pilot_decisions(results_frame(pilot_runs)))))
if regime_study is None:
    display(Markdown("*No cells of the regime study in this checkout yet: `make study-regime`.*"))
else:
    display(Markdown(f"**Results shown:** study `regime`, {describe_runs(regime_study)} "
                     f"(`{regime_dir}`), of {len(load_study('regime').cells('paper'))} planned."))

# %% tags=["remove-input"] mystnb={"figure": {"caption": "The regime at each training-set size (MLP, mean over seeds with their range; 55,000 is the paper-length study): training accuracy, fitted temperature (above 1: over-confident), test ECE (lower is better) and, for MOON runs, the unknown class's probability on ID test images."}}
if regime_study is not None:
    sizes = regime_map.lenet300_runs(pd.concat([regime_study, frame], ignore_index=True))
    sizes = sizes[sizes["method"].isin(["dense", "rigl", "set", "cigl"])
                  & (sizes["alpha_final"] == 1.0)]
    curves = {column: regime_map.by_size(sizes, column) for column, *_ in regime_figures.SIZE_PANELS}
    display(regime_figures.size_curves(curves))

# %% tags=["remove-input"]
if regime_study is not None:
    declared = stats.declared_families(regime_study, load_study("regime").endpoints)
    display(Markdown(regime_map.conditional_verdict(declared, regime_study)))
    display(tables.families_table(declared))

# %% [markdown]
# ## MOON's parts where the premise holds
#
# MLP RigL 0.05 at the size the pilot chose, 10 seeds: each part against the baseline that shares
# MOON's LR schedule (the cosine ends at epoch 80 and then holds), so each row is one switch.

# %% tags=["remove-input"]
parts = None
if regime_study is not None:
    arm = regime_study[regime_study["lr_hold_epochs"].notna()]
    if len(arm):
        n = int(arm["max_train_samples"].iloc[0])
        cell = regime_study[(regime_study["model"] == "mlp") & (regime_study["method"] == "rigl")
                            & (regime_study["density"] == 0.05)
                            & (regime_study["max_train_samples"] == n)]
        parts = regime_map.parts_frame(cell, ["ood.near.msp.auroc", "ood.far.msp.auroc",
                                              "id.accuracy", "id.ece", "id.ts_ece"])
        display(Markdown(f"MLP RigL 0.05 at n = {n:,} training images."))
        display(tables.parts_table(parts))
if parts is None:
    display(Markdown("*The parts arm has no cells in this checkout yet.*"))

# %% [markdown]
# ## More width: the capacity arm
#
# A 784-1024-1024 MLP on all 55,000 images, dense and RigL 0.05, baseline and MOON, 3 seeds: does
# width, rather than fewer images, bring the sparse model to fit its data, and is the premise there?
# Declared secondary in `studies/regime.yaml`: 95% intervals without adjustment, 3 seeds a side.

# %% tags=["remove-input"]
wide = None if regime_study is None else regime_study[regime_study["width"].fillna(0) > 0]
if wide is None or wide.empty:
    display(Markdown("*The capacity arm has no cells in this checkout yet (`make study-regime`, "
                     "its last two lines).*"))
else:
    capacity = regime_map.capacity_frame(wide)
    display(Markdown(regime_map.capacity_verdict(capacity, regime_map.capacity_fit(wide, frame))))
    if len(capacity):
        display(tables.interval_table(capacity, ["contrast", "method", "density"]))
