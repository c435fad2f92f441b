"""The paper's claims beside our measured answers: the published numbers (read from the cited
data file ``book/data/published.yaml``), the measure and the verdict rule of each claim
(:data:`MEASURES`, :data:`VERDICTS`: reproduced, partly, not reproduced), the sources, what was
not reproduced, and the limitations that bound the answers (seeds, scale, code versions).

Nothing here is typed by hand: every measured number comes from :mod:`moon.report.stats` over the
runs' ``result.json`` files.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from moon.report import stats
from moon.report.frame import (BASELINE, PRIMARY_METRICS, flag, higher_is_better, method_name,
                               model_name, numeric, setting_name)
from moon.report.headline import moon_effects, premise_counts
from moon.report.tables import interval_text, signed

if TYPE_CHECKING:
    import pandas as pd


PUBLISHED = Path(__file__).resolve().parents[2] / "book" / "data" / "published.yaml"


# -- the paper beside this study -------------------------------------------------------------------
def _best_auroc(frame, effects):
    rows = effects[effects["metric"].isin(["ood.near.msp.auroc", "ood.far.msp.auroc"])
                   & (effects["method"] != "dense")]        # the claim is about sparse training
    if rows.empty:
        return "no sparse MOON-baseline pairs"
    best = rows.loc[rows["mean_diff"].idxmax()]
    group = best["metric"].split(".")[1]
    up = int((rows["excludes_zero"] & (rows["mean_diff"] > 0)).sum())
    return (f"best {interval_text(best, 100)} ({group}, {setting_name(best)}); "
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


def dice_minus_energy(frame, effects, density: float = 0.05):
    gains = stats.posthoc_gain_frame(frame, kinds=("near",), by=("model", "method", "density"))
    gains = gains[(gains["moon"] == BASELINE) & ((gains["method"] == "dense")
                                                 | np.isclose(gains["density"].astype(float),
                                                              density))]
    parts = [f"{setting_name(row)}: {interval_text(row, 100)}"
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
    # the verdict judges ECE (the claim); the premise's other half is shown beside it, labelled
    "sparse_minus_dense_ece": lambda frame, effects: (
        _between("id.ece", "rigl", "dense")(frame, effects) + "; beside it, not judged here: "
        + "; ".join(measure(frame, effects) for measure in (
            _between("ood.near.msp.auroc", "rigl", "dense", label="near-OOD AUROC"),
            _between("id.accuracy", "rigl", "dense", label="accuracy")))),
    "cigl_minus_rigl_ece": _between("id.ece", "cigl", "rigl"),
    "cigl_minus_rigl_accuracy": _between("id.accuracy", "cigl", "rigl"),
    "dice_minus_energy_near": dice_minus_energy,
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
            f"{setting_name(best)}), and no sparse setting rose measurably (0 of {len(sparse)} "
            f"setting x group cells).{why}")
    premise, worse, _ = premise_counts(frame)
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
            + ". " + _split_pairs(frame))
    record = Path(reproduced) if reproduced else None
    if record is not None and record.is_file():
        lines = [line for line in record.read_text().splitlines() if line.strip()]
        head = lines[0].lstrip("# ") if lines else ""
        diffs = [float(m) for m in re.findall(r"max \|diff\| ([0-9.eE+-]+)", record.read_text())]
        largest = (f", the largest metric difference {max(diffs):g} (a fraction; every metric of "
                   "a run counted)" if diffs and max(diffs) > 0 else "")
        moved = _headline_moves(record.read_text())
        if moved and largest:
            largest += ("; in the numbers the verdict reads, up to "
                        + ", ".join(f"{100 * value:.2f} points of {name}"
                                    for name, value in moved.items()))
        text += (f"Whether the numerics changed between them was checked by retraining a few runs "
                 f"with later code ({head}): {lines[-1] if lines else 'no result'}{largest}; the "
                 "other runs were not retrained.")
    else:
        text += ("Whether the numerics changed between these commits was not checked by "
                 "retraining (`make reproduce`).")
    return text


def _split_pairs(frame: "pd.DataFrame") -> str:
    """In how many MOON-baseline pairs (:func:`moon.report.stats.moon_pairs`) the two runs ran
    from different commits: a pair's difference then also carries whatever the code changed."""
    import pandas as pd

    if not {"unknown_class", "averaging", "seed"} <= set(frame.columns):
        return ""
    coded = frame.assign(_commit=pd.factorize(frame["provenance.git_sha"])[0])
    both = stats.moon_pairs(coded, ["_commit"])
    if both.empty:
        return ""
    split = int((both["_commit_t"] != both["_commit_b"]).sum())
    return (f"In {split} of the {len(both)} MOON–baseline pairs the two runs ran from different "
            "commits. ")


def _headline_moves(record: str) -> dict[str, float]:
    """From a ``moon reproduce`` record, the largest difference over its runs of each headline
    metric it reports (``|diff| of accuracy 0, ECE 0.002, MSP AUROC 0.001``); empty for a record
    written before those were reported."""
    moved: dict[str, float] = {}
    for line in re.findall(r"\|diff\| of (.+)$", record, flags=re.M):
        for name, value in re.findall(r"([A-Za-z][\w ]*?) ([0-9.eE+-]+|nan)(?:,|$)", line):
            moved[name] = max(moved.get(name, 0.0), float(value))
    return moved


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
