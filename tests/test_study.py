"""Studies: grid expansion, presets restricting axes, resumable runs."""

import json

import pytest

from moon.study import Study, load_study, run_study
from moon.train import Trainer

# max_eval_samples: each OOD set evaluated on its first 512 images (the smoke preset's cap).
SMALL = dict(epochs=1, batch_size=64, device="cpu", detectors="msp,energy", eval_batch_size=256,
             max_eval_samples=512)
RUN = dict(via="run", progress=False)


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
    for name in ("sweep", "ablation", "calibration", "full"):
        study = load_study(name)
        assert study.cells() and study.cells("smoke")
        assert len(study.cells("smoke")) < len(study.cells())


def test_every_shipped_study_file_loads():
    from moon.study import STUDIES

    files = sorted(STUDIES.glob("*.yaml"))
    assert files and all(load_study(path).grid for path in files)


def test_bad_study_names_and_axes():
    with pytest.raises(FileNotFoundError, match="sweep"):
        load_study("nope")


def test_run_study_skips_finished_cells(tiny_fashion, tmp_path, monkeypatch):
    statuses = run_study(tiny_study(), tmp_path, **RUN, **SMALL)
    assert set(statuses.values()) == {"complete"} and len(statuses) == 5
    assert len(list(tmp_path.glob("*/result.json"))) == 5

    def no_training(self):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(Trainer, "fit", no_training)
    assert run_study(tiny_study(), tmp_path, **RUN, **SMALL) == statuses


def test_collect_returns_exactly_the_study_cells(tiny_fashion, tmp_path):
    from moon.study import collect

    run_study(tiny_study(), tmp_path, preset="smoke", **RUN, **SMALL)
    assert len(collect(tiny_study(), tmp_path, preset="smoke", **SMALL)) == 3
    assert collect(tiny_study(), tmp_path, **SMALL) == []   # other configs (no preset) not run yet


def test_only_restricts_axes_and_workers_give_the_same_results(tiny_fashion, tmp_path):
    study = tiny_study()
    only = {"density": [0.05], "moon": ["moon"]}
    assert [c.name for c in study.cells(only=only)] == ["method=rigl,density=0.05,moon=moon"]
    seq = run_study(study, tmp_path / "seq", only={"density": [0.05]}, **RUN, **SMALL)
    assert len(seq) == 2


@pytest.mark.slow
def test_workers_run_each_cell_once(fake_data, tmp_path):
    """Two spawned worker processes (they inherit the fixture's MOON_DATA variables and read the
    synthetic files) give the same results as the sequential runner."""
    study = Study(name="w", base={"model": "mlp", "method": "static", "density": 0.2},
                  grid=[{"seed": [0, 1]}])
    small = FAKE_SMALL
    par = run_study(study, tmp_path / "par", workers=2, **RUN, **small)
    seq = run_study(study, tmp_path / "seq", **RUN, **small)
    assert par == seq == {"seed=0": "complete", "seed=1": "complete"}
    for name in par:
        a = json.loads((tmp_path / "par" / name / "result.json").read_text())
        b = json.loads((tmp_path / "seq" / name / "result.json").read_text())
        assert a["id"]["accuracy"] == pytest.approx(b["id"]["accuracy"])


# Enough steps (3 epochs of 7) for the synthetic files to be learnt: a run at chance is failed.
FAKE_SMALL = dict(SMALL, detectors="msp", max_train_samples=100, fit_samples=100, epochs=3,
                  batch_size=16, lr_warmup_epochs=0.0)


def _fake_study(name="w"):
    return Study(name=name, base={"model": "mlp", "method": "static", "density": 0.2},
                 grid=[{"seed": [0, 1]}])


@pytest.mark.slow
def test_notebook_cells_keep_their_executed_notebook(fake_data, tmp_path):
    statuses = run_study(_fake_study(), tmp_path, progress=False, **FAKE_SMALL)
    assert statuses == {"seed=0": "complete", "seed=1": "complete"}
    notebook = tmp_path / "seed=0" / "ood_eval.ipynb"
    executed = json.loads(notebook.read_text())
    assert any(c.get("outputs") for c in executed["cells"] if c["cell_type"] == "code")
    assert not list(tmp_path.glob("*/.*.partial.ipynb"))
    before = notebook.stat().st_mtime_ns
    run_study(_fake_study(), tmp_path, progress=False, **FAKE_SMALL)   # finished: skipped
    assert notebook.stat().st_mtime_ns == before


@pytest.mark.slow
def test_sigkill_then_resume_leaves_each_result_once(fake_data, tmp_path):
    """A sweep killed with SIGKILL mid-way, then restarted, completes with one valid result per
    cell and no half-written file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    study = tmp_path / "k.yaml"
    study.write_text("name: k\nbase: {model: mlp, method: static, density: 0.2}\n"
                     "grid:\n  - {seed: [0, 1, 2, 3]}\n")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "moon", "sweep", str(study), "--via", "run", "--out", str(out)]
    args += [f"{k}={v}" for k, v in FAKE_SMALL.items()]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("*/result.json")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)                                  # somewhere inside a later cell
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("*/result.json")))
    assert 1 <= done_before < 4
    assert subprocess.run(args, capture_output=True).returncode == 0
    results = sorted(out.glob("*/result.json"))
    assert [p.parent.name for p in results] == [f"seed={i}" for i in range(4)]
    for path in results:
        assert json.loads(path.read_text())["status"] == "complete"
    assert not list(out.glob("**/.*.tmp")) and not list(out.glob("**/.*.partial.ipynb"))


@pytest.mark.slow
def test_sigkilled_study_leaves_no_worker_behind(fake_data, tmp_path):
    """Workers (and what they started) end when the study process that spawned them is killed,
    instead of running on as orphans that write into the study's folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    study = tmp_path / "o.yaml"
    study.write_text("name: o\nbase: {model: mlp, method: static, density: 0.2}\n"
                     "grid:\n  - {seed: [0, 1, 2, 3, 4, 5]}\n")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "moon", "sweep", str(study), "--via", "run", "--workers", "2",
            "--out", str(out)] + [f"{k}={v}" for k, v in dict(FAKE_SMALL, epochs=3).items()]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 120
    while not list(out.glob("seed=*")) and time.time() < deadline:   # a worker has started a cell
        time.sleep(0.05)
    workers = parent.children(recursive=True)
    assert workers, "the study started no worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=15)
    for p in alive:
        p.kill()
    assert not alive, f"orphaned workers: {[p.pid for p in alive]}"


@pytest.mark.slow
def test_ray_engine_runs_cells_as_tasks(fake_data, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        statuses = run_study(_fake_study("r"), tmp_path, engine="ray", **RUN, **FAKE_SMALL)
    finally:
        ray.shutdown()
    assert statuses == {"seed=0": "complete", "seed=1": "complete"}
    assert len(list(tmp_path.glob("*/result.json"))) == 2
