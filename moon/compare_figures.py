"""Figures of the comparisons in :mod:`moon.compare`: MOON − baseline against density, MOON's parts,
and calibration before and after temperature scaling.

Like :mod:`moon.figures` (whose ``new_figure``/``save`` they use), every function returns its figure
and saves it as PNG when given a path. Metrics are fractions in the frames; axes show percent
metrics in % (differences in percentage points). Error bars are 95% t-intervals over seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from moon.compare import (PAIRED_METRICS, _label_order, _numeric, ablation_label, ablation_labels,
                          scale_of, t_interval, with_model)
from moon.figures import density_axis, new_figure, panel_grid, save
from moon.report import require_columns

if TYPE_CHECKING:
    import pandas as pd


def _unit(metric: str) -> str:
    return " (pp)" if scale_of(metric) == 100 else ""


def paired_moon_plot(paired: "pd.DataFrame", path: str | Path | None = None):
    """A panel per metric of :func:`moon.compare.paired_moon_frame`: MOON − baseline (mean over
    seeds with its paired t-interval) against density (log scale), one colour per method (nudged
    sideways so intervals do not overlap), filled markers where the interval excludes 0, and the
    zero line (no effect)."""
    import seaborn as sns

    require_columns(paired, ["method", "density", "metric", "mean_diff", "low", "high", "excludes_zero"])
    metrics = list(dict.fromkeys(paired["metric"]))
    fig, axes = panel_grid(len(metrics), 4.6, 3.4)
    methods = sorted(paired["method"].unique())
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods))))
    for ax, metric in zip(axes, metrics):
        cells, scale = paired[paired["metric"] == metric], scale_of(metric)
        for i, method in enumerate(methods):
            rows = cells[cells["method"] == method].sort_values("density")
            x = rows["density"].astype(float) * 1.06 ** (i - (len(methods) - 1) / 2)
            y = scale * rows["mean_diff"]
            err = [y - scale * rows["low"], scale * rows["high"] - y]
            ax.errorbar(x, y, yerr=np.nan_to_num(err), color=palette[method], marker="o",
                        mfc="white", capsize=3, label=method)
            hit = rows["excludes_zero"].astype(bool)
            ax.scatter(x[hit], y[hit], color=palette[method], zorder=3)
        ax.axhline(0, color="black", lw=1)
        density_axis(ax, paired["density"].astype(float))
        ax.set_title(metric, fontsize=9)
        ax.set_ylabel(f"MOON − baseline{_unit(metric)}")
    axes[0].legend(fontsize=7, title="method (filled: interval excludes 0)", title_fontsize=7,
                   loc="best")
    return save(fig, path)


def _interval_bars(ax, labels: list[str], values: list, scale: float, color) -> None:
    """Horizontal bars of the mean of each label's values x ``scale`` with t-interval error bars;
    the x axis starts at 0 unless every bar is long (then near the shortest, so gaps show)."""
    stats = np.array([t_interval(v) for v in values]) * scale
    mean, low, high = stats[:, 0], stats[:, 1], stats[:, 2]
    err = np.nan_to_num([mean - low, high - mean])
    ax.barh(np.arange(len(labels)), mean, xerr=err, color=color, capsize=3, error_kw={"lw": 1})
    ax.set_yticks(np.arange(len(labels)), labels)
    lo, hi = np.nanmin(np.fmin(low, mean)), np.nanmax(np.fmax(high, mean))
    if lo > 0.5 * hi:
        ax.set_xlim(lo - 0.4 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
    ax.invert_yaxis()


def ablation_plot(frame: "pd.DataFrame", metrics=PAIRED_METRICS + ("id.nll",),
                  label: str | Callable = ablation_label, path: str | Path | None = None):
    """A panel per metric: a bar per ablation label (:func:`moon.compare.ablation_label`, in
    :data:`moon.compare.ABLATION_ORDER`) with the mean over seeds and its 95% t-interval."""
    import seaborn as sns

    metrics = [m for m in metrics if m in frame.columns]
    if not metrics:
        raise ValueError("the frame has none of the metrics to plot")
    labels = ablation_labels(frame, label)
    order = _label_order(labels)
    fig, axes = panel_grid(len(metrics), 4.0, 0.35 * len(order) + 1.2)
    colors = sns.color_palette(n_colors=len(order))
    for ax, metric in zip(axes, metrics):
        values = [_numeric(frame, metric)[labels == name] for name in order]
        _interval_bars(ax, order, values, scale_of(metric), colors)
        if ax.get_subplotspec().colspan.start > 0:       # labels only on the first column
            ax.tick_params(labelleft=False)
        ax.set_xlabel(f"{metric} (%)" if scale_of(metric) == 100 else metric)
    fig.suptitle("MOON's parts: mean over seeds with 95% t-interval", fontsize=10)
    return save(fig, path)


def calibration_overview(frame: "pd.DataFrame", by=("variant", "density"),
                         path: str | Path | None = None):
    """ECE per ``by`` group: bars (mean over seeds, 95% t-interval; coloured by MOON/baseline) and
    the temperature-scaled ECE ``id.ts_ece`` as a black diamond (the post-hoc reference: how much of
    the miscalibration one scalar fixes, Guo et al. 2017)."""
    import seaborn as sns

    by = with_model(frame, by)                     # one bar group per model when there are several
    require_columns(frame, by + ["id.ece", "moon", "method", "density"])
    groups = sorted(frame.groupby(by, sort=True), key=lambda kg: (   # baseline next to its MOON
        str(kg[1]["model"].iloc[0]) if "model" in by else "", kg[1]["method"].iloc[0], -float(kg[1]["density"].iloc[0]),
        kg[1]["moon"].iloc[0] != "baseline"))
    names = [" ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in
                      (key if isinstance(key, tuple) else (key,))) for key, _ in groups]
    kinds = sorted(frame["moon"].unique(), key=lambda k: (k != "baseline", k))
    palette = dict(zip(kinds, sns.color_palette(n_colors=len(kinds))))
    with sns.axes_style("whitegrid"):
        fig = new_figure(6.0, 0.35 * len(groups) + 1.4)
        ax = fig.subplots()
    _interval_bars(ax, names, [g["id.ece"] for _, g in groups], 100.0,
                   [palette[g["moon"].iloc[0]] for _, g in groups])
    from matplotlib.patches import Patch

    handles = [Patch(color=palette[k], label=k) for k in kinds]
    ts = np.array([_numeric(g, "id.ts_ece").mean() * 100 for _, g in groups])
    if np.isfinite(ts).any():                       # older result files have no ts_ece
        handles.append(ax.scatter(ts, np.arange(len(ts)), marker="D", color="black", zorder=3,
                                  label="temperature-scaled ECE"))
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=len(handles))
    ax.set_xlim(left=0)
    ax.set_xlabel("ECE (%)")
    return save(fig, path)


def dice_sweep_plot(sweep: "pd.DataFrame", path: str | Path | None = None):
    """DICE's AUROC (%) against its percentile ``p`` from :func:`moon.compare.dice_sweep_frame`: a
    panel per model and OOD kind, a line per group (e.g. dense vs sparse, baseline vs MOON) with
    the 95% t-interval over runs as a band; ``p`` = 0 is plain energy."""
    import seaborn as sns

    require_columns(sweep, ["kind", "p", "auroc", "low", "high"])
    keys = [c for c in sweep.columns if c not in ("kind", "p", "auroc", "low", "high", "n", "model")]
    models = sorted(sweep["model"].unique()) if "model" in sweep.columns else [None]
    kinds = [k for k in ("near", "far", "noise", "other") if k in set(sweep["kind"])]
    fig, axes = panel_grid(len(models) * len(kinds), 4.2, 3.2)
    label = lambda key: ", ".join(f"density {v:g}" if c == "density" else str(v)  # noqa: E731
                                  for c, v in zip(keys, key if isinstance(key, tuple) else (key,)))
    groups = [key for key, _ in sweep.groupby(keys, sort=True)] if keys else [()]
    palette = dict(zip(groups, sns.color_palette(n_colors=len(groups))))
    panels = [(m, k) for m in models for k in kinds]
    for ax, (model, kind) in zip(axes, panels):
        cells = sweep[(sweep["kind"] == kind) & ((sweep["model"] == model) if model else True)]
        for key, rows in (cells.groupby(keys, sort=True) if keys else [((), cells)]):
            rows = rows.sort_values("p")
            ax.plot(rows["p"], 100 * rows["auroc"], marker="o", color=palette[key], label=label(key))
            ax.fill_between(rows["p"], 100 * rows["low"], 100 * rows["high"], color=palette[key],
                            alpha=0.15, lw=0)
        ax.set_title(f"{model + ': ' if model else ''}{kind} OOD", fontsize=9)
        ax.set(xlabel="DICE percentile p (0: energy)", ylabel="AUROC (%)")
    axes[0].legend(fontsize=7, loc="best")
    return save(fig, path)
