"""The study's answer in words and one table, composed from result files (the book's intro).

Nothing here is typed by hand: every number comes from :func:`moon.compare.paired_moon_frame`
(MOON against its baseline on the same seeds) and :func:`moon.compare.sparsity_effect_frame`
(plain sparse training against dense), both computed from the runs' ``result.json`` files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moon.compare import paired_moon_frame, sparsity_effect_frame

if TYPE_CHECKING:
    import pandas as pd

METRICS = {"ood.near.msp.auroc": "near-OOD AUROC", "ood.far.msp.auroc": "far-OOD AUROC",
           "id.accuracy": "accuracy", "id.ece": "ECE"}
BETTER_UP = {"ood.near.msp.auroc": True, "ood.far.msp.auroc": True, "id.accuracy": True,
             "id.ece": False}


def headline_table(frame: "pd.DataFrame") -> "pd.DataFrame":
    """MOON − baseline per base method and density: mean difference [95% interval] over seeds, in
    percentage points, for near/far MSP AUROC, accuracy and ECE; ``*`` where the interval
    excludes 0."""
    paired = paired_moon_frame(frame, metrics=tuple(METRICS))
    paired = paired.assign(text=[_interval(r) for r in paired.itertuples()])
    table = paired.pivot_table(index=["method", "density"], columns="metric", values="text",
                               aggfunc="first")
    table = table[[m for m in METRICS if m in table.columns]].rename(columns=METRICS)
    seeds = paired.groupby(["method", "density"])["n"].max()
    return table.assign(seeds=seeds)


def _interval(row) -> str:
    if row.n < 2:
        return f"{100 * row.mean_diff:+.1f}"
    mark = " *" if row.excludes_zero else ""
    return f"{100 * row.mean_diff:+.1f} [{100 * row.low:+.1f}, {100 * row.high:+.1f}]{mark}"


def headline_text(frame: "pd.DataFrame") -> str:
    """One paragraph: what MOON changed, where it helped, hurt or did nothing measurable, and
    whether sparsity made plain sparse training less reliable than dense."""
    paired = paired_moon_frame(frame, metrics=tuple(METRICS))
    seeds = int(paired["n"].max()) if len(paired) else 0
    setup = _setup(frame, seeds)
    parts = [_moon_sentence(paired, metric, seeds) for metric in METRICS]
    return " ".join([setup] + [p for p in parts if p] + [_sparsity_sentence(frame)])


def _setup(frame: "pd.DataFrame", seeds: int) -> str:
    first = frame.iloc[0]
    cells = frame[frame["method"] != "dense"].groupby(["method", "density"]).ngroups
    return (f"On the embedded benchmark ({first['model']} on {first['dataset']}, "
            f"{int(first['epochs'])} epochs per run, {len(frame)} runs, {seeds} seed(s) per "
            f"configuration), MOON was compared with its baseline in {cells} sparse "
            f"(method, density) settings and on the dense model.")


def _moon_sentence(paired: "pd.DataFrame", metric: str, seeds: int) -> str:
    rows = paired[paired["metric"] == metric]
    if rows.empty:
        return ""
    name, lo, hi = METRICS[metric], 100 * rows["mean_diff"].min(), 100 * rows["mean_diff"].max()
    text = f"MOON changed {name} by {lo:+.1f} to {hi:+.1f} points"
    if seeds < 2:
        return text + " (single runs: no intervals yet)."
    better = rows["mean_diff"] > 0 if BETTER_UP[metric] else rows["mean_diff"] < 0
    sig = rows["excludes_zero"]
    return (text + f"; the 95% interval over seeds excluded zero for {int((sig & better).sum())} "
            f"improvements and {int((sig & ~better).sum())} deteriorations of {len(rows)} settings, "
            f"and {int((~sig).sum())} showed no measurable change.")


def _sparsity_sentence(frame: "pd.DataFrame") -> str:
    """Plain sparse training against dense at the lowest density, per method."""
    effect = sparsity_effect_frame(frame, metrics=tuple(METRICS))
    if effect.empty:
        return ""
    density = effect["density"].min()
    clauses = []
    for method, rows in effect[effect["density"] == density].groupby("method"):
        numbers = ", ".join(f"{METRICS[r.metric]} {100 * r.mean_diff:+.1f}" for r in rows.itertuples())
        clauses.append(f"{method}: {numbers} ({_verdict(rows)})")
    return (f"Against dense training, plain sparse training at density {density:g} scored "
            f"(sparse − dense, points) " + "; ".join(clauses) + ".")


def _verdict(rows: "pd.DataFrame") -> str:
    """Where the sparse runs were worse than dense; with seeds, only where the interval excludes 0."""
    seeds = rows["n"].min() > 1 and rows["n_base"].min() > 1
    worse = [METRICS[r.metric] for r in rows.itertuples()
             if (r.mean_diff < 0) == BETTER_UP[r.metric] and r.mean_diff != 0
             and (r.excludes_zero or not seeds)]
    if not worse:
        return "not measurably less reliable" if seeds else "not worse in these single runs"
    return ("less reliable in " if seeds else "worse in these single runs in ") + ", ".join(worse)


def study_frame(study: str, folder, preset: str | None) -> "pd.DataFrame | None":
    """The results frame of a study's complete runs in ``folder``, or None if there are none."""
    from moon.report import results_frame
    from moon.study import collect

    results = collect(study, folder, preset=preset)
    return results_frame(results) if results else None
