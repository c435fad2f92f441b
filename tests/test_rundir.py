"""Results are never lost (design.md, section 8): folders of other configurations are refused,
folders are locked, only dead writers' temporaries are removed, failures go beside what was there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import moon
from moon.configure import from_params
from moon.errors import CorruptFile, FolderInUse, FolderLocked
from moon.files import remove_stale_temporaries
from moon.locks import FolderLock, lock_holder
from moon.results import FAILED_FILE, RESULT_SCHEMA, load_result
from moon.rundir import run_folder_name
from moon.study import Study, run_study
from moon.train import Trainer

# max_eval_samples: each OOD set evaluated on its first 512 images (the smoke preset's cap); these
# tests check folders, locks and failures, none of them the OOD sample size.
TINY = dict(epochs=1, batch_size=64, device="cpu", detectors="msp,energy", eval_batch_size=256,
            model="mlp", method="static", density=0.2, max_eval_samples=512)


def tiny(**changes):
    return from_params({**TINY, **changes})


def _hold(target: str, kind: str = "folder", signature: str = "0" * 12):
    """A child process holding a lock on ``target`` until killed; returns it once it holds it."""
    code = {"folder": f"from moon.locks import FolderLock; FolderLock({target!r}).acquire()",
            "study": f"from moon.locks import StudyLock; StudyLock({target!r}, {signature!r}).__enter__()"}[kind]
    child = subprocess.Popen([sys.executable, "-c", code + "; print('held', flush=True); "
                              "import time; time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


@pytest.fixture
def finished(tiny_fashion, tmp_path):
    out = tmp_path / "run"
    result = moon.run(tiny(), out, progress=False)
    assert result.status == "complete"
    return out, (out / "result.json").read_bytes()


def _no_training(monkeypatch):
    def refuse(self):
        raise AssertionError("trained although the folder should have been refused")
    monkeypatch.setattr(Trainer, "fit", refuse)


# --- 1. another configuration never overwrites a finished result ---------------------------------
@pytest.mark.parametrize("resume", [False, True])
def test_another_configuration_is_refused_before_compute(finished, monkeypatch, resume):
    out, before = finished
    _no_training(monkeypatch)
    with pytest.raises(FolderInUse, match="density"):
        moon.run(tiny(method="set", density=0.05, resume=resume), out, progress=False)
    assert (out / "result.json").read_bytes() == before
    assert not (out / FAILED_FILE).exists()


def test_overwrite_replaces_on_request(finished):
    out, _ = finished
    result = moon.run(tiny(density=0.1, overwrite=True), out, progress=False)
    assert result.status == "complete" and load_result(out).config["density"] == 0.1


def test_same_configuration_is_reused_with_resume(finished, monkeypatch):
    out, before = finished
    _no_training(monkeypatch)
    assert moon.run(tiny(resume=True), out).status == "complete"
    assert (out / "result.json").read_bytes() == before


def test_a_failure_goes_beside_a_complete_result(finished, monkeypatch):
    out, before = finished

    def boom(self):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(Trainer, "fit", boom)
    result = moon.run(tiny(), out, raise_on_failure=False, progress=False)   # same config, afresh
    assert result.status == "failed"
    assert (out / "result.json").read_bytes() == before
    assert json.loads((out / FAILED_FILE).read_text())["error"] == "RuntimeError: disk on fire"


def test_corrupt_model_is_not_reused(finished, monkeypatch):
    out, _ = finished
    (out / "model.pt").write_bytes(b"\x00" * 100)
    trained = []
    real_fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self: trained.append(1) or real_fit(self))
    assert moon.run(tiny(resume=True), out, progress=False).status == "complete"
    assert trained == [1]
    moon.runner.load_model(out)                  # the new model file loads


def test_result_of_a_newer_schema_is_refused(finished, monkeypatch):
    out, _ = finished
    data = json.loads((out / "result.json").read_text())
    data["provenance"]["schema"] = RESULT_SCHEMA + 1
    (out / "result.json").write_text(json.dumps(data))
    _no_training(monkeypatch)
    with pytest.raises(FolderInUse, match="newer moon"):
        moon.run(tiny(resume=True), out)


def test_old_results_without_new_fields_still_match(finished):
    """A result written before a field existed counts that field as its default."""
    from moon.config import differing_fields
    out, _ = finished
    saved = dict(load_result(out).config)
    saved.pop("overwrite")
    assert differing_fields(saved, tiny().to_dict()) == []


def test_readme_examples_get_different_default_folders():
    first = run_folder_name(from_params({"density": 0.05}))
    second = run_folder_name(from_params({"density": 0.02, "method": "set"}))
    assert first != second and "density=0.02" in second and "method=set" in second
    assert run_folder_name(from_params({}, "smoke"), "smoke") == "preset=smoke"


def _sweep():
    return Study(name="s", base={k: v for k, v in TINY.items()}, grid=[{"seed": [0, 1]}])


def test_sweep_with_another_override_refuses_before_compute(tiny_fashion, tmp_path, monkeypatch):
    assert set(run_study(_sweep(), tmp_path, via="run", progress=False).values()) == {"complete"}
    before = {p: p.read_bytes() for p in tmp_path.glob("*/result.json")}
    _no_training(monkeypatch)
    with pytest.raises(FolderInUse, match="2 cell folder"):
        run_study(_sweep(), tmp_path, via="run", progress=False, lr=0.04)
    assert {p: p.read_bytes() for p in tmp_path.glob("*/result.json")} == before


def test_corrupt_result_is_kept_aside_and_the_cell_runs_again(tiny_fashion, tmp_path):
    (tmp_path / "seed=0").mkdir()
    (tmp_path / "seed=0" / "result.json").write_text("not json")
    statuses = run_study(_sweep(), tmp_path, via="run", progress=False)
    assert statuses == {"seed=0": "complete", "seed=1": "complete"}
    assert (tmp_path / "seed=0" / "result.corrupt.json").read_text() == "not json"
    assert "not valid JSON" in (tmp_path / "seed=0" / "result.corrupt.txt").read_text()
    assert load_result(tmp_path / "seed=0").status == "complete"


def test_overwrite_keeps_a_corrupt_result_aside(tiny_fashion, tmp_path):
    (tmp_path / "result.json").write_text("not json")
    with pytest.raises(CorruptFile, match="not valid JSON"):
        moon.run(tiny(), tmp_path, progress=False)
    assert moon.run(tiny(overwrite=True), tmp_path, progress=False).status == "complete"
    assert (tmp_path / "result.corrupt.json").read_text() == "not json"


# --- 2. two writers in one folder ----------------------------------------------------------------
def test_second_writer_fails_at_once_naming_the_holder(tiny_fashion, tmp_path, monkeypatch):
    child = _hold(str(tmp_path / "run"))
    try:
        assert lock_holder(tmp_path / "run")["pid"] == child.pid
        _no_training(monkeypatch)
        with pytest.raises(FolderLocked, match=f"PID {child.pid}"):
            moon.run(tiny(), tmp_path / "run")
    finally:
        child.kill()
        child.wait()
    assert lock_holder(tmp_path / "run") is None          # the kernel released the dead holder's lock
    with FolderLock(tmp_path / "run"):
        pass


def test_lock_is_handed_to_a_child_by_token(tmp_path, monkeypatch):
    with FolderLock(tmp_path) as lock:
        monkeypatch.setenv("MOON_LOCK_TOKEN", lock.token)
        with FolderLock(tmp_path) as inner:             # e.g. the notebook kernel of a sweep cell
            assert inner.inherited
        monkeypatch.setenv("MOON_LOCK_TOKEN", "someone-else")
        with pytest.raises(FolderLocked):
            FolderLock(tmp_path).acquire()


def _result():
    from moon.results import RunResult
    return RunResult(config=tiny().to_dict(), status="complete")


def test_a_deleted_lock_stops_the_writer_before_it_writes(tmp_path):
    from moon.results import save_result
    with FolderLock(tmp_path):
        (tmp_path / ".moon.lock").unlink()
        with pytest.raises(FolderLocked, match="lock file .* was removed"):
            save_result(_result(), tmp_path)
    assert not (tmp_path / "result.json").exists()


def test_a_lock_taken_after_its_file_was_deleted_stops_the_first_writer(tmp_path):
    from moon.files import atomic_torch_save
    with FolderLock(tmp_path):
        (tmp_path / ".moon.lock").unlink()
        child = _hold(str(tmp_path))                   # a second run, started meanwhile
        try:
            with pytest.raises(FolderLocked, match=f"PID {child.pid}"):
                atomic_torch_save({"epoch": 1}, tmp_path / "checkpoint.pt")
        finally:
            child.kill()
            child.wait()
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_run_whose_lock_is_deleted_records_nothing(tiny_fashion, tmp_path, monkeypatch):
    real_fit = Trainer.fit

    def fit_after_deleting_the_lock(self):
        (tmp_path / ".moon.lock").unlink()
        return real_fit(self)
    monkeypatch.setattr(Trainer, "fit", fit_after_deleting_the_lock)
    with pytest.raises(FolderLocked, match="was removed"):
        moon.run(tiny(), tmp_path, raise_on_failure=False, progress=False)
    assert not [p.name for p in tmp_path.iterdir() if not p.name.startswith(".moon.lock")]


def test_a_copied_token_does_not_hand_over_the_lock(tiny_fashion, tmp_path, monkeypatch):
    child = _hold(str(tmp_path / "run"))
    try:
        token = json.loads((tmp_path / "run" / ".moon.lock").read_text())["token"]
        monkeypatch.setenv("MOON_LOCK_TOKEN", token)     # copied from the holder's environment
        _no_training(monkeypatch)
        with pytest.raises(FolderLocked, match="not this process's parent"):
            FolderLock(tmp_path / "run").acquire()
        with pytest.raises(FolderLocked, match=f"PID {child.pid}"):
            moon.run(tiny(), tmp_path / "run")
    finally:
        child.kill()
        child.wait()
    assert not (tmp_path / "run" / "result.json").exists()


def test_a_child_given_the_token_writes_under_its_parents_lock(tmp_path):
    """The study worker's path: it locks the cell and starts a kernel with the token."""
    code = ("import sys; from moon.results import RunResult, save_result; "
            "from moon.locks import FolderLock; lock = FolderLock(sys.argv[1]).acquire(); "
            "assert lock.inherited; "
            "save_result(RunResult(config={}, status='complete'), sys.argv[1])")
    with FolderLock(tmp_path) as lock:
        env = {**os.environ, "MOON_LOCK_TOKEN": lock.token}
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                              capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert load_result(tmp_path).status == "complete"


def test_sweep_of_other_settings_is_refused_while_one_runs(tiny_fashion, tmp_path, monkeypatch):
    child = _hold(str(tmp_path), "study", signature="f" * 12)
    try:
        _no_training(monkeypatch)
        with pytest.raises(FolderLocked, match=f"PID {child.pid}"):
            run_study(_sweep(), tmp_path, via="run", progress=False)
    finally:
        child.kill()
        child.wait()


def test_identical_sweeps_split_the_cells(tiny_fashion, tmp_path):
    """A cell another process holds is left to it (``busy``), the others run: never twice."""
    child = _hold(str(tmp_path / "seed=0"))
    try:
        statuses = run_study(_sweep(), tmp_path, via="run", progress=False)
    finally:
        child.kill()
        child.wait()
    assert statuses == {"seed=0": "busy", "seed=1": "complete"}
    assert not (tmp_path / "seed=0" / "result.json").exists()


# --- 3. temporaries --------------------------------------------------------------------------------
def test_only_dead_writers_temporaries_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = tmp_path / f".result.json.pid{os.getpid()}.abc.tmp"
    stale = tmp_path / f".result.json.pid{dead.pid}.def.tmp"
    legacy = tmp_path / ".result.json.xyz.tmp"
    for path in (live, stale, legacy):
        path.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == 2
    assert live.exists() and not stale.exists() and not legacy.exists()


# --- divergence that stays finite --------------------------------------------------------------
def test_finite_divergence_is_recorded_as_failed(tiny_fashion, tmp_path):
    result = moon.run(tiny(lr=20.0, epochs=3, lr_warmup_epochs=0.0), tmp_path, raise_on_failure=False,
                      progress=False)
    assert result.status == "failed" and "loss" in result.error
    from moon.results import load_results
    assert load_results(tmp_path.parent, pattern=f"{tmp_path.name}/result.json") == []


def test_a_loss_that_explodes_but_stays_finite_stops_the_run(tiny_fashion):
    from moon.train import TrainingDiverged
    trainer = Trainer(tiny(), tiny_fashion, __import__("torch").device("cpu"))
    trainer.history = [{"train_loss": 0.6}]
    trainer._check_explosion(2, 2.0)                       # 3x: a bad epoch, not an explosion
    with pytest.raises(TrainingDiverged, match="exploded: 1e\\+33 in epoch 2"):
        trainer._check_explosion(2, 1e33)


def test_a_huge_learning_rate_run_is_recorded_failed_with_its_reason(tiny_fashion, tmp_path):
    """lr=20 on LeNet-5: epoch 1's loss is 4e27, epoch 2's finite again at chance accuracy. The
    relative test (100x epoch 1) cannot see it; it used to end "complete"."""
    result = moon.run(tiny(model="lenet5", lr=20.0, epochs=2), tmp_path, raise_on_failure=False,
                      progress=False)
    assert result.status == "failed" and "loss exploded" in result.error
    saved = load_result(tmp_path)
    assert saved.status == "failed" and saved.error == result.error and not saved.ood


def test_a_loss_far_above_chance_level_stops_the_first_epoch(tiny_fashion):
    from moon.train import TrainingDiverged
    trainer = Trainer(tiny(), tiny_fashion, __import__("torch").device("cpu"))
    trainer._check_explosion(1, 50.0)                      # bad, but a model can get there
    with pytest.raises(TrainingDiverged, match=r"over 1000 x log\(10\)"):
        trainer._check_explosion(1, 1e5)                   # no earlier epoch to compare with
    with pytest.raises(TrainingDiverged, match="not finite"):
        trainer._check_explosion(1, float("nan"))


@pytest.mark.parametrize("accuracy, n, majority", [
    (0.105, 10000, None), (0.1, 500, None), (0.1, 40, None), (0.175, 40, None),
    (0.139, 512, 0.139),                   # a constant guess of the commonest class
])
def test_chance_accuracy_is_refused_at_any_evaluation_size(accuracy, n, majority):
    from moon.train import TrainingDiverged, check_learned
    with pytest.raises(TrainingDiverged, match="chance accuracy"):
        check_learned(accuracy, 10, n, majority)


@pytest.mark.parametrize("accuracy, n", [(0.2, 10000), (0.3, 100), (0.5, 40), (1.0, 5)])
def test_accuracy_clearly_above_chance_passes(accuracy, n):
    from moon.train import check_learned
    check_learned(accuracy, 10, n)


def test_a_run_that_ends_at_chance_is_recorded_failed(tiny_fashion, chance_check, tmp_path):
    """One epoch of a static MLP at density 0.2 on 640 images ends at 14.5% of 200 test images:
    not above chance (p = 0.03), which the old test, needing 1,000 images, never looked at."""
    result = moon.run(tiny(), tmp_path, raise_on_failure=False, progress=False)
    assert result.status == "failed" and "chance accuracy (14.5% on 200" in result.error
    assert load_result(tmp_path).status == "failed"
    learned = moon.run(tiny(lr_warmup_epochs=0.0, epochs=3), tmp_path / "3", progress=False)
    assert learned.status == "complete" and learned.id["accuracy"] > 0.3


def test_a_model_with_constant_outputs_is_not_complete(tiny_fashion, tmp_path, monkeypatch):
    """Every score the same on every image: each AUROC is exactly 0.5."""
    import torch

    def collapsed(self):
        with torch.no_grad():
            for p in self.model.parameters():
                p.zero_()
        return self.model
    monkeypatch.setattr(Trainer, "final_model", collapsed)
    result = moon.run(tiny(), tmp_path, raise_on_failure=False, progress=False)
    assert result.status == "failed" and "the same score" in result.error
    assert load_result(tmp_path).status == "failed"


def test_failed_download_leaves_no_empty_folders(no_data, monkeypatch):
    import torchvision

    from moon import data
    user, _ = no_data

    class Failing:
        def __init__(self, root, **kwargs):
            os.makedirs(os.path.join(root, "KMNIST", "raw"))
            raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "KMNIST", Failing)
    with pytest.raises(data.DatasetNotFoundError, match="no network"):
        data.find_source("kmnist", download=True)
    assert list(user.iterdir()) == []


def test_corrupt_result_file_is_reported(tmp_path):
    from moon.rundir import inspect_folder
    (tmp_path / "result.json").write_text("{")
    with pytest.raises(CorruptFile, match="not valid JSON"):
        inspect_folder(tmp_path, tiny().to_dict(), resume=True)
