"""Comparisons over many runs: MOON against its baseline, sparse against dense, MOON's parts, cost,
post-hoc detectors and calibration (the tables of the book's result chapters; figures in
:mod:`moon.compare_figures`).

Every function reads the frame of :func:`moon.report.results_frame` (one row per run). Intervals
are **paired** where two runs share seed and configuration but one switch (MOON − baseline, a MOON
part − "none") or are one run (DICE − energy): :func:`moon.metrics.paired_comparison`'s t-interval
dbar ∓ t_{(1+level)/2, n−1} · s_d / √n over the differences d_i. Sparse − dense is **unpaired**
(runs of two methods with one seed number share no weights or masks): :func:`welch_interval`.

``*_frame`` functions return numbers in the frame's units (fractions); ``*_table`` functions format
them for a page: percent metrics (accuracy, calibration errors, AUROC, AUPR, FPR@95, and their
temperature-scaled ``ts_`` versions) x100 (differences in percentage points), NLL and Brier raw.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from moon.metrics import Paired, paired_comparison
from moon.report import is_percent, mean_std, ood_kind, require_columns

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PAIRED_METRICS = ("id.accuracy", "id.ece", "ood.near.msp.auroc", "ood.far.msp.auroc")
ABLATION_METRICS = ("id.accuracy", "id.ece", "id.nll", "ood.near.msp.auroc", "ood.far.msp.auroc")
CALIBRATION_METRICS = ("id.accuracy", "id.ece", "id.adaptive_ece", "id.nll", "id.brier",
                       "id.temperature", "id.ts_ece", "id.ts_nll")
POSTHOC_DETECTORS = ("msp", "msp_ts", "energy", "gen", "dice", "react", "ash", "scale", "vim",
                     "fdbd", "mahalanobis", "rmds", "knn")
DICE_SWEEP_PREFIX = "extra.dice_sweep."    # columns extra.dice_sweep.<ood set>.<p>: DICE's AUROC
ABLATION_ORDER = ("none", "unknown class", "unknown class, fixed α", "averaging", "MOON",
                  "MOON, fixed α", "MOON as released")
MOON_PARTS = ("unknown_class", "averaging", "alpha_auto", "as_released")
# Fields two runs of a pair may differ in besides the compared ones: where they ran, whether they
# resumed, and the detector list (with "auto" a MOON run adds the unknown-class detectors).
NOT_PAIRED_ON = ("device", "resume", "detectors")
MARK = " *"   # appended where the interval excludes 0


# --------------------------------------------------------------------------------------------------
# Helpers: units, intervals, pairing
# --------------------------------------------------------------------------------------------------
def scale_of(metric: str) -> float:
    """100 for percent metrics (also ``ts_ece`` and the like), else 1."""
    return 100.0 if is_percent(metric.replace("ts_", "")) else 1.0


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) with low/high = mean ∓ t_{(1+level)/2, n−1} · s / √n (s with ddof 1);
    NaN bounds for one value, NaN everywhere for none."""
    p = np.asarray(values, dtype=float)
    p = p[np.isfinite(p)]
    if p.size < 2:
        return (float(p.mean()) if p.size else math.nan), math.nan, math.nan
    paired = paired_comparison(p, np.zeros_like(p), level)
    return paired.mean_diff, paired.low, paired.high


def welch_interval(values, base_values, level: float = 0.95) -> Paired:
    """Unpaired mean(values) − mean(base_values) with a Welch t-interval (Welch 1947).

    se = √(s_a²/n_a + s_b²/n_b);  ν = se⁴ / ((s_a²/n_a)²/(n_a−1) + (s_b²/n_b)²/(n_b−1))
    (Welch–Satterthwaite);  interval = diff ∓ t_{(1+level)/2, ν} · se. With fewer than 2 values on
    a side the spread is unknown: low = high = NaN and ``excludes_zero`` False; with se = 0 the
    interval is the point. ``n`` counts ``values``.
    """
    from scipy import stats

    a, b = (np.asarray(v, dtype=float) for v in (values, base_values))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        raise ValueError(f"welch_interval needs values on both sides, got {a.size} and {b.size}")
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Paired(mean_diff=diff, low=math.nan, high=math.nan, excludes_zero=False, n=a.size)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    half = 0.0 if se == 0 else float(stats.t.ppf((1 + level) / 2, (va + vb) ** 2 / (
        va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)))) * se
    low, high = diff - half, diff + half
    return Paired(mean_diff=diff, low=low, high=high, excludes_zero=bool(low > 0 or high < 0),
                  n=int(a.size))


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


def _config_keys(frame: "pd.DataFrame", free) -> list[str]:
    """The RunConfig fields of ``frame`` the two runs of a pair must share: all but ``free`` and
    :data:`NOT_PAIRED_ON` (so the seed and method/density, model, epochs, ... are equal)."""
    from moon.config import field_names

    skip = set(free) | set(NOT_PAIRED_ON)
    return [f for f in field_names() if f in frame.columns and f not in skip]


def _pairs(treated: "pd.DataFrame", base: "pd.DataFrame", keys: list[str],
           values) -> "pd.DataFrame":
    """One row per run of ``treated`` with the run of ``base`` of equal ``keys``: the key columns,
    then each of ``values`` as ``<value>_t`` (treated) and ``<value>_b`` (base). Unmatched treated
    runs are left out (logged); two runs of one side with equal keys raise (ambiguous pairing)."""
    import pandas as pd

    sides = []
    for part, suffix in ((treated, "_t"), (base, "_b")):
        key = pd.Series([repr(tuple(r)) for r in part[keys].itertuples(index=False)],
                        index=part.index, dtype=object)
        if key.duplicated().any():
            dup = part.loc[key.duplicated(keep=False), [k for k in ("method", "density", "seed")
                                                         if k in keys]]
            raise ValueError(f"ambiguous pairing: {len(dup)} runs share one configuration, e.g. "
                             f"{dup.iloc[0].to_dict()}; keep one run per configuration and seed")
        side = part[list(values)].apply(pd.to_numeric, errors="coerce").add_suffix(suffix)
        sides.append(side.assign(_key=key))
    pairs = sides[0].join(treated[keys]).merge(sides[1], on="_key", how="inner")
    if len(pairs) < len(treated):
        log.warning("%d of %d runs have no partner run of the same configuration and seed; "
                    "left out", len(treated) - len(pairs), len(treated))
    return pairs.drop(columns="_key")


def _flag(frame: "pd.DataFrame", column: str) -> "pd.Series":
    """A boolean config column (missing values count as False)."""
    return frame[column].fillna(False).astype(bool)


def _moon_pairs(frame: "pd.DataFrame", values) -> "pd.DataFrame":
    """MOON runs (unknown class and averaging on) paired with baseline runs (both off) of the same
    seed and other configuration (``alpha_auto`` and ``as_released`` included)."""
    require_columns(frame, ["unknown_class", "averaging", "seed"])
    unknown, averaging = _flag(frame, "unknown_class"), _flag(frame, "averaging")
    return _pairs(frame[unknown & averaging], frame[~unknown & ~averaging],
                  _config_keys(frame, ("unknown_class", "averaging")), values)


def _paired_rows(pairs: "pd.DataFrame", metrics, by, level: float) -> "pd.DataFrame":
    """Long frame: per ``by`` group of ``pairs`` and metric, :func:`paired_comparison` of
    ``<metric>_t`` against ``<metric>_b`` over the pairs where both are present."""
    import pandas as pd

    rows = []
    for group, cell in pairs.groupby(list(by), sort=True):
        for metric in metrics:
            both = cell[[f"{metric}_t", f"{metric}_b"]].dropna()
            if len(both):
                p = paired_comparison(both.iloc[:, 0], both.iloc[:, 1], level)
                rows.append({**dict(zip(by, group)), "metric": metric, **asdict(p)})
    return pd.DataFrame(rows, columns=[*by, "metric", *Paired.__dataclass_fields__])


def signed(value: float, decimals: int) -> str:
    """"+1.2" / "−0.3" (a true minus sign)."""
    return f"{value:+.{decimals}f}".replace("-", "−")


def interval_text(row: Mapping, scale: float, decimals: int | None = None) -> str:
    """"+1.2 [−0.3, +2.7]" from a row's mean_diff/low/high x ``scale`` (``decimals`` default: 1 for
    scale 100, else 3); " *" where the interval excludes 0; only the difference for one pair."""
    decimals = (1 if scale == 100 else 3) if decimals is None else decimals
    text = signed(row["mean_diff"] * scale, decimals)
    if row["n"] >= 2 and not math.isnan(row["low"]):
        low, high = (signed(row[k] * scale, decimals) for k in ("low", "high"))
        text += f" [{low}, {high}]"
    return text + (MARK if row["excludes_zero"] else "")


def interval_table(long: "pd.DataFrame", by) -> "pd.DataFrame":
    """A ``*_frame`` result as a page table: index ``by``, one column per metric of
    :func:`interval_text` strings (percent metrics in percentage points, 1 decimal; others 3
    decimals) and ``n`` (the most pairs or runs of any metric in the row)."""
    by = list(by)
    text = long.apply(lambda r: interval_text(r, scale_of(r["metric"])), axis=1)
    table = long.assign(text=text).pivot(index=by, columns="metric", values="text")
    table = table[list(dict.fromkeys(long["metric"]))]
    table.insert(0, "n", long.groupby(by)["n"].max())
    table.columns.name = None
    return table


def _mean_std_table(frame: "pd.DataFrame", metrics, by) -> "pd.DataFrame":
    """"mean ± std" over the runs of each ``by`` group (percent metrics x100, 1 decimal; others 3
    decimals) and the run count ``n``."""
    import pandas as pd

    metrics, by = list(metrics), list(by)
    require_columns(frame, metrics + by)
    data = pd.concat([frame[by], frame[metrics].apply(pd.to_numeric, errors="coerce")], axis=1)
    groups = data.groupby(by, dropna=False, sort=True)
    table = groups.size().to_frame("n")
    for metric in metrics:
        scale = scale_of(metric)
        table[metric] = groups[metric].agg(
            lambda v, s=scale: mean_std(v, s, 1 if s == 100 else 3))
    return table


# --------------------------------------------------------------------------------------------------
# MOON against its baseline; sparse against dense
# --------------------------------------------------------------------------------------------------
def paired_moon_frame(frame: "pd.DataFrame", metrics=PAIRED_METRICS, by=("method", "density"),
                      level: float = 0.95) -> "pd.DataFrame":
    """MOON − baseline per ``by`` group and metric, paired by seed: columns ``*by, metric,
    mean_diff, low, high, excludes_zero, n`` (n = pairs), in the frame's units (fractions).

    A MOON run (``unknown_class`` and ``averaging`` on) is paired with the baseline run (both off)
    whose other RunConfig fields are all equal, seed included (``alpha_auto``/``as_released`` too,
    so "MOON, fixed α" or "as released" runs pair only with baselines run the same way); d_i =
    MOON_i − baseline_i and the interval is :func:`moon.metrics.paired_comparison`'s t-interval.
    """
    metrics, by = list(metrics), with_model(frame, by)
    require_columns(frame, metrics + by)
    return _paired_rows(_moon_pairs(frame, metrics), metrics, by, level)


def paired_moon_table(frame: "pd.DataFrame", metrics=PAIRED_METRICS, by=("method", "density"),
                      level: float = 0.95) -> "pd.DataFrame":
    """:func:`paired_moon_frame` for a page: "+1.2 [−0.3, +2.7] *" per metric (percentage points
    for percent metrics; " *" where the 95% interval excludes 0) and ``n`` pairs; index ``by``."""
    return interval_table(paired_moon_frame(frame, metrics, by, level), with_model(frame, by))


def sparsity_effect_frame(frame: "pd.DataFrame", metrics=PAIRED_METRICS, base_method: str = "dense",
                          by=("method", "density"), match=("dataset", "model", "epochs"),
                          level: float = 0.95) -> "pd.DataFrame":
    """Did sparsity make plain training less reliable? Per sparse ``by`` group of baseline runs
    (no unknown class, no averaging) and metric: mean(sparse) − mean(``base_method``) over seeds
    with a Welch interval (:func:`welch_interval`; unpaired, since a sparse run and the dense run of
    the same seed number share nothing). The reference is the baseline ``base_method`` runs with the
    group's ``match`` values. Columns ``*by, metric, mean_diff, low, high, excludes_zero, n,
    n_base``.
    """
    import pandas as pd

    metrics, by = list(metrics), with_model(frame, by)
    match = [c for c in match if c in frame.columns]
    require_columns(frame, metrics + by + ["method", "unknown_class", "averaging"])
    plain = frame[~_flag(frame, "unknown_class") & ~_flag(frame, "averaging")]
    dense = plain[plain["method"] == base_method]
    rows = []
    for group, runs in plain[plain["method"] != base_method].groupby(by, sort=True):
        ref = dense
        for column in match:
            values = runs[column].unique()
            if len(values) > 1:
                raise ValueError(f"group {group} mixes {column} values {list(values)}; add "
                                 f"{column!r} to by")
            ref = ref[ref[column] == values[0]]
        for metric in metrics:
            a, b = (pd.to_numeric(x[metric], errors="coerce").dropna() for x in (runs, ref))
            if len(a) and len(b):
                w = welch_interval(a, b, level)
                rows.append({**dict(zip(by, group)), "metric": metric, **asdict(w),
                             "n_base": len(b)})
            elif len(a):
                log.warning("no %s baseline runs to compare %s with", base_method, group)
    return pd.DataFrame(rows, columns=[*by, "metric", *Paired.__dataclass_fields__, "n_base"])


def sparsity_effect_table(frame: "pd.DataFrame", metrics=PAIRED_METRICS, base_method: str = "dense",
                          by=("method", "density"), level: float = 0.95) -> "pd.DataFrame":
    """:func:`sparsity_effect_frame` formatted like :func:`paired_moon_table` (sparse − dense)."""
    return interval_table(sparsity_effect_frame(frame, metrics, base_method, by, level=level),
                          with_model(frame, by))


# --------------------------------------------------------------------------------------------------
# MOON's parts
# --------------------------------------------------------------------------------------------------
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


def _label_order(labels) -> list[str]:
    """Labels in :data:`ABLATION_ORDER`, others after them in sorted order."""
    present = set(labels)
    return [x for x in ABLATION_ORDER if x in present] + sorted(present - set(ABLATION_ORDER))


def ablation_table(frame: "pd.DataFrame", label: str | Callable = ablation_label,
                   metrics=ABLATION_METRICS, deltas=("ood.near.msp.auroc", "ood.far.msp.auroc"),
                   reference: str = "none", method: str | None = None,
                   density: float | None = None, level: float = 0.95) -> "pd.DataFrame":
    """MOON's parts on one method and density: a row per ablation label (:func:`ablation_label`,
    or a column such as a study's ``parts``), ``n``, mean ± std over seeds of ``metrics``, and
    "Δ <metric> vs <reference>" for ``deltas``: the label's runs − the ``reference`` runs, paired
    by seed and the other non-MOON config fields (:func:`interval_text`, percentage points)."""
    import pandas as pd

    if method is not None:
        frame = frame[frame["method"] == method]
    if density is not None:
        frame = frame[np.isclose(frame["density"].astype(float), density)]
    cells = frame[["method", "density"]].drop_duplicates()
    if len(cells) != 1:
        raise ValueError(f"ablation_table needs runs of one method and density, got "
                         f"{cells.to_dict('records')}; pass method= and density=")
    data = frame.assign(ablation=ablation_labels(frame, label))
    table = _mean_std_table(data, metrics, ["ablation"]).reindex(_label_order(data["ablation"]))
    keys = _config_keys(data, MOON_PARTS + ((label,) if isinstance(label, str) else ()))
    base = data[data["ablation"] == reference]
    for metric in deltas:
        column = pd.Series("", index=table.index, dtype=object)
        for name in table.index.drop(reference, errors="ignore"):
            pairs = _pairs(data[data["ablation"] == name], base, keys, [metric])
            long = _paired_rows(pairs.assign(ablation=name), [metric], ["ablation"], level)
            if len(long):
                column[name] = interval_text(long.iloc[0], scale_of(metric))
        table[f"Δ {metric} vs {reference}"] = column
    return table


# --------------------------------------------------------------------------------------------------
# Cost, post-hoc detectors, calibration
# --------------------------------------------------------------------------------------------------
def _numeric(frame: "pd.DataFrame", column: str) -> "pd.Series":
    """``frame[column]`` as floats, all NaN when the frame lacks it (older result files)."""
    import pandas as pd

    if column not in frame.columns:
        return pd.Series(math.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


def cost_table(frame: "pd.DataFrame", by=("method", "density"),
               level: float = 0.95) -> "pd.DataFrame":
    """Per ``by`` + ``moon`` group (numbers, means over runs): ``flops_vs_dense`` = training FLOPs
    per image / (3 · dense forward FLOPs) of the run's model (``extra.flops``; RigL accounting, see
    :mod:`moon.cost`), measured ``train_seconds``, ``images_per_second``, ``peak_mib`` (peak memory
    in MiB) and, on MOON rows, ``moon_time_ratio`` = mean over seeds of train_seconds(MOON) /
    train_seconds(baseline) of the same configuration and seed, with its t-interval
    ``moon_time_low``/``moon_time_high``. Missing inputs give NaN."""
    import pandas as pd

    by = with_model(frame, by)
    require_columns(frame, by + ["moon"])
    data = frame[by + ["moon"]].assign(
        flops_vs_dense=_numeric(frame, "extra.flops.train_step")
        / (3 * _numeric(frame, "extra.flops.forward_dense")),
        train_seconds=_numeric(frame, "timing.train_seconds"),
        images_per_second=_numeric(frame, "timing.train_images_per_second"),
        peak_mib=_numeric(frame, "timing.peak_memory_bytes") / 2 ** 20)
    groups = data.groupby(by + ["moon"], sort=True)
    table = pd.concat([groups.size().rename("n"), groups.mean()], axis=1)
    for column in ("moon_time_ratio", "moon_time_low", "moon_time_high"):
        table[column] = math.nan
    if "timing.train_seconds" in frame.columns:
        pairs = _moon_pairs(frame, ["timing.train_seconds"])
        ratios = pairs["timing.train_seconds_t"] / pairs["timing.train_seconds_b"]
        for group, r in ratios.groupby([pairs[c] for c in by], sort=True):
            row = (*(group if isinstance(group, tuple) else (group,)), "MOON")
            if row in table.index:
                table.loc[row, ["moon_time_ratio", "moon_time_low", "moon_time_high"]] = \
                    t_interval(r, level)
    return table


def posthoc_table(frame: "pd.DataFrame", detectors=POSTHOC_DETECTORS, kind: str = "near",
                  metric: str = "auroc", by=("variant", "density")) -> "pd.DataFrame":
    """Post-hoc detectors side by side: a row per ``by`` group, a column per detector the frame
    has, "mean ± std" over runs x100 of ``ood.<kind>.<detector>.<metric>`` (the mean over the OOD
    sets of that group: near, far or noise, :data:`moon.ood.sets.GROUPS`); ``n`` runs."""
    from moon.ood.sets import GROUPS

    if kind not in GROUPS:
        raise ValueError(f"kind={kind!r}; use one of {', '.join(GROUPS)}")
    columns = {f"ood.{kind}.{d}.{metric}": d for d in detectors
               if f"ood.{kind}.{d}.{metric}" in frame.columns}
    if not columns:
        raise ValueError(f"the frame has no ood.{kind}.<detector>.{metric} column for any of "
                         f"{', '.join(detectors)}")
    table = _mean_std_table(frame, list(columns), with_model(frame, by)).rename(columns=columns)
    table.columns.name = f"{kind} {metric}"
    return table


def posthoc_gain_frame(frame: "pd.DataFrame", detector: str = "dice", base_detector: str = "energy",
                       kinds=("near", "far"), metric: str = "auroc", by=("method", "density"),
                       level: float = 0.95) -> "pd.DataFrame":
    """Do DICE and MOON add up? Per ``by`` group, ``moon`` label and kind: ``detector`` −
    ``base_detector`` on ``ood.<kind>.<d>.<metric>``, paired by run (both score the same model),
    t-interval over runs. Rows with ``moon`` = "MOON − baseline" give the interaction: the gain on
    a MOON run − the gain on its baseline run (same seed and configuration); ≈ 0 means the two
    add up. Columns ``*by, moon, kind, mean_diff, low, high, excludes_zero, n``."""
    import pandas as pd

    by, long = with_model(frame, by), []
    for kind in kinds:
        a, b, gain = (f"ood.{kind}.{detector}.{metric}", f"ood.{kind}.{base_detector}.{metric}",
                      f"gain.{kind}")
        require_columns(frame, [a, b])
        data = frame.assign(**{gain: _numeric(frame, a) - _numeric(frame, b)})
        per_run = data.assign(**{f"{gain}_t": data[a], f"{gain}_b": data[b]})
        long += [_paired_rows(per_run, [gain], by + ["moon"], level),
                 _paired_rows(_moon_pairs(data, [gain]), [gain], by, level).assign(
                     moon="MOON − baseline")]
    out = pd.concat(long, ignore_index=True)
    out["kind"] = out.pop("metric").str.removeprefix("gain.")
    return out[[*by, "moon", "kind", *Paired.__dataclass_fields__]]


def calibration_table(frame: "pd.DataFrame", by=("method", "density", "moon"),
                      metrics=CALIBRATION_METRICS) -> "pd.DataFrame":
    """Calibration per ``by`` group: "mean ± std" over runs of accuracy, ECE, adaptive ECE (x100),
    NLL, Brier, the fitted temperature and the temperature-scaled reference ``ts_ece`` (x100) and
    ``ts_nll`` (Guo et al. 2017); metrics the frame lacks are left out; ``n`` runs."""
    return _mean_std_table(frame, [m for m in metrics if m in frame.columns], with_model(frame, by))


def dice_sweep_frame(frame: "pd.DataFrame", by=("method", "density", "moon"),
                     level: float = 0.95) -> "pd.DataFrame":
    """DICE's AUROC against its percentile ``p`` (each run's ``extra.dice_sweep``: one fitted mean
    feature, ``p`` = 0 is plain energy), per ``by`` group, OOD group (near, far, noise) and ``p``:
    per run the unweighted mean over its OOD sets of the group, then mean and t-interval over the
    runs. Columns ``*by, kind, p, auroc, low, high, n``; empty when no run has a sweep (result
    files written before the evaluation stored one)."""
    import pandas as pd

    by = with_model(frame, by)
    columns = [c for c in frame.columns if c.startswith(DICE_SWEEP_PREFIX)]
    out = [*by, "kind", "p", "auroc", "low", "high", "n"]
    if not columns:
        return pd.DataFrame(columns=out)
    long = frame[by + columns].reset_index(names="run").melt(id_vars=["run", *by],
                                                             value_name="auroc")
    where = long.pop("variable").str.removeprefix(DICE_SWEEP_PREFIX).str.split(".", n=1, expand=True)
    long["kind"] = where[0].map(lambda name: ood_kind(name) or "other")
    long["p"] = where[1].astype(float)
    long["auroc"] = pd.to_numeric(long["auroc"], errors="coerce")
    per_run = long.dropna(subset=["auroc"]).groupby(["run", *by, "kind", "p"], as_index=False)
    rows = []
    for key, part in per_run["auroc"].mean().groupby([*by, "kind", "p"], sort=True):
        mean, low, high = t_interval(part["auroc"], level)
        rows.append({**dict(zip([*by, "kind", "p"], key)), "auroc": mean, "low": low, "high": high,
                     "n": len(part)})
    return pd.DataFrame(rows, columns=out)


def dice_sweep_table(sweep: "pd.DataFrame") -> "pd.DataFrame":
    """:func:`dice_sweep_frame` as a table: a row per group and OOD kind, a column per ``p``, the
    mean AUROC x100 (1 decimal)."""
    keys = [c for c in sweep.columns if c not in ("p", "auroc", "low", "high", "n")]
    table = (100 * sweep.pivot_table(index=keys, columns="p", values="auroc")).round(1)
    table.columns = [f"p = {p:g}" for p in table.columns]
    table.columns.name = "DICE AUROC (%)"
    return table
