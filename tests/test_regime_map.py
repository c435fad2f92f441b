"""The regime study's reading: declared families per training-set size with Holm inside each,
no pooling of cells that differ in another field, the regime map's points, MOON's parts and the
pilot's declared decisions. Synthetic frames with known differences."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from moon.config import RunConfig
from moon.report import regime_map
from moon.report.stats import declared_families, sparsity_effect_frame
from moon.statistics import holm, paired_comparison, welch_interval

BASE = {**RunConfig(model="mlp", epochs=100, method="dense", density=1.0, unknown_class=False,
                    averaging=False, subset_seed=0).to_dict()}
METRICS = ["id.ece", "ood.near.msp.auroc"]


def run(method="dense", density=1.0, n=5000, seed=0, moon=False, ece=0.1, auroc=0.8,
        train_acc=1.0, **config):
    row = {**BASE, "method": method, "density": density, "max_train_samples": n, "seed": seed,
           "unknown_class": moon, "averaging": moon, **config}
    row.update({"id.ece": ece, "ood.near.msp.auroc": auroc, "id.accuracy": 0.85,
                "train.accuracy": train_acc, "masks.density": density})
    return row


def study_frame(seed: int = 0):
    """Two sizes; dense, RigL and SET at 0.05, baseline and MOON, 4 seeds; noise on every value
    (a fresh generator per call: the same frame whatever ran before)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, gap in ((2500, 0.02), (5000, 0.01)):
        for seed in range(4):
            for method, density in (("dense", 1.0), ("rigl", 0.05), ("set", 0.05)):
                ece = 0.1 + (gap if method != "dense" else 0) + rng.normal(0, 0.003)
                for moon in (False, True):
                    rows.append(run(method, density, n, seed, moon,
                                    ece=ece - (0.01 if moon else 0) + rng.normal(0, 0.002),
                                    auroc=0.8 + rng.normal(0, 0.01)))
    return pd.DataFrame(rows)


ENDPOINTS = {"by": ["max_train_samples"], "alpha": 0.05, "families": {
    "premise": {"contrast": {"axis": "method", "treatment": "sparse", "control": "dense"},
                "cells": {"model": ["mlp"], "method": ["rigl", "set"], "density": [0.05]},
                "metrics": METRICS},
    "moon": {"contrast": {"axis": "moon", "treatment": "moon", "control": "baseline"},
             "cells": {"model": ["mlp"], "method": ["rigl", "set"], "density": [0.05]},
             "metrics": METRICS}}}


def test_declared_families_compute_each_contrast_and_adjust_within_each_family_and_size():
    frame = study_frame()
    out = declared_families(frame, ENDPOINTS)
    assert len(out) == 2 * 2 * 2 * 2            # families x sizes x methods x metrics
    plain = frame[~frame["unknown_class"]]
    row = out[(out.family == "premise") & (out.max_train_samples == 2500) & (out.method == "rigl")
              & (out.metric == "id.ece")].iloc[0]
    at = plain[plain.max_train_samples == 2500]
    expected = welch_interval(at[at.method == "rigl"]["id.ece"], at[at.method == "dense"]["id.ece"])
    assert row.mean_diff == pytest.approx(expected.mean_diff) and row.low == pytest.approx(expected.low)
    moon = out[(out.family == "moon") & (out.max_train_samples == 5000) & (out.method == "set")
               & (out.metric == "id.ece")].iloc[0]
    at = frame[(frame.max_train_samples == 5000) & (frame.method == "set")].sort_values("seed")
    paired = paired_comparison(at[at.unknown_class]["id.ece"], at[~at.unknown_class]["id.ece"])
    assert moon.mean_diff == pytest.approx(paired.mean_diff) and moon.n == 4
    for (family, n), part in out.groupby(["family", "max_train_samples"]):
        assert len(part) == 4                                  # Holm over this family at this n
        np.testing.assert_allclose(part["p_holm"], holm(part["p_value"]))
    assert not (out.family == "premise").sum() == 0
    assert set(out.method) == {"rigl", "set"}                  # dense is the control, not a row


def test_a_group_that_differs_in_another_field_is_never_pooled():
    frame = study_frame()
    odd = frame.index[(frame.method == "rigl") & (frame.seed == 0) & ~frame.unknown_class]
    frame.loc[odd, "weight_decay"] = 1e-3
    with pytest.raises(ValueError, match="weight_decay"):
        sparsity_effect_frame(frame, METRICS, by=("max_train_samples", "method", "density"),
                              match=("model", "max_train_samples"))


def test_the_baseline_with_moons_lr_schedule_is_not_a_baseline():
    frame = study_frame()
    extra = frame[(frame.method == "rigl") & ~frame.unknown_class].assign(
        lr_hold_epochs=20, **{"id.ece": 0.5})
    both = pd.concat([frame, extra], ignore_index=True)
    by = ("max_train_samples", "method", "density")
    plain = sparsity_effect_frame(frame, METRICS, by=by, match=("model", "max_train_samples"))
    mixed = sparsity_effect_frame(both, METRICS, by=by, match=("model", "max_train_samples"))
    pd.testing.assert_frame_equal(plain, mixed)


def test_regime_points_place_settings_by_active_weights_per_image():
    frame = study_frame()
    points = regime_map.regime_points({"study": frame}, metrics=METRICS)
    assert set(points.effect) == {"premise", "moon"} and set(points.method) == {"rigl", "set"}
    weights = 784 * 300 + 300 * 100 + 100 * 10                 # LeNet-300-100, 10 classes
    assert regime_map.maskable_weights("fashion_mnist", "mlp") == weights
    row = points[(points.train_images == 2500) & (points.method == "rigl")].iloc[0]
    assert row.active_per_image == pytest.approx(0.05 * weights / 2500)
    moon = points[(points.effect == "moon") & (points.train_images == 5000)
                  & (points.metric == "id.ece")]
    assert (moon["mean_diff"] < 0).all()                       # MOON lowers ECE by 1 point
    full = regime_map.train_images(pd.DataFrame({"dataset": ["fashion_mnist"],
                                                 "max_train_samples": [0]}))
    assert full.tolist() == [55000]


def test_parts_are_each_one_switch_from_their_reference():
    rows = []
    effect = {"baseline": 0.0, "baseline, MOON's LR": 0.01, "averaging": 0.03,
              "unknown class": -0.02, "MOON": 0.005}
    switches = {"baseline": (False, False, None), "baseline, MOON's LR": (False, False, 20),
                "averaging": (False, True, None), "unknown class": (True, False, 20),
                "MOON": (True, True, None)}
    for seed in range(3):
        for name, (unknown, averaging, hold) in switches.items():
            rows.append({**run("rigl", 0.05, 5000, seed, ece=0.1 + effect[name] + 0.001 * seed),
                         "unknown_class": unknown, "averaging": averaging,
                         "lr_hold_epochs": hold})
    frame = pd.DataFrame(rows)
    assert [regime_map.part_label(r) for _, r in frame.head(5).iterrows()] == list(switches)
    out = regime_map.parts_frame(frame, ["id.ece"]).set_index("part")["mean_diff"]
    assert out["MOON's LR schedule"] == pytest.approx(0.01)
    assert out["averaging"] == pytest.approx(0.02)             # against the baseline with MOON's LR
    assert out["unknown class"] == pytest.approx(-0.03)
    assert out["both (MOON)"] == pytest.approx(-0.005)
    assert out["MOON - baseline"] == pytest.approx(0.005)
    assert regime_map.part_label({"unknown_class": True, "averaging": False,
                                  "lr_hold_epochs": None}) is None


def test_pilot_decisions_follow_the_declared_rules():
    rows = []
    for n, rigl_ece, rigl_fit in ((2500, 0.14, 0.999), (5000, 0.12, 0.9996), (15000, 0.16, 0.985)):
        rows += [run("dense", 1.0, n, ece=0.11), run("rigl", 0.05, n, ece=rigl_ece,
                                                      train_acc=rigl_fit),
                 run("rigl", 0.02, n, ece=0.1, train_acc=0.96 if n == 5000 else 0.995)]
    decided = regime_map.pilot_decisions(pd.DataFrame(rows))
    assert decided["add_2500"] and decided["underfit_at_5000"] == [("rigl", 0.02, 0.96)]
    assert decided["parts_n"] == 2500                 # 15,000 has a larger gap but does not fit
    assert decided["rigl_gaps"][15000]["ece_gap"] == pytest.approx(0.05)


def test_the_conditional_verdict_says_where_sparse_training_hurts_and_what_moon_does():
    frame = study_frame()
    declared = declared_families(frame, ENDPOINTS)
    assert regime_map.harmed_sizes(declared) == [2500, 5000]    # sparse ECE +2 / +1 points
    text = regime_map.conditional_verdict(declared, frame)
    assert text.startswith("Where sparse training hurts (n = 2,500 and 5,000 training images, "
                           "where the sparse baselines fit 100.0-100.0% of their training images")
    moon = declared[(declared.family == "moon") & (declared.metric == "id.ece")]
    assert f"ECE by {regime_map._span(moon['mean_diff'])} ({int(moon['significant'].sum())} of 4 " \
           "survive Holm" in text
    # every metric with a comparison that does not survive says what its seeds could detect
    for metric, part in declared[declared.family == "moon"].groupby("metric"):
        if not part["significant"].all():
            mde = 100 * part["mde"]
            assert f"detectable ±{mde.min():.1f} to ±{mde.max():.1f}" in text, metric
    none = declared.assign(significant=False)
    assert regime_map.conditional_verdict(none).startswith("In no training-set size")


def test_an_untestable_comparison_stays_in_its_family_and_is_marked():
    """Holm runs over every declared comparison: one with a single run a side has no p-value,
    counts as p = 1 (so it never shrinks the family) and is marked not testable, never 'no'."""
    from moon.report.tables import families_table

    frame = study_frame()
    lone = (frame.method == "set") & (frame.max_train_samples == 5000) & (frame.seed > 0)
    out = declared_families(frame[~lone], ENDPOINTS)
    at = out[(out.family == "premise") & (out.max_train_samples == 5000)]
    assert (~at[at.method == "set"]["testable"]).all() and at[at.method == "rigl"]["testable"].all()
    raw = at["p_value"].fillna(1.0).to_numpy()
    np.testing.assert_allclose(at[at.testable]["p_holm"], holm(raw)[at["testable"].to_numpy()])
    table = families_table(out)
    assert "not testable" in set(table["survives Holm"])


def wide_frame(rng_seed: int = 2):
    """The capacity arm: width 1024 at n = 0, dense and RigL 0.05, baseline and MOON, 3 seeds;
    RigL is 0.02 worse in ECE, MOON 0.01 better in ECE (with a seed effect shared by the pair;
    a fresh generator per call)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in range(3):
        for method, density, gap in (("dense", 1.0, 0.0), ("rigl", 0.05, 0.02)):
            ece = 0.1 + gap + rng.normal(0, 0.002)
            for moon in (False, True):
                rows.append(run(method, density, 0, seed, moon, width=1024,
                                ece=ece - (0.01 if moon else 0) + rng.normal(0, 0.0005),
                                train_acc=0.99 if method == "rigl" else 1.0))
    return pd.DataFrame(rows)


def test_the_declared_families_name_their_width_and_leave_the_capacity_arm_out():
    endpoints = {**ENDPOINTS, "families": {
        name: {**family, "cells": {**family["cells"], "width": [0]}}
        for name, family in ENDPOINTS["families"].items()}}
    narrow = study_frame()
    both = pd.concat([narrow, wide_frame()], ignore_index=True)
    out = declared_families(both, endpoints)
    assert set(out.max_train_samples) == {2500, 5000}            # no n = 0 family
    pd.testing.assert_frame_equal(out, declared_families(narrow, endpoints))
    # a result written before `width` existed counts as width 0 (the RunConfig default)
    old = narrow.drop(columns="width")
    pd.testing.assert_frame_equal(declared_families(old, endpoints)[out.columns], out)


def test_the_capacity_arm_is_read_apart_and_unadjusted():
    wide = wide_frame()
    narrow = study_frame()
    long = regime_map.capacity_frame(pd.concat([narrow, wide], ignore_index=True), METRICS)
    assert set(long.contrast) == set(regime_map.CAPACITY_CONTRASTS)
    assert set(long.width) == {1024}
    premise = long[(long.contrast == "sparse − dense") & (long.metric == "id.ece")].iloc[0]
    plain = wide[~wide.unknown_class]
    expected = welch_interval(plain[plain.method == "rigl"]["id.ece"],
                              plain[plain.method == "dense"]["id.ece"])
    assert premise.mean_diff == pytest.approx(expected.mean_diff) and premise.mean_diff > 0.015
    moon = long[(long.contrast == "MOON − baseline") & (long.method == "rigl")
                & (long.metric == "id.ece")].iloc[0]
    assert moon.n == 3 and moon.mean_diff == pytest.approx(-0.01, abs=0.002)
    fit = regime_map.capacity_fit(wide, narrow)
    assert list(fit.method) == ["dense", "rigl"] and fit.wide.tolist() == pytest.approx([1.0, 0.99])
    text = regime_map.capacity_verdict(long, fit)
    assert "no adjustment" in text and "Holm" not in text
    assert f"ECE {100 * premise.mean_diff:+.1f}" in text and "RigL 0.05 99.0%" in text
    # the answer leads, read from the same intervals; the dense setting is not called "dense 1"
    answer = regime_map.capacity_answer(long, fit)
    assert text.startswith(answer) and not re.search(r"dense 1\b", text)
    assert "worse than dense in ECE" in answer and "to 99.0% (dense of this width: 100.0%)" in answer
    moon_sparse = long[(long.contrast == "MOON − baseline") & (long.method != "dense")]
    assert (f"{int(moon_sparse.excludes_zero.sum())} of {len(moon_sparse)} intervals exclude 0"
            in answer) and moon_sparse.excludes_zero.any()


def test_the_capacity_arm_without_its_dense_runs_says_so():
    wide = wide_frame()
    sparse_only = wide[wide.method == "rigl"]
    long = regime_map.capacity_frame(sparse_only, METRICS)
    assert set(long.contrast) == {"MOON − baseline"}
    assert "no dense runs" in regime_map.capacity_verdict(
        long, regime_map.capacity_fit(sparse_only))
    assert regime_map.capacity_frame(study_frame(), METRICS).empty


def test_the_seed_count_separates_settings_that_differ_in_width_or_size():
    """"N-M seeds per setting" counts seeds per setting, and width and training-set size are
    part of a setting: the 3-seed capacity arm is not lumped with the narrow model's runs."""
    from moon.report.frame import describe_runs

    narrow, wide = study_frame(), wide_frame()
    fewest = int(narrow.groupby(["max_train_samples", "method", "density", "unknown_class"])
                 ["seed"].nunique().min())
    assert fewest > 3
    text = describe_runs(pd.concat([narrow, wide], ignore_index=True))
    assert "3-" in text and "seeds per setting" in text
