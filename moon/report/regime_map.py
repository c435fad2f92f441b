"""The regime map: where sparse training hurts, and what MOON (or each of its parts) does there.

One *point* per sparse setting of a study at one training-set size: a model (and width), a sparse
method and density, trained on ``n`` images. Its position is the sparse baseline's number of
active weights per training image (the x axis of the map: it spreads the settings that all fit
their data at 99.9% training accuracy, and it places ResNet-18 on CIFAR-10 on the same axis, from
90% sparsity, the released code's README example, to an assumed 98%: the MOON paper's own
sparsities could not be read here); its heights are

* the **premise**: sparse baseline - dense baseline (unpaired, Welch; the dense runs of the same
  model, width, schedule and ``n``), positive ECE = sparse is worse calibrated;
* **MOON's effect**: MOON - baseline, paired by seed (the same configuration but the MOON switches).

The parts arm splits MOON into its switches (:func:`parts_frame`): every part is compared with
the baseline that shares MOON's LR schedule, so each difference is one switch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from moon.report.frame import method_name, model_name, numeric
from moon.report.stats import (PAIRED_COLUMNS, config_keys, paired_moon_frame, paired_rows,
                               pairs, plain_baselines, sparsity_effect_frame)

if TYPE_CHECKING:
    import pandas as pd

MAP_METRICS = ("id.ece", "ood.near.msp.auroc", "ood.far.msp.auroc")
EFFECTS = ("premise", "moon")
POINT_KEYS = ("train_images", "model", "width", "method", "density")
# The parts arm's variants, by their switches: (unknown_class, averaging, LR held at the end).
PART_NAMES = {(False, False, False): "baseline", (False, False, True): "baseline, MOON's LR",
              (False, True, True): "averaging", (True, False, True): "unknown class",
              (True, True, True): "MOON"}
# Each part's effect: (treated, reference); every pair differs in one switch but the last.
PART_EFFECTS = (("MOON's LR schedule", "baseline, MOON's LR", "baseline"),
                ("averaging", "averaging", "baseline, MOON's LR"),
                ("unknown class", "unknown class", "baseline, MOON's LR"),
                ("both (MOON)", "MOON", "baseline, MOON's LR"),
                ("MOON - baseline", "MOON", "baseline"))


# -- what a run is ----------------------------------------------------------------------------------
def train_images(frame: "pd.DataFrame") -> "pd.Series":
    """Training images of each run: ``max_train_samples``, or the dataset's whole training split."""
    from moon.data import train_split_size

    capped = numeric(frame, "max_train_samples").fillna(0)
    full = frame["dataset"].map(train_split_size).astype(float)
    return capped.where(capped > 0, full).astype(int)


@lru_cache(maxsize=None)
def maskable_weights(dataset: str, model: str, width: int = 0) -> int:
    """Weights of the maskable layers (every convolution and linear layer) of a model."""
    from moon.config import RunConfig
    from moon.sparse.masking import maskable_parameters
    from moon.models import model_for

    cfg = RunConfig(dataset=dataset, model=model, width=width, method="dense", density=1.0,
                    unknown_class=False)
    return sum(p.numel() for p in maskable_parameters(model_for(cfg)).values())


def with_regime_columns(frame: "pd.DataFrame") -> "pd.DataFrame":
    """``frame`` with ``train_images``, ``width`` (0 where a result predates the field) and
    ``active_per_image``: measured density x maskable weights / training images."""
    out = frame.assign(train_images=train_images(frame),
                       width=numeric(frame, "width").fillna(0).astype(int))
    total = [maskable_weights(d, m, w) for d, m, w in zip(out["dataset"], out["model"], out["width"])]
    density = numeric(out, "masks.density").fillna(out["density"].astype(float))
    return out.assign(active_per_image=density * np.asarray(total) / out["train_images"])


def lenet300_runs(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The runs of the MLP at its LeNet-300-100 widths (``width`` 0 or absent), the model of the
    data-size arm and of the map."""
    return frame[(frame["model"] == "mlp") & (numeric(frame, "width").fillna(0) == 0)]


def paper_active_per_image(sparsities=(0.9, 0.98)) -> tuple[float, float]:
    """The MOON setting on the map: ResNet-18 (CIFAR stem) on CIFAR-10's 50,000 training images at
    90% sparsity (the released code's README example) and an assumed 98% (the paper's own
    sparsities could not be read: reference/published.md, 1.2), in active weights per training image (from our ResNet-18)."""
    from moon.data import train_split_size

    total = maskable_weights("cifar10", "resnet18")
    # the paper trains on all 50,000 CIFAR-10 images (no validation split taken out)
    images = train_split_size("cifar10", validation=False)
    return tuple(sorted((1 - s) * total / images for s in sparsities))


# -- the points -------------------------------------------------------------------------------------
def regime_points(frames: Mapping[str, "pd.DataFrame"], metrics=MAP_METRICS,
                  level: float = 0.95) -> "pd.DataFrame":
    """One row per study, sparse setting (:data:`POINT_KEYS`), effect and metric: the premise
    (sparse - dense baseline, Welch) and MOON - baseline (paired by seed) with their intervals,
    and the setting's ``active_per_image`` and final ``train_accuracy`` (means over its baseline
    runs). ``frames`` maps a study's label to its results frame; the parts arm's extra variants
    (a baseline with MOON's LR schedule, one part alone) are in neither contrast."""
    import pandas as pd

    rows, keys = [], list(POINT_KEYS)
    # contrasts group by config fields (pairs keep those); max_train_samples stands for n
    fields = ["dataset", "max_train_samples", *keys[1:]]
    for study, frame in frames.items():
        data = with_regime_columns(frame)
        data["max_train_samples"] = numeric(data, "max_train_samples").fillna(0).astype(int)
        premise = sparsity_effect_frame(data, metrics, by=fields,
                                        match=("model", "epochs", *fields[:3]),
                                        level=level).assign(effect="premise")
        moon = paired_moon_frame(data, metrics, by=fields, level=level).assign(effect="moon")
        moon = moon[moon["method"] != "dense"]
        base = plain_baselines(data)
        where = base.groupby(fields)[["active_per_image", "train.accuracy"]].mean().reset_index()
        long = pd.concat([premise.drop(columns="n_base"), moon], ignore_index=True)
        long = long.merge(where, on=fields, how="left")
        rows.append(long.assign(study=study, train_images=train_images(long)))
    out = pd.concat(rows, ignore_index=True).rename(columns={"train.accuracy": "train_accuracy"})
    return out[["study", *keys, "active_per_image", "train_accuracy", "effect", "metric",
                *PAIRED_COLUMNS]]


def by_size(frame: "pd.DataFrame", metric: str = "train.accuracy",
            by=("model", "width", "method", "density", "moon")) -> "pd.DataFrame":
    """Mean and range over seeds of a per-run column at each training-set size: the regime
    chapter's per-n curves (training accuracy, fitted temperature, unknown-class mass)."""
    data = with_regime_columns(frame)
    data = data.assign(value=numeric(data, metric))
    if "lr_hold_epochs" in data:               # the parts arm's extra variants are not plotted
        data = data[data["lr_hold_epochs"].isna()]
    data = data.dropna(subset=["value"])
    groups = data.groupby(["train_images", *by], sort=True)["value"]
    return groups.agg(["mean", "min", "max", "count"]).reset_index()


# -- MOON's parts -----------------------------------------------------------------------------------
def part_label(config: Mapping[str, Any]) -> str | None:
    """The parts arm's name of a run (:data:`PART_NAMES`), or None for a run outside it (a run
    whose LR schedule matches neither the baseline's nor MOON's)."""
    unknown, averaging = bool(config.get("unknown_class")), bool(config.get("averaging"))
    hold = config.get("lr_hold_epochs")
    held = averaging or (hold is not None and not (isinstance(hold, float) and math.isnan(hold))
                         and int(hold) > 0)
    if unknown and not averaging and not held:
        return None
    return PART_NAMES.get((unknown, averaging, held))


def parts_frame(frame: "pd.DataFrame", metrics, level: float = 0.95) -> "pd.DataFrame":
    """Each part's effect (:data:`PART_EFFECTS`), paired by seed and every other RunConfig field:
    columns ``part, treated, reference, metric, mean_diff, low, high, ...``. The runs must be of
    one setting (model, method, density, training-set size)."""
    import pandas as pd

    data = frame.assign(part=frame.apply(part_label, axis=1)).dropna(subset=["part"])
    keys = config_keys(data, ("unknown_class", "averaging", "lr_hold_epochs"))
    rows = []
    for effect, treated, reference in PART_EFFECTS:
        t, r = data[data["part"] == treated], data[data["part"] == reference]
        if len(t) and len(r):
            matched = pairs(t, r, keys, list(metrics)).assign(part=effect)
            rows.append(paired_rows(matched, metrics, ["part"], level).assign(
                treated=treated, reference=reference))
    columns = ["part", "treated", "reference", "metric", *PAIRED_COLUMNS]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)


def setting_name(row: Mapping[str, Any]) -> str:
    """"MLP RigL 0.05, n = 5,000" (a wide MLP: "MLP-1024")."""
    model = model_name(row["model"]) + (f"-{int(row['width'])}" if int(row.get("width") or 0) else "")
    return (f"{model} {method_name(row['method'])} {float(row['density']):g}, "
            f"n = {int(row['train_images']):,}")


# -- the pilot's two decisions (declared in studies/regime.yaml before it ran) ------------------------
def pilot_decisions(pilot: "pd.DataFrame", fit: float = 0.99) -> dict[str, Any]:
    """The regime pilot's decisions, by the rules declared before it ran: (1) n = 2,500 joins
    the grid if a sparse MLP baseline at n = 5,000 ends below ``fit`` training accuracy; (2) the
    parts arm runs at the n whose RigL 0.05 baseline has the largest ECE gap over dense among the
    n where that baseline fits (final training accuracy >= ``fit``). Returns the decisions and
    the numbers they rest on (fractions)."""
    data = with_regime_columns(pilot)
    data = plain_baselines(data[data["model"] == "mlp"])
    sparse = data[data["method"] != "dense"]
    at_5000 = sparse[sparse["train_images"] == 5000]
    underfit = at_5000[at_5000["train.accuracy"] < fit]
    rigl = data[(data["method"] == "rigl") & np.isclose(data["density"].astype(float), 0.05)]
    dense = data[data["method"] == "dense"].groupby("train_images")["id.ece"].mean()
    gaps = {}
    for n, runs in rigl.groupby("train_images"):
        if n in dense.index:
            gaps[int(n)] = {"ece_gap": float(runs["id.ece"].mean() - dense[n]),
                            "train_accuracy": float(runs["train.accuracy"].mean())}
    fitting = {n: g for n, g in gaps.items() if g["train_accuracy"] >= fit}
    return {"add_2500": bool(len(underfit)),
            "underfit_at_5000": [(r.method, float(r.density), float(r["train.accuracy"]))
                                 for _, r in underfit.iterrows()],
            "rigl_gaps": gaps,
            "parts_n": max(fitting, key=lambda n: fitting[n]["ece_gap"]) if fitting else None}


# -- the answers in words ---------------------------------------------------------------------------
def _points(value: float) -> str:
    return f"{100 * value:+.1f}".replace("-", "−")


def _span(values) -> str:
    values = sorted(values)
    if not values:
        return ""
    low, high = _points(values[0]), _points(values[-1])
    return low if low == high else f"{low} to {high}"


def _sizes(sizes) -> str:
    sizes = [f"{int(n):,}" for n in sorted(sizes)]
    return sizes[0] if len(sizes) == 1 else ", ".join(sizes[:-1]) + f" and {sizes[-1]}"


def harmed_sizes(declared: "pd.DataFrame") -> list[int]:
    """The training-set sizes where sparse training hurts: the premise family has a comparison that
    survives Holm in the harmful direction (sparse ECE higher, or AUROC lower, than dense)."""
    from moon.report.frame import higher_is_better

    premise = declared[(declared["family"] == "premise") & declared["significant"]]
    worse = premise.apply(lambda r: (r["mean_diff"] < 0) == higher_is_better(r["metric"]), axis=1)
    return sorted(int(n) for n in premise.loc[worse, "max_train_samples"].unique()) if len(
        premise) else []


def conditional_verdict(declared: "pd.DataFrame", frame: "pd.DataFrame | None" = None) -> str:
    """The regime study's verdict in one sentence, from its declared families: where sparse
    training hurts (sizes, the sparse baselines' final training accuracy there when ``frame`` is
    given, and by how much), what MOON does to each declared metric there (range of the settings'
    mean differences in points, and how many survive Holm within their family)."""
    from moon.report.frame import metric_label

    harmed = harmed_sizes(declared)
    if not harmed:
        return ("In no training-set size of the regime study does a declared premise comparison "
                "survive Holm: sparse training did not measurably hurt there.")
    where = declared["max_train_samples"].isin(harmed)
    premise = declared[where & (declared["family"] == "premise")]
    hurt = "; ".join(f"{metric_label(m, short=True)} {_span(p['mean_diff'])}"
                     for m, p in premise.groupby("metric", sort=False))
    moon = declared[where & (declared["family"] == "moon")]
    parts = []
    for metric, part in moon.groupby("metric", sort=False):
        kept = int(part["significant"].sum())
        untested = int((~part["testable"].astype(bool)).sum()) if "testable" in part else 0
        mde = 100 * part["mde"].dropna() if "mde" in part else part.iloc[:0]
        # a null is read with the smallest change its seeds could have seen (design.md, 9)
        detect = (f"; detectable ±{mde.min():.1f} to ±{mde.max():.1f}"
                  if kept < len(part) and len(mde) else "")
        parts.append(f"{metric_label(metric, short=True)} by {_span(part['mean_diff'])} "
                     f"({kept} of {len(part)} survive Holm" + detect
                     + (f"; {untested} not testable yet" if untested else "") + ")")
    fit = ""
    if frame is not None and "train.accuracy" in frame.columns:
        base = plain_baselines(frame)
        cells = premise[["method", "density", "model"]].drop_duplicates()
        runs = base[base["max_train_samples"].isin(harmed)].merge(cells, on=["method", "density",
                                                                             "model"])
        acc = 100 * numeric(runs, "train.accuracy").dropna()
        if len(acc):
            fit = (f", where the sparse baselines fit {acc.min():.1f}-{acc.max():.1f}% of their "
                   "training images")
    return (f"Where sparse training hurts (n = {_sizes(harmed)} training images{fit}; sparse − "
            f"dense {hurt} points), MOON changes " + "; ".join(parts) + " points.")


def pilot_markdown(decided: dict) -> str:
    """The pilot's two decisions in words, with the numbers they rest on."""
    under = ", ".join(f"{method_name(m)} {d:g} at {100 * a:.1f}%" for m, d, a in
                      decided["underfit_at_5000"]) or "none"
    gaps = "; ".join(f"n = {n:,}: ECE gap {_points(g['ece_gap'])} points at "
                     f"{100 * g['train_accuracy']:.2f}% training accuracy"
                     for n, g in sorted(decided["rigl_gaps"].items()))
    parts = decided["parts_n"]
    return (f"**Pilot (one seed, reported as a pilot; its decisions were declared in "
            f"`studies/regime.yaml` before it ran).** Sparse MLP baselines below 99% training "
            f"accuracy at n = 5,000: {under}, so n = 2,500 "
            f"{'joins' if decided['add_2500'] else 'does not join'} the grid. RigL 0.05 "
            f"baseline minus dense: {gaps}; the parts arm runs at "
            + (f"n = {parts:,}." if parts else "no n (no RigL baseline fits)."))


# -- the capacity arm (a wider MLP on all 55,000 images) ----------------------------------------------
CAPACITY_METRICS = ("ood.near.msp.auroc", "ood.far.msp.auroc", "id.accuracy", "id.ece",
                    "id.ts_ece")
CAPACITY_CONTRASTS = ("sparse − dense", "MOON − baseline")


def capacity_frame(frame: "pd.DataFrame", metrics=CAPACITY_METRICS,
                   level: float = 0.95) -> "pd.DataFrame":
    """The capacity arm's comparisons, secondary as declared in ``studies/regime.yaml`` (95%
    intervals, no adjustment): per wide setting (``width`` > 0) the sparse baseline - the dense
    baseline of the same width and training-set size (Welch), and MOON - baseline paired by seed.
    Columns ``contrast, model, width, method, density, metric, mean_diff, low, high, ...``; empty
    where the arm has no pairs yet."""
    import pandas as pd

    wide = frame[numeric(frame, "width").fillna(0) > 0]
    by = ("model", "width", "method", "density")
    parts = []
    if wide["method"].eq("dense").any() and wide["method"].ne("dense").any():
        parts.append(sparsity_effect_frame(
            wide, metrics, by=by, match=("dataset", "model", "epochs", "width",
                                         "max_train_samples"), level=level
        ).assign(contrast=CAPACITY_CONTRASTS[0]))
    moon = paired_moon_frame(wide, metrics, by=by, level=level) if len(wide) else None
    if moon is not None and len(moon):
        parts.append(moon.assign(contrast=CAPACITY_CONTRASTS[1]))
    columns = ["contrast", *by, "metric", *PAIRED_COLUMNS]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def capacity_fit(frame: "pd.DataFrame", narrow: "pd.DataFrame | None" = None) -> "pd.DataFrame":
    """Final training accuracy (mean over seeds) of the baselines of the capacity arm and, from
    ``narrow`` (the paper-length study), of the LeNet-300-100 baselines of the same methods and
    densities on the same 55,000 images: does width let the sparse model fit its data?"""
    import pandas as pd

    rows = []
    wide = plain_baselines(frame[numeric(frame, "width").fillna(0) > 0])
    for (method, density), runs in wide.groupby(["method", "density"], sort=True):
        row = {"method": method, "density": float(density),
               "wide": float(numeric(runs, "train.accuracy").mean()), "wide_runs": len(runs)}
        if narrow is not None:
            base = plain_baselines(lenet300_runs(narrow))
            same = base[(base["method"] == method)
                        & np.isclose(base["density"].astype(float), float(density))]
            if "alpha_final" in same:
                same = same[same["alpha_final"].fillna(1.0) == 1.0]
            row.update(narrow=float(numeric(same, "train.accuracy").mean()) if len(same)
                       else math.nan, narrow_runs=len(same))
        rows.append(row)
    return pd.DataFrame(rows)


def capacity_verdict(long: "pd.DataFrame", fit: "pd.DataFrame", width: int = 1024) -> str:
    """The capacity arm in words: does the wider model fit, is the premise there (sparse −
    dense), and what MOON does, each as a 95% interval without adjustment (the arm is secondary)
    and a verdict per comparison (measurable or not)."""
    from moon.report.frame import metric_label

    if long.empty:
        return "*The capacity arm has no comparisons yet.*"
    def setting(method, density) -> str:
        return method_name(method) + ("" if method == "dense" else f" {float(density):g}")

    fits = "; ".join(
        f"{setting(r['method'], r['density'])} {100 * r['wide']:.1f}%"
        + (f" (LeNet-300-100: {100 * r['narrow']:.1f}%)" if math.isfinite(r.get("narrow", math.nan))
           else "") for r in fit.to_dict("records"))

    def said(part) -> str:
        out = []
        for r in part.to_dict("records"):
            interval = (f"[{_points(r['low'])}, {_points(r['high'])}]"
                        if math.isfinite(r["low"]) else "(no interval)")
            out.append(f"{metric_label(r['metric'], short=True)} {_points(r['mean_diff'])} "
                       f"{interval}" + ("" if r["excludes_zero"] else " (includes 0)"))
        return ", ".join(out)

    text = [f"**The capacity arm (secondary: 95% intervals, no adjustment; points).** At width "
            f"{width} on all 55,000 images the baselines end at training accuracy {fits}."]
    for contrast in CAPACITY_CONTRASTS:
        for (method, density), part in long[long["contrast"] == contrast].groupby(
                ["method", "density"], sort=True):
            measured = int(part["excludes_zero"].sum())
            text.append(f"{contrast}, {setting(method, density)} "
                        f"({int(part['n'].max())} {'pairs' if contrast.startswith('MOON') else 'runs'}): "
                        f"{said(part)}; {measured} of {len(part)} intervals exclude 0.")
    if not (long["contrast"] == CAPACITY_CONTRASTS[0]).any():
        text.append("Sparse − dense: no dense runs of this width yet.")
    return " ".join([capacity_answer(long, fit), *text])


def capacity_answer(long: "pd.DataFrame", fit: "pd.DataFrame", lead: str = "**Answer.**") -> str:
    """The capacity arm's answer first, from the same numbers: how far width brings the sparse
    baseline towards fitting its data, which half of the premise appears (a sparse − dense interval that
    excludes 0 on the worse side is *harmed*, on the better side *better*), and whether any
    MOON − baseline interval of a sparse setting excludes 0."""
    from moon.report.frame import higher_is_better, metric_label

    dense = fit.loc[fit["method"] == "dense", "wide"]
    words = []
    for r in fit[fit["method"] != "dense"].to_dict("records"):
        narrow = r.get("narrow", math.nan)
        words.append(f"width takes {method_name(r['method'])} {r['density']:g}'s training accuracy "
                     + (f"from {100 * narrow:.1f}% (LeNet-300-100) " if math.isfinite(narrow) else "")
                     + f"to {100 * r['wide']:.1f}%"
                     + (f" (dense of this width: {100 * dense.iloc[0]:.1f}%)" if len(dense) else ""))
    premise = long[long["contrast"] == CAPACITY_CONTRASTS[0]]
    if len(premise):
        harmed, better, unclear = [], [], []
        for r in premise.to_dict("records"):
            label = metric_label(r["metric"], short=True).replace(", MSP", " (MSP)")
            if not r["excludes_zero"]:
                unclear.append(label)
            elif (r["mean_diff"] > 0) == higher_is_better(r["metric"]):
                better.append(label)
            else:
                harmed.append(label)
        words.append("sparse is worse than dense in " + (", ".join(harmed) or "nothing measurable")
                     + (f", better in {', '.join(better)}" if better else "")
                     + (f", indistinguishable in {', '.join(unclear)}" if unclear else ""))
    moon = long[(long["contrast"] == CAPACITY_CONTRASTS[1]) & (long["method"] != "dense")]
    if len(moon):
        measured = int(moon["excludes_zero"].sum())
        words.append(f"MOON − baseline on the sparse model: {measured} of {len(moon)} intervals "
                     f"exclude 0 at {int(moon['n'].max())} seeds")
    text = "; ".join(words)
    return f"{lead} " + text[:1].upper() + text[1:] + "."
