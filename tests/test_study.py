"""Studies: grid expansion, presets restricting axes, resumable runs."""

import json

import pytest

from moon.study import Study, load_study, run_study
from moon.train import Trainer

SMALL = dict(epochs=1, batch_size=64, device="cpu", detectors="msp,energy", eval_batch_size=256)


def tiny_study():
    return Study(name="tiny", base={"model": "mlp"},
                 variants={"moon": {"baseline": {"unknown_class": False, "averaging": False},
                                    "moon": {"unknown_class": True, "averaging": True}}},
                 grid=[{"method": ["dense"], "density": [1.0], "moon": ["baseline"]},
                       {"method": ["rigl"], "density": [0.1, 0.05], "moon": ["baseline", "moon"]}],
                 presets={"smoke": {"density": [1.0, 0.05]}})


def test_cells_are_the_product_of_each_block_and_presets_restrict_axes():
    study = tiny_study()
    names = [c.name for c in study.cells()]
    assert len(names) == 5 and names[0] == "method=dense,density=1.0,moon=baseline"
    smoke = study.cells("smoke")
    assert [c.axes["density"] for c in smoke] == [1.0, 0.05, 0.05]
    moon_cell = next(c for c in study.cells() if c.axes.get("moon") == "moon")
    assert moon_cell.config.unknown_class and moon_cell.config.averaging
    assert moon_cell.config.model == "mlp"
    assert study.cells("smoke")[0].config.epochs == 2       # RunConfig's smoke preset applies


def test_shipped_studies_load_and_expand():
    for name in ("sweep", "ablation", "calibration"):
        study = load_study(name)
        assert study.cells() and study.cells("smoke")
        assert len(study.cells("smoke")) < len(study.cells())


def test_bad_study_names_and_axes():
    with pytest.raises(FileNotFoundError, match="sweep"):
        load_study("nope")


def test_run_study_skips_finished_cells(tiny_fashion, tmp_path, monkeypatch):
    statuses = run_study(tiny_study(), tmp_path, progress=False, **SMALL)
    assert set(statuses.values()) == {"complete"} and len(statuses) == 5
    assert len(list(tmp_path.glob("*/result.json"))) == 5

    def no_training(self):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(Trainer, "fit", no_training)
    assert run_study(tiny_study(), tmp_path, progress=False, **SMALL) == statuses


def test_collect_returns_exactly_the_study_cells(tiny_fashion, tmp_path):
    from moon.study import collect

    run_study(tiny_study(), tmp_path, preset="smoke", progress=False, **SMALL)
    assert len(collect(tiny_study(), tmp_path, preset="smoke", **SMALL)) == 3
    assert collect(tiny_study(), tmp_path, **SMALL) == []   # other configs (no preset) not run yet


def test_only_restricts_axes_and_workers_give_the_same_results(tiny_fashion, tmp_path):
    study = tiny_study()
    only = {"density": [0.05], "moon": ["moon"]}
    assert [c.name for c in study.cells(only=only)] == ["method=rigl,density=0.05,moon=moon"]
    seq = run_study(study, tmp_path / "seq", only={"density": [0.05]}, progress=False, **SMALL)
    assert len(seq) == 2


@pytest.mark.slow
def test_workers_run_each_cell_once(fake_data, tmp_path):
    """Two spawned worker processes (they inherit the fixture's MOON_DATA variables and read the
    synthetic files) give the same results as the sequential runner."""
    study = Study(name="w", base={"model": "mlp", "method": "static", "density": 0.2},
                  grid=[{"seed": [0, 1]}])
    small = dict(SMALL, detectors="msp", max_train_samples=100, fit_samples=100)
    par = run_study(study, tmp_path / "par", workers=2, progress=False, **small)
    seq = run_study(study, tmp_path / "seq", progress=False, **small)
    assert par == seq == {"seed=0": "complete", "seed=1": "complete"}
    for name in par:
        a = json.loads((tmp_path / "par" / name / "result.json").read_text())
        b = json.loads((tmp_path / "seq" / name / "result.json").read_text())
        assert a["id"]["accuracy"] == pytest.approx(b["id"]["accuracy"])
