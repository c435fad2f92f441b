"""Comparison tables and figures (moon.compare, moon.compare_figures) on synthetic frames whose
differences are known: paired t-intervals against a hand computation with scipy.stats.t, Welch
intervals against scipy's ttest_ind, ablation labels, cost ratios, DICE gains and the figures."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from moon.compare import (ABLATION_ORDER, ablation_label, ablation_table, calibration_table,
                          cost_table, interval_text, paired_moon_frame, paired_moon_table,
                          posthoc_gain_frame, posthoc_table, sparsity_effect_frame,
                          sparsity_effect_table, t_interval, welch_interval)
from moon.compare_figures import ablation_plot, calibration_overview, paired_moon_plot
from moon.config import RunConfig
from moon.report import moon_label, variant_label

SEEDS = (0, 1, 2)
SEED_NOISE = (0.0, 0.004, -0.003)             # shared by every run of a seed
MOON_DIFF = {                                 # MOON − baseline per seed (0.01 + noise for accuracy)
    "id.accuracy": (0.011, 0.008, 0.013),
    "id.ece": (-0.021, -0.018, -0.024),
    "ood.near.msp.auroc": (0.012, -0.010, 0.004),   # interval contains 0
    "ood.far.msp.auroc": (0.030, 0.031, 0.029),
    "id.nll": (-0.05, -0.04, -0.06),
}
GAIN = {"baseline": (0.020, 0.025, 0.015), "MOON": (0.021, 0.030, 0.018)}   # dice − energy
TIME_RATIO = (1.10, 1.12, 1.08)               # train_seconds MOON / baseline per seed
CELLS = (("dense", 1.0), ("rigl", 0.05), ("rigl", 0.1), ("set", 0.05), ("set", 0.1))
BASE = {"id.accuracy": 0.90, "id.ece": 0.05, "ood.near.msp.auroc": 0.80, "ood.far.msp.auroc": 0.90,
        "id.nll": 0.40}


def base_value(metric: str, method: str, density: float, seed: int) -> float:
    """A baseline run's metric: sparser and SET worse (lower accuracy and AUROC, higher ECE and
    NLL), plus the seed's noise."""
    sparse = (1 - density) * 0.05 + (0.01 if method == "set" else 0.0)
    sign = 1 if metric in ("id.ece", "id.nll") else -1
    return BASE[metric] + sign * sparse + SEED_NOISE[seed] * (1 + density)


def run_row(method: str, density: float, seed: int, moon: bool, **config) -> dict:
    """One run's row, shaped like moon.report.results_frame's."""
    cfg = RunConfig(method=method, density=density, seed=seed, unknown_class=config.pop(
        "unknown_class", moon), averaging=config.pop("averaging", moon), **config).to_dict()
    row = dict(cfg, status="complete")
    for metric, diffs in MOON_DIFF.items():
        row[metric] = base_value(metric, method, density, seed) + (diffs[seed] if moon else 0.0)
    row["id.brier"], row["id.adaptive_ece"] = 0.2 + 0.01 * seed, row["id.ece"] + 0.005
    row["id.temperature"], row["id.ts_ece"], row["id.ts_nll"] = 1.5, 0.01 + 0.001 * seed, 0.3
    energy = 0.85 + 0.01 * seed
    row["ood.near.energy.auroc"], row["ood.far.energy.auroc"] = energy, energy + 0.05
    gain = GAIN["MOON" if moon else "baseline"][seed]
    row["ood.near.dice.auroc"], row["ood.far.dice.auroc"] = energy + gain, energy + 0.05 + 2 * gain
    seconds = 100.0 + 10 * seed
    row["timing.train_seconds"] = seconds * (TIME_RATIO[seed] if moon else 1.0)
    row["timing.train_images_per_second"] = 60000 * 20 / row["timing.train_seconds"]
    row["timing.peak_memory_bytes"] = (50 + 10 * moon) * 2 ** 20
    row["extra.flops.forward_dense"] = 2e6
    row["extra.flops.train_step"] = 3 * 2e6 * density
    row["moon"], row["variant"] = moon_label(cfg), variant_label(cfg)
    return row


def make_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame([run_row(m, d, s, moon) for m, d in CELLS for s in SEEDS
                       for moon in (False, True)])


PARTS = {   # the ablation study's parts, as config overrides
    "none": dict(unknown_class=False, averaging=False),
    "unknown": dict(unknown_class=True, averaging=False),
    "unknown_fixed_alpha": dict(unknown_class=True, averaging=False, alpha_auto=False),
    "averaging": dict(unknown_class=False, averaging=True),
    "moon": dict(unknown_class=True, averaging=True),
    "moon_fixed_alpha": dict(unknown_class=True, averaging=True, alpha_auto=False),
    "moon_as_released": dict(unknown_class=True, averaging=True, as_released=True),
}
PART_NEAR = dict(zip(PARTS, (0.0, 0.02, 0.01, 0.005, 0.03, 0.025, 0.028)))   # near AUROC offset


@pytest.fixture(scope="module")
def ablation_frame() -> pd.DataFrame:
    rows = []
    for part, overrides in PARTS.items():
        for seed in SEEDS:
            row = run_row("rigl", 0.05, seed, False, **overrides)
            row["ood.near.msp.auroc"] += PART_NEAR[part] + (0.002 * seed if part == "moon" else 0)
            rows.append(dict(row, parts=part))
    return make_frame(rows)


def hand_interval(diffs) -> tuple[float, float, float]:
    d = np.asarray(diffs, dtype=float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return d.mean(), d.mean() - half, d.mean() + half


# --------------------------------------------------------------------------------------------------
# MOON − baseline, sparse − dense
# --------------------------------------------------------------------------------------------------
def test_paired_moon_frame_matches_hand_t_intervals(frame):
    long = paired_moon_frame(frame, metrics=tuple(MOON_DIFF))
    assert list(long.columns) == ["method", "density", "metric", "mean_diff", "low", "high",
                                  "excludes_zero", "n", "p_value", "sd", "mde"]
    assert len(long) == len(CELLS) * len(MOON_DIFF)
    for _, row in long.iterrows():
        mean, low, high = hand_interval(MOON_DIFF[row["metric"]])
        assert (row["mean_diff"], row["low"], row["high"]) == pytest.approx((mean, low, high))
        assert row["n"] == 3
        assert row["excludes_zero"] == (row["metric"] != "ood.near.msp.auroc")


def test_paired_moon_table_formats_percentage_points_and_marks(frame):
    table = paired_moon_table(frame)
    assert table.index.names == ["method", "density"]
    assert list(table.index) == sorted((m, d) for m, d in CELLS)
    assert list(table.columns) == ["n", "id.accuracy", "id.ece", "ood.near.msp.auroc",
                                   "ood.far.msp.auroc"]
    mean, low, high = (100 * v for v in hand_interval(MOON_DIFF["id.accuracy"]))
    assert table.loc[("rigl", 0.05), "id.accuracy"] == f"+{mean:.1f} [{low:+.1f}, +{high:.1f}] *"
    assert table.loc[("set", 0.1), "id.ece"].startswith("−2.1 [−")       # unicode minus
    assert not table.loc[("set", 0.1), "ood.near.msp.auroc"].endswith("*")
    nll = paired_moon_table(frame, metrics=("id.nll",)).loc[("dense", 1.0), "id.nll"]
    assert nll.startswith("−0.050 [")                                        # raw, 3 decimals
    assert (table["n"] == 3).all()


def test_pairing_needs_the_same_configuration_and_one_run_per_side(frame, caplog):
    other = run_row("rigl", 0.05, 0, True, epochs=7)          # no baseline with 7 epochs
    with caplog.at_level(logging.WARNING, logger="moon.compare"):
        long = paired_moon_frame(pd.concat([frame, make_frame([other])], ignore_index=True))
    assert (long["n"] == 3).all() and "no partner" in caplog.text
    twice = pd.concat([frame, make_frame([run_row("set", 0.1, 1, False)])], ignore_index=True)
    with pytest.raises(ValueError, match="ambiguous pairing"):
        paired_moon_frame(twice)


def test_sparsity_effect_is_a_welch_interval_on_baseline_runs(frame):
    long = sparsity_effect_frame(frame, metrics=("id.accuracy", "ood.far.msp.auroc"))
    assert set(zip(long["method"], long["density"])) == {c for c in CELLS if c[0] != "dense"}
    dense = [base_value("id.accuracy", "dense", 1.0, s) for s in SEEDS]
    sparse = [base_value("id.accuracy", "set", 0.05, s) for s in SEEDS]
    ci = stats.ttest_ind(sparse, dense, equal_var=False).confidence_interval(0.95)
    row = long[(long.method == "set") & (long.density == 0.05) & (long.metric == "id.accuracy")]
    row = row.iloc[0]
    assert row["mean_diff"] == pytest.approx(np.mean(sparse) - np.mean(dense))
    assert (row["low"], row["high"]) == pytest.approx((ci.low, ci.high))
    assert row["n"] == row["n_base"] == 3                   # MOON runs are not counted
    assert row["excludes_zero"] and row["mean_diff"] < 0    # 0.0575 lower, small noise
    table = sparsity_effect_table(frame, metrics=("id.accuracy",))
    assert table.loc[("set", 0.05), "id.accuracy"].startswith("−5.")


def test_welch_and_t_intervals_degenerate_cases():
    one = welch_interval([0.5], [0.4, 0.45])
    assert one.mean_diff == pytest.approx(0.075) and math.isnan(one.low) and not one.excludes_zero
    flat = welch_interval([0.5, 0.5], [0.4, 0.4])
    assert flat.low == flat.high == pytest.approx(0.1) and flat.excludes_zero
    with pytest.raises(ValueError, match="both sides"):
        welch_interval([], [0.4])
    assert t_interval([2.0, 4.0]) == pytest.approx((3.0, 3 - stats.t.ppf(0.975, 1),
                                                     3 + stats.t.ppf(0.975, 1)))
    assert interval_text({"mean_diff": 0.012, "low": 0.012, "high": 0.012, "excludes_zero": False,
                          "n": 1}, 100, 1) == "+1.2"


# --------------------------------------------------------------------------------------------------
# Ablation
# --------------------------------------------------------------------------------------------------
def test_ablation_labels_for_every_config_combination():
    expected = dict(zip(PARTS, ABLATION_ORDER))
    for part, overrides in PARTS.items():
        assert ablation_label(RunConfig(**overrides).to_dict()) == expected[part]
    no_alpha = {"unknown_class": False, "averaging": False, "alpha_auto": False}
    assert ablation_label(no_alpha) == "none"                # alpha only matters with the class
    assert ablation_label({"unknown_class": True, "averaging": True, "alpha_auto": False,
                           "as_released": True}) == "MOON, fixed α as released"
    assert ablation_label(pd.Series({"unknown_class": True, "averaging": False})) == "unknown class"


def test_ablation_table_rows_means_and_paired_delta(ablation_frame):
    table = ablation_table(ablation_frame)
    assert list(table.index) == list(ABLATION_ORDER)
    assert (table["n"] == 3).all()
    assert list(table.columns) == ["n", "id.accuracy", "id.ece", "id.nll", "ood.near.msp.auroc",
                                   "ood.far.msp.auroc", "Δ ood.near.msp.auroc vs none",
                                   "Δ ood.far.msp.auroc vs none"]
    delta = table["Δ ood.near.msp.auroc vs none"]
    assert delta["none"] == ""
    assert delta["unknown class"] == "+2.0 [+2.0, +2.0] *"       # constant offset: no spread
    mean, low, high = (100 * v for v in hand_interval([0.03, 0.032, 0.034]))
    assert delta["MOON"] == f"+{mean:.1f} [+{low:.1f}, +{high:.1f}] *"
    assert table["Δ ood.far.msp.auroc vs none"]["averaging"] == "+0.0 [+0.0, +0.0]"
    by_column = ablation_table(ablation_frame, label="parts")
    assert list(by_column.index) == ["none"] + sorted(set(PARTS) - {"none"})   # known labels first
    assert by_column.loc["moon", "Δ ood.near.msp.auroc vs none"] == delta["MOON"]
    with pytest.raises(ValueError, match="one method and density"):
        ablation_table(pd.concat([ablation_frame, make_frame([run_row("set", 0.1, 0, False)])]))


# --------------------------------------------------------------------------------------------------
# Cost, post-hoc detectors, calibration
# --------------------------------------------------------------------------------------------------
def test_cost_table_flops_memory_and_moon_time_ratio(frame):
    table = cost_table(frame)
    assert table.index.names == ["method", "density", "moon"] and len(table) == 2 * len(CELLS)
    for (method, density, moon), row in table.iterrows():
        assert row["flops_vs_dense"] == pytest.approx(density)
        assert row["peak_mib"] == pytest.approx(60 if moon == "MOON" else 50)
        if moon == "MOON":
            assert (row["moon_time_ratio"], row["moon_time_low"], row["moon_time_high"]) == \
                pytest.approx(hand_interval(TIME_RATIO))
        else:
            assert row["train_seconds"] == pytest.approx(110.0)
            assert row["images_per_second"] == pytest.approx(np.mean([12000, 12000 / 1.1,
                                                                      12000 / 1.2]))
            assert math.isnan(row["moon_time_ratio"])


def test_posthoc_table_has_a_column_per_present_detector(frame):
    table = posthoc_table(frame, kind="far")
    assert table.index.names == ["variant", "density"]
    assert list(table.columns) == ["n", "msp", "energy", "dice"]      # react etc. not in the frame
    values = [100 * (0.90 + 0.01 * s) for s in SEEDS]
    expected = f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"
    assert table.loc[("dense", 1.0), "energy"] == expected
    with pytest.raises(ValueError, match="kind"):
        posthoc_table(frame, kind="middle")


def test_posthoc_gain_pairs_by_run_and_gives_the_interaction(frame):
    long = posthoc_gain_frame(frame)
    assert list(long.columns) == ["method", "density", "moon", "kind", "mean_diff", "low", "high",
                                  "excludes_zero", "n", "p_value", "sd", "mde"]
    assert len(long) == len(CELLS) * 3 * 2
    for _, row in long.iterrows():
        factor = 1 if row["kind"] == "near" else 2
        if row["moon"] == "MOON − baseline":
            diffs = factor * (np.array(GAIN["MOON"]) - np.array(GAIN["baseline"]))
        else:
            diffs = factor * np.array(GAIN[row["moon"]])
        assert (row["mean_diff"], row["low"], row["high"]) == pytest.approx(hand_interval(diffs))
        assert row["n"] == 3


def test_calibration_table_scales_temperature_scaled_ece(frame):
    table = calibration_table(frame)
    assert table.index.names == ["method", "density", "moon"]
    assert list(table.columns) == ["n", "id.accuracy", "id.ece", "id.adaptive_ece", "id.nll",
                                   "id.brier", "id.temperature", "id.ts_ece", "id.ts_nll"]
    assert table.loc[("rigl", 0.05, "MOON"), "id.ts_ece"] == "1.1 ± 0.1"      # x100
    assert table.loc[("rigl", 0.05, "MOON"), "id.ts_nll"] == "0.300 ± 0.000"


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------
def test_figures_return_figures_and_write_pngs(frame, ablation_frame, tmp_path):
    figures = {
        "paired": (paired_moon_plot(paired_moon_frame(frame), tmp_path / "paired.png"), 4),
        "ablation": (ablation_plot(ablation_frame, path=tmp_path / "ablation.png"), 5),
        "calibration": (calibration_overview(frame, path=tmp_path / "calibration.png"), 1),
    }
    for name, (fig, axes) in figures.items():
        assert isinstance(fig, Figure) and len(fig.axes) == axes, name
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [t.get_text() for t in figures["ablation"][0].axes[0].get_yticklabels()]
    assert labels == list(ABLATION_ORDER)


# --------------------------------------------------------------------------------------------------
# Studies over several models, and the headline composed from them
# --------------------------------------------------------------------------------------------------
MLP_SHIFT = 0.05   # the mlp's accuracy: lower by this much in every run (MOON − baseline unchanged)


@pytest.fixture(scope="module")
def two_models() -> pd.DataFrame:
    rows = []
    for model in ("lenet5", "mlp"):
        for m, d in CELLS:
            for s in SEEDS:
                for moon in (False, True):
                    row = run_row(m, d, s, moon, model=model)
                    if model == "mlp":
                        row["id.accuracy"] -= MLP_SHIFT
                        if moon:     # the mlp's MOON gain on accuracy is twice the lenet5's
                            row["id.accuracy"] += MOON_DIFF["id.accuracy"][s]
                    rows.append(row)
    return make_frame(rows)


def test_tables_are_per_model_when_runs_span_models(two_models, frame):
    long = paired_moon_frame(two_models, metrics=("id.accuracy",))
    assert list(long.columns[:3]) == ["model", "method", "density"]
    assert len(long) == 2 * len(CELLS) and (long["n"] == 3).all()     # never pooled over models
    for model, factor in (("lenet5", 1), ("mlp", 2)):
        mean, low, high = hand_interval([factor * d for d in MOON_DIFF["id.accuracy"]])
        rows = long[long["model"] == model]
        assert rows["mean_diff"].to_numpy() == pytest.approx(np.full(len(CELLS), mean))
        assert rows["low"].to_numpy() == pytest.approx(np.full(len(CELLS), low))
    assert paired_moon_table(two_models).index.names == ["model", "method", "density"]
    assert calibration_table(two_models).index.names == ["model", "method", "density", "moon"]
    assert cost_table(two_models).index.names == ["model", "method", "density", "moon"]
    effect = sparsity_effect_frame(two_models, metrics=("id.accuracy",))   # mlp against mlp dense
    one = sparsity_effect_frame(frame, metrics=("id.accuracy",))
    assert effect[effect["model"] == "mlp"]["mean_diff"].to_numpy() == \
        pytest.approx(one["mean_diff"].to_numpy())
    assert paired_moon_table(frame).index.names == ["method", "density"]   # one model: unchanged


def test_headline_has_a_paragraph_and_rows_per_model(two_models, frame):
    from moon import headline

    text = headline.headline_text(two_models)
    lenet, mlp = text.split("\n\n")
    assert lenet.startswith("**lenet5.**") and mlp.startswith("**mlp.**")
    assert "30 runs" in lenet and "3 seed(s)" in lenet
    # accuracy: improved with an interval excluding 0 in every one of the 5 settings
    assert "accuracy by +1.1 to +1.1 points; counting only changes whose 95% interval over " \
           "seeds excludes zero, it improved accuracy in 5 and made it worse in 0 of 5 settings " \
           "(no measurable change in 0)." in lenet
    assert "it lowered (improved) ECE in 5 and made it worse in 0 of 5" in lenet
    assert "accuracy by +2.1 to +2.1 points" in mlp
    assert "set: near-OOD AUROC −5.8, far-OOD AUROC −5.8" in lenet   # sparse − dense at 0.05
    table = headline.headline_table(two_models)
    assert table.index.names == ["model", "method", "density"] and len(table) == 2 * len(CELLS)
    assert list(table.columns) == ["near-OOD AUROC", "far-OOD AUROC", "accuracy", "ECE", "seeds"]
    assert table.loc[("lenet5", "rigl", 0.05), "ECE"].startswith("−2.1 [")
    sparse = headline.sparsity_table(frame)
    assert sparse.index.names == ["method", "density"]
    assert sparse.loc[("set", 0.05), "accuracy"].startswith("−5.") \
        and sparse.loc[("set", 0.05), "accuracy"].endswith("*")
    assert "measurably worse than dense (95% interval excluding zero): near-OOD AUROC 4, " \
           "far-OOD AUROC 4, accuracy 4, ECE 4." in headline.headline_text(frame)


def sweep_frame() -> pd.DataFrame:
    """Runs with a DICE sweep: AUROC = 0.7 + p/1000 + set offset + seed noise, sparse runs 0.02
    lower; two near sets (offsets 0 and 0.04) and one far set."""
    from moon.compare import DICE_SWEEP_PREFIX

    rows = []
    for method, density in (("dense", 1.0), ("rigl", 0.05)):
        for seed in SEEDS:
            row = run_row(method, density, seed, False)
            for name, offset in (("mnist", 0.0), ("digits", 0.04), ("photos", 0.1)):
                for p in (0, 50, 90):
                    row[f"{DICE_SWEEP_PREFIX}{name}.{p}"] = (0.7 + p / 1000 + offset + 0.01 * seed
                                                             - 0.02 * (method != "dense"))
            rows.append(row)
    return make_frame(rows)


def test_dice_sweep_frame_means_over_sets_then_runs(tmp_path):
    from moon.compare import dice_sweep_frame, dice_sweep_table
    from moon.compare_figures import dice_sweep_plot

    sweep = dice_sweep_frame(sweep_frame(), by=("method", "density"))
    assert list(sweep.columns) == ["method", "density", "kind", "p", "auroc", "low", "high", "n"]
    cell = sweep.set_index(["method", "kind", "p"])
    near = [0.7 + 0.05 + 0.02 + 0.01 * s - 0.02 for s in SEEDS]      # rigl, near, p = 50
    mean, low, high = hand_interval(near)
    assert cell.loc[("rigl", "near", 50.0), "auroc"] == pytest.approx(mean)
    assert cell.loc[("rigl", "near", 50.0), "low"] == pytest.approx(low)
    assert cell.loc[("dense", "far", 90.0), "auroc"] == pytest.approx(0.7 + 0.09 + 0.1 + 0.01)
    assert (sweep["n"] == 3).all()
    table = dice_sweep_table(sweep)
    assert list(table.columns) == ["p = 0", "p = 50", "p = 90"]
    assert table.loc[("dense", 1.0, "near"), "p = 0"] == pytest.approx(100 * (0.7 + 0.02 + 0.01))
    assert isinstance(dice_sweep_plot(sweep, tmp_path / "sweep.png"), Figure)
    assert (tmp_path / "sweep.png").exists()


def test_dice_sweep_frame_is_empty_for_old_results(frame):
    from moon.compare import dice_sweep_frame

    assert dice_sweep_frame(frame).empty


def test_primary_endpoints_are_one_holm_family_with_detectable_effects(frame):
    from moon.endpoints import primary_endpoints
    from moon.metrics import holm

    endpoints = {"primary": {"contrast": {"axis": "moon"}, "alpha": 0.05,
                             "cells": {"method": ["rigl", "set"], "density": [0.05, 0.1]},
                             "metrics": ["id.accuracy", "ood.near.msp.auroc"]}}
    table = primary_endpoints(frame, endpoints)
    assert len(table) == 4 * 2 and set(table["method"]) == {"rigl", "set"}
    assert table["p_holm"].to_numpy() == pytest.approx(holm(table["p_value"].to_numpy()))
    assert (table["p_holm"] >= table["p_value"]).all()
    assert (table["mde"] > 0).all() and (table["significant"] == (table["p_holm"] < 0.05)).all()
    with pytest.raises(ValueError, match="only MOON"):
        primary_endpoints(frame, {"primary": {"contrast": {"axis": "method"}, "metrics": []}})
