"""What this shows: one closing paragraph per chapter (sweep, ablation, calibration and its
alpha sweep, post-hoc detectors, cost, regime, one run), each composed from the chapter's result
files with the numbers and the counts it rests on (and which family a count is adjusted over).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from moon.report import stats
from moon.report.claims import dice_minus_energy
from moon.report.frame import (BASELINE, DETECTOR_NAMES, metric_label, moon_label, numeric,
                               setting_name)
from moon.report.headline import calibration_bullet, verdict
from moon.report.tables import interval_text, ood_table, signed

if TYPE_CHECKING:
    import pandas as pd


# -- "what this shows": one closing paragraph per chapter -------------------------------------------
def _bold(text: str) -> str:
    return f"**What this shows.** {text[:1].upper()}{text[1:]}"


def sweep_conclusion(frame: "pd.DataFrame") -> str:
    """The sweep chapter's close: MOON's effect per metric and the premise, from :func:`verdict`."""
    return _bold("MOON against its baseline. " + " ".join(b.replace("**", "")
                                                           for b in verdict(frame)))


def ablation_conclusion(frame: "pd.DataFrame", metrics=("ood.near.msp.auroc",
                                                         "ood.far.msp.auroc", "id.ece")) -> str:
    """Which MOON part moved which metric against "none" (paired by seed), and which moved
    nothing measurable, with the smallest change the seeds could detect."""
    long = stats.ablation_frame(frame, metrics)
    if long.empty:
        return _bold("there are no ablation pairs in these results.")
    parts = []
    for metric in metrics:
        rows = long[long["metric"] == metric]
        moved = [f"{r['ablation']} {interval_text(r, 100)}" for r in rows.to_dict("records")
                 if r["excludes_zero"]]
        mde = 100 * rows["mde"].median()
        name = metric_label(metric, short=True)
        parts.append(f"{name}: " + ("; ".join(moved) if moved else
                                    "no part moved it measurably" + (
                                        f" (detectable: about ±{mde:.1f} points)"
                                        if math.isfinite(mde) and mde > 0 else "")))
    return _bold("Changes against no MOON part, points (only intervals excluding 0 are named). "
                 + ". ".join(parts) + ".")


def calibration_conclusion(frame: "pd.DataFrame") -> str:
    """MOON's ECE change, and what is left of it after temperature scaling."""
    effects = stats.paired_moon_frame(frame, metrics=[m for m in ("id.ece", "id.ts_ece")
                                                      if m in frame.columns])
    text = []
    for metric in ("id.ece", "id.ts_ece"):
        rows = effects[effects["metric"] == metric]
        if len(rows):
            lower = int((rows["excludes_zero"] & (rows["mean_diff"] < 0)).sum())
            higher = int((rows["excludes_zero"] & (rows["mean_diff"] > 0)).sum())
            mde = 100 * rows["mde"].median()
            seen = (f"; changes under about ±{mde:.1f} points could not be seen"
                    if math.isfinite(mde) and mde > 0 else "")
            text.append(f"{metric_label(metric, short=True)}: MOON − baseline "
                        f"{signed(100 * rows['mean_diff'].min(), 1)} to "
                        f"{signed(100 * rows['mean_diff'].max(), 1)} points, measurably lower in "
                        f"{lower} and higher in {higher} of {len(rows)} settings (unadjusted 95% "
                        f"intervals{seen})")
    temps = numeric(frame[frame["moon"] == BASELINE], "id.temperature")
    if temps.notna().any():
        text.append(f"the baselines' fitted temperatures range from {temps.min():.2f} to "
                    f"{temps.max():.2f} (above 1: over-confident)")
    close = _bold("; ".join(text) + ".")
    bullet = calibration_bullet(frame)
    return close + (" " + bullet.replace("**", "") if bullet else "")


def alpha_sweep_conclusion(sweep: "pd.DataFrame") -> str:
    """What ``alpha_final`` does (:func:`moon.report.stats.alpha_sweep_frame`): each metric's
    MOON - baseline at each alpha, in points."""
    if sweep.empty:
        return _bold("there are no alpha-sweep runs in these results.")
    parts, trends = [], []
    for metric, rows in sweep.groupby("metric", sort=False):
        rows = rows.sort_values("alpha_final")
        values = ", ".join(f"{signed(100 * r['mean_diff'], 1)} at α {r['alpha_final']:g}"
                           for r in rows.to_dict("records"))
        parts.append(f"{metric_label(metric, short=True)} {values}")
        steps = np.diff(rows["mean_diff"].to_numpy())
        ends = rows.iloc[[0, -1]]
        # a trend is named only where the two ends of the sweep differ measurably: the largest
        # alpha's interval lies wholly beyond the smallest one's estimate, and vice versa
        apart = (ends["high"].iloc[1] < ends["mean_diff"].iloc[0]
                 and ends["low"].iloc[0] > ends["mean_diff"].iloc[1]) or (
                 ends["low"].iloc[1] > ends["mean_diff"].iloc[0]
                 and ends["high"].iloc[0] < ends["mean_diff"].iloc[1])
        if len(steps) and apart and ((steps < 0).all() or (steps > 0).all()):
            trends.append(f"{metric_label(metric, short=True)} "
                          + ("falls" if (steps < 0).all() else "rises"))
    trend = (" As alpha grows, " + " and ".join(trends) + " (the ends of the sweep apart beyond "
             "each other's interval); the other metrics show no trend beyond their intervals."
             if trends else " No metric moves with alpha beyond its intervals.")
    return _bold("MOON − baseline by alpha_final (points): " + "; ".join(parts) + "." + trend)


def posthoc_conclusion(frame: "pd.DataFrame", kinds=("near", "far"),
                       by=("model", "method", "density")) -> str:
    """The best detector of each plain setting per OOD group (how many settings each detector
    wins, never one mean pooled over settings), its AUROC range against MSP's in the same
    settings, DICE against energy, and whether DICE adds to MOON."""
    from moon.report.frame import DETECTOR_NAMES

    plain = frame[frame["moon"] == BASELINE]
    by = [c for c in by if c in plain.columns]
    parts = []
    for kind in kinds:
        columns = {c: c.split(".")[2] for c in plain.columns
                   if c.startswith(f"ood.{kind}.") and c.endswith(".auroc")}
        if not columns or plain.empty:
            continue
        means = plain[by].join(plain[list(columns)].apply(lambda s: numeric(plain, s.name))) \
            .groupby(by, sort=True).mean().dropna(axis=1, how="all")
        if means.empty:
            continue
        best = means.idxmax(axis=1)
        wins = best.map(lambda c: DETECTOR_NAMES.get(columns[c], columns[c])).value_counts()
        top = [means.loc[i, c] for i, c in best.items()]
        msp = means.get(f"ood.{kind}.msp.auroc")
        parts.append(
            f"on {kind}-OOD the best detector of a plain setting was "
            + ", ".join(f"{name} in {count}" for name, count in wins.items())
            + f" of {len(means)} settings (its AUROC {100 * min(top):.1f}% to {100 * max(top):.1f}%"
            + (f"; MSP {100 * msp.min():.1f}% to {100 * msp.max():.1f}% in the same settings"
               if msp is not None else "") + ")")
    parts.append(dice_minus_energy(frame, None))
    return _bold("; ".join(parts) + ". " + dice_moon_answer(frame))


def dice_moon_answer(frame: "pd.DataFrame", kinds=("near", "far")) -> str:
    """Does DICE add to MOON? The interaction (DICE's gain over energy on a MOON run minus its
    gain on the paired baseline run), per setting: in how many it is measurably positive or
    negative (unadjusted 95% intervals), the range in points and the smallest interaction the
    seeds could detect. An interaction near 0 means the two add up: DICE changes a MOON run by
    what it changes the baseline, whatever the sign of that change."""
    gains = stats.posthoc_gain_frame(frame, kinds=kinds)
    inter = gains[gains["moon"] == stats.INTERACTION].dropna(subset=["mean_diff"])
    if inter.empty:
        return "Whether DICE adds to MOON: no MOON-baseline pairs."
    up = int((inter["excludes_zero"] & (inter["mean_diff"] > 0)).sum())
    down = int((inter["excludes_zero"] & (inter["mean_diff"] < 0)).sum())
    alone = gains[gains["moon"] == BASELINE].dropna(subset=["mean_diff"])
    loses = int((alone["excludes_zero"] & (alone["mean_diff"] < 0)).sum())
    helps = int((alone["excludes_zero"] & (alone["mean_diff"] > 0)).sum())
    if 2 * (up + down) < len(inter):
        answer = ("their effects add up, as far as the seeds can tell: DICE changes a MOON run's "
                  "AUROC by about what it changes its baseline's")
        if len(alone):
            answer += (f" (on a baseline, DICE − energy is measurably positive in {helps} and "
                       f"negative in {loses} of {len(alone)} setting x group cells)")
    else:
        answer = "DICE adds more on MOON runs" if up > down else "DICE adds less on MOON runs"
    mde = 100 * inter["mde"].median() if "mde" in inter else math.nan
    seen = (f"; interactions under about ±{mde:.1f} points could not be seen"
            if math.isfinite(mde) else "")
    return (f"**Does DICE add to MOON?** {answer[:1].upper() + answer[1:]}. The interaction (DICE's gain over energy on a "
            f"MOON run minus that on the paired baseline) is "
            f"{signed(100 * inter['mean_diff'].min(), 1)} to "
            f"{signed(100 * inter['mean_diff'].max(), 1)} points, measurably positive in {up} and "
            f"negative in {down} of {len(inter)} setting x group cells (unadjusted 95% "
            f"intervals{seen}).")


def cost_conclusion(frame: "pd.DataFrame", inference: dict | None = None) -> str:
    """MOON's training-time ratio, and the measured inference speed-up against the FLOP ratio."""
    costs = stats.cost_frame(frame)
    ratios = costs["moon_time_ratio"].dropna()
    text = [f"MOON trained in {ratios.min():.2f}x to {ratios.max():.2f}x its baseline's time"
            if len(ratios) else "no MOON/baseline pairs to time"]
    timed = costs.dropna(subset=["moon_time_ratio"])
    if len(timed):
        dearer = timed[timed["moon_time_low"] > 1]
        text.append("does MOON cost extra training time? "
                    + ("Not measurably in any setting" if dearer.empty else
                       f"Yes in {len(dearer)} of {len(timed)} settings, whose unadjusted 95% "
                       "interval of the time ratio lies above 1 ("
                       + ", ".join(f"{setting_name(dict(zip(costs.index.names, idx)))} "
                                   f"{r['moon_time_ratio']:.2f} [{r['moon_time_low']:.2f}, "
                                   f"{r['moon_time_high']:.2f}]"
                                   for idx, r in dearer.iterrows()) + ")"))
        text.append("against the paper: the text available to this project states no training-"
                    "cost figure for MOON, so there is no published number to reproduce; MOON "
                    "adds one output unit, its loss weights and a running weight average, work "
                    "that is small beside the forward and backward passes")
        shas = {s for s in frame.get("provenance.git_sha", []) if isinstance(s, str)}
        threads = sorted({int(t) for t in numeric(frame, "provenance.num_threads").dropna()}
                         if "provenance.num_threads" in frame else [])
        confounds = [f"the runs were timed on {'/'.join(map(str, threads)) or 'an unrecorded number of'} "
                     "thread(s) of a shared CPU whose load the result files do not record",
                     "a MOON run and its baseline ran at different times"]
        if len(shas) > 1:
            confounds.append(f"the runs come from {len(shas)} commits")
        floor = ratios.min()
        text.append("confounds: " + ", ".join(confounds)
                    + (f"; MOON can only add work, so a ratio as low as {floor:.2f}x shows how "
                       "much these conditions move a timing" if floor < 1 else ""))
    if inference:
        for row in inference["rows"]:
            if (row["model"], row["threads"], row["batch"], row["density"]) == ("mlp", 1, 512, 0.02):
                text.append(f"at density 0.02 the sparse MLP ran {row['speedup']:.1f}x faster than "
                            f"dense at batch 512 on one thread, against a FLOP ratio of 50x "
                            f"({row['speedup'] / 50:.0%} of it): kernel overheads, not "
                            "arithmetic, bound these small layers")
    return _bold("; ".join(text) + ".")


def regime_conclusion(answers: dict, link: dict | None = None) -> str:
    """The regime verdict (:func:`moon.report.regime.verdict`) and the regime contrast in words."""
    acc = answers["dense_train_acc"]
    temps = answers["dense_temperature"]
    errors = answers["train_error_at_alpha_half"]
    text = [
        (f"the dense baseline {'fits' if answers['fits'] else 'does not fit'} its training data "
         f"(final training accuracy {100 * min(acc):.2f}-{100 * max(acc):.2f}%)" if acc else
         "no dense baseline runs"),
        (f"it is {'over-confident' if answers['overconfident'] else 'not over-confident'} "
         f"(fitted temperature {min(temps):.2f}-{max(temps):.2f})" if temps else ""),
        (f"the premise (sparse worse calibrated than dense) holds in "
         f"{100 * answers['premise_share']:.0f}% of sparse baseline runs (mean ECE gap "
         f"{signed(100 * answers['premise_mean_diff'], 1)} points)"
         if math.isfinite(answers["premise_share"]) else ""),
        (f"when alpha reaches 0.5, MOON runs' training error is {100 * min(errors):.1f}-"
         f"{100 * max(errors):.1f}%" if errors else ""),
    ]
    close = _bold("; ".join(t for t in text if t) + ".")
    if link and link.get("n", 0) >= 4:
        close += " " + temperature_link_text(link)
    return close


def _r_text(c: dict) -> str:
    return (f"r = {signed(c['r'], 2)} [{signed(c['low'], 2)}, {signed(c['high'], 2)}] "
            f"({c['n']} pairs; predicted sign in {100 * c['predicted_share']:.0f}%)")


def temperature_link_text(link: dict) -> str:
    """The regime contrast in words: the prediction, each study's own correlation, and the pooled
    one only beside them, read as it should be (Simpson: a pooled r whose sign no study shares
    measures the difference between the studies)."""
    per = link.get("by_study", {})
    parts = "; ".join(f"{study}: {_r_text(c)}" for study, c in per.items())
    text = ("**The regime contrast.** Prediction: MOON lowers ECE where its baseline is "
            "over-confident (fitted temperature above 1) and raises it where it is not, so MOON's "
            "ECE change falls as the baseline's temperature rises (r < 0). Within each study: "
            f"{parts}.")
    signs = {c["r"] > 0 for c in per.values() if math.isfinite(c["r"])}
    pooled = f"Pooled over the studies, {_r_text(link)}"
    if len(signs) > 1:
        text += " The studies disagree in sign, so the prediction is not supported consistently."
    elif signs:
        text += (" The prediction is " + ("supported" if signs == {False} else "not supported")
                 + " in every study.")
    within = {study: c for study, c in link.get("within_setting", {}).items()
              if math.isfinite(c["r"])}
    if within:
        text += (" Each study's r pools its settings, which differ in temperature and in MOON's "
                 "effect at once; within settings (pairs centred on their setting's means): "
                 + "; ".join(f"{study}: r = {signed(c['r'], 2)} [{signed(c['low'], 2)}, "
                             f"{signed(c['high'], 2)}] ({c['n']} pairs in {c['settings']} "
                             "settings)" for study, c in within.items())
                 + ". A negative r within a setting is what the prediction expects, but also what "
                 "the baseline's own seed-to-seed noise produces (a seed whose baseline happens to "
                 "be worse calibrated has a higher temperature and, its ECE entering the change "
                 "with a minus sign, a more negative change), so it is no evidence for the "
                 "prediction either.")
    if math.isfinite(link["r"]) and ((link["r"] > 0) not in signs or len(signs) > 1):
        return (text + f" {pooled}: a number that mixes the schedules and takes a sign not every "
                "study shares (Simpson's paradox), so it is no evidence about over-confidence.")
    return text + f" {pooled}."


def run_conclusion(result) -> str:
    """One run's close: its accuracy and calibration, and the best detector per OOD group
    against MSP (from the run's ``result.json``)."""
    cfg, ident = result.config, result.id
    table = ood_table(result, "auroc")
    setting = setting_name({"method": cfg["method"], "density": cfg["density"]})
    parts = [f"this run ({setting}, {moon_label(cfg)}, {cfg['model']}, {cfg['epochs']} epochs) "
             f"reached "
             f"{100 * ident['accuracy']:.1f}% accuracy with ECE {100 * ident['ece']:.1f}%"
             + (f" (fitted temperature {ident['temperature']:.2f})" if "temperature" in ident
                else "")]
    for group in ("near", "far", "noise"):
        column = f"{group} mean"
        if column in table.columns and table[column].notna().any():
            best = table[column].idxmax()
            parts.append(f"on {group}-OOD the best detector was {DETECTOR_NAMES.get(best, best)} "
                         f"({table.loc[best, column]:.1f}% AUROC; MSP {table.loc['msp', column]:.1f}%)"
                         if "msp" in table.index else "")
    return _bold("; ".join(p for p in parts if p) + ".")
