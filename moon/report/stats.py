"""Comparisons and statistics over the frame of :func:`moon.report.frame.results_frame`.

Every function returns numbers in the frame's units (fractions), one row per comparison; the page
formatting is :mod:`moon.report.tables`' job and every interval comes from :mod:`moon.statistics`.
Intervals are **paired** where two runs share seed and configuration but one switch (MOON -
baseline, a MOON part - "none") or are one run (DICE - energy): :func:`moon.statistics.paired_comparison`'s
t-interval over the differences. Sparse - dense is **unpaired** (runs of two methods with one seed
number share no weights or masks): :func:`moon.statistics.welch_interval`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from moon.statistics import Paired, holm, mean_interval, paired_comparison, welch_interval
from moon.report.frame import (MOON_PARTS, PRIMARY_METRICS, ablation_labels, flag, label_order,
                               numeric, ood_kind, require_columns, with_model)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PAIRED_COLUMNS = tuple(Paired.__dataclass_fields__)
# Fields two runs of a pair may differ in besides the compared ones: where they ran, whether they
# resumed, which kernel trained them (masked or CSR: same masks, float noise), and the detector
# list (with "auto" a MOON run adds the unknown-class detectors).
NOT_PAIRED_ON = ("device", "resume", "detectors", "overwrite", "kernel")
INTERACTION = "MOON − baseline"   # posthoc_gain_frame's moon label of the interaction rows
DICE_SWEEP_PREFIX = "extra.dice_sweep."    # columns extra.dice_sweep.<ood set>.<p>: DICE's AUROC


# -- pairing ----------------------------------------------------------------------------------------
def config_keys(frame: "pd.DataFrame", free) -> list[str]:
    """The RunConfig fields of ``frame`` the two runs of a pair must share: all but ``free`` and
    :data:`NOT_PAIRED_ON` (so the seed and method/density, model, epochs, ... are equal)."""
    from moon.config import field_names

    skip = set(free) | set(NOT_PAIRED_ON)
    return [f for f in field_names() if f in frame.columns and f not in skip]


def pairs(treated: "pd.DataFrame", base: "pd.DataFrame", keys: list[str],
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
    out = sides[0].join(treated[keys]).merge(sides[1], on="_key", how="inner")
    if len(out) < len(treated):
        # expected where a study has extra treated arms (the alpha sweep has no own baselines)
        log.info("%d of %d runs have no partner run of the same configuration and seed; "
                 "left out", len(treated) - len(out), len(treated))
    return out.drop(columns="_key")


def moon_pairs(frame: "pd.DataFrame", values) -> "pd.DataFrame":
    """MOON runs (unknown class and averaging on) paired with baseline runs (both off) of the same
    seed and other configuration (``alpha_auto`` and ``as_released`` included)."""
    require_columns(frame, ["unknown_class", "averaging", "seed"])
    unknown, averaging = flag(frame, "unknown_class"), flag(frame, "averaging")
    return pairs(frame[unknown & averaging], frame[~unknown & ~averaging],
                 config_keys(frame, ("unknown_class", "averaging")), values)


def paired_rows(pairs_frame: "pd.DataFrame", metrics, by, level: float) -> "pd.DataFrame":
    """Long frame: per ``by`` group and metric, :func:`moon.statistics.paired_comparison` of
    ``<metric>_t`` against ``<metric>_b`` over the pairs where both are present."""
    import pandas as pd

    rows = []
    for group, cell in pairs_frame.groupby(list(by), sort=True):
        group = group if isinstance(group, tuple) else (group,)
        for metric in metrics:
            both = cell[[f"{metric}_t", f"{metric}_b"]].dropna()
            if len(both):
                p = paired_comparison(both.iloc[:, 0], both.iloc[:, 1], level)
                rows.append({**dict(zip(by, group)), "metric": metric, **asdict(p)})
    return pd.DataFrame(rows, columns=[*by, "metric", *PAIRED_COLUMNS])


# -- MOON against its baseline; sparse against dense -----------------------------------------------
def paired_moon_frame(frame: "pd.DataFrame", metrics=PRIMARY_METRICS, by=("method", "density"),
                      level: float = 0.95) -> "pd.DataFrame":
    """MOON - baseline per ``by`` group and metric, paired by seed: columns ``*by, metric,
    mean_diff, low, high, excludes_zero, n, p_value, sd, mde`` (n = pairs; mde: the smallest
    difference these pairs detect with 80% power), in the frame's units.

    A MOON run (``unknown_class`` and ``averaging`` on) is paired with the baseline run (both off)
    whose other RunConfig fields are all equal, seed included; d_i = MOON_i - baseline_i."""
    metrics, by = list(metrics), with_model(frame, by)
    require_columns(frame, metrics + by)
    return paired_rows(moon_pairs(frame, metrics), metrics, by, level)


def sparsity_effect_frame(frame: "pd.DataFrame", metrics=PRIMARY_METRICS,
                          base_method: str = "dense", by=("method", "density"),
                          match=("dataset", "model", "epochs"),
                          level: float = 0.95) -> "pd.DataFrame":
    """Did sparsity make plain training less reliable? Per sparse ``by`` group of baseline runs and
    metric: mean(sparse) - mean(``base_method``) over seeds with a Welch interval. The reference is
    the baseline ``base_method`` runs with the group's ``match`` values. Columns ``*by, metric,
    mean_diff, low, high, excludes_zero, n, ..., n_base``."""
    import pandas as pd

    metrics, by = list(metrics), with_model(frame, by)
    match = [c for c in match if c in frame.columns]
    require_columns(frame, metrics + by + ["method", "unknown_class", "averaging"])
    plain = plain_baselines(frame)
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
        unpooled(runs, ("seed",), f"sparse runs of {group}")
        unpooled(ref, ("seed", "method", "density", "sparse_init", "dpnum", "rescale_init"),
                 f"the {base_method} runs {group} is compared with")
        for metric in metrics:
            a, b = (pd.to_numeric(x[metric], errors="coerce").dropna() for x in (runs, ref))
            if len(a) and len(b):
                rows.append({**dict(zip(by, group)), "metric": metric,
                             **asdict(welch_interval(a, b, level)), "n_base": len(b)})
            elif len(a):   # a study still running: its reference cells have not landed yet
                log.info("no %s baseline runs to compare %s with yet", base_method, group)
    return pd.DataFrame(rows, columns=[*by, "metric", *PAIRED_COLUMNS, "n_base"])


def plain_baselines(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The baseline runs: no unknown class, no averaging, and the baseline's own LR schedule
    (``lr_hold_epochs`` unset; a baseline with MOON's LR schedule is a part of the ablation)."""
    keep = ~flag(frame, "unknown_class") & ~flag(frame, "averaging")
    if "lr_hold_epochs" in frame.columns:
        keep &= frame["lr_hold_epochs"].isna()
    return frame[keep]


def unpooled(runs: "pd.DataFrame", free, what: str) -> None:
    """Refuse to pool runs that differ in a RunConfig field other than ``free`` (and the fields
    that say how a run ran, :data:`NOT_PAIRED_ON`): an alpha sweep, another schedule or another
    training-set size is never averaged into one cell. A field a result file lacks (written before
    the field existed) counts as its default."""
    from moon.config import RunConfig

    defaults = RunConfig().to_dict()
    for field in config_keys(runs, free):
        values = {repr(defaults.get(field) if _missing(v) else v) for v in runs[field]}
        if len(values) > 1:
            raise ValueError(f"{what} differ in {field} ({', '.join(sorted(values))}): compare "
                             f"them apart (add {field!r} to by) rather than pool them")


def unpooled_groups(frame: "pd.DataFrame", by, what: str = "runs") -> None:
    """:func:`unpooled` for every ``by`` group of ``frame``: a summary over the runs of a group
    (a mean, a count) must not mix runs that differ in another RunConfig field than the seed."""
    by = list(by)
    free = ("seed", *by) + (("unknown_class", "averaging") if "moon" in by or "variant" in by else ())
    for group, runs in frame.groupby(by, sort=False, dropna=False):
        unpooled(runs, free, f"{what} of {dict(zip(by, group if isinstance(group, tuple) else (group,)))}")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def plain_runs(frame: "pd.DataFrame", method: str, density: float) -> "pd.DataFrame":
    """The baseline runs (:func:`plain_baselines`) of one method and density."""
    plain = plain_baselines(frame)
    return plain[(plain["method"] == method) & np.isclose(plain["density"].astype(float), density)]


def method_contrast(frame: "pd.DataFrame", metrics, method: str, base: str,
                    density: float = 0.05, level: float = 0.95) -> "pd.DataFrame":
    """``method`` - ``base`` on baseline runs at ``density`` (1.0 for dense), per model and metric,
    unpaired (runs of two methods share no weights): columns ``model, metric, mean_diff, low,
    high, excludes_zero, n, ...`` from :func:`moon.statistics.welch_interval`. A model without runs
    of both methods has no row."""
    import pandas as pd

    at = lambda m: 1.0 if m == "dense" else density          # noqa: E731
    rows = []
    for model, part in frame.groupby("model", sort=True):
        for metric in metrics:
            a, b = (numeric(plain_runs(part, m, at(m)), metric).dropna() for m in (method, base))
            if len(a) and len(b):
                rows.append({"model": model, "metric": metric,
                             **asdict(welch_interval(a, b, level))})
    return pd.DataFrame(rows, columns=["model", "metric", *PAIRED_COLUMNS])


def primary_endpoints(frame: "pd.DataFrame", endpoints: Mapping[str, Any]) -> "pd.DataFrame":
    """A study's declared primary family (its ``endpoints.primary`` section: contrast, cells,
    metrics, alpha) evaluated on ``frame``: one row per cell and metric with ``mean_diff, low, high,
    p_value, mde, n`` (and ``model``, also when the family has one), plus Holm's adjusted
    ``p_holm`` across the whole family
    (:func:`moon.statistics.holm`) and ``significant`` (adjusted p below alpha)."""
    primary = endpoints.get("primary") or {}
    contrast = primary.get("contrast", {})
    if contrast and contrast.get("axis") != "moon":
        raise ValueError(f"contrast {contrast}: only MOON - baseline (axis moon) is implemented")
    metrics, alpha = list(primary["metrics"]), float(primary.get("alpha", 0.05))
    keep = frame
    for axis, values in dict(primary.get("cells", {})).items():
        keep = keep[keep[axis].isin(values)]
    long = paired_moon_frame(keep, metrics=metrics, level=1 - alpha)
    if "model" in keep.columns and "model" not in long.columns and keep["model"].nunique() == 1:
        long.insert(0, "model", keep["model"].iloc[0])   # the family's one model, said too
    long["p_holm"] = holm(long["p_value"].to_numpy())
    long["significant"] = long["p_holm"] < alpha
    return long


def declared_families(frame: "pd.DataFrame", endpoints: Mapping[str, Any]) -> "pd.DataFrame":
    """A study's declared primary families (``endpoints.families``: per name a ``contrast``, the
    treated ``cells`` and ``metrics``), each evaluated at every value of the ``endpoints.by``
    fields (the regime study: per training-set size). A contrast on axis ``moon`` is MOON -
    baseline paired by seed (:func:`paired_moon_frame`); on axis ``method`` it is the treated
    sparse baselines - the ``control`` method's baselines, unpaired (:func:`sparsity_effect_frame`).
    Holm's adjustment (:func:`moon.statistics.holm`) runs within each family at each ``by`` value,
    as declared, over every declared comparison: one that cannot be tested yet (fewer than two
    runs a side) counts as p = 1 and is marked ``testable`` False. Columns ``family, *by, model,
    method, density, metric, mean_diff, low, high, ..., testable, p_holm, significant``."""
    import pandas as pd

    by, alpha = list(endpoints.get("by", [])), float(endpoints.get("alpha", 0.05))
    level, parts = 1 - alpha, []
    for name, family in dict(endpoints.get("families", {})).items():
        contrast, cells = family.get("contrast", {}), dict(family.get("cells", {}))
        group = [*by, "model", "method", "density"]
        if contrast.get("axis") == "moon":
            keep = _select(frame, cells)
            long = paired_moon_frame(keep, family["metrics"], by=group, level=level)
        elif contrast.get("axis") == "method":
            control = contrast.get("control", "dense")
            context = {k: v for k, v in cells.items() if k not in ("method", "density")}
            keep = _select(frame, context)
            long = sparsity_effect_frame(keep, family["metrics"], base_method=control, by=group,
                                         match=("dataset", "model", "epochs", "width", *by),
                                         level=level)
            long = _select(long, {k: v for k, v in cells.items() if k in ("method", "density")})
        else:
            raise ValueError(f"family {name}: contrast {contrast} is not implemented (axis moon "
                             f"or method)")
        for _, part in long.groupby(by, sort=True) if by else [(None, long)]:
            # a comparison without a p-value (one run a side) stays in the family as p = 1, so
            # the adjustment is over every declared comparison; it is marked not testable
            raw = part["p_value"].to_numpy(dtype=float)
            adjusted = holm(np.where(np.isfinite(raw), raw, 1.0))
            parts.append(part.assign(family=name, testable=np.isfinite(raw),
                                     p_holm=np.where(np.isfinite(raw), adjusted, np.nan)))
    if not parts:
        return pd.DataFrame(columns=["family", *by, "model", "method", "density", "metric",
                                     *PAIRED_COLUMNS, "testable", "p_holm", "significant"])
    out = pd.concat(parts, ignore_index=True)
    out["significant"] = out["p_holm"] < alpha
    return out[["family", *[c for c in out.columns if c != "family"]]]


def _select(frame: "pd.DataFrame", cells: Mapping[str, Any]) -> "pd.DataFrame":
    """The runs whose fields take the listed values; a field a result file lacks (written before
    the field existed) counts as its RunConfig default."""
    import pandas as pd

    from moon.config import RunConfig

    defaults = RunConfig().to_dict()
    for axis, values in cells.items():
        column = frame[axis] if axis in frame.columns else pd.Series(None, index=frame.index,
                                                                     dtype=object)
        column = column.where(column.notna(), defaults.get(axis))
        if axis == "density":
            frame = frame[np.isin(column.astype(float).round(6), np.round(values, 6))]
        else:
            frame = frame[column.isin(values)]
    return frame


def alpha_sweep_frame(frame: "pd.DataFrame", metrics=PRIMARY_METRICS,
                      level: float = 0.95) -> "pd.DataFrame":
    """MOON at each ``alpha_final`` - the baseline of the same seed and configuration (the
    baseline has no alpha: its ``alpha_final`` is not compared), per model, method, density and
    alpha: columns ``model, method, density, alpha_final, metric, mean_diff, low, high, ...``. The
    sweep's cells are never pooled into one "MOON"."""
    import pandas as pd

    unknown, averaging = flag(frame, "unknown_class"), flag(frame, "averaging")
    keys = config_keys(frame, ("unknown_class", "averaging", "alpha_final"))
    moon, base = frame[unknown & averaging], plain_baselines(frame)
    by = [c for c in ("model", "method", "density") if c in frame.columns] + ["alpha_final"]
    rows = [paired_rows(pairs(runs, base, keys, list(metrics)).assign(alpha_final=alpha),
                        list(metrics), by, level)
            for alpha, runs in moon.groupby("alpha_final", sort=True)]
    return (pd.concat(rows, ignore_index=True) if rows
            else pd.DataFrame(columns=[*by, "metric", *PAIRED_COLUMNS]))


# -- MOON's parts -----------------------------------------------------------------------------------
def one_cell(frame: "pd.DataFrame", method: str | None, density: float | None) -> "pd.DataFrame":
    """The runs of one method and density (ValueError when the selection holds several)."""
    if method is not None:
        frame = frame[frame["method"] == method]
    if density is not None:
        frame = frame[np.isclose(frame["density"].astype(float), density)]
    cells = frame[["method", "density"]].drop_duplicates()
    if len(cells) != 1:
        raise ValueError(f"an ablation needs runs of one method and density, got "
                         f"{cells.to_dict('records')}; pass method= and density=")
    return frame


def ablation_frame(frame: "pd.DataFrame", metrics, label: str | Callable = None,
                   reference: str = "none", level: float = 0.95) -> "pd.DataFrame":
    """Each ablation label's runs - the ``reference`` runs of one cell, paired by seed and the other
    non-MOON fields: columns ``ablation, metric, mean_diff, low, high, ...`` in label order."""
    import pandas as pd

    from moon.report.frame import ablation_label

    label = ablation_label if label is None else label
    data = frame.assign(ablation=ablation_labels(frame, label))
    keys = config_keys(data, MOON_PARTS + ((label,) if isinstance(label, str) else ()))
    base, rows = data[data["ablation"] == reference], []
    for name in label_order(data["ablation"]):
        if name != reference:
            matched = pairs(data[data["ablation"] == name], base, keys, list(metrics))
            rows.append(paired_rows(matched.assign(ablation=name), metrics, ["ablation"], level))
    return (pd.concat(rows, ignore_index=True) if rows
            else pd.DataFrame(columns=["ablation", "metric", *PAIRED_COLUMNS]))


# -- cost, post-hoc detectors, DICE ----------------------------------------------------------------
def cost_frame(frame: "pd.DataFrame", by=("method", "density"),
               level: float = 0.95) -> "pd.DataFrame":
    """Per ``by`` + ``moon`` group (means over runs): ``flops_vs_dense`` = training FLOPs per image
    / (3 x dense forward FLOPs) (``extra.flops``, RigL accounting, :mod:`moon.cost`), measured
    ``train_seconds``, ``images_per_second``, ``peak_mib`` and, on MOON rows, ``moon_time_ratio``
    = mean over seeds of train_seconds(MOON) / train_seconds(baseline) of the same configuration
    and seed, with its t-interval ``moon_time_low``/``moon_time_high``."""
    import pandas as pd

    by = with_model(frame, by)
    require_columns(frame, by + ["moon"])
    unpooled_groups(frame, by + ["moon"])
    data = frame[by + ["moon"]].assign(
        flops_vs_dense=numeric(frame, "extra.flops.train_step")
        / (3 * numeric(frame, "extra.flops.forward_dense")),
        train_seconds=numeric(frame, "timing.train_seconds"),
        images_per_second=numeric(frame, "timing.train_images_per_second"),
        peak_mib=numeric(frame, "timing.peak_memory_bytes") / 2 ** 20)
    groups = data.groupby(by + ["moon"], sort=True)
    table = pd.concat([groups.size().rename("n"), groups.mean()], axis=1)
    ratio_columns = ["moon_time_ratio", "moon_time_low", "moon_time_high"]
    for column in ratio_columns:
        table[column] = math.nan
    if "timing.train_seconds" in frame.columns:
        matched = moon_pairs(frame, ["timing.train_seconds"])
        ratios = matched["timing.train_seconds_t"] / matched["timing.train_seconds_b"]
        for group, r in ratios.groupby([matched[c] for c in by], sort=True):
            row = (*(group if isinstance(group, tuple) else (group,)), "MOON")
            if row in table.index:
                table.loc[row, ratio_columns] = mean_interval(r, level)
    return table


def posthoc_gain_frame(frame: "pd.DataFrame", detector: str = "dice",
                       base_detector: str = "energy", kinds=("near", "far"),
                       metric: str = "auroc", by=("method", "density"),
                       level: float = 0.95) -> "pd.DataFrame":
    """Do DICE and MOON add up? Per ``by`` group, ``moon`` label and kind: ``detector`` -
    ``base_detector`` on ``ood.<kind>.<d>.<metric>``, paired by run. Rows with ``moon`` = "MOON -
    baseline" (:data:`INTERACTION`) give the interaction (the gain on a MOON run - the gain on its baseline run)."""
    import pandas as pd

    by, long = with_model(frame, by), []
    for kind in kinds:
        a, b = f"ood.{kind}.{detector}.{metric}", f"ood.{kind}.{base_detector}.{metric}"
        gain = f"gain.{kind}"
        require_columns(frame, [a, b])
        data = frame.assign(**{gain: numeric(frame, a) - numeric(frame, b)})
        per_run = data.assign(**{f"{gain}_t": data[a], f"{gain}_b": data[b]})
        long += [paired_rows(per_run, [gain], by + ["moon"], level),
                 paired_rows(moon_pairs(data, [gain]), [gain], by, level).assign(
                     moon=INTERACTION)]
    out = pd.concat(long, ignore_index=True)
    out["kind"] = out.pop("metric").str.removeprefix("gain.")
    return out[[*by, "moon", "kind", *PAIRED_COLUMNS]]


def dice_sweep_frame(frame: "pd.DataFrame", by=("method", "density", "moon"),
                     level: float = 0.95) -> "pd.DataFrame":
    """DICE's AUROC against its percentile ``p`` (each run's ``extra.dice_sweep``; ``p`` = 0 is
    plain energy), per ``by`` group, OOD group and ``p``: per run the mean over its OOD sets of the
    group, then mean and t-interval over the runs. Columns ``*by, kind, p, auroc, low, high, n``."""
    import pandas as pd

    by = with_model(frame, by)
    columns = [c for c in frame.columns if c.startswith(DICE_SWEEP_PREFIX)]
    out = [*by, "kind", "p", "auroc", "low", "high", "n"]
    if not columns:
        return pd.DataFrame(columns=out)
    long = frame[by + columns].reset_index(names="run").melt(id_vars=["run", *by],
                                                             value_name="auroc")
    where = long.pop("variable").str.removeprefix(DICE_SWEEP_PREFIX).str.split(".", n=1,
                                                                              expand=True)
    long["kind"] = where[0].map(lambda name: ood_kind(name) or "other")
    long["p"] = where[1].astype(float)
    long["auroc"] = pd.to_numeric(long["auroc"], errors="coerce")
    per_run = long.dropna(subset=["auroc"]).groupby(["run", *by, "kind", "p"], as_index=False)
    rows = []
    for key, part in per_run["auroc"].mean().groupby([*by, "kind", "p"], sort=True):
        mean, low, high = mean_interval(part["auroc"], level)
        rows.append({**dict(zip([*by, "kind", "p"], key)), "auroc": mean, "low": low,
                     "high": high, "n": len(part)})
    return pd.DataFrame(rows, columns=out)


def density_summary(frame: "pd.DataFrame", metric: str = "id.accuracy", hue: str = "variant",
                    confidence: float = 0.95) -> "pd.DataFrame":
    """Per (``hue``, density) cell: runs ``n``, ``mean``, ``std`` (ddof 1) and the t-interval
    ``low``/``high`` (:func:`moon.statistics.mean_interval`; NaN for one run), in the frame's units.
    ``dense`` is True where every run of the cell has method "dense"."""
    import pandas as pd

    require_columns(frame, [metric, hue, "density", "method"])
    unpooled_groups(frame, [hue, "density"])
    data = pd.DataFrame({hue: frame[hue], "density": frame["density"].astype(float),
                         "value": pd.to_numeric(frame[metric], errors="coerce"),
                         "is_dense": frame["method"] == "dense"}).dropna(subset=["value"])
    rows = []
    for (h, density), cell in data.groupby([hue, "density"], sort=True):
        mean, low, high = mean_interval(cell["value"], confidence)
        rows.append({hue: h, "density": density, "n": len(cell), "mean": mean,
                     "std": cell["value"].std(), "dense": bool(cell["is_dense"].all()),
                     "low": low, "high": high})
    return pd.DataFrame(rows, columns=[hue, "density", "n", "mean", "std", "dense", "low", "high"])
