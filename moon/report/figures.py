"""Figures of the comparisons in :mod:`moon.report.stats`: the headline (MOON - baseline, paired by
seed), density small multiples, heatmaps of effects, MOON's parts, calibration, DICE's sweep, the
regime and the cost of inference.

Every function returns its figure and saves it as PNG when given a path. Axes are labelled in
words with units (:func:`moon.report.frame.metric_label`), one colour per method
(:data:`moon.report.plotting.METHOD_COLORS`), baseline solid and MOON dashed. Error bars are 95%
t-intervals over seeds.
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from moon.report import stats
from moon.report.frame import (BASELINE, METHOD_ORDER, MOON, PRIMARY_METRICS, ablation_labels,
                               by_model, higher_is_better, label_order, method_name,
                               metric_label, model_name, moon_label, numeric, require_columns,
                               scale_of, with_model)
from moon.report.plotting import (LINESTYLES, MARKERS, STUDY_COLORS, density_axis, method_color,
                                  new_figure, panel_grid, save)

if TYPE_CHECKING:
    import pandas as pd


def cell_name(method: str, density: float) -> str:
    """"RigL 0.05", or "dense" for the dense model."""
    return "dense" if method == "dense" else f"{method_name(method)} {float(density):g}"


def _cells(rows: "pd.DataFrame") -> list[tuple[str, float]]:
    """(method, density) pairs in the book's order: dense first, then by method and falling
    density."""
    cells = {(m, float(d)) for m, d in zip(rows["method"], rows["density"])}
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(cells, key=lambda c: (rank.get(c[0], 99), -c[1]))


def _interval_dots(ax, rows: "pd.DataFrame", order: list, scale: float, colors, mde=True,
                   ms: float = 7, span: int | None = None):
    """A dot with its interval per row of ``rows`` (``mean_diff, low, high, excludes_zero``) at
    y = its position in ``order`` (or at y = the key itself when ``span``, the number of rows
    of the axis, is given); filled where the interval excludes 0; a light band of +-MDE (the
    smallest difference the seeds could detect) behind each dot."""
    for i, (key, color) in enumerate(zip(order, colors)):
        y = key if span is not None else i
        row = rows[key] if isinstance(rows, dict) else rows.loc[key]
        x, lo, hi = (scale * row[k] for k in ("mean_diff", "low", "high"))
        if mde and np.isfinite(row.get("mde", np.nan)):
            ax.barh(y, 2 * scale * row["mde"], left=-scale * row["mde"], height=0.6,
                    color="0.9", zorder=0)
        if np.isfinite(lo):
            ax.plot([lo, hi], [y, y], color=color, lw=2, solid_capstyle="butt")
        ax.plot(x, y, "o", color=color, mfc=color if row["excludes_zero"] else "white", ms=ms,
                zorder=3)
    ax.axvline(0, color="black", lw=1)
    rows_shown = span if span is not None else len(order)
    if span is None:
        ax.set_yticks(range(rows_shown))
    ax.set_ylim(rows_shown - 0.5, -0.5)


HEADLINE_KEY = ("MOON − baseline, paired by seed, 95% intervals; filled dots, * and counts: the "
                "interval excludes 0; grey: the smallest change the seeds detect.")


def headline_figure(paired: "pd.DataFrame", path: str | Path | None = None):
    """The book's lead figure: MOON - baseline (mean over seeds, paired 95% interval) per setting
    and metric of :func:`moon.report.stats.paired_moon_frame`: a panel per metric, every setting
    on one axis ("LeNet-5 · RigL 0.05"), grouped by model with a rule between models, so one
    screen shows them all on a shared scale. Filled dots: the interval excludes 0; grey band: the
    smallest difference this many seeds detects with 80% power (so a dot inside it is a null
    result of known size). The key is :data:`HEADLINE_KEY`, for the caption: the figure has no
    title of its own, to leave the page's first screen to the verdict."""
    import seaborn as sns

    require_columns(paired, ["method", "density", "metric", "mean_diff", "low", "high"])
    metrics = list(dict.fromkeys(paired["metric"]))
    models = by_model(paired)
    order = [(model, cell) for model, part in models for cell in _cells(part)]
    labels = [(f"{model_name(model)} · " if model else "") + cell_name(*cell)
              for model, cell in order]
    breaks = np.cumsum([len(_cells(part)) for _, part in models])[:-1] - 0.5
    # Sized for the book's page (about 9.5 inches at 100 dpi), so text shows at its own size.
    with sns.axes_style("whitegrid"):
        fig = new_figure(2.1 * len(metrics) + 1.3, 0.14 * len(order) + 0.75)
        axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True)[0]
    for ax, metric in zip(axes, metrics):
        rows = paired[paired["metric"] == metric]
        model_of = rows["model"] if "model" in rows.columns else [None] * len(rows)
        keyed = {(model, (m, float(d))): row for model, m, d, row in
                 zip(model_of, rows["method"], rows["density"], rows.to_dict("records"))}
        present = [key for key in order if key in keyed]
        keyed = {order.index(key): keyed[key] for key in present}
        _interval_dots(ax, keyed, list(keyed), scale_of(metric),
                       [method_color(cell[0]) for _, cell in present], ms=5, span=len(order))
        for y in breaks:
            ax.axhline(y, color="0.35", lw=0.8)
        ax.tick_params(axis="x", labelsize=7, pad=1)
        ax.set_xlabel("MOON − baseline (points)" if scale_of(metric) == 100
                      else "MOON − baseline", fontsize=8)
        ax.set_title(metric_label(metric, short=True), fontsize=9)
    axes[0].set_yticks(range(len(order)), labels, fontsize=8)
    return save(fig, path)


def density_panels(frame: "pd.DataFrame", metrics=PRIMARY_METRICS,
                   path: str | Path | None = None):
    """Small multiples: a row per metric, a column per sparse method (and model), the metric
    against density with baseline solid and MOON dashed in the method's colour, 95% intervals as
    error bars, the dense model as grey reference lines (solid baseline, dashed MOON)."""
    metrics = [m for m in metrics if m in frame.columns]
    columns = [(model, method) for model, part in by_model(frame)
               for method in METHOD_ORDER if method != "dense" and (part["method"] == method).any()]
    if not metrics or not columns:
        raise ValueError("density_panels needs sparse runs and at least one metric column")
    fig, axes = panel_grid(len(metrics) * len(columns), 2.7, 2.4, ncols=len(columns))
    axes = np.asarray(axes).reshape(len(metrics), len(columns))
    for r, metric in enumerate(metrics):
        scale = scale_of(metric)
        for c, (model, method) in enumerate(columns):
            ax = axes[r, c]
            part = frame if model is None else frame[frame["model"] == model]
            dense = stats.density_summary(part[part["method"] == "dense"], metric, hue="moon") \
                if (part["method"] == "dense").any() else None
            for label in (BASELINE, MOON):
                if dense is not None:
                    for _, d in dense[dense["moon"] == label].iterrows():
                        ax.axhline(scale * d["mean"], color="0.55", ls=LINESTYLES[label], lw=1)
                runs = part[(part["method"] == method) & (part["moon"] == label)]
                cell = stats.density_summary(runs, metric, hue="moon") if len(runs) else None
                if cell is None or cell.empty:
                    continue
                err = np.nan_to_num([scale * (cell["mean"] - cell["low"]),
                                     scale * (cell["high"] - cell["mean"])])
                ax.errorbar(cell["density"], scale * cell["mean"], yerr=err, capsize=2,
                            color=method_color(method), ls=LINESTYLES[label],
                            marker=MARKERS[label], ms=4, label=label)
            # the method's own densities only (dense is the grey line): no empty stretch of axis
            own = sorted(set(part.loc[part["method"] == method, "density"].astype(float)))
            density_axis(ax, own)
            ax.set_xlim(min(own) / 1.6, max(own) * 1.6)
            ax.set_xlabel("density (log)" if r == len(metrics) - 1 else "", fontsize=8)
            if scale == 100 and ax.get_ylim()[1] > 100:     # a percent never exceeds 100
                ax.set_ylim(top=100)
            if r == 0:
                ax.set_title(f"{model_name(model) + ': ' if model else ''}{method_name(method)}",
                             fontsize=9)
            ax.set_ylabel(metric_label(metric) if c == 0 else "", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="best", title="grey: dense", title_fontsize=7)
    return save(fig, path)


def effect_heatmap(long: "pd.DataFrame", path: str | Path | None = None, title: str = ""):
    """A comparison frame (MOON - baseline, or sparse - dense) as heatmaps, a panel per metric:
    methods as rows, densities as columns, each cell coloured by the change in the better
    direction (blue: better, red: worse, points) and annotated with the difference; cells whose
    95% interval includes 0 are grey."""
    import matplotlib.colors as mcolors
    import seaborn as sns

    metrics = list(dict.fromkeys(long["metric"]))
    fig, axes = panel_grid(len(metrics), 3.6, 0.45 * long["method"].nunique() + 1.3,
                           ncols=min(len(metrics), 4))
    for ax, metric in zip(axes, metrics):
        rows, scale = long[long["metric"] == metric], scale_of(metric)
        sign = 1 if higher_is_better(metric) else -1
        methods = [m for m in METHOD_ORDER if m in set(rows["method"])]
        densities = sorted(set(rows["density"].astype(float)), reverse=True)
        value = np.full((len(methods), len(densities)), np.nan)
        text = np.full(value.shape, "", dtype=object)
        for r in rows.to_dict("records"):
            i, j = methods.index(r["method"]), densities.index(float(r["density"]))
            text[i, j] = f"{scale * r['mean_diff']:+.1f}".replace("-", "−")
            value[i, j] = sign * scale * r["mean_diff"] if r["excludes_zero"] else np.nan
        limit = max(1e-9, np.nanmax(np.abs(value), initial=0.0))
        grey = np.where(np.isnan(value) & (text != ""), 0.0, np.nan)
        ax.imshow(grey, cmap=mcolors.ListedColormap(["0.88"]), aspect="auto")
        ax.imshow(value, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        for (i, j), t in np.ndenumerate(text):
            dark = np.isfinite(value[i, j]) and abs(value[i, j]) > 0.6 * limit   # deep red/blue
            ax.text(j, i, t, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
        ax.set_xticks(range(len(densities)), [f"{d:g}" for d in densities])
        ax.set_yticks(range(len(methods)), [method_name(m) for m in methods])
        ax.set_xlabel("density")
        ax.grid(False)
        ax.set_title(metric_label(metric, difference=True), fontsize=9)
    fig.suptitle((title + "; " if title else "") + "blue: better, red: worse, grey: 95% interval "
                 "includes 0", fontsize=9)
    sns.despine(fig=fig, left=True, bottom=True)
    return save(fig, path)


def ablation_plot(frame: "pd.DataFrame", metrics=PRIMARY_METRICS, label: str | Callable = None,
                  reference: str = "none", method: str | None = None,
                  density: float | None = None, path: str | Path | None = None):
    """MOON's parts as a dot plot: a panel per metric, each variant's change against
    ``reference`` (paired by seed) with its 95% interval, on an axis that fits the data."""
    cell = stats.one_cell(frame, method, density)
    metrics = [m for m in metrics if m in cell.columns]
    long = stats.ablation_frame(cell, metrics, label, reference)
    order = [x for x in label_order(ablation_labels(cell, label) if label else
                                    ablation_labels(cell)) if x != reference]
    fig, axes = panel_grid(len(metrics), 3.2, 0.38 * len(order) + 1.1, ncols=len(metrics))
    for i, (ax, metric) in enumerate(zip(axes, metrics)):
        rows = {r["ablation"]: r for r in long[long["metric"] == metric].to_dict("records")}
        present = [x for x in order if x in rows]
        _interval_dots(ax, rows, present, scale_of(metric), ["#0173B2"] * len(present))
        ax.set_yticklabels(present if i == 0 else [])
        ax.set_xlabel(f"{metric_label(metric, difference=True)} vs {reference}", fontsize=8)
    first = cell.iloc[0]
    fig.suptitle(f"MOON's parts on {cell_name(first['method'], first['density'])}: change "
                 f"against '{reference}' (paired by seed, 95% interval)", fontsize=9)
    return save(fig, path)


def calibration_overview(frame: "pd.DataFrame", path: str | Path | None = None):
    """ECE per setting: baseline and MOON side by side (mean over seeds with its 95% interval, in
    the method's colour, MOON hollow) and the temperature-scaled ECE as a black diamond (how much
    of the miscalibration one scalar fixes, Guo et al. 2017); a panel per model."""
    models = by_model(frame)
    fig, axes = panel_grid(len(models), 5.0, 0.3 * max(len(_cells(p)) for _, p in models) * 2
                           + 1.2, ncols=len(models))
    for ax, (model, part) in zip(axes, models):
        cells = _cells(part)
        for y, (method, density) in enumerate(cells):
            runs = part[(part["method"] == method) & np.isclose(part["density"], density)]
            for k, label in enumerate((BASELINE, MOON)):
                values = numeric(runs[runs["moon"] == label], "id.ece")
                if values.dropna().empty:
                    continue
                mean, lo, hi = (100 * v for v in stats.mean_interval(values))
                yy, color = y + (k - 0.5) * 0.36, method_color(method)
                if np.isfinite(lo):
                    ax.plot([lo, hi], [yy, yy], color=color, lw=2)
                ax.plot(mean, yy, MARKERS[label], color=color,
                        mfc=color if label == BASELINE else "white", ms=6)
                ts = numeric(runs[runs["moon"] == label], "id.ts_ece").mean()
                if np.isfinite(ts):
                    ax.plot(100 * ts, yy, "D", color="black", ms=3)
        ax.set_yticks(range(len(cells)), [cell_name(*c) for c in cells])
        ax.set_ylim(len(cells) - 0.5, -0.5)
        ax.set_xlim(left=0)
        ax.set_xlabel("ECE (%)")
        ax.set_title(model_name(model), fontsize=9)
    fig.suptitle("ECE: filled baseline, hollow MOON (95% interval); black diamond: after "
                 "temperature scaling", fontsize=9)
    return save(fig, path)


def dice_sweep_plot(sweep: "pd.DataFrame", path: str | Path | None = None):
    """DICE's AUROC (%) against its percentile ``p`` from :func:`moon.report.stats.dice_sweep_frame`:
    a panel per model and OOD group, a line per setting (method colour; MOON dashed) with the 95%
    interval as error bars; ``p`` = 0 is plain energy."""
    require_columns(sweep, ["method", "density", "kind", "p", "auroc", "low", "high"])
    models = sorted(sweep["model"].unique()) if "model" in sweep.columns else [None]
    kinds = [k for k in ("near", "far", "noise", "other") if k in set(sweep["kind"])]
    # a sweep made with by=("method", "density") has no moon column: one solid line per setting
    keys = ["method", "density"] + (["moon"] if "moon" in sweep.columns else [])
    fig, axes = panel_grid(len(models) * len(kinds), 3.4, 2.8, ncols=len(kinds), sharey=True)
    for ax, (model, kind) in zip(axes, [(m, k) for m in models for k in kinds]):
        cells = sweep[(sweep["kind"] == kind) & ((sweep["model"] == model) if model else True)]
        for key, rows in cells.groupby(keys):
            method, density, moon = (*key, None)[:3]
            rows = rows.sort_values("p")
            err = np.nan_to_num([100 * (rows["auroc"] - rows["low"]),
                                 100 * (rows["high"] - rows["auroc"])])
            ax.errorbar(rows["p"], 100 * rows["auroc"], yerr=err, capsize=2,
                        color=method_color(method),
                        ls=LINESTYLES.get(moon, ":") if moon else "-",
                        marker=MARKERS.get(moon, ".") if moon else "o", ms=4,
                        label=cell_name(method, density) + (f" {moon}" if moon else ""))
        ax.set_title(f"{model_name(model) + ': ' if model else ''}{kind}-OOD", fontsize=9)
        ax.set(xlabel="DICE percentile p (0: energy)", ylabel="AUROC (%)")
    axes[0].legend(fontsize=6, loc="best")
    return save(fig, path)


def regime_curves(results, path: str | Path | None = None):
    """Per-epoch training accuracy, validation ECE and fitted temperature (mean over seeds) for
    each (model, method, density, MOON) of ``results``, and MOON's unknown-class probability on
    the training data: is training error near zero while alpha is large, and are the models
    over-confident (temperature > 1) at the end?"""
    import pandas as pd

    rows = [{**{k: v for k, v in h.items() if k != "density"},   # the measured density aside
             **{k: r.config[k] for k in ("model", "method", "density")},
             "moon": moon_label(r.config)}
            for r in results for h in r.history]
    hist = pd.DataFrame(rows)
    panels = [("train_acc", "training accuracy (%)", 100), ("val_ece", "validation ECE (%)", 100),
              ("val_temperature", "fitted temperature", 1), ("unknown_mass",
                                                             "p(unknown) on training data (%)", 100)]
    panels = [p for p in panels if p[0] in hist.columns]
    models = sorted(hist["model"].unique())
    fig, axes = panel_grid(len(panels) * len(models), 3.4, 2.6, ncols=len(panels))
    axes = np.asarray(axes).reshape(len(models), len(panels))
    for row, model in enumerate(models):
        for ax, (column, label, scale) in zip(axes[row], panels):
            part = hist[hist["model"] == model]
            for (method, density, moon), runs in part.groupby(["method", "density", "moon"]):
                curve = runs.groupby("epoch")[column].mean() * scale
                if curve.dropna().empty:
                    continue
                ax.plot(curve.index, curve.to_numpy(), color=method_color(method),
                        ls=LINESTYLES.get(moon, ":"), lw=1.2, label=f"{cell_name(method, density)} {moon}")
            ax.set(xlabel="epoch", ylabel=label, title=f"{model_name(model)}: {label}")
            ax.title.set_fontsize(8)
            if column == "val_temperature":
                ax.axhline(1, color="black", lw=0.8, ls=":")
            if column == "unknown_mass":
                ax.set_yscale("log")
        axes[row, 0].legend(fontsize=6, loc="lower right")
    return save(fig, path)


def temperature_scatter(link: dict, path: str | Path | None = None):
    """The regime contrast (:func:`moon.report.regime.temperature_link`): MOON's ECE change
    against the baseline's fitted temperature, one dot per pair, coloured by study, with Pearson's
    r and its 95% interval; the prediction is a falling cloud that crosses 0 near temperature 1."""
    import seaborn as sns

    data = link["pairs"]
    with sns.axes_style("whitegrid"):
        fig = new_figure(5.2, 3.8)
        ax = fig.subplots()
    per = link.get("by_study", {})
    for color, (study, part) in zip(STUDY_COLORS, data.groupby("study", sort=False)):
        r = per.get(study, {}).get("r", math.nan)
        ax.scatter(part["temperature"], 100 * part["ece_change"], s=16, color=color,
                   alpha=0.8, label=f"{study}: r = {r:+.2f} ({len(part)} pairs)".replace("-", "−"))
    ax.axhline(0, color="black", lw=1)
    ax.axvline(1, color="black", lw=0.8, ls=":")
    ax.set(xlabel="baseline's fitted temperature (>1: over-confident)",
           ylabel="MOON − baseline, ECE (points)")
    ax.set_title("MOON's ECE change against its baseline's temperature\n(prediction: falling "
                 "within each study; r per study in the legend)", fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, path)


def inference_figure(inference: dict, path: str | Path | None = None):
    """Measured inference speed-up of the sparse export over the dense masked model (one thread)
    against density, a panel per model and a line per batch size, beside the FLOP ratio (1 /
    density, what kernels that skip every zero could give)."""
    import pandas as pd

    rows = pd.DataFrame(inference["rows"])
    rows = rows[rows["threads"] == 1]
    models = list(dict.fromkeys(rows["model"]))
    fig, axes = panel_grid(len(models), 3.8, 3.0, ncols=len(models))
    for ax, model in zip(axes, models):
        part = rows[rows["model"] == model]
        for color, (batch, cells) in zip(STUDY_COLORS, part.groupby("batch")):
            cells = cells.sort_values("density")
            ax.plot(cells["density"], cells["speedup"], "o-", color=color, label=f"batch {batch}")
        dens = np.array(sorted(part["density"].unique()))
        ax.plot(dens, 1 / dens, "k:", lw=1, label="FLOP ratio (1 / density)")
        ax.axhline(1, color="black", lw=0.8)
        ax.set_yscale("log")
        density_axis(ax, dens)
        ax.set(ylabel="speed-up over dense (x, log)", title=f"{model_name(model)}, 1 thread")
    axes[0].legend(fontsize=7)
    return save(fig, path)


def detector_heatmap(frame: "pd.DataFrame", kinds=("near", "far"), detectors=None,
                     path: str | Path | None = None):
    """Mean AUROC (%) of every post-hoc detector (columns) per setting (rows: model, method,
    density, baseline or MOON), a panel per OOD group, annotated; the colour scale is shared."""
    import seaborn as sns

    from moon.report.frame import DETECTOR_NAMES

    detectors = detectors or [d for d in DETECTOR_NAMES
                              if any(f"ood.{k}.{d}.auroc" in frame.columns for k in kinds)]
    keys = with_model(frame, ["method", "density", "moon"])
    fig, axes = panel_grid(len(kinds), 0.55 * len(detectors) + 2.4,
                           0.3 * frame.groupby(keys).ngroups + 1.4, ncols=1)
    for ax, kind in zip(axes, kinds):
        columns = [f"ood.{kind}.{d}.auroc" for d in detectors if f"ood.{kind}.{d}.auroc" in frame]
        table = 100 * frame.groupby(keys)[columns].mean()
        table.columns = [DETECTOR_NAMES.get(c.split(".")[2], c) for c in columns]
        table.index = [" ".join(f"{v:g}" if isinstance(v, float) else method_name(str(v))
                                for v in (key if isinstance(key, tuple) else (key,)))
                       for key in table.index]
        sns.heatmap(table, ax=ax, annot=True, fmt=".0f", cmap="viridis", vmin=50, vmax=100,
                    cbar=ax is axes[-1], annot_kws={"fontsize": 6})
        blank = table.isna().any().any()
        ax.set_title(f"{kind}-OOD AUROC (%), higher is better"
                     + ("; blank: the detector scores the unknown class (MOON runs only)"
                        if blank else ""), fontsize=9)
        ax.tick_params(labelsize=7)
    return save(fig, path)
