"""Figures of one run and of the benchmark's images, drawn with seaborn.

Every function returns its figure and saves it as PNG when given a path. Per-run figures read the curve data that evaluation stores in ``result.extra["curves"]``:
``reliability`` (per confidence bin: edges, mean confidence, accuracy, count), ``roc`` (TPR on a
shared FPR grid per OOD set and detector), ``hist`` (score histograms of ID and each OOD set per
detector, on shared edges) and ``ood_kind`` (near/far/noise per set). Figures over many runs read the
frame of :func:`moon.report.results_frame`. Metrics are fractions in the files; axes show them in %.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from moon.ood.sets import GROUPS
from moon.report.frame import DETECTOR_NAMES, model_name, ood_kind, variant_label
from moon.report.plotting import new_figure, panel_grid, save

log = logging.getLogger(__name__)


def _show(ax, image: torch.Tensor) -> None:
    """Draw one uint8 ``[C, H, W]`` image on ``ax`` without ticks or frame."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _id_examples(images: torch.Tensor, labels: torch.Tensor, count: int) -> list[int]:
    """Indices of ``count`` training images cycling through the classes: 0, 1, 2, ..., 0, 1, ..."""
    classes = labels.unique().tolist()
    firsts = {c: (labels == c).nonzero().flatten().tolist() for c in classes}
    return [firsts[classes[i % len(classes)]][i // len(classes)] for i in range(count)]


def benchmark_figure(sets: list, n_per_row: int, seed: int):
    """Grid with one row per benchmark set; ``sets`` as returned by ``moon.data.benchmark_sets``."""
    import seaborn as sns

    rows = [s for s in sets if s[0]["role"] in ("id-train", "ood")]
    class_names = rows[0][0]["classes"]
    ncols = max(n_per_row, len(class_names)) if len(class_names) <= 12 else n_per_row
    with sns.axes_style("white"):
        fig = new_figure(1.0 * ncols + 1.6, 1.15 * len(rows) + 0.4)
        axes = fig.subplots(len(rows), ncols, squeeze=False)
    g = torch.Generator().manual_seed(seed)
    for r, (row, images, labels) in enumerate(rows):
        if labels is not None:
            picks = _id_examples(images, labels, ncols)
        else:
            picks = torch.randperm(len(images), generator=g)[:ncols].tolist()
        for c in range(ncols):
            ax = axes[r, c]
            if c < len(picks):
                _show(ax, images[picks[c]])
                if labels is not None:
                    ax.set_title(class_names[int(labels[picks[c]])], fontsize=7)
            else:
                ax.axis("off")
        label = f"{row['name']}\n{row['kind']} · {row['n']:,}"
        if row["id_set"] != rows[0][0]["id_set"]:
            label += f"\n(OOD for {row['id_set']})"
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"Benchmark: {rows[0][0]['id_set']} in-distribution and its offline OOD sets",
                 fontsize=10)
    return fig


def plot_benchmark_grid(dataset: str = "fashion_mnist", n_per_row: int = 8, seed: int = 0,
                        path: str | Path | None = None):
    """Sample images of the embedded benchmark: ID training images titled with their class, then a
    row per offline OOD set labelled with its name, group (near/far/noise) and image count. Saved as
    PNG to ``path`` when given; returns the matplotlib Figure."""
    from moon.data import ID_SETS
    from moon.ood.sets import benchmark_sets

    if dataset not in ID_SETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(ID_SETS)}")
    sets = benchmark_sets(dataset, seed)
    return save(benchmark_figure(sets, n_per_row, seed), path)


MAX_COLUMNS = 3


def _curves(result, key: str) -> dict:
    """``result.extra["curves"][key]``, or a ValueError naming the run and what is missing."""
    curves = result.extra.get("curves") or {}
    if key not in curves:
        cfg = result.config
        raise ValueError(f"run {cfg.get('method')} density {cfg.get('density')} seed "
                         f"{cfg.get('seed')} has no extra['curves']['{key}'] (evaluated before "
                         "curves were stored? re-run its evaluation)")
    return curves[key]


def _ood_sets(result, names) -> list[str]:
    """``names`` by group, near, far, noise (groups from OOD_SETS, else the run's ``ood_kind``)."""
    kinds = (result.extra.get("curves") or {}).get("ood_kind", {})
    order = {kind: i for i, kind in enumerate(GROUPS)}
    return sorted(names, key=lambda s: order.get(ood_kind(s, kinds), len(GROUPS)))


def run_title(config) -> str:
    """A run in the book's words: "LeNet-5, RigL + MOON at density 0.05, seed 0"."""
    density = "" if config["method"] == "dense" else f" at density {float(config['density']):g}"
    return (f"{model_name(config['model'])}, {variant_label(config)}{density}, "
            f"seed {config['seed']}")


def _score_name(detector: str) -> str:
    return f"{DETECTOR_NAMES.get(detector, detector)} score"


def _auroc(result, ood_set: str, detector: str) -> str:
    """" AUROC x.x%" from the run's metrics, or "" when it has none for this set and detector."""
    value = result.ood.get(ood_set, {}).get(detector, {}).get("auroc")
    return "" if value is None else f"AUROC {100 * value:.1f}%"


# --------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------
def _reliability_panel(ax, ax_count, rel: dict, show_legend: bool) -> None:
    """Accuracy bars per confidence bin with the gap to the bin's mean confidence and the diagonal
    (perfect calibration: accuracy = confidence), and the share of test images per bin below."""
    import numpy as np

    lower, upper = 100 * np.asarray(rel["bin_lower"]), 100 * np.asarray(rel["bin_upper"])
    acc = 100 * np.array([np.nan if a is None else a for a in rel["accuracy"]], dtype=float)
    conf = 100 * np.array([np.nan if c is None else c for c in rel["confidence"]], dtype=float)
    count = np.asarray(rel["count"], dtype=float)
    width = upper - lower
    ax.bar(lower, acc, width, align="edge", color="C0", edgecolor="white", label="accuracy")
    ax.bar(lower, conf - acc, width, bottom=acc, align="edge", color="C3", alpha=0.3,
           edgecolor="C3", hatch="//", label="gap to confidence")
    ax.plot([0, 100], [0, 100], ls="--", color="grey", lw=1)
    ax.set(xlim=(0, 100), ylim=(0, 100), ylabel="accuracy (%)")
    ax.tick_params(labelbottom=False)
    if show_legend:
        ax.legend(loc="upper left", fontsize=7)
    share = 100 * count / max(count.sum(), 1.0)
    ax_count.bar(lower, share, width, align="edge", color="grey", edgecolor="white")
    ax_count.set(xlim=(0, 100), xlabel="confidence (%)", ylabel="images (%)")


def reliability_diagram(result_or_results, path: str | Path | None = None,
                        title: str | None = None):
    """Reliability diagram of one run, or one panel per run (small multiples, at most 6 columns):
    accuracy per confidence bin against the diagonal, the share of images per bin below it. Panel
    titles read "variant density ECE x.x%" (ECE = sum_b n_b/n |acc_b - conf_b|, Guo et al. 2017)."""
    import seaborn as sns

    results = result_or_results if isinstance(result_or_results, (list, tuple)) else [result_or_results]
    ncols = min(len(results), MAX_COLUMNS)
    nrows = math.ceil(len(results) / ncols)
    with sns.axes_style("whitegrid"):
        fig = new_figure(3.0 * ncols, 3.6 * nrows)
        grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[3, 1] * nrows)
        for i, result in enumerate(results):
            r, c = divmod(i, ncols)
            ax = fig.add_subplot(grid[2 * r, c])
            ax_count = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
            _reliability_panel(ax, ax_count, _curves(result, "reliability"), i == 0)
            cfg, ece = result.config, result.id.get("ece")
            ece_text = "" if ece is None else f" ECE {100 * ece:.1f}%"
            ax.set_title(f"{variant_label(cfg)} {cfg['density']:g}{ece_text}", fontsize=9)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def score_histograms(result, detector: str = "msp", path: str | Path | None = None):
    """One panel per OOD set: the ID test scores' histogram against that set's, each normalised to
    unit area (count / (total · bin width)) on the stored shared edges; higher = more ID."""
    import numpy as np
    import pandas as pd
    import seaborn as sns

    hists = _curves(result, "hist")
    if detector not in hists:
        raise ValueError(f"detector={detector!r} has no stored histogram; have {', '.join(hists)}")
    hist = hists[detector]
    edges = np.asarray(hist["edges"], dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    sets = _ood_sets(result, [k for k in hist if k not in ("edges", "id")])
    kinds = (result.extra.get("curves") or {}).get("ood_kind", {})
    fig, axes = panel_grid(len(sets), 3.0, 2.5, ncols=min(len(sets), 4))
    for i, (ax, name) in enumerate(zip(axes, sets)):
        long = pd.DataFrame({"score": np.concatenate([centres, centres]),
                             "count": np.concatenate([hist["id"], hist[name]]),
                             "data": ["ID test"] * len(centres) + [name] * len(centres)})
        sns.histplot(long, x="score", weights="count", hue="data", bins=edges.tolist(), stat="density",
                     common_norm=False, element="step", ax=ax, palette=["C0", "C3"])
        sns.move_legend(ax, "best", title=None, fontsize=7)
        ax.set_title(f"{name} ({ood_kind(name, kinds)}): {_auroc(result, name, detector)}",
                     fontsize=9)
        ax.set(xlabel=_score_name(detector), ylabel="density" if i % 4 == 0 else "")
    fig.suptitle(f"{run_title(result.config)}: ID test scores against each OOD set "
                 "(higher = more in-distribution)", fontsize=10)
    return save(fig, path)


ROC_DASHES = {"near": "", "far": (4, 2), "noise": (1, 1.5)}   # one line style per group


def roc_curves(result, detector: str = "msp", path: str | Path | None = None):
    """ROC of ``detector`` per OOD set (ID positive: TPR = share of ID scores above the threshold,
    FPR = share of OOD scores above it), near sets solid, far sets dashed and noise dotted; legend
    with AUROC."""
    import numpy as np
    import pandas as pd
    import seaborn as sns

    roc = _curves(result, "roc")
    fpr = 100 * np.asarray(roc["fpr"], dtype=float)
    kinds = (result.extra.get("curves") or {}).get("ood_kind", {})
    frames = []
    for name in _ood_sets(result, [s for s in roc["tpr"] if detector in roc["tpr"][s]]):
        label = f"{name} ({ood_kind(name, kinds)}) {_auroc(result, name, detector)}".strip()
        frames.append(pd.DataFrame({"FPR (%)": fpr, "TPR (%)": 100 * np.asarray(
            roc["tpr"][name][detector], dtype=float), "set": label,
            "kind": ood_kind(name, kinds) or "far"}))
    if not frames:
        raise ValueError(f"detector={detector!r} has no stored ROC curve")
    with sns.axes_style("whitegrid"):
        fig = new_figure(4.8, 4.2)
        ax = fig.subplots()
    sns.lineplot(pd.concat(frames), x="FPR (%)", y="TPR (%)", hue="set", style="kind",
                 style_order=list(GROUPS), dashes=ROC_DASHES,
                 estimator=None, sort=False, ax=ax)
    ax.plot([0, 100], [0, 100], ls=":", color="grey", lw=1)
    ax.set(xlim=(0, 100), ylim=(0, 100.5),
           title=f"ROC of the {_score_name(detector)} (ID positive)")
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, path)


def plot_history(result, path: str | Path | None = None):
    """Per-epoch training curves of one run: training loss, training and validation accuracy (%),
    and the two schedules (MOON's loss weight alpha, the drop fraction of the topology updates;
    a schedule the run does not use is left out)."""
    import pandas as pd
    import seaborn as sns

    hist = pd.DataFrame(result.history)
    with sns.axes_style("whitegrid"):
        fig = new_figure(10.5, 3.0)
        axes = fig.subplots(1, 3)
    sns.lineplot(data=hist, x="epoch", y="train_loss", ax=axes[0], marker="o", ms=3)
    axes[0].set(ylabel="training loss", title="loss")
    acc = hist.melt(id_vars="epoch", value_vars=["train_acc", "val_acc"], var_name="split",
                    value_name="accuracy")
    acc["accuracy"] *= 100
    acc["split"] = acc["split"].map({"train_acc": "training", "val_acc": "validation"})
    sns.lineplot(data=acc, x="epoch", y="accuracy", hue="split", ax=axes[1], marker="o", ms=3)
    axes[1].set(ylabel="accuracy (%)", title="accuracy")
    axes[1].legend(title=None, fontsize=8)
    names = {"alpha": "α (weight of MOON's loss)", "drop_fraction": "drop fraction (topology)"}
    sched = hist.melt(id_vars="epoch", value_vars=[c for c in names if c in hist],
                      var_name="schedule").dropna()
    sched = sched[sched.groupby("schedule")["value"].transform(lambda v: (v != 0).any())]
    if sched.empty:
        axes[2].set_axis_off()
    else:
        sched["schedule"] = sched["schedule"].map(names)
        sns.lineplot(data=sched, x="epoch", y="value", hue="schedule", ax=axes[2], marker="o",
                     ms=3)
        axes[2].set(ylabel="value", title="schedules")
        axes[2].legend(title=None, fontsize=8)
    fig.suptitle(run_title(result.config), fontsize=10)
    return save(fig, path)
