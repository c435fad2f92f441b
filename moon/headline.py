"""The study's answer in words and one table, composed from result files (the book's intro).

Nothing here is typed by hand: every number comes from :func:`moon.compare.paired_moon_frame`
(MOON against its baseline on the same seeds) and :func:`moon.compare.sparsity_effect_frame`
(plain sparse training against dense), both computed from the runs' ``result.json`` files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moon.compare import (interval_text, paired_moon_frame, signed, sparsity_effect_frame,
                          with_model)

if TYPE_CHECKING:
    import pandas as pd

METRICS = {"ood.near.msp.auroc": "near-OOD AUROC", "ood.far.msp.auroc": "far-OOD AUROC",
           "id.accuracy": "accuracy", "id.ece": "ECE"}
BETTER_UP = {"ood.near.msp.auroc": True, "ood.far.msp.auroc": True, "id.accuracy": True,
             "id.ece": False}


def headline_table(frame: "pd.DataFrame") -> "pd.DataFrame":
    """MOON − baseline per base method and density (and model, when the runs span several):
    mean difference [95% interval] over seeds, in percentage points, for near/far MSP AUROC,
    accuracy and ECE; ``*`` where the interval excludes 0."""
    return _table(paired_moon_frame(frame, metrics=tuple(METRICS)),
                  with_model(frame, ["method", "density"]))


def sparsity_table(frame: "pd.DataFrame") -> "pd.DataFrame":
    """Plain sparse training − plain dense training per method and density (and model): mean
    difference [95% Welch interval] over seeds, in percentage points, for the same metrics;
    ``seeds`` is the number of sparse runs (the dense reference has as many)."""
    return _table(sparsity_effect_frame(frame, metrics=tuple(METRICS)),
                  with_model(frame, ["method", "density"]))


def _table(long: "pd.DataFrame", index: list[str]) -> "pd.DataFrame":
    long = long.assign(text=[_interval(r) for r in long.itertuples()])
    table = long.pivot_table(index=index, columns="metric", values="text", aggfunc="first")
    table = table[[m for m in METRICS if m in table.columns]].rename(columns=METRICS)
    table.columns.name = None
    return table.assign(seeds=long.groupby(index)["n"].max())


def _interval(row) -> str:
    return interval_text(row._asdict(), 100, 1)


def headline_text(frame: "pd.DataFrame") -> str:
    """One paragraph per model: what MOON changed, where it helped, hurt or did nothing
    measurable, and whether sparsity made plain sparse training less reliable than dense."""
    if "model" in frame.columns and frame["model"].nunique() > 1:
        return "\n\n".join(_paragraph(part) for _, part in frame.groupby("model", sort=True))
    return _paragraph(frame)


def _paragraph(frame: "pd.DataFrame") -> str:
    paired = paired_moon_frame(frame, metrics=tuple(METRICS))
    seeds = int(paired["n"].max()) if len(paired) else 0
    setup = _setup(frame, seeds)
    parts = [_moon_sentence(paired, metric, seeds) for metric in METRICS]
    return " ".join([setup] + [p for p in parts if p] + [_sparsity_sentence(frame)])


def _setup(frame: "pd.DataFrame", seeds: int) -> str:
    first = frame.iloc[0]
    cells = frame[frame["method"] != "dense"].groupby(["method", "density"]).ngroups
    samples = int(first.get("max_train_samples", 0) or 0)
    subset = f" on {samples:,} training images" if samples else ""
    return (f"**{first['model']}.** On the embedded benchmark ({first['model']} on "
            f"{first['dataset']}, {int(first['epochs'])} epochs per run{subset}, {len(frame)} "
            f"runs, {seeds} seed(s) per configuration), MOON was compared with its baseline in {cells} sparse "
            f"(method, density) settings and on the dense model.")


def _moon_sentence(paired: "pd.DataFrame", metric: str, seeds: int) -> str:
    rows = paired[paired["metric"] == metric]
    if rows.empty:
        return ""
    name, lo, hi = METRICS[metric], 100 * rows["mean_diff"].min(), 100 * rows["mean_diff"].max()
    text = f"MOON changed {name} by {signed(lo, 1)} to {signed(hi, 1)} points"
    if seeds < 2:
        return text + " (single runs: no intervals yet)."
    better = rows["mean_diff"] > 0 if BETTER_UP[metric] else rows["mean_diff"] < 0
    sig = rows["excludes_zero"]
    return (text + f"; counting only changes whose 95% interval over seeds excludes zero, it "
            f"{_better_word(metric)} {name} in {int((sig & better).sum())} and made it worse in "
            f"{int((sig & ~better).sum())} of {len(rows)} settings (no measurable change in "
            f"{int((~sig).sum())}).")


def _better_word(metric: str) -> str:
    return "improved" if BETTER_UP[metric] else "lowered (improved)"


def _sparsity_sentence(frame: "pd.DataFrame") -> str:
    """Plain sparse training against dense: at the lowest density per method, and how many
    (method, density) settings were measurably worse than dense in each metric."""
    effect = sparsity_effect_frame(frame, metrics=tuple(METRICS))
    if effect.empty:
        return ""
    density = effect["density"].min()
    clauses = []
    for method, rows in effect[effect["density"] == density].groupby("method"):
        numbers = ", ".join(f"{METRICS[r.metric]} {signed(100 * r.mean_diff, 1)}"
                            for r in rows.itertuples())
        clauses.append(f"{method}: {numbers} ({_verdict(rows)})")
    text = (f"Against dense training, plain sparse training at density {density:g} scored "
            f"(sparse − dense, points) " + "; ".join(clauses) + ".")
    if effect["n"].min() > 1 and effect["n_base"].min() > 1:
        settings = effect.groupby(["method", "density"]).ngroups
        counts = []
        for metric, rows in effect.groupby("metric", sort=False):
            worse = (rows["mean_diff"] < 0) if BETTER_UP[metric] else (rows["mean_diff"] > 0)
            counts.append(f"{METRICS[metric]} {int((worse & rows['excludes_zero']).sum())}")
        text += (f" Of all {settings} sparse settings, the number where plain sparse training was "
                 f"measurably worse than dense (95% interval excluding zero): "
                 + ", ".join(counts) + ".")
    return text


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
