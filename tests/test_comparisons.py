"""Comparisons (moon.report.stats), their page tables (moon.report.tables), the comparison figures
(moon.report.figures) and the headline (moon.report.headline) on synthetic frames whose differences
are known: paired t-intervals against a hand computation with scipy.stats.t, Welch intervals
against scipy's ttest_ind, ablation labels, cost ratios, DICE gains. Numbers are checked on the
stats-level frames (fractions, raw metric names); the tables are checked for formatting them
(worded columns, readable index, "+1.2 [−0.3, +2.7] *" strings); the figures for plotting them."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from moon.config import RunConfig
from moon.statistics import mean_interval as t_interval
from moon.statistics import welch_interval
from moon.report import stats as report_stats
from moon.report.figures import ablation_plot, calibration_overview, headline_figure
from moon.report.frame import (ABLATION_ORDER, PRIMARY_METRICS, ablation_label, metric_label,
                               model_name, moon_label, variant_label)
from moon.report.stats import paired_moon_frame, posthoc_gain_frame, sparsity_effect_frame
from moon.report.tables import (ablation_table, calibration_table, cost_table, interval_text,
                                paired_moon_table, posthoc_table, sparsity_effect_table)

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


ACC, ECE, NEAR, FAR = (metric_label(m, difference=True) for m in
                      ("id.accuracy", "id.ece", "ood.near.msp.auroc", "ood.far.msp.auroc"))


def test_paired_moon_table_formats_percentage_points_and_marks(frame):
    table = paired_moon_table(frame)
    assert table.index.names == ["method", "density"]
    # readable index: method names as the book writes them, densities without trailing zeros
    assert list(table.index) == [("dense", "1"), ("RigL", "0.05"), ("RigL", "0.1"),
                                 ("SET", "0.05"), ("SET", "0.1")]
    assert list(table.columns) == ["n", "near-OOD AUROC, MSP (points)",
                                   "far-OOD AUROC, MSP (points)", "accuracy (points)",
                                   "ECE (points)"]
    assert (ACC, ECE, NEAR, FAR) == ("accuracy (points)", "ECE (points)",
                                     "near-OOD AUROC, MSP (points)", "far-OOD AUROC, MSP (points)")
    mean, low, high = (100 * v for v in hand_interval(MOON_DIFF["id.accuracy"]))
    assert table.loc[("RigL", "0.05"), ACC] == f"+{mean:.1f} [{low:+.1f}, +{high:.1f}] *"
    assert table.loc[("SET", "0.1"), ECE].startswith("−2.1 [−")       # unicode minus
    assert not table.loc[("SET", "0.1"), NEAR].endswith("*")
    nll = paired_moon_table(frame, metrics=("id.nll",))
    assert list(nll.columns) == ["n", "NLL"]                            # no unit: not a percent
    assert nll.loc[("dense", "1"), "NLL"].startswith("−0.050 [")        # raw, 3 decimals
    assert (table["n"] == 3).all()
    # every cell is the stats row formatted: x100 for percent metrics, " *" where it excludes 0
    long = paired_moon_frame(frame)
    names = {"dense": "dense", "rigl": "RigL", "set": "SET"}
    for row in long.to_dict("records"):
        cell = table.loc[(names[row["method"]], f"{row['density']:g}"),
                         metric_label(row["metric"], difference=True)]
        assert cell == interval_text(row, 100)
        assert cell.endswith(" *") == row["excludes_zero"]


def test_pairing_needs_the_same_configuration_and_one_run_per_side(frame, caplog):
    other = run_row("rigl", 0.05, 0, True, epochs=7)          # no baseline with 7 epochs
    with caplog.at_level(logging.INFO, logger="moon.report.stats"):
        long = paired_moon_frame(pd.concat([frame, make_frame([other])], ignore_index=True))
    assert (long["n"] == 3).all() and "no partner" in caplog.text
    unmatched = [r for r in caplog.records if "no partner" in r.getMessage()]
    assert unmatched and all(r.name == "moon.report.stats" and r.levelno == logging.INFO
                             for r in unmatched)               # expected in some studies: INFO
    assert "1 of 16 runs" in unmatched[0].getMessage()        # 15 MOON runs + the extra one
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
    assert row["p_value"] == pytest.approx(stats.ttest_ind(sparse, dense, equal_var=False).pvalue)
    assert 0 < row["mde"] < 0.05                       # detectable with 3 against 3 runs
    assert row["n"] == row["n_base"] == 3                   # MOON runs are not counted
    assert row["excludes_zero"] and row["mean_diff"] < 0    # 0.0575 lower, small noise
    table = sparsity_effect_table(frame, metrics=("id.accuracy",))
    assert table.index.names == ["method", "density"] and list(table.columns) == ["n", ACC]
    assert "dense" not in table.index.get_level_values("method")       # the reference
    assert table.loc[("SET", "0.05"), ACC] == interval_text(row, 100)
    assert table.loc[("SET", "0.05"), ACC].startswith("−5.") \
        and table.loc[("SET", "0.05"), ACC].endswith(" *")


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


def test_ablation_frame_pairs_each_part_with_none_by_seed(ablation_frame):
    long = report_stats.ablation_frame(ablation_frame, ["ood.near.msp.auroc", "ood.far.msp.auroc"])
    assert list(long.columns[:2]) == ["ablation", "metric"]
    assert list(dict.fromkeys(long["ablation"])) == list(ABLATION_ORDER[1:])   # "none" is the 0
    assert (long["n"] == 3).all()
    near = long[long["metric"] == "ood.near.msp.auroc"].set_index("ablation")
    for part, label in zip(PARTS, ABLATION_ORDER):
        if part not in ("none", "moon"):                       # a constant offset: no spread
            assert near.loc[label, ["mean_diff", "low", "high"]].tolist() == \
                pytest.approx([PART_NEAR[part]] * 3)
            assert near.loc[label, "excludes_zero"]
    moon = near.loc["MOON"]
    assert (moon["mean_diff"], moon["low"], moon["high"]) == \
        pytest.approx(hand_interval([0.03, 0.032, 0.034]))
    far = long[long["metric"] == "ood.far.msp.auroc"]
    assert far["mean_diff"].to_numpy() == pytest.approx(0.0) and not far["excludes_zero"].any()


def test_ablation_table_rows_means_and_paired_delta(ablation_frame):
    table = ablation_table(ablation_frame)
    assert list(table.index) == list(ABLATION_ORDER)
    assert (table["n"] == 3).all()
    near_delta, far_delta = f"Δ {NEAR} vs none", f"Δ {FAR} vs none"
    assert list(table.columns) == ["n", "accuracy (%)", "ECE (%)", "NLL",
                                   "near-OOD AUROC, MSP (%)", "far-OOD AUROC, MSP (%)",
                                   near_delta, far_delta]
    values = [100 * base_value("id.accuracy", "rigl", 0.05, s) for s in SEEDS]
    assert table.loc["none", "accuracy (%)"] == \
        f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"
    assert table.loc["none", "NLL"].startswith("0.4") and len(table.loc["none", "NLL"]) == 13
    delta = table[near_delta]
    assert delta["none"] == ""
    assert delta["unknown class"] == "+2.0 [+2.0, +2.0] *"       # constant offset: no spread
    mean, low, high = (100 * v for v in hand_interval([0.03, 0.032, 0.034]))
    assert delta["MOON"] == f"+{mean:.1f} [+{low:.1f}, +{high:.1f}] *"
    assert table[far_delta]["averaging"] == "+0.0 [+0.0, +0.0]"
    long = report_stats.ablation_frame(ablation_frame, ["ood.near.msp.auroc"])
    for row in long.to_dict("records"):                        # the table formats the frame
        assert delta[row["ablation"]] == interval_text(row, 100)
    by_column = ablation_table(ablation_frame, label="parts")
    assert list(by_column.index) == ["none"] + sorted(set(PARTS) - {"none"})   # known labels first
    assert by_column.loc["moon", near_delta] == delta["MOON"]
    with pytest.raises(ValueError, match="one method and density"):
        ablation_table(pd.concat([ablation_frame, make_frame([run_row("set", 0.1, 0, False)])]))


# --------------------------------------------------------------------------------------------------
# Cost, post-hoc detectors, calibration
# --------------------------------------------------------------------------------------------------
def test_cost_frame_flops_memory_and_moon_time_ratio(frame):
    table = report_stats.cost_frame(frame)
    assert table.index.names == ["method", "density", "moon"] and len(table) == 2 * len(CELLS)
    assert (table["n"] == 3).all()
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


def test_cost_table_formats_the_cost_frame(frame):
    table = cost_table(frame)
    assert table.index.names == ["method", "density", "moon"] and len(table) == 2 * len(CELLS)
    assert list(table.columns) == ["runs", "training FLOPs (share of dense)", "training time (s)",
                                   "images / s", "peak memory (MiB)", "MOON time / baseline"]
    ratio, low, high = hand_interval(TIME_RATIO)
    moon, base = table.loc[("RigL", "0.05", "MOON")], table.loc[("RigL", "0.05", "baseline")]
    assert moon["runs"] == 3
    assert moon["training FLOPs (share of dense)"] == "0.050"
    assert moon["peak memory (MiB)"] == "60" and base["peak memory (MiB)"] == "50"
    assert base["training time (s)"] == "110.0"
    assert base["images / s"] == f"{np.mean([12000, 12000 / 1.1, 12000 / 1.2]):,.0f}"   # "10,970"
    assert moon["MOON time / baseline"] == f"{ratio:.2f} [{low:.2f}, {high:.2f}]"
    assert base["MOON time / baseline"] == ""
    assert table.loc[("dense", "1", "baseline"), "training FLOPs (share of dense)"] == "1.000"
    no_flops = cost_table(frame.drop(columns=["extra.flops.train_step"]))
    assert (no_flops["training FLOPs (share of dense)"] == "").all()      # older result files


def test_posthoc_table_has_a_column_per_present_detector(frame):
    table = posthoc_table(frame, kind="far")
    assert table.index.names == ["variant", "density"]
    assert list(table.columns) == ["n", "MSP", "energy", "DICE"]      # react etc. not in the frame
    assert table.columns.name == "far-OOD AUROC (%)"
    values = [100 * (0.90 + 0.01 * s) for s in SEEDS]
    expected = f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"
    assert table.loc[("dense", "1"), "energy"] == expected
    assert (table["n"] == 3).all()
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
    assert list(table.columns) == ["n", "accuracy (%)", "ECE (%)", "adaptive ECE (%)", "NLL",
                                   "Brier score", "fitted temperature",
                                   "ECE after temperature scaling (%)",
                                   "NLL after temperature scaling"]
    row = table.loc[("RigL", "0.05", "MOON")]
    assert row["ECE after temperature scaling (%)"] == "1.1 ± 0.1"      # x100
    assert row["NLL after temperature scaling"] == "0.300 ± 0.000"
    assert row["fitted temperature"] == "1.500 ± 0.000"                 # not x100
    ece = [100 * (base_value("id.ece", "rigl", 0.05, s) + MOON_DIFF["id.ece"][s]) for s in SEEDS]
    assert row["ECE (%)"] == f"{np.mean(ece):.1f} ± {np.std(ece, ddof=1):.1f}"


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------
def dots(ax, marker: str = "o") -> list:
    """The single-point marker lines of a panel (the plotted dots), top to bottom."""
    points = [line for line in ax.get_lines()
              if line.get_marker() == marker and len(line.get_xdata()) == 1]
    return sorted(points, key=lambda line: float(line.get_ydata()[0]))


def dot_x(ax, marker: str = "o") -> list[float]:
    return [float(line.get_xdata()[0]) for line in dots(ax, marker)]


def test_figures_return_figures_and_write_pngs(frame, ablation_frame, tmp_path):
    figures = {
        "paired": (headline_figure(paired_moon_frame(frame), tmp_path / "paired.png"), 4),
        "ablation": (ablation_plot(ablation_frame, path=tmp_path / "ablation.png"), 4),
        "calibration": (calibration_overview(frame, path=tmp_path / "calibration.png"), 1),
    }
    for name, (fig, axes) in figures.items():
        assert isinstance(fig, Figure) and len(fig.axes) == axes, name
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [t.get_text() for t in figures["ablation"][0].axes[0].get_yticklabels()]
    assert labels == list(ABLATION_ORDER[1:])                 # every part but the reference


CELL_ORDER = ["dense", "SET 0.1", "SET 0.05", "RigL 0.1", "RigL 0.05"]   # dense first, then sparser


def test_headline_figure_panels_per_metric_with_every_setting_at_its_difference(two_models):
    paired = paired_moon_frame(two_models)
    # shift each setting's difference (and its interval) by its own amount, so that a dot drawn
    # in the wrong row would be seen
    shift = {cell: 0.001 * i for i, cell in enumerate(sorted(set(zip(paired["model"],
                                                                    paired["method"],
                                                                    paired["density"]))))}
    offset = np.array([shift[c] for c in zip(paired["model"], paired["method"],
                                             paired["density"])])
    for column in ("mean_diff", "low", "high"):
        paired[column] = paired[column] + offset
    fig = headline_figure(paired)
    metrics = list(PRIMARY_METRICS)
    assert len(fig.axes) == len(metrics)                      # a panel per metric, one row
    assert [ax.get_title() for ax in fig.axes] == [metric_label(m, short=True) for m in metrics]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [f"{name} · {cell}" for name in ("LeNet-5", "MLP") for cell in CELL_ORDER]
    names = {"dense": "dense", "set": "SET", "rigl": "RigL"}
    models = {"lenet5": "LeNet-5", "mlp": "MLP"}
    for ax, metric in zip(fig.axes, metrics):
        rows = paired[paired["metric"] == metric]
        expected = {f"{models[o]} · " + (f"{names[m]} {d:g}" if m != "dense" else "dense"):
                    (100 * x, z) for o, m, d, x, z in zip(rows["model"], rows["method"],
                                                          rows["density"], rows["mean_diff"],
                                                          rows["excludes_zero"])}
        drawn = dots(ax)
        assert len(drawn) == len(labels)
        assert [float(line.get_ydata()[0]) for line in drawn] == list(range(len(labels)))
        for label, line in zip(labels, drawn):
            x, filled = expected[label]
            assert float(line.get_xdata()[0]) == pytest.approx(x)
            # filled where the interval excludes 0, hollow where it does not
            assert (line.get_markerfacecolor() != "white") == filled
        rules = [line for line in ax.get_lines() if len(set(line.get_ydata())) == 1
                 and len(line.get_xdata()) == 2 and tuple(line.get_xdata()) == (0, 1)]
        assert [line.get_ydata()[0] for line in rules] == [len(CELL_ORDER) - 0.5]  # between models
    acc = dot_x(fig.axes[metrics.index("id.accuracy")])
    n = len(CELL_ORDER)
    ordered = sorted(shift, key=_cell_rank)              # the figure's row order
    mlp_minus_lenet = [acc[n + i] - acc[i] - 100 * (shift[mlp] - shift[lenet])
                       for i, (lenet, mlp) in enumerate(zip(ordered[:n], ordered[n:]))]
    # the mlp's gain is twice the lenet5's
    assert mlp_minus_lenet == pytest.approx([100 * np.mean(MOON_DIFF["id.accuracy"])] * n)
    assert dots(fig.axes[metrics.index("ood.near.msp.auroc")])[0].get_markerfacecolor() == "white"


def _cell_rank(key):
    model, method, density = key
    return (model, ["dense", "static", "set", "rigl", "cigl"].index(method), -density)


def test_ablation_plot_is_a_panel_per_metric_with_dots_at_the_paired_changes(ablation_frame):
    metrics = ("ood.near.msp.auroc", "id.ece", "id.missing")     # a missing metric is skipped
    fig = ablation_plot(ablation_frame, metrics=metrics)
    assert len(fig.axes) == 2
    long = report_stats.ablation_frame(ablation_frame, ["ood.near.msp.auroc", "id.ece"])
    for ax, metric in zip(fig.axes, ("ood.near.msp.auroc", "id.ece")):
        assert ax.get_xlabel() == f"{metric_label(metric, difference=True)} vs none"
        rows = long[long["metric"] == metric].set_index("ablation")
        assert dot_x(ax) == pytest.approx(100 * rows.loc[list(ABLATION_ORDER[1:]),
                                                        "mean_diff"].to_numpy())
    near = dot_x(fig.axes[0])
    assert near == pytest.approx([100 * PART_NEAR[p] + (0.2 if p == "moon" else 0)
                                  for p in PARTS if p != "none"])
    by_column = ablation_plot(ablation_frame, metrics=metrics, label="parts")
    assert [t.get_text() for t in by_column.axes[0].get_yticklabels()] == \
        sorted(set(PARTS) - {"none"})
    with pytest.raises(ValueError, match="one method and density"):
        ablation_plot(pd.concat([ablation_frame, make_frame([run_row("set", 0.1, 0, False)])]))


def test_calibration_overview_has_a_panel_per_model_with_mean_ece(frame, two_models):
    one = calibration_overview(frame)
    assert len(one.axes) == 1 and one.axes[0].get_title() == "LeNet-5"
    fig = calibration_overview(two_models)
    assert [ax.get_title() for ax in fig.axes] == ["LeNet-5", "MLP"]
    methods = {"dense": ("dense", 1.0), "SET 0.1": ("set", 0.1), "SET 0.05": ("set", 0.05),
               "RigL 0.1": ("rigl", 0.1), "RigL 0.05": ("rigl", 0.05)}
    for ax, model in zip(fig.axes, ("lenet5", "mlp")):
        assert [t.get_text() for t in ax.get_yticklabels()] == CELL_ORDER
        assert ax.get_xlabel() == "ECE (%)"
        runs = two_models[two_models["model"] == model]
        for marker, label in (("o", "baseline"), ("s", "MOON")):     # baseline dots, MOON squares
            expected = [100 * runs[(runs["method"] == m) & (runs["density"] == d)
                                   & (runs["moon"] == label)]["id.ece"].mean()
                        for m, d in (methods[c] for c in CELL_ORDER)]
            assert dot_x(ax, marker) == pytest.approx(expected)
        ts = dot_x(ax, "D")                                   # after temperature scaling
        assert len(ts) == 2 * len(CELL_ORDER) and ts == pytest.approx([100 * 0.011] * len(ts))


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


def test_verdict_is_three_to_five_bold_led_bullets(frame, two_models):
    from moon.report import headline

    bullets = headline.verdict(frame)
    assert 3 <= len(bullets) <= 5 and all(b.startswith("**") for b in bullets)
    assert all(b.count("**") == 2 for b in bullets)           # one bold lead each
    near, far, acc, ece, premise = bullets                   # the primary metrics, then the premise
    mde = 100 * paired_moon_frame(frame).groupby("metric")["mde"].median()
    assert near.startswith("**Near-OOD AUROC: no measurable change** (+0.2 to "
                           "+0.2 points in 5 settings")
    assert f"detectable ±{mde['ood.near.msp.auroc']:.1f})" in near  # a sized null
    assert far.startswith("**Far-OOD AUROC: measurably higher in 5 of 5 settings, lower in none** (+3.0 "
                          "to +3.0 points")
    assert acc.startswith("**Accuracy: measurably higher in 5 of 5 settings, lower in none** (+1.1 to "
                          "+1.1 points")
    assert ece.startswith("**ECE: measurably lower in 5 of 5 settings, higher in none** (−2.1 to −2.1")
    assert premise == ("**Premise: calibration half held, accuracy and OOD half held** (sparse "
                       "− dense, 4 sparse settings, unadjusted 95%: worse calibrated "
                       "in 4; worse in near-OOD AUROC in 4, far-OOD AUROC in 4, accuracy in 4).")
    both = headline.verdict(two_models)                      # per-model rows, never pooled
    assert both[2].startswith("**Accuracy: measurably higher in 10 of 10 settings, lower in none** "
                              "(+1.1 to +2.1 points")
    no_dense = headline.verdict(frame[frame["method"] != "dense"])
    assert len(no_dense) == 4                                # no premise without dense runs
    markdown = headline.verdict_markdown(frame, planned=40)
    assert markdown.startswith("*30 of 40 runs so far (LeNet-5 on Fashion-MNIST, 20 epochs on all "
                               "training images, 3 seeds per setting); the study is still running")
    assert markdown.split("\n\n", 1)[1] == "\n".join(f"- {b}" for b in bullets)
    assert headline.verdict_markdown(frame, planned=30).startswith(
        "*From LeNet-5 on Fashion-MNIST, 20 epochs on all training images, 3 seeds per setting, "
        "30 runs.*")


def test_headline_text_and_table_per_model(two_models, frame):
    from moon.report import headline

    lines = headline.headline_text(two_models).splitlines()
    assert len(lines) == 2 * len(CELLS) * len(PRIMARY_METRICS)        # a bullet per row
    assert all(line.startswith("- LeNet-5 ") or line.startswith("- MLP ") for line in lines)
    effects = paired_moon_frame(two_models)
    row = effects[(effects["model"] == "mlp") & (effects["method"] == "rigl")
                  & (effects["density"] == 0.05) & (effects["metric"] == "id.accuracy")].iloc[0]
    assert (f"- MLP RigL 0.05, accuracy: {interval_text(row, 100)} points "
            f"(3 pairs, p = {row['p_value']:.3f})") in lines
    assert "- dense, ECE: −2.1 [" in headline.headline_text(frame)     # one model: no model name
    table = headline.headline_table(two_models)
    assert table.index.names == ["model", "method", "density"] and len(table) == 2 * len(CELLS)
    assert list(table.columns) == ["n", NEAR, FAR, ACC, ECE]
    assert table.loc[("LeNet-5", "RigL", "0.05"), ECE].startswith("−2.1 [")
    assert table.loc[("MLP", "RigL", "0.05"), ACC] == interval_text(row, 100)


def test_paper_vs_ours_answers_every_published_claim(frame):
    import yaml

    from moon.report import claims as report_claims

    claims = yaml.safe_load(report_claims.PUBLISHED.read_text())["claims"]
    table = report_claims.paper_vs_ours(frame)
    assert list(table.index) == [c["claim"] for c in claims]
    assert list(table.columns) == ["published", "this study", "verdict", "source"]
    verdicts = dict(zip((c["measure"] for c in claims), table["verdict"]))
    assert verdicts["moon_ece"] == "reproduced"            # MOON lowers ECE in every setting
    assert verdicts["moon_accuracy"] == "reproduced"       # and raises accuracy
    assert verdicts["sparse_minus_dense_ece"] == "reproduced"   # the fixture's sparse is worse
    assert verdicts["moon_best_auroc"] in ("reproduced", "partly")   # far AUROC +3 points
    assert table["published"].tolist() == [c["published"] for c in claims]
    sources = report_claims.sources_markdown()
    for c in claims:
        assert table.loc[c["claim"], "source"] == c["cite"]       # the short citation ...
        assert f"- **{c['cite']}**: " in sources and c["source"] in sources   # ... and the full one
    groups = {g: report_claims.paper_vs_ours(frame, group=g) for g in ("moon", "related")}
    assert sorted(sum((list(t.index) for t in groups.values()), [])) == sorted(table.index)
    assert list(groups["moon"].index) == [c["claim"] for c in claims if c["group"] == "moon"]
    with pytest.raises(ValueError, match="no claims of group 'other'"):
        report_claims.paper_vs_ours(frame, group="other")
    answer = {c["measure"]: table.loc[c["claim"], "this study"] for c in claims}
    sparse = paired_moon_frame(frame)
    sparse = sparse[sparse["metric"].str.endswith("msp.auroc") & (sparse["method"] != "dense")]
    best = sparse.loc[sparse["mean_diff"].idxmax()]
    assert answer["moon_best_auroc"].startswith(f"best {interval_text(best, 100)} (")
    assert "dense" not in answer["moon_best_auroc"]            # the claim is about sparse training
    up = int((sparse["excludes_zero"] & (sparse["mean_diff"] > 0)).sum())
    assert answer["moon_best_auroc"].endswith(
        f"higher in {up} of {len(sparse)}")
    assert answer["moon_accuracy"].startswith("+1.1 to +1.1; worse in 0 of 5 (no equivalence test: "
                                              "detectable ±")
    assert answer["moon_ece"].startswith("−2.1 to −2.1; worse in 0 of 5 (no equivalence test")
    premise = sparsity_effect_frame(frame, metrics=("id.ece",))
    rigl = premise[(premise["method"] == "rigl") & (premise["density"] == 0.05)].iloc[0]
    assert answer["sparse_minus_dense_ece"].startswith(
        f"RigL 0.05 − dense: LeNet-5 {interval_text(rigl, 100)}; beside it, not judged here: "
        "RigL 0.05 − dense, near-OOD AUROC: LeNet-5 ")   # the premise's other half, labelled
    assert "RigL 0.05 − dense, accuracy: LeNet-5 " in answer["sparse_minus_dense_ece"]
    assert answer["cigl_minus_rigl_ece"] == answer["cigl_minus_rigl_accuracy"] \
        == "not in this study"                                # no CigL runs in the frame
    gain, low, high = (100 * v for v in hand_interval(GAIN["baseline"]))      # plain runs only
    each = f"+{gain:.1f} [+{low:.1f}, +{high:.1f}] *"
    assert answer["dice_minus_energy_near"] == ("near-OOD AUROC, DICE − energy: "
                                                f"LeNet-5 dense: {each}; LeNet-5 RigL 0.05: "
                                                f"{each}; LeNet-5 SET 0.05: {each}")


def test_not_reproduced_names_our_number_and_its_explanation(frame):
    from moon.report import claims, headline

    assert claims.not_reproduced(frame) == []        # MOON raised far AUROC; the premise held
    flat = frame.copy()
    for column in ("ood.near.msp.auroc", "ood.far.msp.auroc"):     # MOON = baseline, per seed
        flat[column] = 0.8 + 0.01 * flat["seed"]
    plain = ~flat["unknown_class"].astype(bool)
    sparse = flat["method"] != "dense"
    flat.loc[sparse & plain, "id.ece"] = 0.02 + 0.001 * flat["seed"]   # sparse better calibrated
    flat.loc[~sparse & plain, "id.ece"] = 0.05 + 0.001 * flat["seed"]
    flat.loc[~sparse, "id.temperature"] = 1.8
    flat["extra.unknown_mass.id_test"] = np.where(flat["unknown_class"], 0.0002, np.nan)
    flat["extra.unknown_mass.photos"] = np.where(flat["unknown_class"], 0.004, np.nan)
    auroc, premise = claims.not_reproduced(flat)
    assert auroc.startswith("**MOON's AUROC gain.** Published: up to +8.4 points. Ours: at best "
                            "+0.0 [+0.0, +0.0] points (")
    assert "no sparse setting rose measurably (0 of 8 setting x group cells)" in auroc
    assert "a median 0.020% of the probability on ID test images and 0.40% on the OOD set" in auroc
    assert premise.startswith("**The premise.** Published: sparse RigL's ECE +3.6 points above "
                              "dense")
    assert "Ours: sparse − dense −3.0 to −3.0 points, worse calibrated in 0 of 4" in premise
    assert "temperature of the baselines is 1.80 dense and 1.50 sparse" in premise
    # which half of the premise failed: calibration; the OOD AUROCs are equal here, accuracy not
    assert headline.premise_bullet(flat).startswith(
        "**Premise: calibration half failed, accuracy and OOD half partly held** (sparse − dense"
        ", 4 sparse settings, unadjusted 95%: better calibrated in 4; worse in "
        "near-OOD AUROC in 0")


def test_limitations_carry_their_numbers(frame, tmp_path):
    from moon.report import claims

    bullets = claims.limitations(frame)
    # no test-set size, far-OOD set or commit known in the fixture
    assert [b.split("**")[1] for b in bullets] == ["Seeds.", "Scale.", "One score."]
    far = frame.assign(**{"ood.photos.msp.auroc": 0.9, "ood.textures.msp.auroc": 0.8,
                          "provenance.git_sha": ["a" * 40, "b" * 40] * (len(frame) // 2)})
    more = claims.limitations(far)
    assert "is 4,000 crops of 10 source images (2 for photos, 8 for textures)" in more[-2]
    assert more[-1].startswith(f"**Code versions.** These {len(far)} runs ran from 2 commits")
    assert "uncommitted" not in more[-1] and "was not checked by retraining" in more[-1]
    # MOON runs from one commit, baselines from another: every pair is split; one commit: none
    moon_runs = frame["unknown_class"].astype(bool)
    apart = frame.assign(**{"provenance.git_sha": moon_runs.map({True: "a" * 40, False: "b" * 40})})
    together = frame.assign(**{"provenance.git_sha": "a" * 40})
    n_pairs = len(report_stats.moon_pairs(frame, ["id.ece"]))
    assert n_pairs > 0
    assert f"In {n_pairs} of the {n_pairs} MOON–baseline pairs the two runs ran from different " \
           "commits." in claims.limitations(apart)[-1]
    assert f"In 0 of the {n_pairs} MOON–baseline pairs" in claims.limitations(together)[-1]
    record = tmp_path / "reproduce.txt"
    record.write_text("# python -m moon reproduce X --cells 3 (commit abc1234, 2026-12-06)\n"
                      "same: cell: 490 metrics, max |diff| 0\n3 of 3 reruns reproduce X (tolerance 0)\n")
    dirty = far.assign(**{"provenance.git_dirty": [True] + [False] * (len(far) - 1)})
    code = claims.limitations(dirty, reproduced=record)[-1]
    assert "ran from 2 commits" in code and "1 of them from a checkout with uncommitted" in code
    assert code.endswith("(python -m moon reproduce X --cells 3 (commit abc1234, 2026-12-06)): 3 of "
                         "3 reruns reproduce X (tolerance 0); the other runs were not retrained.")
    record.write_text("# python -m moon reproduce X --cells 2 (commit abc1234, 2026-12-06)\n"
                      "DIFFERENT: a: 490 metrics, max |diff| 0.3 (ood.x.vim.fpr95); |diff| of "
                      "accuracy 0.0002, ECE 0.0013, MSP AUROC 0.002\n"
                      "DIFFERENT: b: 490 metrics, max |diff| 0.1 (ood.y.knn.fpr95); |diff| of "
                      "accuracy 0.0004, ECE 0, MSP AUROC 0.001\n0 of 2 reruns reproduce X\n")
    code = claims.limitations(dirty, reproduced=record)[-1]
    assert ("the largest metric difference 0.3 (a fraction; every metric of a run counted); in the "
            "numbers the verdict reads, up to 0.04 points of accuracy, 0.13 points of ECE, 0.20 "
            "points of MSP AUROC; the other runs") in code
    mde = 100 * paired_moon_frame(frame).groupby("metric")["mde"].median()
    assert bullets[0].startswith("**Seeds.** 3 or more seeds per setting")
    assert (f"±{mde['ood.near.msp.auroc']:.1f} points of near-OOD AUROC, "
            f"±{mde['ood.far.msp.auroc']:.1f} far, ±{mde['id.accuracy']:.1f} accuracy and "
            f"±{mde['id.ece']:.1f} ECE") in bullets[0]
    hours = frame["timing.train_seconds"].sum() / 3600
    assert f"({hours:.1f} hours of training in these 30 runs)" in bullets[1]
    assert bullets[1].startswith("**Scale.** LeNet-5 on 28x28")
    with_n = claims.limitations(frame.assign(**{"id.n": 10000}))
    assert len(with_n) == 4 and with_n[2].startswith("**Benchmark.** 10,000 ID test images")


def test_chapter_conclusions_name_their_numbers(frame, ablation_frame):
    from moon.report import conclusions

    sweep = conclusions.sweep_conclusion(frame)
    assert sweep.startswith("**What this shows.** ") and sweep.count("**") == 2
    assert sweep.startswith("**What this shows.** MOON against its baseline. Near-OOD AUROC: ")
    assert "Accuracy: measurably higher in 5 of 5 settings, lower in none (+1.1 to +1.1 points" in sweep
    ablation = conclusions.ablation_conclusion(ablation_frame)
    mean, low, high = (100 * v for v in hand_interval([0.03, 0.032, 0.034]))
    assert f"MOON +{mean:.1f} [+{low:.1f}, +{high:.1f}] *" in ablation
    assert "far-OOD AUROC, MSP: no part moved it measurably" in ablation
    ratio = np.mean(TIME_RATIO)
    assert f"MOON trained in {ratio:.2f}x to {ratio:.2f}x its baseline's time" in \
        conclusions.cost_conclusion(frame)


def test_calibration_and_regime_conclusions_carry_their_numbers(frame):
    from moon.report import conclusions

    ece = paired_moon_frame(frame, metrics=("id.ece",))
    text = conclusions.calibration_conclusion(frame)
    lower = int((ece["excludes_zero"] & (ece["mean_diff"] < 0)).sum())
    assert text.startswith("**What this shows.** ECE: MOON − baseline")
    assert f"measurably lower in {lower} and higher in 0 of {len(ece)} settings" in text
    answers = {"fits": True, "dense_train_acc": [0.995, 0.999], "overconfident": True,
               "dense_temperature": [1.5, 1.8], "premise_share": 0.25,
               "premise_mean_diff": -0.016, "train_error_at_alpha_half": [0.02, 0.1]}
    one = {"n": 10, "r": -0.5, "low": -0.8, "high": 0.1, "predicted_share": 0.6}
    link = {**one, "by_study": {"paper": one}}
    regime = conclusions.regime_conclusion(answers, link)
    assert "The dense baseline fits its training data (final training accuracy 99.50-99.90%)" in regime
    assert "fitted temperature 1.50-1.80" in regime and "holds in 25% of sparse" in regime
    assert "mean ECE gap −1.6 points" in regime and "training error is 2.0-10.0%" in regime
    assert "paper: r = −0.50 [−0.80, +0.10] (10 pairs; predicted sign in 60%)" in regime
    assert "supported in every study" in regime and "Simpson" not in regime


def sweep_frame() -> pd.DataFrame:
    """Runs with a DICE sweep: AUROC = 0.7 + p/1000 + set offset + seed noise, sparse runs 0.02
    lower; two near sets (offsets 0 and 0.04) and one far set."""
    from moon.report.stats import DICE_SWEEP_PREFIX

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
    from moon.report.figures import dice_sweep_plot
    from moon.report.stats import dice_sweep_frame
    from moon.report.tables import dice_sweep_table

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
    assert table.columns.name == "DICE AUROC (%)"
    assert table.index.names == ["method", "density", "kind"]
    assert table.loc[("dense", "1", "near"), "p = 0"] == pytest.approx(100 * (0.7 + 0.02 + 0.01))
    assert table.loc[("RigL", "0.05", "near"), "p = 50"] == pytest.approx(round(100 * mean, 1))
    fig = dice_sweep_plot(sweep, tmp_path / "sweep.png")      # no moon column: one line a setting
    assert isinstance(fig, Figure) and (tmp_path / "sweep.png").exists()
    assert [ax.get_title() for ax in fig.axes] == ["near-OOD", "far-OOD"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["dense", "RigL 0.05"]
    rigl = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"][1]
    assert np.asarray(rigl.get_xdata(), float) == pytest.approx([0, 50, 90])
    assert float(np.asarray(rigl.get_ydata(), float)[1]) == pytest.approx(100 * mean)
    with_moon = dice_sweep_plot(dice_sweep_frame(sweep_frame()))   # default by: moon included
    assert [t.get_text() for t in with_moon.axes[0].get_legend().get_texts()] == \
        ["dense baseline", "RigL 0.05 baseline"]


def test_dice_sweep_frame_is_empty_for_old_results(frame):
    from moon.report.stats import dice_sweep_frame

    assert dice_sweep_frame(frame).empty


def test_primary_endpoints_are_one_holm_family_with_detectable_effects(frame):
    from moon.report.stats import primary_endpoints
    from moon.statistics import holm

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


def test_verdict_names_the_declared_family_adjusts_it_and_labels_the_rest(frame):
    """With a study's endpoints the verdict leads with the declared family's Holm count, reports
    a consistent sign as post hoc, marks unadjusted counts as such and says which half of the
    premise held (here: sparse is worse than dense in every metric of the fixture)."""
    from moon.report import headline
    from moon.statistics import holm

    endpoints = {"primary": {"contrast": {"axis": "moon"}, "alpha": 0.05,
                             "cells": {"method": ["rigl"], "density": [0.05]},
                             "metrics": ["ood.near.msp.auroc", "id.ece"]}}
    bullets = headline.verdict(frame, endpoints)
    long = report_stats.primary_endpoints(frame, endpoints)
    np.testing.assert_allclose(long["p_holm"], holm(long["p_value"]))
    assert long["significant"].tolist() == [False, True]          # near AUROC, ECE
    model = model_name(frame["model"].iloc[0])                     # the fixture's one model
    assert bullets[0].startswith(f"**Declared primary family (2 comparisons on {model}, Holm): "
                                 "1 survive")
    assert "ECE reductions" in bullets[0] and "no near-OOD AUROC change survives" in bullets[0]
    near = paired_moon_frame(frame, metrics=("ood.near.msp.auroc",))
    up = int((near["mean_diff"] > 0).sum())
    assert f"higher in {up} of {len(near)} settings" in bullets[1] and "sign test" in bullets[1]
    assert "unadjusted" in bullets[2]
    assert "temperature shift" in bullets[3]
    assert bullets[-1].startswith("**Premise: calibration half held, accuracy and OOD half held** "
                                  "(sparse − dense, 4 sparse settings, unadjusted 95%: "
                                  "worse calibrated in 4")
    assert "accuracy in 4)" in bullets[-1]
    assert headline.verdict(frame) == headline.verdict(frame, {})   # no family: as before


def test_no_page_pools_an_alpha_sweep_into_moon(frame):
    """Every summary a page shows groups by a setting and MOON label; a run that differs in
    another field (an alpha_final sweep) is refused, never averaged into "MOON"."""
    sweep = pd.DataFrame([run_row("rigl", 0.05, s, True, alpha_final=3.0) for s in SEEDS])
    mixed = pd.concat([frame, sweep], ignore_index=True)
    for page in (lambda f: calibration_table(f), lambda f: report_stats.cost_frame(f),
                 lambda f: posthoc_table(f, detectors=("energy", "dice")),
                 lambda f: report_stats.density_summary(f[f["method"] == "rigl"], "id.ece",
                                                        hue="moon")):
        page(frame)                                                  # one value per field: fine
        with pytest.raises(ValueError, match="alpha_final"):
            page(mixed)
    alpha = report_stats.alpha_sweep_frame(mixed, ["id.ece"])       # the sweep, shown apart
    assert sorted(alpha[alpha["method"] == "rigl"]["alpha_final"].unique()) == [1.0, 3.0]


def test_chapters_end_with_answers(frame):
    """The post-hoc and cost chapters answer their questions: does DICE add to MOON (the
    interaction, counted), does MOON cost extra training time (the ratio's interval above 1)."""
    from moon.report import conclusions

    dice = conclusions.dice_moon_answer(frame)
    inter = posthoc_gain_frame(frame)
    inter = inter[inter["moon"] == "MOON − baseline"]
    assert dice.startswith("**Does DICE add to MOON?**") and f"of {len(inter)} setting" in dice
    assert "interactions under about ±" in dice                   # a sized null
    cost = conclusions.cost_conclusion(frame)
    assert "does MOON cost extra training time? Yes in 5 of 5 settings" in cost   # 1.08-1.12x
    assert "unadjusted 95% interval" in cost and "no training-cost figure" in cost
    # the best detector per setting, counted over settings, never one mean pooled over them
    posthoc = conclusions.posthoc_conclusion(frame)
    settings = frame[frame["moon"] == "baseline"].groupby(["model", "method", "density"]).ngroups
    for kind in ("near", "far"):
        wins = re.search(rf"[Oo]n {kind}-OOD the best detector of a plain setting was (.*?) of "
                         r"(\d+) settings", posthoc)
        assert wins and int(wins[2]) == settings
        assert sum(int(part.rsplit(" in ", 1)[1]) for part in wins[1].split(", ")) == settings


def test_p_values_in_words_never_read_zero():
    """A p-value below 0.001 reads "p < 0.001", never "p = 0.000" (the intro's long text did)."""
    from moon.report.tables import p_phrase

    assert p_phrase(3e-6) == "p < 0.001"
    assert p_phrase(0.0117) == "p = 0.012"
