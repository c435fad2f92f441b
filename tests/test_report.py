"""Report tables and figures from synthetic result files: frames, near/far means, mean ± std strings,
OOD tables, t-intervals over seeds, and every figure function drawing and saving."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats

from moon.config import RunConfig
from moon.report.figures import density_panels
from moon.report.frame import moon_label, results_frame, variant_label
from moon.report.run_figures import (plot_history, reliability_diagram, roc_curves,
                                     run_title, score_histograms)
from moon.report.stats import density_summary
from moon.report.tables import ood_table, summary_table
from moon.results import RunResult, load_result, save_result

# kinds as result files written before the noise group stored them; the registry now puts gaussian
# under noise, and the report follows the registry
SETS = {"digits": "near", "gaussian": "far", "photos": "far"}
DETECTORS = ("msp", "energy")
BINS = 15


def auroc(method: str, density: float, seed: int, ood_set: str, detector: str) -> float:
    """A distinct, hand-computable AUROC per run, set and detector."""
    base = {"digits": 0.70, "gaussian": 0.85, "photos": 0.80}[ood_set]   # every AUROC <= 1
    return base + 0.1 * density + 0.01 * seed + (0.02 if detector == "energy" else 0.0) + (
        0.03 if method == "rigl" else 0.0)


def accuracy(method: str, density: float, seed: int) -> float:
    return 0.80 + 0.1 * density + 0.02 * seed + (0.03 if method == "rigl" else 0.0)


def curves(seed: int) -> dict:
    """``extra["curves"]`` in the evaluation's shape: 15 reliability bins (the lowest empty), ROC on a
    101-point FPR grid, 40-bin score histograms for ID and each OOD set."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, 1, BINS + 1)
    conf = (edges[:-1] + edges[1:]) / 2
    acc = np.clip(conf - 0.05 + 0.02 * rng.standard_normal(BINS), 0, 1)
    count = rng.integers(5, 200, BINS)
    count[:3] = 0                                     # nobody is less than 20% confident (K=10)
    fpr = np.linspace(0, 1, 101)
    hist_edges = np.linspace(0, 1, 41)
    centres = (hist_edges[:-1] + hist_edges[1:]) / 2

    def counts(mode: float, n: int) -> list[int]:
        return rng.multinomial(n, np.exp(-((centres - mode) / 0.15) ** 2) / np.exp(
            -((centres - mode) / 0.15) ** 2).sum()).tolist()

    return {
        "reliability": {"bin_lower": edges[:-1].tolist(), "bin_upper": edges[1:].tolist(),
                        "confidence": [None if n == 0 else c for n, c in zip(count, conf)],
                        "accuracy": [None if n == 0 else a for n, a in zip(count, acc)],
                        "count": count.tolist()},
        "roc": {"fpr": fpr.tolist(),
                "tpr": {s: {d: (fpr ** (0.2 + 0.1 * i + 0.05 * j)).tolist()
                            for j, d in enumerate(DETECTORS)} for i, s in enumerate(SETS)}},
        "hist": {d: {"edges": hist_edges.tolist(), "id": counts(0.85, 2000),
                     **{s: counts(0.3 + 0.1 * i, 1000) for i, s in enumerate(SETS)}}
                 for d in DETECTORS},
        "ood_kind": dict(SETS),
    }


def make_run(method: str, density: float, seed: int, moon: bool, status="complete") -> RunResult:
    cfg = RunConfig(method=method, density=density, seed=seed, unknown_class=moon, averaging=moon,
                    ood_sets="digits,gaussian,photos", epochs=5)
    ood = {s: {d: {"auroc": auroc(method, density, seed, s, d), "aupr_in": 0.9, "aupr_out": 0.8,
                   "fpr95": 0.5 - 0.1 * seed} for d in DETECTORS} for s in SETS}
    return RunResult(
        config=cfg.to_dict(), status=status, masks={"density": density},
        id={"accuracy": accuracy(method, density, seed), "nll": 0.4 + seed * 0.1, "brier": 0.2,
            "ece": 0.03 + 0.01 * seed, "mce": 0.1, "adaptive_ece": 0.03, "n": 100},
        ood=ood, timing={"train_seconds": 10.0 + seed}, extra={"alpha0": 0.1, "curves": curves(seed)})


GRID = [("rigl", 0.05, True), ("rigl", 0.1, True), ("set", 0.05, False), ("set", 0.1, False),
        ("dense", 1.0, False)]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A results folder with 5 settings x 2 seeds complete, and one failed run."""
    folder = tmp_path_factory.mktemp("results")
    for method, density, moon in GRID:
        for seed in (0, 1):
            save_result(make_run(method, density, seed, moon), folder / f"{method}_{density}_{seed}")
    save_result(make_run("rigl", 0.05, 2, True, status="failed"), folder / "failed")
    return folder


@pytest.fixture(scope="module")
def frame(root):
    return results_frame(root)


# --------------------------------------------------------------------------------------------------
# Frames and tables
# --------------------------------------------------------------------------------------------------
def test_labels():
    assert moon_label({"unknown_class": True, "averaging": True}) == "MOON"
    assert moon_label({"unknown_class": True, "averaging": False}) == "unknown class"
    assert moon_label({"unknown_class": False, "averaging": True}) == "averaging"
    assert moon_label({"unknown_class": False, "averaging": False}) == "baseline"
    assert variant_label({"method": "rigl", "unknown_class": True, "averaging": True}) == "RigL + MOON"
    assert variant_label({"method": "set", "unknown_class": False, "averaging": False}) == "SET"


def test_results_frame_reads_complete_runs_with_near_far_means(root, frame):
    assert len(frame) == 10                                   # the failed run is left out
    assert set(frame["status"]) == {"complete"}
    assert not any(c.startswith("extra.curves") for c in frame.columns)
    assert set(frame["variant"]) == {"RigL + MOON", "SET", "dense"}
    assert set(frame.loc[frame.method == "rigl", "moon"]) == {"MOON"}
    for _, row in frame.iterrows():
        for d in DETECTORS:
            args = (row["method"], row["density"], row["seed"])
            assert row[f"ood.near.{d}.auroc"] == pytest.approx(auroc(*args, "digits", d))
            assert row[f"ood.far.{d}.auroc"] == pytest.approx(auroc(*args, "photos", d))
            assert row[f"ood.noise.{d}.auroc"] == pytest.approx(auroc(*args, "gaussian", d))
        assert row["ood.far.msp.fpr95"] == pytest.approx(0.5 - 0.1 * row["seed"])


def test_results_frame_accepts_lists_of_results_and_paths(root, frame):
    paths = sorted(root.glob("*/result.json"))
    from_paths = results_frame(paths)
    from_results = results_frame([load_result(p) for p in paths])
    assert len(from_paths) == len(from_results) == 10
    assert from_paths["id.accuracy"].tolist() == frame["id.accuracy"].tolist()
    with pytest.raises(ValueError, match="no complete results"):
        results_frame([root / "failed"])


def test_summary_table_mean_std_strings_and_counts(frame):
    table = summary_table(frame)
    assert len(table) == 5 and table["n"].tolist() == [2] * 5
    acc = [100 * accuracy("rigl", 0.05, s) for s in (0, 1)]
    expected = f"{statistics.mean(acc):.1f} ± {statistics.stdev(acc):.1f}"
    assert table.loc[("rigl", 0.05, "MOON"), "id.accuracy"] == expected
    assert table.loc[("set", 0.1, "baseline"), "id.nll"] == "0.450 ± 0.071"    # not x100
    assert table.loc[("dense", 1.0, "baseline"), "id.ece"] == "3.5 ± 0.7"
    near = [100 * auroc("set", 0.1, s, "digits", "msp") for s in (0, 1)]
    assert table.loc[("set", 0.1, "baseline"), "ood.near.msp.auroc"] == (
        f"{statistics.mean(near):.1f} ± {statistics.stdev(near):.1f}")
    one_seed = summary_table(frame[frame.seed == 0], metrics=["id.accuracy"],
                             by=["variant", "density"])
    assert one_seed.loc[("dense", 1.0), "id.accuracy"] == f"{100 * accuracy('dense', 1.0, 0):.1f}"
    with pytest.raises(ValueError, match="differ in density"):     # never pooled over densities
        summary_table(frame, metrics=["id.accuracy"], by=["variant"])
    no_near = summary_table(frame.drop(columns=["ood.near.msp.auroc"]))   # defaults it has
    assert "ood.near.msp.auroc" not in no_near and "ood.far.msp.auroc" in no_near
    with pytest.raises(ValueError, match="no column"):
        summary_table(frame, metrics=["id.nothing"])


def test_ood_table_detectors_by_sets_in_percent(root):
    run = make_run("rigl", 0.05, 1, True)
    table = ood_table(run)
    assert table.shape == (2, 6)
    assert list(table.columns) == ["digits", "photos", "gaussian", "near mean", "far mean",
                                   "noise mean"]
    assert list(table.index) == list(DETECTORS)
    for d in DETECTORS:
        values = {s: auroc("rigl", 0.05, 1, s, d) for s in SETS}
        assert table.loc[d, "gaussian"] == round(100 * values["gaussian"], 1)
        assert table.loc[d, "near mean"] == round(100 * values["digits"], 1)
        assert table.loc[d, "far mean"] == pytest.approx(round(100 * values["photos"], 1))
        assert table.loc[d, "noise mean"] == pytest.approx(round(100 * values["gaussian"], 1))
    assert (ood_table(run, "fpr95")["digits"] == 40.0).all()
    with pytest.raises(ValueError, match="not an OOD metric"):
        ood_table(run, "accuracy")
    # a set today's registry does not know is grouped by the result's own record of its group,
    # in the table and in the frame alike (moon.ood.sets.group_means)
    retired = {d: {"auroc": 0.5, "aupr_in": 0.5, "aupr_out": 0.5, "fpr95": 0.9} for d in DETECTORS}
    old = RunResult(**{**run.__dict__, "ood": {**run.ood, "retired": retired},
                       "extra": {**run.extra, "curves": {**run.extra["curves"],
                                                         "ood_kind": {"retired": "near"}}}})
    near = round(100 * (auroc("rigl", 0.05, 1, "digits", "msp") + 0.5) / 2, 1)
    assert ood_table(old).loc["msp", "near mean"] == pytest.approx(near)
    assert results_frame([old])["ood.near.msp.auroc"].iloc[0] == pytest.approx(near / 100, abs=1e-3)


def test_density_summary_t_interval_over_seeds(frame):
    summary = density_summary(frame, "id.accuracy", "variant").set_index(["variant", "density"])
    values = [accuracy("rigl", 0.05, s) for s in (0, 1)]
    cell = summary.loc[("RigL + MOON", 0.05)]
    half = stats.t.ppf(0.975, 1) * statistics.stdev(values) / math.sqrt(2)
    assert cell["n"] == 2 and not cell["dense"]
    assert cell["mean"] == pytest.approx(statistics.mean(values))
    assert cell["low"] == pytest.approx(statistics.mean(values) - half)
    assert cell["high"] == pytest.approx(statistics.mean(values) + half)
    assert summary.loc[("dense", 1.0), "dense"]
    single = density_summary(frame[frame.seed == 0], "id.accuracy", "variant")
    assert single["low"].isna().all() and single["high"].isna().all()


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------
def test_reliability_diagram_one_and_many(root, tmp_path):
    runs = [load_result(root / f"{m}_{d}_0") for m, d, _ in GRID[:3]]
    one = reliability_diagram(runs[0], path=tmp_path / "one.png")
    assert isinstance(one, Figure) and len(one.axes) == 2       # bars + bin counts
    assert one.axes[0].get_title().startswith("RigL + MOON 0.05 ECE 3.0%")
    many = reliability_diagram(runs, path=tmp_path / "many.png", title="seed 0")
    assert len(many.axes) == 6
    assert (tmp_path / "one.png").stat().st_size > 0 and (tmp_path / "many.png").stat().st_size > 0


def test_reliability_diagram_needs_curves():
    run = make_run("set", 0.1, 0, False)
    del run.extra["curves"]
    with pytest.raises(ValueError, match="no extra\\['curves'\\]\\['reliability'\\]"):
        reliability_diagram(run)


def test_score_histograms_one_panel_per_set(root, tmp_path):
    run = load_result(root / "rigl_0.05_0")
    fig = score_histograms(run, "energy", path=tmp_path / "hist.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    value = 100 * auroc("rigl", 0.05, 0, "digits", "energy")
    assert fig.axes[0].get_title() == f"digits (near): AUROC {value:.1f}%"
    assert fig.axes[1].get_title().startswith("photos (far)")
    assert fig.axes[2].get_title().startswith("gaussian (noise)")
    assert (tmp_path / "hist.png").is_file()
    with pytest.raises(ValueError, match="no stored histogram"):
        score_histograms(run, "knn")


def test_history_in_words_and_percent_without_unused_schedules():
    run = make_run("rigl", 0.05, 1, True)
    run.history = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5 + 0.1 * e,
                    "val_acc": 0.45 + 0.1 * e, "alpha": 0.2 * e, "drop_fraction": 0.3 / e}
                   for e in (1, 2, 3)]
    assert run_title(run.config) == "LeNet-5, RigL + MOON at density 0.05, seed 1"
    fig = plot_history(run)
    loss, acc, sched = fig.axes[:3]
    assert fig.get_suptitle() == run_title(run.config)
    assert acc.get_ylabel() == "accuracy (%)"
    assert [t.get_text() for t in acc.get_legend().get_texts()] == ["training", "validation"]
    training = [line for line in acc.get_lines() if len(line.get_xdata()) == 3][0]
    assert list(training.get_ydata()) == pytest.approx([60.0, 70.0, 80.0])        # in percent
    assert [t.get_text() for t in sched.get_legend().get_texts()] == [
        "α (weight of MOON's loss)", "drop fraction (topology)"]
    dense = make_run("dense", 1.0, 0, False)
    dense.history = [dict(row, alpha=0.0, drop_fraction=0.0) for row in run.history]
    assert run_title(dense.config) == "LeNet-5, dense, seed 0"
    assert not plot_history(dense).axes[2].axison          # no schedule to show


def test_roc_curves_near_solid_far_dashed(root, tmp_path):
    run = load_result(root / "rigl_0.05_0")
    fig = roc_curves(run, path=tmp_path / "roc.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("digits (near) AUROC") for t in labels)
    assert any(t.startswith("gaussian (noise) AUROC") for t in labels)
    assert (tmp_path / "roc.png").is_file() and lines


def _floats(values) -> np.ndarray:
    return np.asarray(values, dtype=float)      # errorbar keeps its data as object arrays


def test_density_panels_draw_the_seed_means_of_each_method_and_variant(frame, tmp_path):
    metrics = ("id.accuracy", "ood.far.msp.auroc")
    fig = density_panels(frame, metrics=metrics, path=tmp_path / "panels.png")
    methods = [m for m in ("static", "set", "rigl", "cigl") if m in set(frame["method"])]
    assert methods == ["set", "rigl"]                  # book order; dense is the reference line
    assert len(fig.axes) == len(metrics) * len(methods)   # a row per metric, a column per method
    grid = np.array(fig.axes).reshape(len(metrics), len(methods))
    assert [ax.get_title() for ax in grid[0]] == ["LeNet-5: SET", "LeNet-5: RigL"]
    assert [grid[r, 0].get_ylabel() for r in range(2)] == ["accuracy (%)",
                                                           "far-OOD AUROC, MSP (%)"]
    for r, metric in enumerate(metrics):
        for c, method in enumerate(methods):
            ax = grid[r, c]
            assert ax.get_xscale() == "log"
            # SET ran without MOON (solid line, circles), RigL only with MOON (dashed, squares)
            label, marker, style = (("baseline", "o", "-") if method == "set"
                                    else ("MOON", "s", "--"))
            runs = frame[(frame["method"] == method) & (frame["moon"] == label)]
            expected = density_summary(runs, metric, "moon")
            drawn = [line for line in ax.get_lines() if line.get_marker() in ("o", "s")]
            assert len(drawn) == 1 and drawn[0].get_marker() == marker
            assert drawn[0].get_linestyle() == style
            np.testing.assert_allclose(_floats(drawn[0].get_xdata()), [0.05, 0.1])
            np.testing.assert_allclose(_floats(drawn[0].get_ydata()),
                                       100 * expected["mean"].to_numpy())
            # the dense baseline as a grey reference line at its seed mean
            dense = frame[frame["method"] == "dense"][metric].mean()
            refs = [line for line in ax.get_lines() if line.get_marker() in ("None", None, "")
                    and len(line.get_ydata()) == 2 and line.get_ydata()[0] == line.get_ydata()[1]
                    and line.get_xdata()[0] == 0 and line.get_xdata()[1] == 1]
            assert [float(line.get_ydata()[0]) for line in refs] == pytest.approx([100 * dense])
    assert (tmp_path / "panels.png").is_file()
    with pytest.raises(ValueError, match="sparse runs"):
        density_panels(frame[frame["method"] == "dense"], metrics=metrics)


def test_runs_table_lists_every_result_with_its_provenance(root, tmp_path):
    from moon.report.tables import runs_table

    table = runs_table([root, tmp_path / "missing"])           # a missing folder is skipped
    assert len(table) == 2 * len(GRID) + 1
    assert (table["status"] == "failed").sum() == 1
    assert set(table["model"]) == {"lenet5"} and set(table["folder"]) == {root.name}
    assert sorted(table["train s"].unique()) == [10.0, 11.0, 12.0]
    run = make_run("dense", 1.0, 0, False)
    run.provenance = {"git_sha": "0123456789abcdef", "git_dirty": True, "num_threads": 1}
    save_result(run, tmp_path / "other" / "r")
    row = runs_table([tmp_path / "other"]).iloc[0]
    assert row["git"] == "0123456789+dirty" and row["threads"] == 1


def test_run_conclusion_names_the_best_detector_of_each_group(root):
    from moon.report import conclusions
    from moon.report.tables import ood_table

    run = load_result(root / "rigl_0.05_0")
    text = conclusions.run_conclusion(run)
    table = ood_table(run, "auroc")
    best = table["near mean"].idxmax()
    assert text.startswith("**What this shows.** This run (RigL 0.05")
    assert f"{100 * run.id['accuracy']:.1f}% accuracy" in text
    assert f"({table.loc[best, 'near mean']:.1f}% AUROC; MSP {table.loc['msp', 'near mean']:.1f}%)" in text


def test_detector_heatmap_annotates_the_mean_auroc(frame, tmp_path):
    from moon.report.figures import detector_heatmap

    fig = detector_heatmap(frame, kinds=("far",), detectors=["msp"], path=tmp_path / "h.png")
    texts = [t.get_text() for t in fig.axes[0].texts]
    means = 100 * frame.groupby(["method", "density", "moon"])["ood.far.msp.auroc"].mean()
    assert texts == [f"{v:.0f}" for v in means]
    assert (tmp_path / "h.png").is_file()


def test_id_table_prints_to_the_precision_it_carries():
    from types import SimpleNamespace

    from moon.report.tables import id_table

    table = id_table(SimpleNamespace(id={"accuracy": 0.8751, "nll": 0.343094, "ece": 0.02489632}))
    assert table["value"].tolist() == ["87.51", "0.343", "2.49"]
    assert table["unit"].tolist() == ["%", "", "%"]
