"""Figures of the regime map (:mod:`moon.report.regime_map`): the map itself and the per-n curves.

Both figures are small multiples with one colour per method (:data:`moon.report.plotting.METHOD_COLORS`),
axes in words and units, and the direction that is better said in each panel's title.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from moon.report.frame import higher_is_better, method_name, metric_label, model_name, scale_of
from moon.report.plotting import METHOD_COLORS, method_color, panel_grid, save
from moon.report.regime_map import MAP_METRICS

if TYPE_CHECKING:
    import pandas as pd

EFFECT_TITLES = {"premise": "Premise: sparse − dense baseline",
                 "moon": "MOON − baseline (paired by seed)"}
MARKERS = {"mlp": "o", "lenet5": "s"}


def _better(metric: str) -> str:
    return "higher is better" if higher_is_better(metric) else "lower is better"


def regime_map_figure(points: "pd.DataFrame", metrics=MAP_METRICS, paper_band=None,
                      references: dict | None = None, path: str | Path | None = None):
    """Two rows of panels, one column per metric: the premise (top) and MOON's effect (bottom)
    against the sparse baseline's active weights per training image (log axis), each point a
    setting with its 95% interval. ``paper_band`` (low, high) shades where the MOON paper's
    ResNet-18 on CIFAR-10 sits; ``references`` maps (effect, metric) to a published value drawn as
    a dashed line (the paper's claim)."""
    references = references or {}
    metrics = [m for m in metrics if m in set(points["metric"])]
    fig, axes = panel_grid(2 * len(metrics), 3.3, 2.7, ncols=len(metrics), sharex=True)
    axes = np.asarray(axes).reshape(2, len(metrics))
    for row, effect in enumerate(("premise", "moon")):
        for ax, metric in zip(axes[row], metrics):
            part = points[(points["effect"] == effect) & (points["metric"] == metric)]
            scale = scale_of(metric)
            for (method, model), cell in part.groupby(["method", "model"], sort=True):
                cell = cell.sort_values("active_per_image")
                y = scale * cell["mean_diff"].to_numpy()
                err = scale * np.vstack([cell["mean_diff"] - cell["low"],
                                         cell["high"] - cell["mean_diff"]]).clip(min=0)
                ax.errorbar(cell["active_per_image"], y, yerr=np.nan_to_num(err), fmt=MARKERS.get(
                    model, "^"), ms=4, lw=1, capsize=2, color=method_color(method),
                    label=f"{model_name(model)} {method_name(method)}")
            ax.axhline(0, color="black", lw=0.8)
            if paper_band is not None:
                ax.axvspan(*paper_band, color="#CC78BC", alpha=0.15, lw=0)
            ref = references.get((effect, metric))
            if ref is not None:
                ax.axhline(ref, color="#CC78BC", ls="--", lw=1)
                ax.annotate(f"paper: {ref:+g}", (0.02, ref), xycoords=("axes fraction", "data"),
                            fontsize=7, color="#8B3A80", va="bottom")
            ax.set_xscale("log")
            ax.set_title(f"{EFFECT_TITLES[effect]}\n{metric_label(metric, short=True)} "
                         f"({_better(metric)})", fontsize=8)
            ax.set_ylabel("difference (points)" if scale == 100 else "difference", fontsize=8)
            if row == 1:
                ax.set_xlabel("active weights per training image (log)", fontsize=8)
            ax.tick_params(labelsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if paper_band is not None:
        from matplotlib.patches import Patch

        handles.append(Patch(color="#CC78BC", alpha=0.3))
        labels.append("ResNet-18, CIFAR-10, 90% (released example) to 98% sparse")
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4),
                   fontsize=7, frameon=False)
    return save(fig, path)


SIZE_PANELS = (("train.accuracy", "final training accuracy (%)", 100, "baseline"),
               ("id.temperature", "fitted temperature (>1: over-confident)", 1, "baseline"),
               ("id.ece", "test ECE (%)", 100, "baseline"),
               ("extra.unknown_mass.id_test", "p(unknown) on ID test images (%)", 100, "MOON"))


def size_curves(curves: dict, path: str | Path | None = None):
    """The regime at every training-set size: ``curves`` maps a column of :data:`SIZE_PANELS` to
    :func:`moon.report.regime_map.by_size` of it (for one model); one line per method, mean over
    seeds with the seeds' range shaded."""
    panels = [p for p in SIZE_PANELS if p[0] in curves and len(curves[p[0]])]
    fig, axes = panel_grid(len(panels), 3.3, 2.6, ncols=min(len(panels), 4))
    for ax, (column, label, scale, moon) in zip(axes, panels):
        data = curves[column]
        data = data[data["moon"] == moon]
        for (method, density), cell in data.groupby(["method", "density"], sort=True):
            cell = cell.sort_values("train_images")
            name = method_name(method) + ("" if method == "dense" else f" {float(density):g}")
            ls = "-" if float(density) >= 0.05 else ":"
            ax.plot(cell["train_images"], scale * cell["mean"], marker="o", ms=3, lw=1.2, ls=ls,
                    color=METHOD_COLORS.get(method, "#CC78BC"), label=name)
            ax.fill_between(cell["train_images"], scale * cell["min"], scale * cell["max"],
                            color=METHOD_COLORS.get(method, "#CC78BC"), alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("training images (log)", fontsize=8)
        ax.set_title(f"{label}{'' if moon == 'baseline' else ', MOON runs'}", fontsize=8)
        ax.tick_params(labelsize=7)
        if column == "id.temperature":
            ax.axhline(1, color="black", lw=0.8, ls=":")
        if column == "extra.unknown_mass.id_test":
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=7,
               frameon=False)
    return save(fig, path)
