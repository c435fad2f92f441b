"""Studies: grid expansion, presets restricting axes, resumable runs."""

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
