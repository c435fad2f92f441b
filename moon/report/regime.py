"""Is this the paper's regime? Three questions answered from result files (issue: the study).

The MOON paper is about models that fit their training data and are over-confident, sparse ones
more than dense ones, with the unknown class weighting the loss once training error is small. From
each run's ``history`` (per epoch: ``train_acc``, ``val_ece``, ``val_temperature``, ``alpha``,
``unknown_mass``) and its final ID metrics:

* ``fits``: the dense baseline ends with training accuracy >= 99%;
* ``overconfident``: the dense baseline's fitted temperature is above 1 (softening helps);
* ``premise``: sparse baselines are *more* over-confident than dense ones (paired by seed: sparse
  ECE minus dense ECE, and sparse minus dense temperature, above 0);
* ``small_error_when_alpha_large``: MOON runs' training error when alpha first reaches 0.5.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

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
