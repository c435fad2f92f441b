"""Reproducing committed runs: a rerun of the same configuration and seed gives the same metrics,
and a changed number in a result file is found and named."""

import json
import math

import pytest

from moon.config import RunConfig
from moon.runner import run
from moon.study.reproduce import compare, headline_diffs, pick, reproduce

# max_eval_samples: each OOD set evaluated on its first 512 images (as the smoke preset), which
# leaves the metrics compared (every set, detector and metric) as they are.
SMALL = dict(model="mlp", method="rigl", density=0.1, epochs=1, batch_size=64, device="cpu",
             detectors="msp,energy", eval_batch_size=256, update_interval=5, max_eval_samples=512)


@pytest.fixture
def committed(tiny_fashion, tmp_path):
    for seed in (0, 1, 2):
        run(RunConfig(**SMALL, seed=seed), tmp_path / f"seed={seed}", progress=False)
    return tmp_path


def test_a_rerun_gives_the_same_metrics(committed):
    checks = reproduce(committed, cells=2, progress=False)
    assert [c.run.rsplit("/", 1)[-1] for c in checks] == ["seed=0", "seed=1"]   # evenly spaced
    for check in checks:
        assert check.same and check.max_abs_diff == 0.0 and check.metrics > 20


def test_a_changed_metric_is_found(committed):
    path = committed / "seed=2" / "result.json"
    data = json.loads(path.read_text())
    data["id"]["ece"] += 1e-4
    path.write_text(json.dumps(data))
    (check,) = reproduce(committed, cells=5, progress=False)[2:]
    assert not check.same and check.worst == "id.ece"
    assert check.max_abs_diff == pytest.approx(1e-4, rel=1e-3)
    assert check.headline["ECE"] == pytest.approx(1e-4, rel=1e-3)      # reported apart too
    assert check.headline["accuracy"] == 0 and check.headline["MSP AUROC on one set"] == 0
    assert check.headline["near MSP AUROC"] == 0
    loose = reproduce(committed, cells=5, tolerance=1e-3, progress=False)
    assert all(c.same for c in loose)


def test_compare_counts_missing_and_nan_metrics():
    a = {"id.accuracy": 0.9, "id.ece": math.nan, "ood.x.msp.auroc": 0.8, "timing.train_seconds": 1}
    b = {"id.accuracy": 0.9, "id.ece": math.nan, "ood.x.msp.auroc": 0.8, "timing.train_seconds": 9}
    assert compare(a, b) == (3, 0.0, "", True)                  # timings are not compared
    assert compare(a, {**b, "id.ece": 0.1})[1:3] == (math.inf, "id.ece")
    assert compare(a, {k: v for k, v in b.items() if k != "ood.x.msp.auroc"})[2] == "ood.x.msp.auroc"


def test_headline_differences_are_reported_apart_from_the_largest():
    """The largest difference is often a secondary detector's FPR95; accuracy, ECE and MSP's
    AUROC (the largest over the sets) are said on their own."""
    a = {"id.accuracy": 0.9, "id.ece": 0.05, "ood.x.msp.auroc": 0.8, "ood.y.msp.auroc": 0.7,
         "ood.x.vim.fpr95": 0.5, "group.near.msp.auroc": 0.75, "group.far.msp.auroc": 0.9}
    b = {**a, "ood.y.msp.auroc": 0.702, "ood.x.vim.fpr95": 0.8, "group.near.msp.auroc": 0.751}
    assert compare(a, b)[1:3] == (pytest.approx(0.3), "ood.x.vim.fpr95")
    assert headline_diffs(a, b) == {"accuracy": 0, "ECE": 0, "near MSP AUROC": pytest.approx(0.001),
                                    "far MSP AUROC": 0, "MSP AUROC on one set": pytest.approx(0.002)}
    assert math.isnan(headline_diffs({}, {})["ECE"])


def test_pick_needs_complete_runs(tmp_path):
    with pytest.raises(ValueError, match="no complete runs"):
        pick(tmp_path, 3)
