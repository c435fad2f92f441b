"""Page tables: the frames of :mod:`moon.report.stats` and :mod:`moon.report.frame` formatted to
the precision they carry.

Percent metrics are shown x100 (differences in percentage points), NLL and Brier with 3 decimals,
an interval as one string "+1.2 [−0.3, +2.7]" with " *" where it excludes 0, seconds with one
decimal, FLOPs as a share of dense. Column names are words (:func:`moon.report.frame.metric_label`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from moon.report import stats
from moon.report.frame import (ID_METRICS, OOD_METRICS, PRIMARY_METRICS, SUMMARY_METRICS,
                               ablation_labels, is_percent, label_order, method_name, model_name,
                               metric_label, ood_kind, require_columns, scale_of, with_model)

if TYPE_CHECKING:
    import pandas as pd

MARK = " *"   # appended where the interval excludes 0
ABLATION_METRICS = ("id.accuracy", "id.ece", "id.nll", "ood.near.msp.auroc", "ood.far.msp.auroc")
CALIBRATION_METRICS = ("id.accuracy", "id.ece", "id.adaptive_ece", "id.nll", "id.brier",
                       "id.temperature", "id.ts_ece", "id.ts_nll")
POSTHOC_DETECTORS = ("msp", "msp_ts", "energy", "gen", "dice", "react", "ash", "scale", "vim",
                     "fdbd", "mahalanobis", "rmds", "knn")


# -- numbers as text --------------------------------------------------------------------------------
def signed(value: float, decimals: int) -> str:
    """"+1.2" / "−0.3" (a true minus sign)."""
    return f"{value:+.{decimals}f}".replace("-", "−")


def decimals_of(scale: float) -> int:
    return 1 if scale == 100 else 3


def interval_text(row: Mapping, scale: float, decimals: int | None = None) -> str:
    """"+1.2 [−0.3, +2.7]" from a row's mean_diff/low/high x ``scale`` (``decimals`` default: 1 for
    scale 100, else 3); " *" where the interval excludes 0; only the difference for one pair."""
    decimals = decimals_of(scale) if decimals is None else decimals
    text = signed(row["mean_diff"] * scale, decimals)
    if row["n"] >= 2 and not math.isnan(row["low"]):
        low, high = (signed(row[k] * scale, decimals) for k in ("low", "high"))
        text += f" [{low}, {high}]"
    return text + (MARK if row["excludes_zero"] else "")


def mean_std(values, scale: float, decimals: int) -> str:
    """"mean ± std" of ``values`` x ``scale`` (std over seeds, ddof 1; only the mean for one value)."""
    values = values.dropna()
    if values.empty:
        return ""
    text = f"{values.mean() * scale:.{decimals}f}"
    return text if len(values) < 2 else f"{text} ± {values.std() * scale:.{decimals}f}"


def readable_index(table: "pd.DataFrame") -> "pd.DataFrame":
    """Index levels as the book writes them: method and model names ("RigL", "LeNet-5"),
    densities without trailing zeros."""
    import pandas as pd

    def fix(name, values):
        if name == "method":
            return [method_name(v) for v in values]
        if name == "model":
            return [model_name(v) for v in values]
        if name == "density":
            return [f"{float(v):g}" for v in values]
        return list(values)

    index = table.index
    if isinstance(index, pd.MultiIndex):
        arrays = [fix(n, index.get_level_values(n)) for n in index.names]
        table.index = pd.MultiIndex.from_arrays(arrays, names=index.names)
    else:
        table.index = pd.Index(fix(index.name, index), name=index.name)
    return table


def interval_table(long: "pd.DataFrame", by) -> "pd.DataFrame":
    """A long comparison frame as a page table: index ``by``, one column per metric (named in
    words) of :func:`interval_text` strings and ``n`` (the most pairs or runs of any metric)."""
    by = list(by)
    text = long.apply(lambda r: interval_text(r, scale_of(r["metric"])), axis=1)
    table = long.assign(text=text).pivot(index=by, columns="metric", values="text")
    order = list(dict.fromkeys(long["metric"]))
    table = table[order].rename(columns={m: metric_label(m, difference=True) for m in order})
    table.insert(0, "n", long.groupby(by)["n"].max())
    table.columns.name = None
    return readable_index(table)


def mean_std_table(frame: "pd.DataFrame", metrics, by) -> "pd.DataFrame":
    """"mean ± std" over the runs of each ``by`` group (percent metrics x100, 1 decimal; others 3
    decimals) and the run count ``n``; columns keep the metric names (callers rename)."""
    import pandas as pd

    metrics, by = list(metrics), list(by)
    require_columns(frame, metrics + by)
    stats.unpooled_groups(frame, by)
    data = pd.concat([frame[by], frame[metrics].apply(pd.to_numeric, errors="coerce")], axis=1)
    groups = data.groupby(by, dropna=False, sort=True)
    table = groups.size().to_frame("n")
    for metric in metrics:
        scale = scale_of(metric)
        table[metric] = groups[metric].agg(lambda v, s=scale: mean_std(v, s, decimals_of(s)))
    return table


def worded(table: "pd.DataFrame") -> "pd.DataFrame":
    """Metric columns renamed in words with units, index levels readable."""
    table = table.rename(columns={c: metric_label(c) for c in table.columns if "." in c})
    return readable_index(table)


# -- one run ----------------------------------------------------------------------------------------
def id_table(result) -> "pd.DataFrame":
    """ID test metrics of a run (over the K known classes), accuracy and calibration errors in %."""
    import pandas as pd

    rows = [{"metric": metric_label(f"id.{k}", short=True),
             "value": (f"{result.id[k] * 100:.2f}" if is_percent(k) else f"{result.id[k]:.3f}"),
             "unit": "%" if is_percent(k) else ""}
            for k in ID_METRICS if k in result.id]      # to the precision the test set carries
    return pd.DataFrame(rows).set_index("metric")


def ood_table(result, metric: str = "auroc", names: bool = False) -> "pd.DataFrame":
    """One run's OOD ``metric`` (x100, 1 decimal): detectors as rows, OOD sets as columns by group
    (near, far, noise), then ``near mean``, ``far mean`` and ``noise mean``. ``names``: detectors
    and the metric in the book's words ("MSP over K", "FPR@95 (%)"), for a page."""
    import pandas as pd

    from moon.ood.sets import GROUPS, group_means

    if metric not in OOD_METRICS:
        raise ValueError(f"metric={metric!r} is not an OOD metric; use one of {OOD_METRICS}")
    fallback = result.extra.get("curves", {}).get("ood_kind", {})
    order = {kind: i for i, kind in enumerate(GROUPS)}
    sets = sorted(result.ood, key=lambda s: order.get(ood_kind(s, fallback), len(GROUPS)))
    table = pd.DataFrame({s: {d: m.get(metric) for d, m in result.ood[s].items()} for s in sets},
                         dtype=float)
    for kind, detectors in group_means(result.ood, fallback).items():
        table[f"{kind} mean"] = pd.Series({d: m.get(metric) for d, m in detectors.items()})
    table.index.name, table.columns.name = "detector", metric
    table = (table * 100).round(1)
    if names:
        from moon.report.frame import DETECTOR_NAMES, METRIC_NAMES

        table.index = [DETECTOR_NAMES.get(d, d) for d in table.index]
        table.index.name, table.columns.name = "detector", f"{METRIC_NAMES[metric]} (%)"
    return table


# -- many runs --------------------------------------------------------------------------------------
def summary_table(frame: "pd.DataFrame", metrics=None,
                  by=("method", "density", "moon")) -> "pd.DataFrame":
    """Mean ± std over the runs (seeds) of each ``by`` group as strings such as "90.1 ± 0.3";
    column ``n`` counts the runs. ``metrics=None`` takes those of ``SUMMARY_METRICS`` the frame
    has. Metric columns keep their names (a page renames them with :func:`worded`)."""
    if metrics is None:
        metrics = [m for m in SUMMARY_METRICS if m in frame.columns]
    return mean_std_table(frame, metrics, by)


def paired_moon_table(frame: "pd.DataFrame", metrics=PRIMARY_METRICS, by=("method", "density"),
                      level: float = 0.95) -> "pd.DataFrame":
    """MOON - baseline, paired by seed: "+1.2 [−0.3, +2.7] *" per metric and ``n`` pairs."""
    return interval_table(stats.paired_moon_frame(frame, metrics, by, level),
                          with_model(frame, by))


def sparsity_effect_table(frame: "pd.DataFrame", metrics=PRIMARY_METRICS,
                          base_method: str = "dense", by=("method", "density"),
                          level: float = 0.95) -> "pd.DataFrame":
    """Plain sparse - plain dense (Welch intervals), formatted like :func:`paired_moon_table`."""
    return interval_table(stats.sparsity_effect_frame(frame, metrics, base_method, by,
                                                      level=level), with_model(frame, by))


def p_text(p: float) -> str:
    """A p-value as a page shows it: three decimals, "<0.001" below that, "" for NaN."""
    if p is None or math.isnan(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


FAMILY_HEADERS = {"premise": "sparse − dense [95%]", "moon": "MOON − baseline [95%]"}


def families_table(long: "pd.DataFrame") -> "pd.DataFrame":
    """Declared families (:func:`moon.report.stats.declared_families`) for a page: per family,
    training-set size, setting and metric the difference with its 95% interval, the minimum
    detectable effect (80% power), raw and Holm-adjusted p (Holm within the family at that size)."""
    import pandas as pd

    rows = []
    for r in long.to_dict("records"):
        scale = scale_of(r["metric"])
        rows.append({"family": r["family"], "n": f"{int(r['max_train_samples']):,}",
                     "setting": f"{method_name(r['method'])} {float(r['density']):g}",
                     "metric": metric_label(r["metric"], difference=True),
                     "difference [95%]": interval_text(r, scale),
                     "detectable (80% power)": "" if math.isnan(r["mde"]) else
                     f"±{r['mde'] * scale:.{decimals_of(scale)}f}",
                     "p": p_text(r["p_value"]), "p (Holm)": p_text(r["p_holm"]),
                     "survives Holm": ("not testable" if not r.get("testable", True) else
                                       "yes" if r["significant"] else "no"),
                     "runs or pairs": r["n"]})
    index = ["family", "n", "setting", "metric"]
    columns = ["difference [95%]", "detectable (80% power)", "p", "p (Holm)", "survives Holm",
               "runs or pairs"]
    return pd.DataFrame(rows, columns=index + columns).set_index(index)


def parts_table(parts: "pd.DataFrame") -> "pd.DataFrame":
    """MOON's parts (:func:`moon.report.regime_map.parts_frame`): one row per part, its effect
    against its reference with the 95% interval, one column per metric."""
    table = interval_table(parts, ["part"])
    order = list(dict.fromkeys(parts["part"]))
    refs = parts.drop_duplicates("part").set_index("part")
    table = table.loc[order]
    table.insert(0, "treated − reference", [f"{refs.loc[p, 'treated']} − {refs.loc[p, 'reference']}"
                                            for p in order])
    return table


def alpha_sweep_table(long: "pd.DataFrame") -> "pd.DataFrame":
    """MOON's one knob (:func:`moon.report.stats.alpha_sweep_frame`): a row per setting and
    ``alpha_final``, MOON - baseline with its 95% interval per metric (points)."""
    by = [c for c in ("model", "method", "density", "alpha_final") if c in long.columns]
    table = interval_table(long, by)
    table.index = table.index.set_names([("α_final" if n == "alpha_final" else n)
                                         for n in table.index.names])
    return table


def endpoints_table(long: "pd.DataFrame") -> "pd.DataFrame":
    """The primary family (:func:`moon.report.stats.primary_endpoints`) for a page: per cell and
    metric the difference with its interval, the minimum detectable effect (80% power), the raw
    and the Holm-adjusted p-value and whether the adjusted one is significant."""
    import pandas as pd

    by = [c for c in ("model", "method", "density") if c in long.columns]
    rows = []
    for r in long.to_dict("records"):
        scale = scale_of(r["metric"])
        rows.append({**{k: r[k] for k in by}, "metric": metric_label(r["metric"], difference=True),
                     "MOON − baseline [95%]": interval_text(r, scale),
                     "detectable (80% power)": "" if math.isnan(r["mde"]) else
                     f"±{r['mde'] * scale:.{decimals_of(scale)}f}",
                     "p": p_text(r["p_value"]), "p (Holm)": p_text(r["p_holm"]),
                     "significant": "yes" if r["significant"] else "no", "pairs": r["n"]})
    return readable_index(pd.DataFrame(rows).set_index(by + ["metric"]))


def ablation_table(frame: "pd.DataFrame", label: str | Callable | None = None,
                   metrics=ABLATION_METRICS, deltas=("ood.near.msp.auroc", "ood.far.msp.auroc"),
                   reference: str = "none", method: str | None = None,
                   density: float | None = None, level: float = 0.95) -> "pd.DataFrame":
    """MOON's parts on one method and density: a row per ablation label, ``n``, mean ± std over
    seeds of ``metrics``, and "Δ <metric> vs <reference>" for ``deltas`` (paired by seed)."""
    import pandas as pd

    from moon.report.frame import ablation_label

    label = ablation_label if label is None else label
    cell = stats.one_cell(frame, method, density)
    data = cell.assign(ablation=ablation_labels(cell, label))
    table = mean_std_table(data, metrics, ["ablation"]).reindex(label_order(data["ablation"]))
    long = stats.ablation_frame(cell, deltas, label, reference, level)
    for metric in deltas:
        column = pd.Series("", index=table.index, dtype=object)
        for row in long[long["metric"] == metric].to_dict("records"):
            column[row["ablation"]] = interval_text(row, scale_of(metric))
        table[f"Δ {metric_label(metric, difference=True)} vs {reference}"] = column
    return worded(table)


def cost_table(frame: "pd.DataFrame", by=("method", "density"),
               level: float = 0.95) -> "pd.DataFrame":
    """Training cost per method, density and MOON label, as text: FLOPs per training image as a
    share of dense, seconds per run (1 decimal), images per second, peak memory (MiB) and MOON's
    time relative to its baseline with its interval."""
    import pandas as pd

    numbers = stats.cost_frame(frame, by, level)
    out = pd.DataFrame(index=numbers.index)
    out["runs"] = numbers["n"]
    out["training FLOPs (share of dense)"] = numbers["flops_vs_dense"].map(
        lambda v: "" if math.isnan(v) else f"{v:.3f}")
    out["training time (s)"] = numbers["train_seconds"].map(lambda v: f"{v:.1f}")
    out["images / s"] = numbers["images_per_second"].map(lambda v: f"{v:,.0f}")
    out["peak memory (MiB)"] = numbers["peak_mib"].map(lambda v: f"{v:,.0f}")
    out["MOON time / baseline"] = [
        "" if math.isnan(r) else f"{r:.2f}" + ("" if math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]")
        for r, lo, hi in zip(numbers["moon_time_ratio"], numbers["moon_time_low"],
                             numbers["moon_time_high"])]
    return readable_index(out)


def posthoc_table(frame: "pd.DataFrame", detectors=POSTHOC_DETECTORS, kind: str = "near",
                  metric: str = "auroc", by=("variant", "density")) -> "pd.DataFrame":
    """Post-hoc detectors side by side: a row per ``by`` group, a column per detector the frame
    has, "mean ± std" over runs x100 of the ``kind`` group mean; ``n`` runs."""
    from moon.ood.sets import GROUPS
    from moon.report.frame import DETECTOR_NAMES

    if kind not in GROUPS:
        raise ValueError(f"kind={kind!r}; use one of {', '.join(GROUPS)}")
    columns = {f"ood.{kind}.{d}.{metric}": DETECTOR_NAMES.get(d, d) for d in detectors
               if f"ood.{kind}.{d}.{metric}" in frame.columns}
    if not columns:
        raise ValueError(f"the frame has no ood.{kind}.<detector>.{metric} column for any of "
                         f"{', '.join(detectors)}")
    table = mean_std_table(frame, list(columns), with_model(frame, by)).rename(columns=columns)
    table.columns.name = f"{kind}-OOD {metric.upper()} (%)"
    return readable_index(table)


def calibration_table(frame: "pd.DataFrame", by=("method", "density", "moon"),
                      metrics=CALIBRATION_METRICS) -> "pd.DataFrame":
    """Calibration per ``by`` group: "mean ± std" over runs of accuracy, ECE, adaptive ECE,
    NLL, Brier, the fitted temperature and the temperature-scaled ECE and NLL."""
    present = [m for m in metrics if m in frame.columns]
    return worded(mean_std_table(frame, present, with_model(frame, by)))


def dice_sweep_table(sweep: "pd.DataFrame") -> "pd.DataFrame":
    """:func:`moon.report.stats.dice_sweep_frame` as a table: a row per group and OOD kind, a
    column per ``p``, the mean AUROC x100 (1 decimal)."""
    keys = [c for c in sweep.columns if c not in ("p", "auroc", "low", "high", "n")]
    table = (100 * sweep.pivot_table(index=keys, columns="p", values="auroc")).round(1)
    table.columns = [f"p = {p:g}" for p in table.columns]
    table.columns.name = "DICE AUROC (%)"
    return readable_index(table)


def benchmark_table(path: str | Path = "results/benchmark/benchmark.json") -> "pd.DataFrame":
    """The benchmark page's table, read from :func:`moon.report.benchmark.write_benchmark`'s
    JSON: one row per ID split and OOD set with its kind, image count, shape and source."""
    import pandas as pd

    rows = json.loads(Path(path).read_text())["rows"]
    table = pd.DataFrame([{"set": r["name"], "kind": r["kind"], "images": r["n"],
                           "shape": "x".join(str(v) for v in r["shape"]),
                           "evaluated with": r["id_set"], "source": r["source"],
                           "loaded from": r.get("loaded_from", "")} for r in rows])
    return table.set_index("set")


def runs_table(folders) -> "pd.DataFrame":
    """Every result file under ``folders``: where it ran (device, threads, host), when, how long
    training and evaluation took (seconds, 1 decimal), with which code (git SHA) and status."""
    import pandas as pd

    from moon.results import load_results

    rows = []
    for folder in folders:
        if not Path(folder).exists():
            continue
        for result in load_results(folder, status=None):
            prov, timing, cfg = result.provenance, result.timing, result.config
            sha = (prov.get("git_sha") or "")[:10]
            rows.append({"folder": Path(folder).name, "model": cfg["model"],
                         "method": cfg["method"], "density": cfg["density"], "seed": cfg["seed"],
                         "epochs": cfg["epochs"], "status": result.status,
                         "device": prov.get("device"), "threads": prov.get("num_threads"),
                         "host": prov.get("hostname"),
                         "train s": round(timing.get("train_seconds") or math.nan, 1),
                         "eval s": round(timing.get("eval_seconds") or math.nan, 1),
                         "git": sha + ("+dirty" if sha and prov.get("git_dirty") else ""),
                         "started": prov.get("started")})
    return pd.DataFrame(rows)


def posthoc_gain_table(frame: "pd.DataFrame", detector: str = "dice",
                       base_detector: str = "energy") -> "pd.DataFrame":
    """:func:`moon.report.stats.posthoc_gain_frame` for a page: ``detector`` - ``base_detector``
    AUROC per setting, MOON label and OOD group, "+1.2 [−0.3, +2.7] *" points, ``n`` runs."""
    long = stats.posthoc_gain_frame(frame, detector, base_detector)
    by = [c for c in long.columns if c in ("model", "method", "density", "moon")]
    long = long.assign(metric="ood." + long["kind"] + f".{detector}.auroc")
    table = interval_table(long, by)
    table.columns = ["n"] + [f"{c.split(',')[0]}: {detector} − {base_detector} (points)"
                             for c in table.columns[1:]]
    return table


def inference_table(inference: dict) -> "pd.DataFrame":
    """The inference benchmark (``bench/sparse_inference.py``'s JSON) for a page: per model and
    density, the one-thread speed-up of the sparse export over the dense masked model at each
    batch size, the FLOP ratio (1 / density) and the stored size as a share of dense."""
    import pandas as pd

    rows = pd.DataFrame(inference["rows"])
    rows = rows[rows["threads"] == 1]
    speed = rows.pivot_table(index=["model", "density"], columns="batch", values="speedup")
    speed = speed.map(lambda v: f"{v:.2f}x")
    speed.columns = [f"speed-up, batch {b}" for b in speed.columns]
    sizes = pd.DataFrame(inference["sizes"]).set_index(["model", "density"])
    speed["FLOP ratio"] = [f"{1 / d:.0f}x" for _, d in speed.index]
    speed["stored size (share of dense)"] = sizes["ratio"].reindex(speed.index).map(
        lambda v: f"{v:.3f}")
    speed = speed.sort_index(level=["model", "density"], ascending=[True, False])
    return readable_index(speed)


def train_sparse_table(measured: dict) -> "pd.DataFrame":
    """The training benchmark (``bench/train_sparse.py``'s JSON) for a page: per MLP width,
    density and thread count, training images per second of the masked trainer and the CSR
    trainer's ratio to it (median of the interleaved rounds, with their range)."""
    import pandas as pd

    def ratio(r: dict) -> str:
        return f"{r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]"

    rows = [{"width": r["width"], "density": r["density"], "threads": r["threads"],
             "masked (images/s)": f"{r['images_per_second']['masked']:,.0f}",
             "CSR / masked": ratio(r["csr/masked"])}
            for r in measured["rows"]]
    return readable_index(pd.DataFrame(rows).set_index(["width", "density", "threads"]))


def p_phrase(p: float) -> str:
    """``p = 0.012`` or ``p < 0.001`` (never ``p = 0.000``)."""
    text = p_text(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"
