"""Result files -> one tidy frame, and the book's one vocabulary.

:func:`results_frame` gives one row per complete run (:func:`moon.results.flatten`'s columns: config
fields, ``id.*``, ``ood.<set>.<detector>.<metric>``, ``timing.*``, ``extra.*``), adds the group
means ``ood.{near,far,noise}.<detector>.<metric>`` and the labels ``moon`` and ``variant``. Every
other reporting module reads this frame. Values stay fractions; :func:`scale_of` says which columns
a page shows x100, and :func:`metric_label` names any column in words with its unit, so a figure
never shows ``ood.near.msp.auroc`` on an axis.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from moon.ood.registry import DETECTORS as DETECTOR_SPECS

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# -- vocabulary -------------------------------------------------------------------------------------
METHOD_NAMES = {"dense": "dense", "static": "static", "set": "SET", "rigl": "RigL", "cigl": "CigL"}
METHOD_ORDER = tuple(METHOD_NAMES)
MODEL_NAMES = {"mlp": "MLP", "lenet5": "LeNet-5"}
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10",
                 "cifar100": "CIFAR-100", "synthetic": "synthetic data"}
BASELINE, MOON = "baseline", "MOON"
ABLATION_ORDER = ("none", "unknown class", "unknown class, fixed α", "averaging", "MOON",
                  "MOON, fixed α", "MOON as released")
MOON_PARTS = ("unknown_class", "averaging", "alpha_auto", "as_released")
METRIC_NAMES = {"accuracy": "accuracy", "ece": "ECE", "mce": "MCE", "adaptive_ece": "adaptive ECE",
                "nll": "NLL", "brier": "Brier score", "temperature": "fitted temperature",
                "ts_ece": "ECE after temperature scaling", "ts_nll": "NLL after temperature scaling",
                "ece_released": "ECE (released code's convention)", "auroc": "AUROC",
                "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out", "fpr95": "FPR@95"}
# Each detector's name on a page, declared with the detector in moon.ood.registry.
DETECTOR_NAMES = {name: spec.label for name, spec in DETECTOR_SPECS.items()}
PERCENT = ("accuracy", "ece", "mce", "adaptive_ece", "ts_ece", "ece_released", "auroc", "aupr_in",
           "aupr_out", "fpr95")
ID_METRICS = ("accuracy", "nll", "brier", "ece", "mce", "adaptive_ece")
OOD_METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")
SUMMARY_METRICS = ("id.accuracy", "id.ece", "id.nll", "ood.near.msp.auroc", "ood.far.msp.auroc")
# The study's question, in the paper's score (MSP): the four metrics every headline reads.
PRIMARY_METRICS = ("ood.near.msp.auroc", "ood.far.msp.auroc", "id.accuracy", "id.ece")
HIGHER_IS_BETTER = {"accuracy": True, "auroc": True, "aupr_in": True, "aupr_out": True,
                    "ece": False, "mce": False, "adaptive_ece": False, "nll": False, "brier": False,
                    "fpr95": False, "ts_ece": False, "ts_nll": False, "ece_released": False}


def method_name(method: str) -> str:
    """"RigL" for ``rigl``: the method's name as the book writes it."""
    return METHOD_NAMES.get(method, str(method))


def model_name(model) -> str:
    """"LeNet-5" for ``lenet5``: the model's name as the book writes it ("" for None)."""
    return "" if model is None else MODEL_NAMES.get(str(model), str(model))


def dataset_name(dataset) -> str:
    """"Fashion-MNIST" for ``fashion_mnist``."""
    return DATASET_NAMES.get(str(dataset), str(dataset))


def is_percent(column: str) -> bool:
    """Whether a metric column is shown x100 (accuracy, calibration errors, AUROC, AUPR, FPR@95)."""
    return column.rsplit(".", 1)[-1] in PERCENT


def scale_of(column: str) -> float:
    """100 for percent metrics, else 1."""
    return 100.0 if is_percent(column) else 1.0


def higher_is_better(column: str) -> bool:
    """Whether a larger value of the metric column is better (accuracy, AUROC: yes; ECE: no)."""
    return HIGHER_IS_BETTER.get(column.rsplit(".", 1)[-1], True)


def metric_label(column: str, difference: bool = False, short: bool = False) -> str:
    """A metric column in words with its unit: ``ood.near.msp.auroc`` -> "near-OOD AUROC, MSP (%)";
    ``difference=True`` gives the unit of a difference ("points" for percent metrics); ``short``
    leaves the unit out."""
    parts = column.split(".")
    metric = parts[-1]
    name = METRIC_NAMES.get(metric, metric)
    if parts[0] == "ood" and len(parts) == 4:
        where = f"{parts[1]}-OOD" if parts[1] in ("near", "far", "noise") else parts[1]
        name = f"{where} {name}, {DETECTOR_NAMES.get(parts[2], parts[2])}"
    elif parts[0] not in ("id", "ood"):
        name = column
    if short:
        return name
    unit = (" (points)" if difference else " (%)") if is_percent(column) else ""
    return name + unit


def setting_name(row) -> str:
    """A setting's name in a sentence: "MLP RigL 0.05", "LeNet-5 dense" (the model left out when
    the row has none)."""
    model = (f"{model_name(row['model'])} " if "model" in row
             and isinstance(row.get("model"), str) else "")
    return model + ("dense" if row["method"] == "dense"
                    else f"{method_name(row['method'])} {float(row['density']):g}")


# -- labels of runs ---------------------------------------------------------------------------------
def moon_label(config: Mapping) -> str:
    """Which MOON parts a run used: "MOON" (unknown class and averaging), "unknown class",
    "averaging" or "baseline" (from the config fields ``unknown_class`` and ``averaging``)."""
    unknown, averaging = bool(config.get("unknown_class")), bool(config.get("averaging"))
    if unknown and averaging:
        return MOON
    return "unknown class" if unknown else ("averaging" if averaging else BASELINE)


def variant_label(config: Mapping) -> str:
    """The book's name of a run's variant: "RigL" for a baseline run, "RigL + MOON" for a full
    MOON run, "RigL + unknown class" when only one MOON part is on."""
    label, method = moon_label(config), method_name(config["method"])
    return method if label == BASELINE else f"{method} + {label}"


def ablation_label(config: Mapping) -> str:
    """Which MOON parts a run used, from its config (a dict or a frame row): "none", "unknown
    class", "averaging" or "MOON" (both); ", fixed α" when the unknown class ran with
    ``alpha_auto`` off; " as released" when ``as_released`` is on."""
    unknown, averaging = bool(config.get("unknown_class")), bool(config.get("averaging"))
    label = {(False, False): "none", (True, False): "unknown class", (False, True): "averaging",
             (True, True): "MOON"}[(unknown, averaging)]
    if unknown and not bool(config.get("alpha_auto", True)):
        label += ", fixed α"
    return label + (" as released" if bool(config.get("as_released", False)) else "")


def ablation_labels(frame: "pd.DataFrame", label: str | Callable = ablation_label) -> "pd.Series":
    """The ablation label of each run: ``label`` applied to each row, or the column ``label``."""
    if callable(label):
        return frame.apply(label, axis=1).rename("ablation")
    require_columns(frame, [label])
    return frame[label].astype(str).rename("ablation")


def label_order(labels) -> list[str]:
    """Labels in :data:`ABLATION_ORDER`, others after them in sorted order."""
    present = set(labels)
    return [x for x in ABLATION_ORDER if x in present] + sorted(present - set(ABLATION_ORDER))


def ood_kind(name: str, fallback: dict | None = None) -> str | None:
    """The group of an OOD set (near, far or noise; :data:`moon.ood.sets.GROUPS`): from the current
    registry (so older result files, which filed noise under far, are read with today's groups),
    else ``fallback`` (a result's ``extra["curves"]["ood_kind"]``), else None."""
    from moon.ood.sets import OOD_SETS

    if name in OOD_SETS:
        return OOD_SETS[name].kind
    return (fallback or {}).get(name)


# -- the frame --------------------------------------------------------------------------------------
def as_results(results_or_root) -> list:
    """RunResults from a results folder, one result file, a RunResult or a list of either. Files
    read here are checked (:mod:`moon.resultcheck`); those that fail are left out and listed in
    the answer's ``corrupt`` (``[(path, reason)]``, with those of a :func:`moon.study.collect`
    answer passed in), so the report lists them apart instead of averaging them."""
    from moon.results import RunResult
    from moon.study import Collected

    if isinstance(results_or_root, (str, Path)):
        path = Path(results_or_root)
        if not path.exists():
            raise FileNotFoundError(f"no results at {path}")
        items = sorted(path.glob("**/result.json")) if path.is_dir() else [path]
    else:
        items = [results_or_root] if isinstance(results_or_root, RunResult) else list(results_or_root)
    out = Collected(corrupt=getattr(results_or_root, "corrupt", ()))
    for item in items:
        if isinstance(item, RunResult):
            out.append(item)
        else:
            _read_checked(item, out)
    return out


def _read_checked(path, out) -> None:
    """Append the result at ``path`` to ``out``, or ``(path, reason)`` to ``out.corrupt``."""
    from moon.errors import MoonError
    from moon.resultcheck import check_result
    from moon.results import load_result

    try:
        result = load_result(path)
        if result.status == "complete":
            check_result(result, path)
    except (ValueError, MoonError) as err:
        log.error("leaving out %s: %s", path, err)
        out.corrupt.append((str(path), str(err)))
        return
    out.append(result)


def results_frame(results_or_root) -> "pd.DataFrame":
    """One row per complete run, read from a results folder, a list of RunResults or of result
    paths. Adds ``moon`` (:func:`moon_label`), ``variant`` (:func:`variant_label`) and the group
    means ``ood.<group>.<detector>.<metric>`` (:func:`moon.ood.sets.group_means` of each result, so
    every file is read with today's groups); the curve data in ``extra.curves`` and the run's
    stored ``extra.ood_summary`` are left out."""
    import pandas as pd

    from moon.results import flatten, group_mean_columns

    read = as_results(results_or_root)
    results = [r for r in read if r.status == "complete"]
    if not results:
        corrupt = f" ({len(read.corrupt)} corrupt file(s) left out: {read.corrupt[0][1]})" \
            if read.corrupt else ""
        raise ValueError(f"no complete results in {results_or_root!r}{corrupt}")
    rows = []
    for result in results:
        row = {k: v for k, v in flatten(result).items()
               if not k.startswith(("extra.curves.", "extra.ood_summary."))}
        row.update(group_mean_columns(result))
        row["moon"], row["variant"] = moon_label(result.config), variant_label(result.config)
        if result.history:                  # the regime: how well the run fit its training data
            row["train.accuracy"] = result.history[-1].get("train_acc")
            row["train.unknown_mass"] = result.history[-1].get("unknown_mass")
        provenance = result.provenance or {}
        row["provenance.git_sha"] = provenance.get("git_sha")
        row["provenance.git_dirty"] = provenance.get("git_dirty")
        row["provenance.num_threads"] = provenance.get("num_threads")
        rows.append(row)
    frame = pd.DataFrame(rows)
    # plain dicts, not a frame: pandas compares attrs when it concatenates frames
    frame.attrs["corrupt"] = [{"file": path, "reason": reason} for path, reason in read.corrupt]
    return frame


def corrupt_frame(corrupt) -> "pd.DataFrame":
    """The result files left out as corrupt (``[(path, reason)]``, a frame's ``attrs["corrupt"]``
    or the frame itself), one row each: ``file`` and ``reason``."""
    import pandas as pd

    if isinstance(corrupt, pd.DataFrame):
        corrupt = corrupt.attrs.get("corrupt", [])
    rows = [(c["file"], c["reason"]) if isinstance(c, Mapping) else tuple(c) for c in corrupt]
    return pd.DataFrame(rows, columns=["file", "reason"])


def corrupt_markdown(frame_or_corrupt) -> str:
    """A warning for a page, listing the result files left out as corrupt ("" when none)."""
    corrupt = corrupt_frame(frame_or_corrupt if frame_or_corrupt is not None else [])
    if corrupt.empty:
        return ""
    lines = [f"- `{row.file}`: {row.reason}" for row in corrupt.itertuples()]
    return (f"**{len(corrupt)} result file(s) left out** (not what a run writes; never averaged "
            "into this page):\n\n" + "\n".join(lines))


def study_frame(study: str, folder, preset: str | None,
                only: Mapping | None = None) -> "pd.DataFrame | None":
    """The results frame of a study's complete runs in ``folder`` (restricted by ``only``, axis ->
    values to keep), or None if there are none."""
    from moon.study import collect

    results = collect(study, folder, preset=preset, only=dict(only) if only else None)
    return results_frame(results) if results else None


def require_columns(frame: "pd.DataFrame", columns) -> None:
    """Raise ValueError naming the columns ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame has no column(s) {', '.join(missing)}; "
                         f"it has {', '.join(map(str, frame.columns))}")


def numeric(frame: "pd.DataFrame", column: str) -> "pd.Series":
    """``frame[column]`` as floats, all NaN when the frame lacks it (older result files)."""
    import pandas as pd

    if column not in frame.columns:
        return pd.Series(math.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


def flag(frame: "pd.DataFrame", column: str) -> "pd.Series":
    """A boolean config column (missing values count as False)."""
    return frame[column].fillna(False).astype(bool)


def by_model(frame: "pd.DataFrame") -> list[tuple[str | None, "pd.DataFrame"]]:
    """``[(model, runs)]`` per model of the frame, in name order (``[(None, frame)]`` without a
    model column): for figures drawn one model at a time."""
    if "model" not in frame.columns:
        return [(None, frame)]
    return [(str(name), part) for name, part in frame.groupby("model", sort=True)]


def with_model(frame: "pd.DataFrame", by) -> list[str]:
    """``by`` with ``model`` in front when the frame holds runs of more than one model (a study over
    models is summarised per model; its runs are never averaged across models)."""
    by = list(by)
    if "model" in frame.columns and "model" not in by and frame["model"].nunique() > 1:
        return ["model", *by]
    return by


def describe_runs(frame: "pd.DataFrame") -> str:
    """The effective configuration of the runs shown, in words: "LeNet-5 and MLP on Fashion-MNIST,
    100 epochs on all training images, 3-5 seeds per setting, 112 runs" (from the frame, never from
    a template's defaults)."""
    models = " and ".join(model_name(m) for m in sorted(frame["model"].astype(str).unique()))
    epochs = "/".join(str(e) for e in sorted(int(e) for e in frame["epochs"].unique()))
    sizes = sorted({int(s or 0) for s in frame.get("max_train_samples", [0])}, key=lambda s: s or 1e12)
    names = [("all" if s == 0 else f"{s:,}") for s in sizes]
    images = (", ".join(names[:-1]) + " and " if len(names) > 1 else "") + f"{names[-1]} training images"
    seed_text = ""
    if "seed" in frame:
        setting = [c for c in ("model", "width", "max_train_samples", "method", "density", "moon")
                   if c in frame]          # every field a study varies apart from the seed
        counts = frame.groupby(setting, dropna=False)["seed"].nunique()
        low, high = int(counts.min()), int(counts.max())
        seed_text = (f", {low}{'' if low == high else f'-{high}'} "
                     f"seed{'' if low == high == 1 else 's'} per setting")
    return (f"{models} on {dataset_name(frame['dataset'].iloc[0])}, {epochs} epochs on {images}"
            f"{seed_text}, {len(frame)} runs")
