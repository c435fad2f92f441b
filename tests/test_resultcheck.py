"""A result is complete only when its metrics are what a run writes (moon/resultcheck.py): a
tampered file is never reused (resume, the sweep's skip) and never averaged into the report; it is
listed apart, with its reason, and kept (results are never lost)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from moon.configure import from_params
from moon.errors import CorruptFile
from moon.resultcheck import check_result, result_problems
from moon.results import RunResult

CONFIG = dict(model="mlp", method="static", density=0.2, ood_sets="gaussian", detectors="msp")
METRICS = {"auroc": 0.9, "aupr_in": 0.9, "aupr_out": 0.8, "fpr95": 0.3}


def sound(**config) -> dict:
    cfg = from_params({**CONFIG, **config})
    return RunResult(config=cfg.to_dict(), status="complete", history=[{"epoch": 1}],
                     masks={"density": 0.2, "layers": {}},
                     id={"accuracy": 0.8, "nll": 0.5, "brier": 0.3, "ece": 0.05, "mce": 0.1,
                         "adaptive_ece": 0.05, "temperature": None},
                     ood={"gaussian": {"msp": dict(METRICS)}}, timing={}, provenance={}).to_dict()


def _set(path, value):
    def edit(d):
        *keys, last = path.split(".")
        for key in keys:
            d = d[key]
        d[last] = value
    return edit


def _drop(key):
    return lambda d: d.pop(key)


TAMPERED = {   # edit -> fragment of the reason
    "accuracy nan": (_set("id.accuracy", float("nan")), "id.accuracy is nan"),
    "accuracy string": (_set("id.accuracy", "0.8"), "id.accuracy is a str ('0.8')"),
    "accuracy list": (_set("id.accuracy", [0.8]), "id.accuracy is a list"),
    "accuracy 5": (_set("id.accuracy", 5.0), "id.accuracy is 5.0; a run writes a finite number in [0, 1]"),
    "accuracy bool": (_set("id.accuracy", True), "id.accuracy is a bool"),
    "nll missing": (lambda d: d["id"].pop("nll"), "id.nll is missing"),
    "id missing": (_drop("id"), "id is "),
    "id empty": (_set("id", {}), "id is empty"),
    "extra id text": (_set("id.temperature", "hot"), "id.temperature is a str"),
    "auroc -3": (_set("ood.gaussian.msp.auroc", -3), "ood.gaussian.msp.auroc is -3"),
    "auroc 5": (_set("ood.gaussian.msp.auroc", 5.0), "ood.gaussian.msp.auroc is 5.0"),
    "fpr95 missing": (lambda d: d["ood"]["gaussian"]["msp"].pop("fpr95"), "fpr95 is missing"),
    "ood empty": (_set("ood", {}), "ood is empty"),
    "named set missing": (_set("ood", {"uniform": {"msp": dict(METRICS)}}), "ood.gaussian is missing"),
    "density 3": (_set("masks.density", 3), "masks.density is 3"),
    "config invalid": (_set("config.density", 2), "config: density=2"),
    "config unknown key": (_set("config.densty", 0.1), "config: unknown config key"),
    "status": (_set("status", "done"), "status is a str ('done')"),
    "history": (_set("history", "none"), "history is a str"),
}


def tampered(key: str) -> dict:
    data = copy.deepcopy(sound())
    TAMPERED[key][0](data)
    return data


def test_a_sound_result_passes():
    assert result_problems(sound()) == []
    failed = {"config": sound()["config"], "status": "failed", "error": "x", "id": {}}
    assert result_problems(failed) == []          # a failed result carries no metrics


@pytest.mark.parametrize("key", sorted(TAMPERED))
def test_each_tampering_is_named(key):
    problems = result_problems(tampered(key))
    assert any(TAMPERED[key][1] in p for p in problems), problems
    with pytest.raises(CorruptFile, match="is not a result a run writes") as refused:
        check_result(tampered(key), "R/result.json")
    assert "R/result.json" in str(refused.value) and "\n" not in str(refused.value)


def test_every_committed_result_passes():
    root = Path(__file__).resolve().parent.parent / "book" / "results"
    files = sorted(root.glob("**/result.json"))
    if not files:
        pytest.skip("no committed results in this checkout")
    bad = {str(f): p for f in files for p in [result_problems(json.loads(f.read_text()))] if p}
    assert not bad, f"{len(bad)} of {len(files)} committed results fail: {list(bad.items())[:3]}"


def _write(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize("key", ["accuracy nan", "auroc 5", "id empty"])
def test_resume_never_reuses_a_tampered_result(key, tmp_path):
    from moon.rundir import inspect_folder

    _write(tmp_path, tampered(key))
    with pytest.raises(CorruptFile, match="move it aside"):
        inspect_folder(tmp_path, from_params(CONFIG).to_dict(), resume=True)


@pytest.mark.parametrize("key", ["accuracy nan", "accuracy string", "accuracy list", "accuracy 5",
                                 "id missing", "auroc -3", "auroc 5", "config invalid"])
def test_the_report_lists_a_tampered_file_apart(key, tmp_path):
    from moon.report.frame import corrupt_frame, corrupt_markdown, results_frame

    _write(tmp_path / "a", sound())
    _write(tmp_path / "b", tampered(key))
    frame = results_frame(tmp_path)
    assert frame["id.accuracy"].tolist() == [0.8]
    corrupt = corrupt_frame(frame)
    assert corrupt["file"].tolist() == [str(tmp_path / "b" / "result.json")]
    assert TAMPERED[key][1] in corrupt["reason"][0]
    assert "1 result file(s) left out" in corrupt_markdown(frame)
    assert corrupt_markdown(results_frame([tmp_path / "a" / "result.json"])) == ""


def test_collect_lists_an_edited_config_apart(tmp_path):
    """An edited config would otherwise differ from the cell's and vanish without a word."""
    from moon.report.frame import results_frame
    from moon.study import Study, collect

    study = Study(name="s", base=dict(CONFIG), grid=[{"seed": [0, 1]}])
    _write(tmp_path / "seed=0", sound(seed=0))
    _write(tmp_path / "seed=1", tampered("config invalid"))
    for exact in (True, False):
        runs = collect(study, tmp_path, exact=exact)
        assert len(runs) == 1 and runs.corrupt[0][0].endswith("seed=1/result.json")
        assert "density=2" in runs.corrupt[0][1]
        assert results_frame(runs).attrs["corrupt"][0]["file"].endswith("seed=1/result.json")


def test_the_sweep_reruns_a_tampered_cell_and_keeps_the_file(tiny_fashion, tmp_path):
    from moon.study import Study, run_study

    base = dict(epochs=1, batch_size=64, device="cpu", detectors="msp", eval_batch_size=256,
                model="mlp", method="static", density=0.2)
    study = Study(name="s", base=base, grid=[{"seed": [0]}])
    assert run_study(study, tmp_path, via="run", progress=False) == {"seed=0": "complete"}
    cell = tmp_path / "seed=0"
    data = json.loads((cell / "result.json").read_text())
    data["id"]["accuracy"] = float("nan")
    edited = json.dumps(data)
    (cell / "result.json").write_text(edited)
    assert run_study(study, tmp_path, via="run", progress=False) == {"seed=0": "complete"}
    assert (cell / "result.corrupt.json").read_text() == edited          # kept, never deleted
    assert "id.accuracy is nan" in (cell / "result.corrupt.txt").read_text()
    assert result_problems(json.loads((cell / "result.json").read_text())) == []


def test_collect_says_once_per_difference_which_fields_a_shown_study_ran_with(tmp_path, caplog):
    """A committed study shown as it ran (``exact=False``): its results whose config differs from
    today's cells are kept and counted in one log line per difference, not one line per cell (the
    regime chapter printed 200 such lines)."""
    import logging

    from moon.study import Study, collect

    study = Study(name="s", base=dict(CONFIG), grid=[{"seed": [0, 1, 2]}])
    for seed in range(3):
        _write(tmp_path / f"seed={seed}", sound(seed=seed))
    edited = Study(name="s", base={**CONFIG, "lr": 0.5}, grid=[{"seed": [0, 1, 2]}])
    with caplog.at_level(logging.INFO, logger="moon"):
        assert len(collect(edited, tmp_path, exact=False)) == 3
    lines = [r.getMessage() for r in caplog.records if "differing from today" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("s: 3 of the 3 results shown ran with ['lr (")
    assert collect(edited, tmp_path) == [] and len(collect(study, tmp_path)) == 3
