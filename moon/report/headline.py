"""The study's answer for a reader's first minute, composed from result files: MOON − baseline
per setting (:func:`moon_effects`) and the verdict bullets (the declared family, the direction
across settings, the premise, calibration after temperature scaling), with their long text. The
claims table and the limitations are :mod:`moon.report.claims`'s, each chapter's closing paragraph
:mod:`moon.report.conclusions`'s.

Nothing here is typed by hand: every number comes from :mod:`moon.report.stats` over the runs'
``result.json`` files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from moon.report import stats
from moon.report.frame import (PRIMARY_METRICS, describe_runs, higher_is_better, metric_label,
                               model_name, setting_name, with_model)
from moon.report.tables import interval_table, interval_text, p_phrase, p_text, signed

if TYPE_CHECKING:
    import pandas as pd


def moon_effects(frame: "pd.DataFrame") -> "pd.DataFrame":
    """MOON - baseline in the four primary metrics per model, method and density (paired by
    seed): the numbers behind the headline figure, the verdict and the paper table."""
    return stats.paired_moon_frame(frame, metrics=PRIMARY_METRICS)


def headline_table(frame: "pd.DataFrame") -> "pd.DataFrame":
    """MOON - baseline per setting: "+1.2 [−0.3, +2.7] *" in percentage points for near/far MSP
    AUROC, accuracy and ECE, ``n`` pairs."""
    return interval_table(moon_effects(frame), with_model(frame, ["method", "density"]))


# -- the verdict ------------------------------------------------------------------------------------
def _effect_bullet(effects: "pd.DataFrame", metric: str) -> str | None:
    """One sentence, MOON - baseline being the subject of the page: in how many settings MOON
    made ``metric`` measurably higher and lower (95% interval excluding 0), the range of its
    changes, and the smallest change the seeds detect."""
    rows = effects[effects["metric"] == metric]
    if rows.empty:
        return None
    diffs, n = 100 * rows["mean_diff"], len(rows)
    name = metric_label(metric, short=True).removesuffix(", MSP")   # the verdict's score is MSP
    moved = rows["excludes_zero"] & (rows["mean_diff"] != 0)
    n_up, n_down = int((moved & (rows["mean_diff"] > 0)).sum()), int(
        (moved & (rows["mean_diff"] < 0)).sum())
    mde = 100 * rows["mde"].median()
    seen = (f"; unadjusted 95%, detectable ±{mde:.1f}" if math.isfinite(mde)
            else "; single runs, no intervals")
    span = f"{signed(diffs.min(), 1)} to {signed(diffs.max(), 1)} points"
    name = name[:1].upper() + name[1:]
    if n_up + n_down == 0:
        lead, span = f"{name}: no measurable change", f"{span} in {n} settings"
    else:
        first, second = ("higher", "lower") if n_up >= n_down else ("lower", "higher")
        counts = {"higher": n_up, "lower": n_down}
        lead = (f"{name}: measurably {first} in {counts[first]} of {n} settings, {second} in "
                + (str(counts[second]) if counts[second] else "none"))
    return f"**{lead}** ({span}{seen})."


def premise_counts(frame: "pd.DataFrame") -> tuple["pd.DataFrame", int, int]:
    """ECE sparse - dense per sparse setting, and in how many it is measurably worse (higher)
    and better (lower): the premise, for the verdict and for what we could not reproduce."""
    effect = stats.sparsity_effect_frame(frame, metrics=("id.ece",))
    moved = effect["excludes_zero"]
    return (effect, int((moved & (effect["mean_diff"] > 0)).sum()),
            int((moved & (effect["mean_diff"] < 0)).sum()))


def _metric_word(metric: str) -> str:
    return metric_label(metric, short=True).removesuffix(", MSP")


def _primary_bullet(long: "pd.DataFrame", family: str) -> str | None:
    """The declared primary family in one sentence: how many of its comparisons survive Holm, on
    which model (and which, by metric and direction), and that the others do not, with what was
    detectable."""
    if long.empty:
        return None
    kept = long[long["significant"]]
    models = sorted(long["model"].dropna().unique()) if "model" in long.columns else []
    on = f" on {' and '.join(model_name(m) for m in models)}" if models else ""
    head = f"**{family} ({len(long)} comparisons{on}, Holm): {len(kept)} survive"
    if len(kept):
        kinds = {(m, d > 0) for m, d in zip(kept["metric"], kept["mean_diff"])}
        if len(kinds) == 1:
            metric, up = next(iter(kinds))
            head += f", all {_metric_word(metric)} {'increases' if up else 'reductions'}"
        names = [setting_name({k: v for k, v in r.items() if k != "model" or len(models) > 1})
                 for r in kept.to_dict("records")]
        head += f"** ({', '.join(names)}: " \
                f"{signed(100 * kept['mean_diff'].min(), 1)} to " \
                f"{signed(100 * kept['mean_diff'].max(), 1)} points)"
    else:
        head += "**"
    others = [m for m in dict.fromkeys(long["metric"]) if m not in set(kept["metric"])]
    if others:
        mde = 100 * long[long["metric"].isin(others)]["mde"]
        words = [_metric_word(m) for m in others]
        words = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
        head += (f"; no {words} change survives "
                 f"(detectable ±{mde.min():.1f} to ±{mde.max():.1f})")
    return head + "."


def _consistency_bullet(effects: "pd.DataFrame", long: "pd.DataFrame",
                        metric: str = "ood.near.msp.auroc") -> str | None:
    """A consistent small effect (the same sign in most settings) reported as such, post hoc:
    in how many settings the point estimate has the majority sign, and in the primary cells."""
    rows = effects[effects["metric"] == metric]
    if rows.empty:
        return None
    neg = int((rows["mean_diff"] < 0).sum())
    lower = neg * 2 >= len(rows)
    count = neg if lower else len(rows) - neg
    from scipy.stats import binomtest

    prim = long[long["metric"] == metric] if len(long) else long
    same = int(((prim["mean_diff"] < 0) == lower).sum()) if len(prim) else 0
    moved = int((rows["excludes_zero"] & ((rows["mean_diff"] < 0) == lower)).sum())
    sign_p = binomtest(count, len(rows)).pvalue
    tail = (f"; {same} of {len(prim)} primary cells, {int(prim['significant'].sum())} surviving "
            "Holm" if len(prim) else "")
    word = _metric_word(metric)
    return (f"**{word[:1].upper() + word[1:]}: the estimate is {'lower' if lower else 'higher'} "
            f"in {count} of {len(rows)} settings** ({signed(100 * rows['mean_diff'].min(), 1)} to "
            f"{signed(100 * rows['mean_diff'].max(), 1)} points; the unadjusted 95% interval excludes 0 in "
            f"{moved}{tail}): a consistent small effect in direction, read post hoc (sign test "
            f"{p_phrase(sign_p)}).")


def premise_bullet(frame: "pd.DataFrame", premise: str = "id.ece",
                   others=("ood.near.msp.auroc", "ood.far.msp.auroc", "id.accuracy")) -> str | None:
    """The premise as the paper states it (sparse is worse calibrated: ``premise``), led by its
    own verdict, then the other metrics where plain sparse training may still be worse than dense:
    in how many sparse settings sparse was measurably worse and better (unadjusted 95%)."""
    metrics = [m for m in (premise, *others) if m in frame.columns]
    effect = stats.sparsity_effect_frame(frame, metrics=metrics)
    if effect.empty or premise not in set(effect["metric"]):
        return None
    counts = {}
    for metric, rows in effect.groupby("metric", sort=False):
        moved = rows["excludes_zero"]
        counts[metric] = (int((moved & ((rows["mean_diff"] > 0) != higher_is_better(metric))).sum()),
                          int((moved & ((rows["mean_diff"] > 0) == higher_is_better(metric))).sum()),
                          len(rows))
    worse, better, n = counts[premise]
    rest = {m: c for m, c in counts.items() if m != premise}
    lead = f"Premise: calibration half {_half(worse, better, n)}"
    if rest:
        halves = {_half(*c) for c in rest.values()}
        lead += (", accuracy and OOD half "
                 + (halves.pop() if len(halves) == 1 else
                    "partly held" if halves & {"held", "partly held"} else "not seen"))
    text = (f"**{lead}** (sparse − dense, {n} sparse settings, unadjusted 95%: "
            f"{'worse' if worse >= better else 'better'} calibrated in {max(worse, better)}")
    if rest:
        text += ("; worse in "
                 + ", ".join(f"{_metric_word(m)} in {w}" + ("" if k == n else f" of {k}")
                             + (f" (better in {b})" if b else "") for m, (w, b, k) in rest.items()))
    return text + ")."


def _half(worse: int, better: int, n: int) -> str:
    """One metric of the premise over ``n`` sparse settings: held where sparse is measurably
    worse than dense in most of them, partly held where in fewer but still more often than it
    is measurably better, failed where it is better more often, not seen where neither."""
    if better > worse:
        return "failed"
    if worse == better:
        return "not seen"
    return "held" if 2 * worse > n else "partly held"


def verdict(frame: "pd.DataFrame", endpoints: Mapping | None = None,
            family: str = "Declared primary family") -> list[str]:
    """3-5 one-sentence bullets, each led by the sign and size of an effect: the declared primary
    family with its Holm count (``endpoints``, a study file's section), a consistent near-OOD
    change (post hoc), far-OOD AUROC over all settings (unadjusted), the calibration gain as a
    temperature shift (post hoc), and which half of the premise held. Without ``endpoints``: the
    per-metric bullets over all settings. A null result carries the smallest detectable change."""
    effects = moon_effects(frame)
    if not endpoints or not endpoints.get("primary"):
        bullets = [_effect_bullet(effects, m) for m in PRIMARY_METRICS]
        return [b for b in bullets + [premise_bullet(frame)] if b]
    long = stats.primary_endpoints(frame, endpoints)
    far = _effect_bullet(effects, "ood.far.msp.auroc")
    bullets = [_primary_bullet(long, family), _consistency_bullet(effects, long), far,
               calibration_bullet(frame), premise_bullet(frame)]
    return [b for b in bullets if b]


def verdict_markdown(frame: "pd.DataFrame", planned: int | None = None, key: str = "",
                     endpoints: Mapping | None = None) -> str:
    """:func:`verdict` as a markdown list, preceded by what the numbers come from (and, while a
    study is still running, how many of its ``planned`` runs have finished) and, when given, a
    figure's ``key`` (the page shows the verdict right under the headline figure)."""
    runs = describe_runs(frame)
    if planned and len(frame) < planned:     # "LeNet-5 ..., 70 runs" -> "70 of 112 runs: ..."
        setting, _ = runs.rsplit(", ", 1)
        head = (f"*{len(frame)} of {planned} runs so far ({setting}); the study is still "
                "running and these bullets will change as the rest land.*")
    else:
        head = f"*From {runs}.*"
    if key:
        head = f"*{key}*\\\n" + head           # a hard line break
    return (head + "\n\n"
            + "\n".join(f"- {b}" for b in verdict(frame, endpoints)))


# -- the long text, for a collapsible block ---------------------------------------------------------
def headline_text(frame: "pd.DataFrame") -> str:
    """Per model and metric: what MOON changed in every setting, in words (the detail behind the
    verdict)."""
    effects = moon_effects(frame)
    lines = []
    for row in effects.to_dict("records"):
        p = f", {p_phrase(row['p_value'])}" if p_text(row["p_value"]) else ""
        lines.append(f"- {setting_name(row)}, {metric_label(row['metric'], short=True)}: "
                     f"{interval_text(row, 100)} points ({row['n']} pairs{p})")
    return "\n".join(lines)


def temperature_shift(frame: "pd.DataFrame") -> dict:
    """Is MOON's calibration gain a temperature shift? Per setting (paired by seed): MOON -
    baseline after temperature scaling (``id.ts_ece``), and the baseline with temperature scaling
    against MOON's raw ECE (``id.ts_ece`` of the baseline - ``id.ece`` of MOON; negative: the
    one-scalar fix of the baseline beats MOON)."""
    matched = stats.moon_pairs(frame, ["id.ece", "id.ts_ece"])
    by = with_model(frame, ["method", "density"])
    scaled = stats.paired_rows(matched, ["id.ts_ece"], by, 0.95)
    sparse = matched[matched["method"] != "dense"].assign(
        fix_t=matched["id.ts_ece_b"], fix_b=matched["id.ece_t"])
    fix = stats.paired_rows(sparse, ["fix"], by, 0.95)
    return {"scaled": scaled, "max_abs_scaled": float((100 * scaled["mean_diff"]).abs().max()),
            "fix": fix, "fix_wins": int((fix["mean_diff"] < 0).sum()), "fix_n": len(fix)}


def calibration_bullet(frame: "pd.DataFrame") -> str | None:
    """The calibration finding in one sentence: after temperature scaling MOON and its baseline
    are within a few tenths of a point, and the baseline + temperature scaling beats MOON's raw
    ECE in most sparse settings (a post-hoc reading, labelled so)."""
    if "id.ts_ece" not in frame.columns:
        return None
    shift = temperature_shift(frame)
    if shift["scaled"].empty:
        return None
    return (f"**MOON's ECE gain is a temperature shift** (post hoc): after temperature scaling, "
            f"MOON − baseline is within ±{shift['max_abs_scaled']:.2f} points in all "
            f"{len(shift['scaled'])} settings, and the baseline with temperature scaling has a "
            f"lower mean ECE than MOON without it in {shift['fix_wins']} of {shift['fix_n']} sparse "
            "settings.")
