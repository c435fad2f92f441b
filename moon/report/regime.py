"""Is this the paper's regime? Three questions answered from result files, and the regime contrast.

The MOON paper is about models that fit their training data and are over-confident, sparse ones
more than dense ones, with the unknown class weighting the loss once training error is small. From
each run's ``history`` (per epoch: ``train_acc``, ``val_ece``, ``val_temperature``, ``alpha``,
``unknown_mass``) and its final ID metrics:

* ``fits``: the dense baseline ends with training accuracy >= 99%;
* ``overconfident``: the dense baseline's fitted temperature is above 1 (softening helps);
* ``premise``: sparse baselines are *more* over-confident than dense ones (paired by seed: sparse
  ECE minus dense ECE, and sparse minus dense temperature, above 0);
* ``small_error_when_alpha_large``: MOON runs' training error when alpha first reaches 0.5.

The regime contrast (:func:`temperature_link`) tests a prediction, stated before it was computed:
MOON lowers ECE where the baseline is over-confident (fitted temperature above 1) and raises it
where the baseline is not, so MOON's ECE change falls as the baseline's temperature rises
(r < 0) *within* a study. It is computed within each study and only then pooled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from moon.report.stats import moon_pairs

FIT_ACCURACY = 0.99


def regime_frame(results: Iterable[Any]) -> pd.DataFrame:
    """One row per run: its configuration keys and the regime measurements (fractions)."""
    rows = []
    for r in results:
        c, h = r.config, r.history
        if not h:
            continue
        large = next((row for row in h if (row.get("alpha") or 0) >= 0.5), None)
        rows.append({
            "model": c["model"], "method": c["method"], "density": c["density"],
            "moon": bool(c["unknown_class"]), "seed": c["seed"], "epochs": c["epochs"],
            "train_acc": h[-1]["train_acc"], "val_ece": h[-1].get("val_ece"),
            "val_temperature": h[-1].get("val_temperature"),
            "test_ece": r.id.get("ece"), "temperature": r.id.get("temperature"),
            "alpha_half_epoch": None if large is None else large["epoch"],
            "train_error_at_alpha_half": None if large is None else 1 - large["train_acc"],
            "unknown_mass_train": h[-1].get("unknown_mass"),
            "unknown_mass_id_test": ((r.extra.get("unknown_mass") or {}).get("id_test")),
        })
    return pd.DataFrame(rows)


def premise(frame: pd.DataFrame, metric: str = "test_ece") -> pd.DataFrame:
    """Sparse baseline minus dense baseline in ``metric``, paired by model and seed, per method and
    density (positive: sparse is worse calibrated, the paper's premise)."""
    base = frame[~frame["moon"]]
    dense = base[base["method"] == "dense"].set_index(["model", "seed"])[metric]
    sparse = base[base["method"] != "dense"]
    diff = sparse.assign(diff=sparse[metric].to_numpy()
                         - dense.reindex(pd.MultiIndex.from_frame(sparse[["model", "seed"]])).to_numpy())
    return diff.dropna(subset=["diff"])[["model", "method", "density", "seed", "diff"]]


def verdict(frame: pd.DataFrame) -> dict[str, Any]:
    """The three answers, with the numbers behind them."""
    dense = frame[(frame["method"] == "dense") & ~frame["moon"]]
    gaps = premise(frame)
    moon = frame[frame["moon"]].dropna(subset=["train_error_at_alpha_half"])
    return {
        "fits": bool(len(dense)) and bool((dense["train_acc"] >= FIT_ACCURACY).all()),
        "dense_train_acc": dense["train_acc"].tolist(),
        "overconfident": bool(len(dense)) and bool((dense["temperature"] > 1).all()),
        "dense_temperature": dense["temperature"].tolist(),
        "premise_share": float((gaps["diff"] > 0).mean()) if len(gaps) else float("nan"),
        "premise_mean_diff": float(gaps["diff"].mean()) if len(gaps) else float("nan"),
        "train_error_at_alpha_half": moon["train_error_at_alpha_half"].tolist(),
    }


def temperature_link(frames: dict[str, pd.DataFrame], level: float = 0.95) -> dict[str, Any]:
    """Does the sign of MOON's ECE change follow the baseline's over-confidence? ``frames`` maps a
    study's name to its results frame; every MOON - baseline pair of each (same seed and
    configuration) gives the baseline's fitted temperature and MOON's ECE change. Returns the pairs
    (``study, model, method, density, seed, temperature, ece_change``), Pearson's r with its
    ``level`` interval (Fisher z, scipy) and the share of pairs whose change has the predicted sign
    (negative where the temperature is above 1, positive below): pooled, and per study
    (``by_study``), with ``consistent`` True only when every study's r has one sign. Read the
    per-study values: pooled over studies of different schedules, r can take the sign of the
    difference between the studies (Simpson's paradox)."""
    rows = []
    for study, frame in frames.items():
        matched = moon_pairs(frame, ["id.ece", "id.temperature"])
        rows.append(pd.DataFrame({
            "study": study, "model": matched["model"], "method": matched["method"],
            "density": matched["density"], "seed": matched["seed"],
            "temperature": matched["id.temperature_b"],
            "ece_change": matched["id.ece_t"] - matched["id.ece_b"]}))
    data = pd.concat(rows, ignore_index=True).dropna(subset=["temperature", "ece_change"])
    out = {"pairs": data, **_correlation(data, level)}
    # Simpson: a pooled r across studies can measure the schedule, not over-confidence, so every
    # study's own r stands beside it, and the reading rests on those (consistent: same sign).
    out["by_study"] = {study: _correlation(part, level)
                       for study, part in data.groupby("study", sort=False)}
    # within a study, settings differ in temperature and in MOON's effect at once: the reading
    # also stands on the correlation within each setting (pairs centred on their setting's means)
    out["within_setting"] = {study: _within_correlation(part, level)
                             for study, part in data.groupby("study", sort=False)}
    signs = {math.copysign(1, v["r"]) for v in out["by_study"].values() if math.isfinite(v["r"])}
    out["consistent"] = len(signs) == 1 and len(out["by_study"]) > 0
    return out


SETTING = ("model", "method", "density")


def _within_correlation(data: pd.DataFrame, level: float) -> dict[str, Any]:
    """Pearson's r within settings: ``temperature`` and ``ece_change`` centred on their setting's
    means (:data:`SETTING`), so a difference between settings cannot make the correlation. The
    Fisher-z interval loses one degree of freedom per setting (se = 1/sqrt(n - g - 2) for n pairs
    in g settings); written here because scipy's ``pearsonr`` interval assumes one group. NaN
    with fewer than 4 pairs beyond the settings."""
    from scipy import stats

    groups = data.groupby(list(SETTING), sort=False)
    centred = data.assign(temperature=data["temperature"] - groups["temperature"].transform("mean"),
                          ece_change=data["ece_change"] - groups["ece_change"].transform("mean"))
    n, g = len(data), groups.ngroups
    out: dict[str, Any] = {"n": n, "settings": g, "r": float("nan"), "low": float("nan"),
                           "high": float("nan")}
    if n - g - 2 >= 2 and centred["temperature"].std() > 0 and centred["ece_change"].std() > 0:
        r = float(np.corrcoef(centred["temperature"], centred["ece_change"])[0, 1])
        half = stats.norm.ppf((1 + level) / 2) / math.sqrt(n - g - 2)
        z = math.atanh(max(min(r, 1 - 1e-12), -1 + 1e-12))
        out.update(r=r, low=math.tanh(z - half), high=math.tanh(z + half))
    return out


def _correlation(data: pd.DataFrame, level: float) -> dict[str, Any]:
    """Pearson's r of ``ece_change`` on ``temperature`` with its Fisher-z interval (scipy), and
    the share of pairs whose change has the predicted sign; NaN below 4 pairs."""
    from scipy import stats

    out: dict[str, Any] = {"n": len(data), "r": float("nan"), "low": float("nan"),
                           "high": float("nan"), "p_value": float("nan")}
    if len(data) >= 4 and data["temperature"].nunique() > 1 and data["ece_change"].nunique() > 1:
        test = stats.pearsonr(data["temperature"], data["ece_change"])
        ci = test.confidence_interval(confidence_level=level)
        out.update(r=float(test.statistic), low=float(ci.low), high=float(ci.high),
                   p_value=float(test.pvalue))
    predicted = (data["ece_change"] < 0) == (data["temperature"] > 1)
    out["predicted_share"] = float(predicted.mean()) if len(data) else float("nan")
    return out
