"""Write the papermill templates in notebooks/ (outputs cleared). Parameters cells are built from
RunConfig, so they never drift from it. Run after changing a RunConfig field or a template:

    .venv/bin/python scripts/make_notebooks.py
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import nbformat as nbf

from moon.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
COMMENTS = dict(re.findall(r"^    (\w+): [^=]+= [^#\n]+#\s*(.*)$",
                           (ROOT / "moon" / "config.py").read_text(), re.M))
DEFAULTS = RunConfig().to_dict()


def parameters(preset: str | None, out_dir: str, fields: list[str] | None = None,
               study: dict | None = None) -> str:
    """A parameters cell: ``preset``, ``out_dir``, the ``study`` lines (name -> (value, comment)),
    and RunConfig fields at their defaults."""
    lines = ["# Parameters (papermill): RunConfig fields, plus `preset` and `out_dir`.",
             "# A field left at its default is filled by the preset, if one is given.",
             f"preset = {preset!r}".ljust(36) + '# None | "smoke" | "quick" | "cpu" | "full"',
             f"out_dir = {out_dir!r}".ljust(36) + ("# where the result files go" if out_dir else
                                                   "# None: runs/ood_eval/<its configuration>")]
    for name, (value, comment) in (study or {}).items():
        lines.append(f"{name} = {value!r}".ljust(36) + f"# {comment}")
    for name in fields or [f.name for f in dataclasses.fields(RunConfig)]:
        lines.append(f"{name} = {DEFAULTS[name]!r}".ljust(36) + f"# {COMMENTS.get(name, '')}".rstrip())
    return "\n".join(lines)


def notebook(intro: str, params: str, *cells) -> nbf.NotebookNode:
    """A template: its markdown intro, the parameters cell, then ``cells``: code as a string, or
    ``(source, tags)`` (``"md"`` among the tags makes it a markdown cell)."""
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [nbf.v4.new_markdown_cell(intro.strip()),
                nbf.v4.new_code_cell(params, metadata={"tags": ["parameters"]})]
    for cell in cells:
        source, tags, caption = (cell + (None,))[:3] if isinstance(cell, tuple) else (cell, [], None)
        if "md" in tags:
            nb.cells.append(nbf.v4.new_markdown_cell(source.strip()))
            continue
        metadata = {"tags": list(tags)} if tags else {}
        if caption:                    # a numbered figure with its caption (MyST-NB cell metadata)
            metadata["mystnb"] = {"figure": {"caption": caption}}
        nb.cells.append(nbf.v4.new_code_cell(source.strip(), metadata=metadata))
    for i, cell in enumerate(nb.cells):     # stable ids: regenerating changes only what changed
        cell["id"] = f"cell-{i}"
    return nb


HIDE = ["remove-input"]                 # cells that only load or draw: the output is what counts
COLLAPSED = ["remove-input", "hide-output"]   # long tables: one click away


STUDY_FIELDS = ["dataset", "epochs", "sparse_init"]   # the model is an axis of the full study


# The paper-length study's alpha sweep (alpha_final 0.3 and 3) is MOON's knob, not MOON: pages
# that summarise "MOON" leave it out, and the calibration chapter shows it on its own.
NO_SWEEP = {"alpha_final": [1.0]}


def study_params(study: str, only: dict | None = None) -> dict:
    return {"study": (study, "a name in studies/ or a YAML path"),
            "only": (only, "axis -> values to keep (None: the whole grid of the preset)"),
            "run_missing": (True, "run the cells not finished yet (False: show the finished ones)")}


def check(fields: list[str] | None = None, extra: tuple[str, ...] = ()) -> str:
    """The first lines after the parameters: refuse ``-p`` names the template does not declare."""
    args = "globals()" + (f", {fields!r}" if fields is not None else "") + (f", extra={extra!r}" if extra else "")
    return ("from moon.notebook import (check_parameters, errors_first, show_figures_as_images,\n"
            "                           show_whole_tables)\n"
            f"errors_first()\ncheck_parameters({args})\nshow_whole_tables()\n"
            "show_figures_as_images()\n")


# A study chapter's set-up after its parameter check (templates with more parameters put their own
# check before it).
STUDY_BODY = """
import logging
import sys

import pandas as pd
# a failed cell is part of the page's report (its reason, one line), not a broken page: the
# study's log goes to the cell's text output
logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s", force=True)
from IPython.display import Markdown, display
from moon.config import overrides_from_namespace
from moon.report import figures, headline, run_figures, stats, tables
from moon.report.frame import by_model, corrupt_markdown, describe_runs, results_frame
from moon.study import collect, run_study

overrides = overrides_from_namespace(globals())
if run_missing:
    statuses = run_study(study, out_dir, preset=preset, only=only, progress=False, **overrides)
    failed = sorted(name for name, status in statuses.items() if status != "complete")
    if failed:   # each failed run's error is in its result.json
        print(f"{len(failed)} failed, e.g. {', '.join(failed[:3])}: see {out_dir}/<run>/result.json")
# without run_missing, a committed study is shown as it ran (even if a default changed since)
results = collect(study, out_dir, preset=preset, only=only, exact=run_missing, **overrides)
frame = results_frame(results)
left_out = corrupt_markdown(frame)      # files that are not what a run writes: listed, not averaged
Markdown(f"**Results shown:** study `{study}`, {describe_runs(frame)} (`{out_dir}`)."
         + (f"\\n\\n{left_out}" if left_out else ""))"""
STUDY_CELLS = check(STUDY_FIELDS, ("study", "only", "run_missing")) + STUDY_BODY

TEMPLATES = {
    "ood_eval": notebook(
        """# One run: train, evaluate, look

**Question.** How accurate, how well calibrated and how good at spotting OOD inputs is one
configuration of sparse training, with or without MOON?

**Default.** MOON on RigL at density 0.05, LeNet-5 on the embedded Fashion-MNIST benchmark, 20
epochs: a few minutes on a 2-core CPU (`-p preset smoke`: under a minute). Results go to
`runs/ood_eval/<configuration>` (or `-p out_dir DIR`); a folder holding another configuration's
result is never written (`-p overwrite True` replaces it), and `-p resume True` reuses a finished
run of the same configuration or continues an interrupted one.

**What to look at.** The ID metrics (accuracy, NLL, Brier, ECE over the K known classes; `ts_*`
after temperature scaling on the validation split), the OOD tables (AUROC and FPR@95%TPR in %, every
detector on every OOD set, with near, far and noise means), the reliability diagram, and the score
histograms of ID test images against each OOD set.

```
papermill notebooks/ood_eval.ipynb out.ipynb -p density 0.02 -p method set
```""",
        parameters(None, None),
        (check() + """import moon
from moon.config import from_namespace
from moon.report import run_figures, tables
from moon.rundir import run_folder_name

cfg = from_namespace(globals(), preset)
out_dir = out_dir or f"runs/ood_eval/{run_folder_name(cfg, preset)}"
result = moon.run(cfg, out_dir)
print(f"{result.status}: {out_dir}/result.json, measured density {result.masks['density']:.4f}")
tables.id_table(result)""", HIDE),
        ('tables.ood_table(result, "auroc", names=True)', HIDE),
        ('tables.ood_table(result, "fpr95", names=True)', HIDE),
        ("run_figures.reliability_diagram(result)", HIDE),
        ('run_figures.score_histograms(result, "msp")', HIDE),
        ("run_figures.plot_history(result)", HIDE),
        ("from IPython.display import Markdown\n"
         "from moon.report import headline\n"
         "Markdown(headline.run_conclusion(result))", HIDE)),

    "sparsity_sweep": notebook(
        """# Sparsity against reliability

**Questions.** Does sparsity hurt reliability (accuracy, calibration, OOD detection)? Does MOON
restore it? The paper-length study (`studies/paper.yaml`): the MLP (LeNet-300-100) with dense
training, SET and RigL at densities 0.1, 0.05 and 0.02, static and CigL at 0.05; LeNet-5 with dense
and RigL at 0.05; each without and with MOON (unknown class, auto-tuned α, weight averaging).

**Default.** The `paper` preset: 100 epochs on all training images, 5 seeds for the MLP and 3 for
LeNet-5 (`make study`, about 5 hours on a 2-core CPU with two workers; finished runs are reused and
an interrupted study resumes). `-p preset smoke` runs a small grid in a few minutes.

**What to look at.** The headline figure (MOON − baseline, paired by seed), the metrics against
density as small multiples (baseline solid, MOON dashed, dense as grey lines), the same effects as
heatmaps, and the primary endpoints the study declared before it ran, with their minimum detectable
effects and Holm-adjusted p-values.""",
        parameters("paper", "runs/paper", STUDY_FIELDS, study_params("paper", NO_SWEEP)),
        (STUDY_CELLS, HIDE),
        ("figures.headline_figure(headline.moon_effects(frame))", HIDE, "MOON − baseline per setting, paired by seed, with 95% intervals (filled: the interval excludes 0; grey band: the smallest change the seeds detect). Right of 0 is better for AUROC and accuracy, left of 0 for ECE."),
        ("figures.density_panels(frame)", HIDE, "Each metric against density, baseline solid and MOON dashed, mean over seeds with 95% intervals; grey lines: dense. Higher is better for AUROC and accuracy, lower for ECE."),
        ("figures.effect_heatmap(headline.moon_effects(frame), title='MOON − baseline')", HIDE, "MOON − baseline per method and density (points): blue better, red worse, grey where the 95% interval includes 0."),
        ("figures.effect_heatmap(stats.sparsity_effect_frame(frame), title='plain sparse − dense')",
         HIDE),
        ("""## Primary endpoints

Declared in the study file before it ran: MOON − baseline for SET and RigL at the three densities
on the MLP, in near- and far-OOD AUROC (MSP), accuracy and ECE, Holm-adjusted as one family.
"detectable" is the smallest difference these seeds detect with 80% power.""", ["md"]),
        ("""from moon.study import load_study
endpoints = load_study(study).endpoints
tables.endpoints_table(stats.primary_endpoints(frame, endpoints)) if endpoints.get("primary") else None""",
         COLLAPSED),
        ("## All comparisons", ["md"]),
        ("tables.paired_moon_table(frame)", COLLAPSED),
        ("tables.sparsity_effect_table(frame)", COLLAPSED),
        ("Markdown(headline.sweep_conclusion(frame))", HIDE)),

    "regime": notebook(
        """# Is this the paper's regime?

**Question.** MOON is meant for models that fit their training data and are over-confident, sparse
ones more than dense ones; its unknown class should take mass from confidently wrong samples once
training error is small and α is large. Do our runs live there? Per epoch: training accuracy,
validation ECE and fitted temperature, and MOON's unknown-class probability on the training data.

**Default.** The paper-length study (`paper` preset, `studies/paper.yaml`) beside the short
schedule (`cpu` preset: 10 epochs on 15,000 images, `studies/full.yaml`). Like the sweep chapter
it trains the paper-length study's missing runs (hours; `-p run_missing False` shows only the
finished ones, as the book does); the short-schedule runs are read as they ran, never trained here.

**What to look at.** The regime answers (does dense fit and over-confide, is sparse more
over-confident than dense, how large is training error when α reaches 0.5), the curves, the
unknown class's share of the probability, and the regime contrast: does the sign of MOON's ECE
change follow the baseline's fitted temperature across both studies?

**Then the regime study** (`studies/regime.yaml`, `make study-regime`): the same schedule on
fewer training images (fixed nested subsets) and on a wider MLP, to find where sparse training
hurts and to test MOON, part by part, there. Its cells are read as they ran, never trained here.""",
        parameters("paper", "runs/paper", STUDY_FIELDS,
                   {**study_params("paper", NO_SWEEP), "short_study": ("full", "the short-schedule study"),
                    "short_dir": ("runs/full-cpu", "its result folder"),
                    "short_preset": ("cpu", "its preset"),
                    "regime_dir": ("book/results/regime", "the regime study's result folder"),
                    "pilot_dir": ("book/results/regime-pilot", "its pilot's result folder")}),
        (check(STUDY_FIELDS, ("study", "only", "run_missing", "short_study", "short_dir",
                              "short_preset", "regime_dir", "pilot_dir"))
         + STUDY_BODY, HIDE),
        ("## The paper-length study: all 55,000 images", ["md"]),
        ("""from moon.report import regime
short_runs = collect(short_study, short_dir, preset=short_preset, exact=False)
short = results_frame(short_runs) if short_runs else None
answers = regime.verdict(regime.regime_frame(results))
frames = {f"{study} ({int(frame['epochs'].max())} epochs)": frame}
if short is not None:
    frames[f"{short_study} ({int(short['epochs'].max())} epochs)"] = short
link = regime.temperature_link(frames)
Markdown(headline.regime_conclusion(answers, link))""", HIDE),
        ("""keep = [r for r in results if r.config["seed"] == min(x.config["seed"] for x in results)
        and (r.config["method"] == "dense" or r.config["density"] == 0.05)
        and r.config.get("alpha_final", 1.0) == 1.0 and r.config["method"] in ("dense", "rigl")]
figures.regime_curves(keep)""", HIDE,
         "Per epoch, one seed of the paper-length study: training accuracy, validation ECE (lower "
         "is better), fitted temperature (above 1: over-confident) and MOON's unknown-class "
         "probability on the training data."),
        ("""masses = regime.regime_frame(results)
masses = masses[masses["moon"]]
(100 * masses.groupby(["model", "method", "density"])[["unknown_mass_train", "unknown_mass_id_test"]].mean()).round(4).rename(
    columns={"unknown_mass_train": "p(unknown), training data, last epoch (%)",
             "unknown_mass_id_test": "p(unknown), ID test (%)"})""", HIDE),
        ("figures.temperature_scatter(link)", HIDE, "MOON's ECE change (below 0: MOON better calibrated) against its baseline's fitted temperature (above 1: over-confident), one dot per pair, a colour per study."),
        ("""## Fewer images: where sparse training hurts

The regime study trains the MLP (and LeNet-5 at 5,000) on fixed nested subsets of the training
set with the paper's schedule; the paper-length study above is its 55,000-image point. Its
primary families are declared per training-set size in `studies/regime.yaml` (premise: sparse −
dense baseline; MOON − baseline; RigL and SET at 0.05), Holm within each family at each size.""",
         ["md"]),
        ("""from moon.report import regime_figures, regime_map
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
                     f"(`{regime_dir}`), of {len(load_study('regime').cells('paper'))} planned."))""",
         HIDE),
        ("""if regime_study is not None:
    sizes = regime_map.lenet300_runs(pd.concat([regime_study, frame], ignore_index=True))
    sizes = sizes[sizes["method"].isin(["dense", "rigl", "set", "cigl"])
                  & (sizes["alpha_final"] == 1.0)]
    curves = {column: regime_map.by_size(sizes, column) for column, *_ in regime_figures.SIZE_PANELS}
    display(regime_figures.size_curves(curves))""", HIDE,
         "The regime at each training-set size (MLP, mean over seeds with their range; 55,000 is "
         "the paper-length study): training accuracy, fitted temperature (above 1: over-confident), "
         "test ECE (lower is better) and, for MOON runs, the unknown class's probability on ID test "
         "images."),
        ("""if regime_study is not None:
    declared = stats.declared_families(regime_study, load_study("regime").endpoints)
    display(Markdown(regime_map.conditional_verdict(declared, regime_study)))
    display(tables.families_table(declared))""", HIDE),
        ("""## MOON's parts where the premise holds

MLP RigL 0.05 at the size the pilot chose, 10 seeds: each part against the baseline that shares
MOON's LR schedule (the cosine ends at epoch 80 and then holds), so each row is one switch.""",
         ["md"]),
        ("""parts = None
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
    display(Markdown("*The parts arm has no cells in this checkout yet.*"))""", HIDE),
        ("""## More width: the capacity arm

A 784-1024-1024 MLP on all 55,000 images, dense and RigL 0.05, baseline and MOON, 3 seeds: does
width, rather than fewer images, bring the sparse model to fit its data, and is the premise there?
Declared secondary in `studies/regime.yaml`: 95% intervals without adjustment, 3 seeds a side.""",
         ["md"]),
        ("""wide = None if regime_study is None else regime_study[regime_study["width"].fillna(0) > 0]
if wide is None or wide.empty:
    display(Markdown("*The capacity arm has no cells in this checkout yet (`make study-regime`, "
                     "its last two lines).*"))
else:
    capacity = regime_map.capacity_frame(wide)
    display(Markdown(regime_map.capacity_verdict(capacity, regime_map.capacity_fit(wide, frame))))
    if len(capacity):
        display(tables.interval_table(capacity, ["contrast", "method", "density"]))""", HIDE)),

    "ablation": notebook(
        """# Ablation: MOON's parts

**Question.** Which part of MOON does what? On LeNet-5 with RigL at density 0.05: the unknown
class (with the auto-tuned α, or a fixed α), weight averaging, all of MOON, and MOON with the
released code's behaviours (`as_released`: Bernoulli masks, the frozen drop rate, the 1% weight
stash, burst averaging); see `studies/ablation.yaml`.

**Default.** The `cpu` preset (10 epochs on 15,000 training images; seven variants, three seeds:
21 runs), about ten minutes on a 2-core CPU with two workers (`make study-cpu`). `-p preset quick`
trains on all images with one seed and six variants, `-p preset smoke` runs in a few minutes.
Finished runs are reused.

**What to look at.** Each variant's change against "none" (paired by seed, 95% intervals) as a
dot plot; the table of means below it.""",
        parameters("cpu", "runs/ablation", STUDY_FIELDS, study_params("ablation")),
        (STUDY_CELLS, HIDE),
        ("figures.ablation_plot(frame)", HIDE, "Each MOON part's change against no part, paired by seed, with 95% intervals; right of 0 is better for AUROC and accuracy, left of 0 for ECE."),
        ("tables.ablation_table(frame)", COLLAPSED),
        ("Markdown(headline.ablation_conclusion(frame))", HIDE)),

    "calibration": notebook(
        """# Calibration

**Question.** How well calibrated are dense training and static, SET, RigL and CigL at density
0.05, without and with MOON? Temperature scaling fitted on the validation split is the reference a
post-hoc fix reaches.

**Default.** The runs of the paper-length study (`studies/paper.yaml`, `paper` preset) at
densities 1 and 0.05, shared with the sweep chapter. The post-hoc chapter reads the same runs.

**What to look at.** ECE per setting for baseline and MOON with the temperature-scaled reference,
the table of ECE, adaptive ECE, NLL and Brier (mean ± std over seeds), and the reliability
diagrams of one seed of one model.""",
        parameters("paper", "runs/paper", STUDY_FIELDS, study_params("paper", {"density": [1.0, 0.05], **NO_SWEEP})),
        (STUDY_CELLS, HIDE),
        ("figures.calibration_overview(frame)", HIDE, "ECE per setting, baseline filled and MOON hollow, with 95% intervals; black diamonds: after temperature scaling. Lower is better."),
        ("tables.calibration_table(frame)", COLLAPSED),
        ("""first = results[0].config
run_figures.reliability_diagram([r for r in results if r.config["seed"] == first["seed"]
                                 and r.config["model"] == first["model"]
                                 and r.config.get("alpha_final", 1.0) == 1.0][:6])""", HIDE),
        ("""## MOON's one knob: α_final

The paper-length study also ran MOON on the MLP with RigL at 0.05 at `alpha_final` 0.3 and 3
(5 seeds each; 1 is the main grid's MOON). Each value against the same baselines, paired by seed;
the other pages leave these runs out, so no page pools them into "MOON".""", ["md"]),
        ("""sweep_runs = collect(study, out_dir, preset=preset, exact=run_missing,
                     only={"model": ["mlp"], "method": ["rigl"], "density": [0.05]})
sweep = stats.alpha_sweep_frame(results_frame(sweep_runs), ["id.ece", "id.ts_ece",
                                "ood.near.msp.auroc", "ood.far.msp.auroc", "id.accuracy"])
display(tables.alpha_sweep_table(sweep))
Markdown(headline.alpha_sweep_conclusion(sweep))""", HIDE),
        ("Markdown(headline.calibration_conclusion(frame))", HIDE)),

    "posthoc": notebook(
        """# Post-hoc detectors: does DICE add to MOON?

**Question.** The cheap post-hoc detectors (MSP, temperature-scaled MSP, energy, GEN, DICE, ReAct,
ASH, SCALE, ViM, fDBD, Mahalanobis, relative Mahalanobis, KNN) on dense and sparse models without and
with MOON: which work, and do post-hoc sparsification of the last layer (DICE) and MOON add up?

**Default.** The runs of the calibration chapter: the paper-length study at densities 1 and 0.05.

**What to look at.** Near- and far-OOD AUROC per detector and setting, and the paired gain of DICE
over plain energy on the same runs, without and with MOON (the "MOON − baseline" rows: the gain on
MOON runs minus the gain on their baselines; near 0 means the two add up). Last, DICE's AUROC
against its percentile *p* (0, 50, 70, 90, 95, 99; *p* = 0 is plain energy) for dense and sparse
models, from the sweep every evaluation stores.""",
        parameters("paper", "runs/paper", STUDY_FIELDS, study_params("paper", {"density": [1.0, 0.05], **NO_SWEEP})),
        (STUDY_CELLS, HIDE),
        ("figures.detector_heatmap(frame)", HIDE),
        ('tables.posthoc_table(frame, kind="near")', COLLAPSED),
        ('tables.posthoc_table(frame, kind="far")', COLLAPSED),
        ("tables.posthoc_gain_table(frame)", COLLAPSED),
        ("""sweep = stats.dice_sweep_frame(frame)
if sweep.empty:   # result files written before the evaluation stored extra.dice_sweep
    display(Markdown("These results have no DICE sweep (`extra.dice_sweep`)."))
else:
    display(figures.dice_sweep_plot(sweep))
    display(tables.dice_sweep_table(sweep))""", HIDE),
        ("Markdown(headline.posthoc_conclusion(frame))", HIDE)),

    "cost": notebook(
        """# Cost

**Question.** What do sparse training and MOON cost, and what does a sparse model gain at
inference? Theoretical training FLOPs per image at each density (RigL paper's accounting),
measured training time and throughput, peak memory, MOON's time against its base method (the paper
claims no significant extra cost), and the measured speed and size of the exported sparse models.

**Default.** Reads (and if needed runs) the paper-length study, like the sweep chapter, and the
inference benchmark's result (`bench/sparse_inference.py` writes
`book/results/sparse_inference/inference.json`) and the training benchmark's
(`bench/train_sparse.py`: `book/results/train_sparse/train_sparse.json`). The studies trained with
masks applied by value (`kernel=masked`), so their training times do not shrink with density; the
CSR trainer (`kernel=csr`) is what skipping inactive weights buys in training.
On the CPU, peak memory is the process's peak RSS; the study ran two workers side by side.

**What to look at.** The training-cost table, then the inference speed-up of the CSR export over
the dense masked model against the FLOP ratio, and the stored sizes.""",
        parameters("paper", "runs/paper", STUDY_FIELDS,
                   {**study_params("paper", NO_SWEEP), "inference": (
                       "book/results/sparse_inference/inference.json",
                       "the inference benchmark's result file"),
                    "train_sparse": ("book/results/train_sparse/train_sparse.json",
                                     "the training benchmark's result file")}),
        (check(STUDY_FIELDS, ("study", "only", "run_missing", "inference", "train_sparse"))
         + STUDY_BODY, HIDE),
        ("tables.cost_table(frame)", HIDE),
        ("""import json
from pathlib import Path
measured = json.loads(Path(inference).read_text()) if Path(inference).exists() else None
figures.inference_figure(measured) if measured else Markdown(f"No inference benchmark at `{inference}`: run `python bench/sparse_inference.py`.")""", HIDE),
        ("tables.inference_table(measured) if measured else None", HIDE),
        ("""training = json.loads(Path(train_sparse).read_text()) if Path(train_sparse).exists() else None
if training:
    display(Markdown(f"**Training on CSR kernels** (`bench/train_sparse.py`, RigL + MOON, batch 128; "
                     f"{training['label']}): training images per second of the masked trainer, and "
                     "the CSR trainer's speed against it, median [range] of interleaved rounds."))
    display(tables.train_sparse_table(training))
else:
    display(Markdown(f"No training benchmark at `{train_sparse}`: run `python bench/train_sparse.py`."))""", HIDE),
        ("Markdown(headline.cost_conclusion(frame, measured))", HIDE)),

    "theory_unknown_class": notebook(
        """# Theory: what the unknown class learns

**Question.** Where does the extra class take probability mass? On a 2-D toy problem (three
Gaussian blobs), confidence maps of dense and sparse MLPs without and with the unknown class; and
the analytic region (reference section 1.4) where a misclassified sample pushes the unknown logit
up: `h α² (1−u) / (1+αu)² > 1 + α/(1+αu)`, with `h` the sample's cross-entropy and `u` its
unknown-class probability.

**Default.** Five toy models on overlapping blobs, a few seconds each on a CPU.

**What to look at.** The unknown class only rises for confidently wrong samples, and only when α
is large: at α = 1 a wrong sample needs `h > 2` (p_y < 0.135); at α = 0.01, `h > 10⁴` (never). With
the auto-tuned α it therefore takes little mass even where the classes overlap; the last panel,
with a fixed α of 5, shows where it goes once α is large (dashed: p(unknown) = 0.5, when reached).""",
        parameters(None, "runs/theory_unknown_class", ["seed", "density", "alpha_final"]),
        (check(["seed", "density", "alpha_final"]) + """from moon import theory

models = theory.toy_models(density, alpha_final, seed, epochs=15 if preset == "smoke" else 60)
theory.plot_confidence_maps(models, data=theory.toy_data(seed=seed, std=1.0))""", HIDE),
        ("theory.plot_unknown_region()", HIDE),
        ("summary = theory.unknown_mass_summary(models, theory.toy_data(seed=seed, std=1.0))\n"
         "summary.round(3)", HIDE),
        ("from IPython.display import Markdown\nMarkdown(theory.unknown_class_conclusion(summary))",
         HIDE)),

    "theory_dice_variance": notebook(
        """# Theory: DICE and the variance of the outputs

**Question.** DICE argues that keeping only the largest contributions of the last layer reduces
the variance of the outputs, more for OOD inputs than for ID ones, which separates them. Does that
hold on a trained model of ours, and how does the separation (AUROC) move with DICE's percentile
p? (p = 0 is the plain energy score.)

**Default.** Trains, or reuses from `out_dir`, the default run (MOON on RigL at density 0.05,
LeNet-5, 20 epochs: a few minutes on a 2-core CPU), then sweeps p.

**What to look at.** The mean variance of the masked known-class logits for ID and each OOD set
against p, and the AUROC of DICE's energy score against p.""",
        parameters(None, None),
        (check() + """import moon
from moon import theory
from moon.config import from_namespace
from moon.data import load_id
from moon.evaluate import outputs_for
from moon.rundir import run_folder_name
from moon.runner import load_model

cfg = from_namespace(globals(), preset)
out_dir = out_dir or f"runs/ood_eval/{run_folder_name(cfg, preset)}"
result = moon.run(cfg.replace(resume=True), out_dir)     # trains, or reuses the finished run
model, cfg = load_model(out_dir)
outputs = outputs_for(model, load_id(cfg.dataset), cfg, "cpu")
sweep = theory.dice_variance_sweep(model, outputs.pop("train"), outputs, num_known=model.head.out_features - int(cfg.unknown_class))
theory.dice_variance_table(sweep)""", HIDE),
        ("theory.plot_dice_variance(sweep)", HIDE),
        ("from IPython.display import Markdown\nMarkdown(theory.dice_variance_conclusion(sweep))",
         HIDE)),
}


def main() -> None:
    for name, nb in TEMPLATES.items():
        nbf.write(nb, ROOT / "notebooks" / f"{name}.ipynb")
        print(f"wrote notebooks/{name}.ipynb")


if __name__ == "__main__":
    main()
