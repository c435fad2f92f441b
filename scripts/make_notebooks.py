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


def notebook(intro: str, params: str, *cells: str) -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [nbf.v4.new_markdown_cell(intro.strip()),
                nbf.v4.new_code_cell(params, metadata={"tags": ["parameters"]})]
    nb.cells += [nbf.v4.new_code_cell(c.strip()) for c in cells]
    for i, cell in enumerate(nb.cells):     # stable ids: regenerating changes only what changed
        cell["id"] = f"cell-{i}"
    return nb


STUDY_FIELDS = ["dataset", "epochs", "sparse_init"]   # the model is an axis of the full study


def study_params(study: str, only: dict | None = None) -> dict:
    return {"study": (study, "a name in studies/ or a YAML path"),
            "only": (only, "axis -> values to keep (None: the whole grid of the preset)")}


def check(fields: list[str] | None = None, extra: tuple[str, ...] = ()) -> str:
    """The first lines after the parameters: refuse ``-p`` names the template does not declare."""
    args = "globals()" + (f", {fields!r}" if fields is not None else "") + (f", extra={extra!r}" if extra else "")
    return f"from moon.notebook import check_parameters\ncheck_parameters({args})\n"


STUDY_CELLS = check(STUDY_FIELDS, ("study", "only")) + """
import pandas as pd
from IPython.display import display
from moon import compare, compare_figures, figures, report
from moon.config import overrides_from_namespace
from moon.study import collect, run_study

pd.set_option("display.max_rows", 500)     # the book shows whole tables
overrides = overrides_from_namespace(globals())
statuses = run_study(study, out_dir, preset=preset, only=only, progress=False, **overrides)
results = collect(study, out_dir, preset=preset, only=only, **overrides)
print(f"study {study}: {len(results)} of {len(statuses)} runs complete in {out_dir}")
failed = sorted(name for name, status in statuses.items() if status != "complete")
if failed:   # each failed run's error is in its result.json
    print(f"{len(failed)} failed, e.g. {', '.join(failed[:3])}: see {out_dir}/<run>/result.json")
frame = report.results_frame(results)"""


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
        check() + """import moon
from moon import figures, report
from moon.config import from_namespace
from moon.rundir import run_folder_name

cfg = from_namespace(globals(), preset)
out_dir = out_dir or f"runs/ood_eval/{run_folder_name(cfg, preset)}"
result = moon.run(cfg, out_dir)
print(f"{result.status}: {out_dir}/result.json, measured density {result.masks['density']:.4f}")
report.id_table(result)""",
        'report.ood_table(result, "auroc")',
        'report.ood_table(result, "fpr95")',
        "figures.reliability_diagram(result)",
        'figures.score_histograms(result, "msp")',
        "figures.plot_history(result)"),

    "sparsity_sweep": notebook(
        """# Sparsity against reliability

**Questions.** Does sparsity hurt reliability (accuracy, calibration, OOD detection)? Does MOON
restore it? The full study (`studies/full.yaml`): the MLP (LeNet-300-100) and LeNet-5; dense, and
static, SET, RigL and CigL at densities 0.2, 0.1, 0.05 and 0.02; each without and with MOON
(unknown class, auto-tuned α, weight averaging); three seeds.

**Default.** The `cpu` preset (10 epochs on a fixed 15,000-image subset of the training set per
run: 204 runs), about an hour on a 2-core CPU with two workers (`make study`); `-p preset quick`
trains on all 55,000 images, `-p preset smoke` runs a small subset in a few minutes, and
`-p study sweep` is a LeNet-5-only grid. Finished runs are reused.

**What to look at.** Per model, the curves of each metric against density (mean over seeds with a
95% t-interval band), the paired differences MOON − baseline per method and density (same seeds),
and the differences of each plain sparse method to dense.""",
        parameters("cpu", "runs/full", STUDY_FIELDS, study_params("full")),
        STUDY_CELLS,
        """for name, runs in compare.by_model(frame):
    fig = figures.density_grid(runs, metrics=("id.accuracy", "id.ece", "ood.near.msp.auroc", "ood.far.msp.auroc"))
    fig.suptitle(name, fontsize=10)
    display(fig)""",
        "compare.paired_moon_table(frame)",
        """for name, runs in compare.by_model(frame):
    fig = compare_figures.paired_moon_plot(compare.paired_moon_frame(runs))
    fig.suptitle(f"{name}: MOON − baseline (95% interval over seeds)", fontsize=10)
    display(fig)""",
        "compare.sparsity_effect_table(frame)"),

    "ablation": notebook(
        """# Ablation: MOON's parts

**Question.** Which part of MOON does what? On LeNet-5 with RigL at density 0.05: the unknown
class (with the auto-tuned α, or a fixed α), weight averaging, all of MOON, and MOON with the
released code's behaviours (`as_released`: Bernoulli masks, the frozen drop rate, the 1% weight
stash, burst averaging); see `studies/ablation.yaml`.

**Default.** The `cpu` preset (10 epochs on 15,000 training images; seven variants, three seeds:
21 runs), about ten minutes on a 2-core CPU with two workers (`make study` runs it after the full
study). `-p preset quick` trains on all images with one seed and six variants, `-p preset smoke`
runs in a few minutes. Finished runs are reused.

**What to look at.** The table (mean ± std over seeds, and each variant − "none" paired by seed
with its 95% interval) and the bars with 95% intervals.""",
        parameters("cpu", "runs/ablation", STUDY_FIELDS, study_params("ablation")),
        STUDY_CELLS,
        "compare.ablation_table(frame)",
        "compare_figures.ablation_plot(frame)"),

    "calibration": notebook(
        """# Calibration

**Question.** How well calibrated are dense training and static, SET, RigL and CigL at density
0.05, without and with MOON? Temperature scaling fitted on the validation split is the reference a
post-hoc fix reaches.

**Default.** The runs of the full study (`studies/full.yaml`, `cpu` preset) at densities 1 and
0.05: both models, three seeds, 60 runs, shared with the sweep chapter (`-p study calibration`
is a smaller LeNet-5 grid). The post-hoc chapter reads the same runs.

**What to look at.** ECE, adaptive ECE, NLL and Brier per model and variant (mean ± std over
seeds), the ECE against its temperature-scaled reference, and the reliability diagrams of one
seed of one model.""",
        parameters("cpu", "runs/full", STUDY_FIELDS, study_params("full", {"density": [1.0, 0.05]})),
        STUDY_CELLS,
        "compare.calibration_table(frame)",
        "compare_figures.calibration_overview(frame)",
        """first = results[0].config
figures.reliability_diagram([r for r in results if r.config["seed"] == first["seed"]
                             and r.config["model"] == first["model"]])"""),

    "posthoc": notebook(
        """# Post-hoc detectors: does DICE add to MOON?

**Question.** The cheap post-hoc detectors (MSP, temperature-scaled MSP, energy, GEN, DICE, ReAct,
ASH, SCALE, ViM, fDBD, Mahalanobis, relative Mahalanobis, KNN) on dense and sparse models without and
with MOON: which work, and do post-hoc sparsification of the last layer (DICE) and MOON add up?

**Default.** The runs of the calibration chapter: the full study (`cpu` preset) at densities 1
and 0.05, both models, three seeds.

**What to look at.** Near- and far-OOD AUROC per detector, model and variant, and the paired gain
of DICE over plain energy on the same runs, without and with MOON (the "MOON − baseline" rows: the
gain on MOON runs minus the gain on their baselines; near 0 means the two add up). Last, DICE's
AUROC against its percentile *p* (0, 50, 70, 90, 95, 99; *p* = 0 is plain energy) for dense and
sparse models, from the sweep every evaluation stores (one fitted head mean per run).""",
        parameters("cpu", "runs/full", STUDY_FIELDS, study_params("full", {"density": [1.0, 0.05]})),
        STUDY_CELLS,
        'compare.posthoc_table(frame, kind="near")',
        'compare.posthoc_table(frame, kind="far")',
        "compare.posthoc_gain_frame(frame)",
        """sweep = compare.dice_sweep_frame(frame)
if sweep.empty:   # result files written before the evaluation stored extra.dice_sweep
    print("These results have no DICE sweep (extra.dice_sweep): they were written before the "
          "evaluation stored one; runs made since then have it.")
else:
    display(compare.dice_sweep_table(sweep))
    compare_figures.dice_sweep_plot(sweep)"""),

    "cost": notebook(
        """# Cost

**Question.** What do sparse training and MOON cost? Theoretical training FLOPs per image at each
density (RigL paper's accounting), measured training time and throughput, peak memory, and MOON's
time overhead against its base method (the paper claims no significant extra cost).

**Default.** Reads (and if needed runs) the full study, like the sweep chapter. Our masks are
applied by value, so measured times do not shrink with density; the FLOPs are what kernels that
skip inactive weights would need. On the CPU, peak memory is the process's peak RSS; the study ran
two workers side by side, so times are those of a shared machine.

**What to look at.** The table, and the MOON/baseline time ratio with its interval.""",
        parameters("cpu", "runs/full", STUDY_FIELDS, study_params("full")),
        STUDY_CELLS,
        "compare.cost_table(frame)"),

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
        check(["seed", "density", "alpha_final"]) + """from moon import theory

models = theory.toy_models(density, alpha_final, seed, epochs=15 if preset == "smoke" else 60)
theory.plot_confidence_maps(models, data=theory.toy_data(seed=seed, std=1.0))""",
        "theory.plot_unknown_region()"),

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
        check() + """import moon
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
sweep""",
        "theory.plot_dice_variance(sweep)"),
}


def main() -> None:
    for name, nb in TEMPLATES.items():
        nbf.write(nb, ROOT / "notebooks" / f"{name}.ipynb")
        print(f"wrote notebooks/{name}.ipynb")


if __name__ == "__main__":
    main()
