"""The study's answer for a reader's first minute, composed from result files: the verdict
bullets, the table of published claims beside our measured answers, and the limitations.

Nothing here is typed by hand: every number comes from :mod:`moon.report.stats` over the runs'
``result.json`` files, and every published number from the cited data file
``book/data/published.yaml``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable

import numpy as np

from moon.report import stats
from moon.report.frame import (BASELINE, DETECTOR_NAMES, PRIMARY_METRICS, describe_runs, flag,
                               higher_is_better, method_name, metric_label, model_name,
                               moon_label, numeric, with_model)
from moon.report.tables import interval_table, interval_text, ood_table, p_text, signed

if TYPE_CHECKING:
    import pandas as pd

PUBLISHED = Path(__file__).resolve().parents[2] / "book" / "data" / "published.yaml"


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


def _premise_counts(frame: "pd.DataFrame") -> tuple["pd.DataFrame", int, int]:
    """ECE sparse - dense per sparse setting, and in how many it is measurably worse (higher)
    and better (lower): the premise, for the verdict and for what we could not reproduce."""
    effect = stats.sparsity_effect_frame(frame, metrics=("id.ece",))
    moved = effect["excludes_zero"]
    return (effect, int((moved & (effect["mean_diff"] > 0)).sum()),
            int((moved & (effect["mean_diff"] < 0)).sum()))


def _metric_word(metric: str) -> str:
    return metric_label(metric, short=True).removesuffix(", MSP")


def _primary_bullet(long: "pd.DataFrame", family: str) -> str | None:
    """The declared primary family in one sentence: how many of its comparisons survive Holm
    (and which, by metric and direction), and that the others do not, with what was detectable."""
    if long.empty:
        return None
    kept = long[long["significant"]]
    head = f"**{family} ({len(long)} comparisons, Holm): {len(kept)} survive"
    if len(kept):
        kinds = {(m, d > 0) for m, d in zip(kept["metric"], kept["mean_diff"])}
        if len(kinds) == 1:
            metric, up = next(iter(kinds))
            head += f", all {_metric_word(metric)} {'increases' if up else 'reductions'}"
        head += f"** ({', '.join(_setting(r) for r in kept.to_dict('records'))}: " \
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


# -- the paper beside this study -------------------------------------------------------------------
def _best_auroc(frame, effects):
    rows = effects[effects["metric"].isin(["ood.near.msp.auroc", "ood.far.msp.auroc"])
                   & (effects["method"] != "dense")]        # the claim is about sparse training
    if rows.empty:
        return "no sparse MOON-baseline pairs"
    best = rows.loc[rows["mean_diff"].idxmax()]
    group = best["metric"].split(".")[1]
    up = int((rows["excludes_zero"] & (rows["mean_diff"] > 0)).sum())
    return (f"best {interval_text(best, 100)} ({group}, {_setting(best)}); "
            f"higher in {up} of {len(rows)}")


def _range(metric: str) -> Callable:
    def measure(frame, effects):
        rows = effects[effects["metric"] == metric]
        if rows.empty:
            return "no MOON-baseline pairs"
        worse = rows["excludes_zero"] & ((rows["mean_diff"] > 0) != higher_is_better(metric))
        mde = 100 * rows["mde"].dropna()
        seen = (f" (no equivalence test: detectable ±{mde.min():.1f} to ±{mde.max():.1f})"
                if len(mde) else "")
        return (f"{signed(100 * rows['mean_diff'].min(), 1)} to "
                f"{signed(100 * rows['mean_diff'].max(), 1)}; worse in "
                f"{int(worse.sum())} of {len(rows)}{seen}")
    return measure


def _setting(row) -> str:
    model = (f"{model_name(row['model'])} " if "model" in row
             and isinstance(row.get("model"), str) else "")
    return model + ("dense" if row["method"] == "dense"
                    else f"{method_name(row['method'])} {float(row['density']):g}")


def _between(metric: str, method: str, base: str, density: float = 0.05,
             label: str = "") -> Callable:
    def measure(frame, effects):
        rows = stats.method_contrast(frame, [metric], method, base, density)
        parts = [f"{model_name(row['model'])} {interval_text(row, 100)}"
                 for row in rows.to_dict("records")]
        name = f"{method_name(method)} {density:g} − {method_name(base)}" + (
            "" if base == "dense" else f" {density:g}") + (f", {label}" if label else "")
        return f"{name}: " + ", ".join(parts) if parts else "not in this study"
    return measure


def _dice_energy(frame, effects, density: float = 0.05):
    gains = stats.posthoc_gain_frame(frame, kinds=("near",), by=("model", "method", "density"))
    gains = gains[(gains["moon"] == BASELINE) & ((gains["method"] == "dense")
                                                 | np.isclose(gains["density"].astype(float),
                                                              density))]
    parts = [f"{_setting(row)}: {interval_text(row, 100)}"
             for row in gains.to_dict("records") if math.isfinite(row["mean_diff"])]
    return "near-OOD AUROC, DICE − energy: " + "; ".join(parts) if parts else "not in this study"


# -- a verdict per claim: reproduced / partly / not reproduced / not testable here -------------------
REPRODUCED, PARTLY, NOT, UNTESTABLE = "reproduced", "partly", "not reproduced", "not testable here"


def _by_count(good: int, bad: int, n: int) -> str:
    """All of ``n`` settings agree with the claim: reproduced; some: partly; none: not."""
    if n == 0:
        return UNTESTABLE
    return REPRODUCED if good == n else (PARTLY if good > 0 and bad < n else NOT)


def _gain_verdict(frame, effects, value: float | None = None):
    rows = effects[effects["metric"].isin(["ood.near.msp.auroc", "ood.far.msp.auroc"])
                   & (effects["method"] != "dense")]
    if rows.empty:
        return UNTESTABLE
    up = rows[rows["excludes_zero"] & (rows["mean_diff"] > 0)]
    if up.empty:
        return NOT
    return REPRODUCED if value is not None and 100 * up["low"].max() >= value / 2 else PARTLY


def _kept_verdict(metric: str) -> Callable:
    """"Comparable or higher": reproduced where no setting is measurably worse."""
    def verdict(frame, effects, value=None):
        rows = effects[effects["metric"] == metric]
        worse = rows["excludes_zero"] & ((rows["mean_diff"] > 0) != higher_is_better(metric))
        return _by_count(len(rows) - int(worse.sum()), int(worse.sum()), len(rows))
    return verdict


def _sign_verdict(metric: str, method: str, base: str, sign: int, density: float = 0.05) -> Callable:
    """A published difference of sign ``sign``: reproduced where every model's interval excludes 0
    on that side, partly where some does."""
    def verdict(frame, effects, value=None):
        rows = stats.method_contrast(frame, [metric], method, base, density)
        good = int((rows["excludes_zero"] & (np.sign(rows["mean_diff"]) == sign)).sum())
        bad = int((rows["excludes_zero"] & (np.sign(rows["mean_diff"]) == -sign)).sum())
        return _by_count(good, bad, len(rows))
    return verdict


def _dice_verdict(frame, effects, value=None, density: float = 0.05):
    gains = stats.posthoc_gain_frame(frame, kinds=("near",), by=("model", "method", "density"))
    gains = gains[(gains["moon"] == BASELINE) & ((gains["method"] == "dense")
                                                 | np.isclose(gains["density"].astype(float), density))]
    good = int((gains["excludes_zero"] & (gains["mean_diff"] < 0)).sum())
    bad = int((gains["excludes_zero"] & (gains["mean_diff"] > 0)).sum())
    return _by_count(good, bad, len(gains))


VERDICTS: dict[str, Callable] = {
    "moon_best_auroc": _gain_verdict, "moon_accuracy": _kept_verdict("id.accuracy"),
    "moon_ece": _kept_verdict("id.ece"),
    "sparse_minus_dense_ece": _sign_verdict("id.ece", "rigl", "dense", +1),
    "cigl_minus_rigl_ece": _sign_verdict("id.ece", "cigl", "rigl", -1),
    "cigl_minus_rigl_accuracy": _sign_verdict("id.accuracy", "cigl", "rigl", +1),
    "dice_minus_energy_near": _dice_verdict,
}


MEASURES: dict[str, Callable] = {
    "moon_best_auroc": _best_auroc, "moon_accuracy": _range("id.accuracy"),
    "moon_ece": _range("id.ece"),
    "sparse_minus_dense_ece": lambda frame, effects: "; ".join(
        measure(frame, effects) for measure in (
            _between("id.ece", "rigl", "dense"),
            _between("ood.near.msp.auroc", "rigl", "dense", label="near-OOD AUROC"),
            _between("id.accuracy", "rigl", "dense", label="accuracy"))),
    "cigl_minus_rigl_ece": _between("id.ece", "cigl", "rigl"),
    "cigl_minus_rigl_accuracy": _between("id.accuracy", "cigl", "rigl"),
    "dice_minus_energy_near": _dice_energy,
}


def published_claims(path: str | Path = PUBLISHED, group: str | None = None) -> list[dict]:
    """The claims of the cited data file (``book/data/published.yaml``), those of ``group``
    ("moon": the MOON paper's claims and premise; "related": CigL's and DICE's) when given."""
    import yaml

    claims = yaml.safe_load(Path(path).read_text())["claims"]
    unknown = [c["measure"] for c in claims if c["measure"] not in MEASURES]
    if unknown:
        raise ValueError(f"{path}: unknown measure(s) {unknown}; known: {', '.join(MEASURES)}")
    groups = {c.get("group") for c in claims}
    if group is not None and group not in groups:
        raise ValueError(f"{path}: no claims of group {group!r}; groups: {sorted(map(str, groups))}")
    return [c for c in claims if group is None or c.get("group") == group]


def paper_vs_ours(frame: "pd.DataFrame", path: str | Path = PUBLISHED,
                  group: str | None = None) -> "pd.DataFrame":
    """Each published claim (of ``group``, see :func:`published_claims`) beside this study's
    measured answer, in percentage points with 95% intervals (" *" where the interval excludes
    0), its verdict (:data:`VERDICTS`: reproduced / partly / not reproduced / not testable here,
    from unadjusted 95% intervals over every setting) and the short citation of the published number (:func:`sources_markdown` gives the full
    ones)."""
    import pandas as pd

    effects = moon_effects(frame)
    rows = [{"claim": c["claim"], "published": c["published"],
             "this study": MEASURES[c["measure"]](frame, effects),
             "verdict": VERDICTS[c["measure"]](frame, effects, c.get("value")), "source": c["cite"]}
            for c in published_claims(path, group)]
    table = pd.DataFrame(rows).set_index("claim")
    table.columns.name, table.index.name = "claim", None    # one header row on the page
    return table


def sources_markdown(path: str | Path = PUBLISHED, group: str | None = None) -> str:
    """The full source of each short citation of :func:`paper_vs_ours` (and the published
    numbers in full where the table abbreviates them), as a markdown list."""
    sources: dict[str, list[str]] = {}
    for c in published_claims(path, group):
        entry = sources.setdefault(c["cite"], [c["source"]])
        if c.get("detail"):
            entry.append(c["detail"])
    return "\n".join(f"- **{cite}**: " + "; ".join(parts) for cite, parts in sources.items())


# -- what we could not reproduce --------------------------------------------------------------------
def _published_value(claim_id: str, path: str | Path = PUBLISHED) -> float | None:
    claim = next((c for c in published_claims(path) if c["id"] == claim_id), None)
    return None if claim is None or claim.get("value") is None else float(claim["value"])


def map_references(path: str | Path = PUBLISHED) -> dict:
    """The published values the regime map draws as reference lines, keyed (effect, metric) as
    :func:`moon.report.regime_figures.regime_map_figure` reads them: the premise's ECE gap and
    MOON's AUROC gain (both panels, near and far: the abstract does not say which OOD sets)."""
    premise, gain = _published_value("sparse-overconfident", path), _published_value("moon-auroc", path)
    refs = {("premise", "id.ece"): premise}
    refs.update({("moon", f"ood.{kind}.msp.auroc"): gain for kind in ("near", "far")})
    return {k: v for k, v in refs.items() if v is not None}


def not_reproduced(frame: "pd.DataFrame", path: str | Path = PUBLISHED) -> list[str]:
    """The published results this study did not reproduce, each with our number and the
    measurement that explains it: MOON's AUROC gain (and how little probability the unknown class
    holds at the end of training), and the premise (and the baselines' fitted temperatures). A
    claim that did reproduce gets no bullet."""
    import pandas as pd

    effects, bullets = moon_effects(frame), []
    sparse = effects[effects["metric"].isin(["ood.near.msp.auroc", "ood.far.msp.auroc"])
                     & (effects["method"] != "dense")]
    gain = _published_value("moon-auroc", path)
    up = int((sparse["excludes_zero"] & (sparse["mean_diff"] > 0)).sum())
    if len(sparse) and up == 0 and gain is not None:
        best = sparse.loc[sparse["mean_diff"].idxmax()]
        mass = frame[flag(frame, "unknown_class")]
        ood_cols = [c for c in mass.columns if c.startswith("extra.unknown_mass.")
                    and c != "extra.unknown_mass.id_test"]
        why = ""
        if ood_cols and "extra.unknown_mass.id_test" in mass.columns:
            id_mass = 100 * numeric(mass, "extra.unknown_mass.id_test").median()
            ood_mass = 100 * mass[ood_cols].apply(pd.to_numeric, errors="coerce").median().max()
            why = (f" Why, as far as the runs show: at the end of training the unknown class "
                   f"holds a median {id_mass:.3f}% of the probability on ID test images and "
                   f"{ood_mass:.2f}% on the OOD set where its median over runs is largest, so "
                   f"its MSP typically differs from a plain K-class head's by about that much.")
        bullets.append(
            f"**MOON's AUROC gain.** Published: up to +{gain:g} points. Ours: at best "
            f"{interval_text(best, 100)} points ({best['metric'].split('.')[1]}-OOD, "
            f"{_setting(best)}), and no sparse setting rose measurably (0 of {len(sparse)} "
            f"setting x group cells).{why}")
    premise, worse, _ = _premise_counts(frame)
    gap = _published_value("sparse-overconfident", path)
    if len(premise) and gap is not None and 2 * worse <= len(premise):
        plain = frame[~flag(frame, "unknown_class") & ~flag(frame, "averaging")]
        temps = {kind: numeric(plain[(plain["method"] == "dense") == (kind == "dense")],
                               "id.temperature").median() for kind in ("dense", "sparse")}
        bullets.append(
            f"**The premise.** Published: sparse RigL's ECE +{gap:g} points above dense (ResNet-50 at "
            f"95% sparsity, CIFAR-100 by its accuracy; read off a figure). Ours: sparse − dense {signed(100 * premise['mean_diff'].min(), 1)} to "
            f"{signed(100 * premise['mean_diff'].max(), 1)} points, worse calibrated in {worse} "
            f"of {len(premise)} sparse settings. Why, as far as the runs show: the fitted "
            f"temperature of the baselines is {temps['dense']:.2f} dense and "
            f"{temps['sparse']:.2f} sparse (median; above 1 means over-confident): our sparse "
            "models are less over-confident than the dense ones, the opposite of the published "
            "ResNet-50.")
    return bullets


# -- limitations ------------------------------------------------------------------------------------
def limitations(frame: "pd.DataFrame", reproduced: str | Path | None = None) -> list[str]:
    """What bounds these results, each with its number from the result files: the seeds (and the
    smallest detectable effect), the schedule and its cost, the benchmark's scale."""
    effects = moon_effects(frame)
    seeds = int(frame.groupby(["model", "method", "density", "moon"])["seed"].nunique().min())
    mde = {m: 100 * effects.loc[effects["metric"] == m, "mde"].median() for m in PRIMARY_METRICS}
    hours = numeric(frame, "timing.train_seconds").sum() / 3600
    test = numeric(frame, "id.n").max() if "id.n" in frame.columns else math.nan
    bullets = [
        f"**Seeds.** {seeds} or more seeds per setting: the median smallest detectable MOON effect "
        f"is ±{mde['ood.near.msp.auroc']:.1f} points of near-OOD AUROC, "
        f"±{mde['ood.far.msp.auroc']:.1f} far, ±{mde['id.accuracy']:.1f} accuracy and "
        f"±{mde['id.ece']:.1f} ECE (80% power, 5% level).",
        f"**Scale.** {' and '.join(model_name(m) for m in sorted(frame['model'].unique()))} "
        f"on 28x28 greyscale "
        f"images, trained on a 2-core CPU ({hours:.1f} hours of training in these "
        f"{len(frame)} runs); the paper trains ResNet-18 on CIFAR, which needs a network to "
        f"download and a GPU to train in this budget.",
    ]
    if math.isfinite(test):
        bullets.append(f"**Benchmark.** {int(test):,} ID test images and the offline OOD sets of "
                       "the benchmark page; CIFAR-100, TinyImageNet, SVHN and Places365, the "
                       "paper's sets, cannot be downloaded here.")
    bullets.append("**One score.** The verdict and the declared family read MSP only (the "
                   "paper's score); the other detectors are secondary (post-hoc chapter).")
    far = _far_sources(frame)
    if far:
        far_mde = 100 * effects.loc[effects["metric"] == "ood.far.msp.auroc", "mde"]
        bullets.append(
            f"**The far-OOD group** is {far['crops']:,} crops of {far['sources']} source images "
            f"({far['detail']}): crops of one image are not independent, so its effective sample "
            f"size is nearer {far['sources']} than {far['crops']:,}, and MOON's far-OOD effect is "
            f"detectable only to ±{far_mde.min():.1f} to ±{far_mde.max():.1f} points.")
    code = code_versions(frame, reproduced)
    if code:
        bullets.append(code)
    return bullets


def code_versions(frame: "pd.DataFrame", reproduced: str | Path | None = None) -> str | None:
    """The commits the runs came from, how many ran from a checkout with uncommitted changes, and
    what is known about whether the numerics changed between those commits: the last lines of a
    ``moon reproduce`` record (``reproduced``) when there is one, else that nobody checked."""
    shas = sorted({s for s in frame.get("provenance.git_sha", []) if isinstance(s, str)})
    if not shas:
        return None
    dirty = int(flag(frame, "provenance.git_dirty").sum()) if "provenance.git_dirty" in frame else 0
    text = (f"**Code versions.** These {len(frame)} runs ran from {len(shas)} commit"
            f"{'s' if len(shas) > 1 else ''} of this repository (" + ", ".join(s[:7] for s in shas)
            + "; each run's is in the reproducibility page's table)"
            + (f", {dirty} of them from a checkout with uncommitted changes" if dirty else "")
            + ". ")
    record = Path(reproduced) if reproduced else None
    if record is not None and record.is_file():
        lines = [line for line in record.read_text().splitlines() if line.strip()]
        head = lines[0].lstrip("# ") if lines else ""
        diffs = [float(m) for m in re.findall(r"max \|diff\| ([0-9.eE+-]+)", record.read_text())]
        largest = (f", the largest metric difference {max(diffs):g} (a fraction; every metric of "
                   "a run counted)" if diffs and max(diffs) > 0 else "")
        text += (f"Whether the numerics changed between them was checked by retraining a few runs "
                 f"with later code ({head}): {lines[-1] if lines else 'no result'}{largest}; the "
                 "other runs were not retrained.")
    else:
        text += ("Whether the numerics changed between these commits was not checked by "
                 "retraining (`make reproduce`).")
    return text


def _far_sources(frame: "pd.DataFrame") -> dict | None:
    """Crops and source images of the far-OOD sets the frame's runs were scored on."""
    import inspect

    from moon.ood.sets import OOD_SETS, far_source_images, load_ood

    present = [name for name in far_source_images()
               if f"ood.{name}.msp.auroc" in frame.columns and OOD_SETS[name].kind == "far"]
    if not present:
        return None
    counts = far_source_images()
    per_set = inspect.signature(load_ood).parameters["n"].default     # crops per set
    return {"crops": per_set * len(present), "sources": sum(counts[n] for n in present),
            "detail": ", ".join(f"{counts[n]} for {n}" for n in present)}


def p_phrase(p: float) -> str:
    """``p = 0.012`` or ``p < 0.001`` (never ``p = 0.000``)."""
    text = p_text(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


# -- the long text, for a collapsible block ---------------------------------------------------------
def headline_text(frame: "pd.DataFrame") -> str:
    """Per model and metric: what MOON changed in every setting, in words (the detail behind the
    verdict)."""
    effects = moon_effects(frame)
    lines = []
    for row in effects.to_dict("records"):
        p = f", {p_phrase(row['p_value'])}" if p_text(row["p_value"]) else ""
        lines.append(f"- {_setting(row)}, {metric_label(row['metric'], short=True)}: "
                     f"{interval_text(row, 100)} points ({row['n']} pairs{p})")
    return "\n".join(lines)


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
    temps = numeric(frame[frame["moon"] == "baseline"], "id.temperature")
    if temps.notna().any():
        text.append(f"the baselines' fitted temperatures range from {temps.min():.2f} to "
                    f"{temps.max():.2f} (above 1: over-confident)")
    close = _bold("; ".join(text) + ".")
    bullet = calibration_bullet(frame)
    return close + (" " + bullet.replace("**", "") if bullet else "")


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

    plain = frame[frame["moon"] == "baseline"]
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
    parts.append(_dice_energy(frame, None))
    return _bold("; ".join(parts) + ". " + dice_moon_answer(frame))


def dice_moon_answer(frame: "pd.DataFrame", kinds=("near", "far")) -> str:
    """Does DICE add to MOON? The interaction (DICE's gain over energy on a MOON run minus its
    gain on the paired baseline run), per setting: in how many it is measurably positive or
    negative (unadjusted 95% intervals), the range in points and the smallest interaction the
    seeds could detect. An interaction near 0 means the two add up: DICE changes a MOON run by
    what it changes the baseline, whatever the sign of that change."""
    gains = stats.posthoc_gain_frame(frame, kinds=kinds)
    inter = gains[gains["moon"] == "MOON − baseline"].dropna(subset=["mean_diff"])
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
                       + ", ".join(f"{_setting(dict(zip(costs.index.names, idx)))} "
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
    setting = _setting({"method": cfg["method"], "density": cfg["density"]})
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
