"""Studies: a base configuration and a grid of overrides, run cell by cell, resumable.

A study file (``studies/<name>.yaml``)::

    name: sweep
    description: accuracy, ECE and AUROC against density ...
    base: {model: lenet5}                  # RunConfig overrides shared by every cell
    variants:                              # named override bundles, used as axis values
      moon: {"off": {unknown_class: false, averaging: false},
             "on": {unknown_class: true, averaging: true}}
    grid:                                  # a list of blocks; each is a product of its axes
      - {method: [dense], density: [1.0], moon: ["off", "on"], seed: [0, 1, 2]}
      - {method: [set, rigl], density: [0.1, 0.05], moon: ["off", "on"], seed: [0, 1, 2]}
    presets:                               # a preset restricts axes to the listed values
      smoke: {density: [1.0, 0.05], seed: [0, 1]}

An axis is a RunConfig field or the name of a variant group. A cell's folder is named by its axis
values (``method=rigl,density=0.05,moon=on,seed=0``) and holds its ``result.json``. A cell whose
folder already has a complete result of the same configuration is skipped, so a killed study
continues where it stopped (result files are written atomically).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moon.config import RunConfig, field_names, from_params

log = logging.getLogger(__name__)
STUDIES = Path(__file__).resolve().parent.parent / "studies"


@dataclass(frozen=True)
class Cell:
    """One run of a study: its folder name, its axis values and its configuration."""
    name: str
    axes: dict[str, Any]
    config: RunConfig


@dataclass
class Study:
    name: str
    base: dict[str, Any]
    grid: list[dict[str, list[Any]]]
    variants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    presets: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    description: str = ""

    def cells(self, preset: str | None = None, only: dict[str, list[Any]] | None = None,
              **overrides: Any) -> list[Cell]:
        """Every cell of the grid, restricted by the study's ``preset`` section and by ``only``
        (axis -> values to keep), each built from RunConfig's ``preset`` and the base, the cell's
        axes and ``overrides``."""
        out, seen = [], set()
        for block in self.grid:
            block = self._restricted(block, self.presets.get(preset or "", {}))
            block = self._restricted(block, only or {}) if block is not None else None
            if block is None:
                continue
            for values in itertools.product(*block.values()):
                axes = dict(zip(block, values))
                name = ",".join(f"{k}={v}" for k, v in axes.items())
                if name not in seen:
                    seen.add(name)
                    out.append(Cell(name, axes, self._config(axes, preset, overrides)))
        return out

    @staticmethod
    def _restricted(block: dict[str, list[Any]], keep: dict[str, list[Any]]):
        block = {axis: [v for v in values if axis not in keep or v in keep[axis]]
                 for axis, values in block.items()}
        return None if any(not values for values in block.values()) else block

    def _config(self, axes: dict[str, Any], preset: str | None, overrides: dict) -> RunConfig:
        params = dict(self.base)
        for axis, value in axes.items():
            if axis in self.variants:
                params.update(self.variants[axis][value])
            else:
                params[axis] = value
        params.update(overrides)
        return from_params(params, preset=preset)


def load_study(name_or_path: str | Path) -> Study:
    """A study by name (``studies/<name>.yaml``) or path; bad axes fail with the valid names."""
    path = Path(name_or_path)
    if not path.suffix:
        path = STUDIES / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in STUDIES.glob("*.yaml"))
        raise FileNotFoundError(f"no study {str(name_or_path)!r}: {path} does not exist; "
                                f"studies: {', '.join(known)}")
    raw = yaml.safe_load(path.read_text())
    study = Study(name=raw.get("name", path.stem), base=raw.get("base", {}), grid=raw["grid"],
                  variants=raw.get("variants", {}), presets=raw.get("presets", {}) or {},
                  description=raw.get("description", ""))
    valid = set(field_names()) | set(study.variants)
    for block in study.grid:
        bad = sorted(set(block) - valid)
        if bad:
            raise ValueError(f"study {study.name}: unknown axis {bad}; axes are RunConfig fields "
                             f"or variant groups ({', '.join(sorted(study.variants))})")
    return study


ENGINES = ("local", "ray")
VIA = ("notebook", "run")
TEMPLATE = Path(__file__).resolve().parent.parent / "notebooks" / "ood_eval.ipynb"
NOTEBOOK = "ood_eval.ipynb"


def run_study(study: Study | str, out_dir: str | Path, preset: str | None = None,
              workers: int = 1, engine: str = "local", via: str = "notebook",
              only: dict[str, list[Any]] | None = None, progress: bool | None = None,
              **overrides: Any) -> dict[str, str]:
    """Run every cell not yet complete; returns ``{cell: status}``.

    ``via="notebook"`` executes ``notebooks/ood_eval.ipynb`` through papermill for a cell and keeps
    the executed notebook beside its ``result.json``; ``via="run"`` calls ``moon.run`` directly.
    ``engine="local"`` runs ``workers`` processes on this machine (each with ``cores // workers``
    torch threads, so they do not fight over cores); ``engine="ray"`` submits every cell as a Ray
    task (one GPU per task where the cluster has GPUs) to the cluster at ``RAY_ADDRESS``, or to a
    local Ray instance. A failed cell is recorded in its result file and reported; the others go
    on. Finished cells are skipped, so a killed study continues where it stopped.
    """
    from tqdm import tqdm

    if engine not in ENGINES or via not in VIA:
        raise ValueError(f"engine={engine!r}, via={via!r}: choose engine from {ENGINES}, via from {VIA}")
    study = load_study(study) if not isinstance(study, Study) else study
    cells = study.cells(preset, only, **overrides)
    jobs = [(cell.config.replace(resume=True), str(Path(out_dir) / cell.name)) for cell in cells]
    bar = tqdm(total=len(jobs), desc=f"study {study.name}", unit="cell", disable=progress is False)
    execute = _execute_ray if engine == "ray" else _execute_local
    statuses: dict[str, str] = {}
    for cell, (status, error) in zip(cells, execute(jobs, workers, via, bar)):
        statuses[cell.name] = status
        if status != "complete":
            log.error("cell %s failed: %s", cell.name, error)
    bar.close()
    return statuses


def _run_cell(job: tuple[RunConfig, str], threads: int | None = None,
              via: str = "run") -> tuple[str, str | None]:
    """One cell in this process (or, for notebooks, in a kernel it starts); failures are
    recorded, not raised."""
    import os

    import torch

    import moon

    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)   # the notebook kernel inherits it
    cfg, out = job
    if via == "notebook":
        return _run_notebook(cfg, Path(out))
    result = moon.run(cfg, out, raise_on_failure=False, progress=False)
    return result.status, result.error


def _run_notebook(cfg: RunConfig, out: Path) -> tuple[str, str | None]:
    """Execute the ``ood_eval`` template for ``cfg`` into ``out``: written under a temporary name
    and renamed when complete, so a killed cell never leaves a finished-looking notebook."""
    import os

    import papermill as pm

    from moon.results import load_result

    final = out / NOTEBOOK
    if final.exists() and _finished(out, cfg):
        return "complete", None
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".ood_eval.partial.ipynb"
    params = {**cfg.to_dict(), "preset": None, "out_dir": str(out)}
    try:
        pm.execute_notebook(TEMPLATE, partial, parameters=params, progress_bar=False,
                            kernel_name="python3", cwd=str(TEMPLATE.parent.parent))
    except pm.PapermillExecutionError as err:
        os.replace(partial, out / "ood_eval.failed.ipynb")
        return "failed", f"{err.ename}: {err.evalue}"
    os.replace(partial, final)
    result = load_result(out)
    return result.status, result.error


def _finished(out: Path, cfg: RunConfig) -> bool:
    from moon.runner import finished_result

    return finished_result(out, cfg) is not None


def _execute_local(jobs: list, workers: int, via: str, bar) -> list[tuple[str, str | None]]:
    """Results of ``_run_cell`` for every job, in order; sequential or in a process pool."""
    if workers <= 1:
        out = []
        for job in jobs:
            out.append(_run_cell(job, via=via))
            bar.update(1)
        return out
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_run_cell, job, threads, via) for job in jobs]
        for future in futures:   # in submission order; the bar moves as each one finishes
            future.add_done_callback(lambda _: bar.update(1))
        return [future.result() for future in futures]


def _exit_with_parent(parent: int, poll_seconds: float = 0.5) -> None:
    """Worker initializer: a daemon thread that ends this worker, and the notebook kernels it
    started, once the study process ``parent`` is gone. A study killed with SIGKILL gets no chance
    to stop its pool, and without this its workers would finish (or hang in) their cells as
    orphans, still writing into the study's folder while a restarted study runs the same cells."""
    import os
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        try:
            import psutil

            for child in psutil.Process().children(recursive=True):
                child.kill()
        except Exception:                         # psutil missing or a child already gone
            pass
        os._exit(1)

    threading.Thread(target=watch, name="moon-parent-watch", daemon=True).start()


def _execute_ray(jobs: list, workers: int, via: str, bar) -> list[tuple[str, str | None]]:
    """Every job as a Ray task (``ray.init()`` joins ``RAY_ADDRESS`` when set, else starts a local
    instance); one GPU per task where the cluster has GPUs, else one CPU. ``workers`` is ignored:
    Ray schedules by resources."""
    import ray

    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus)(_run_cell)
    pending = {task.remote(job, None if gpus else 1, via): i for i, job in enumerate(jobs)}
    out: list = [None] * len(jobs)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        out[pending.pop(done[0])] = ray.get(done[0])
        bar.update(1)
    return out


def collect(study: Study | str, out_dir: str | Path, preset: str | None = None,
            only: dict[str, list[Any]] | None = None, **overrides: Any) -> list:
    """The complete results of exactly this study's cells (for ``preset`` and ``overrides``) in
    ``out_dir``: cells not run yet, failed, or run with another configuration are left out."""
    from moon.results import RESULT_FILE, load_result

    study = load_study(study) if not isinstance(study, Study) else study
    results = []
    for cell in study.cells(preset, only, **overrides):
        path = Path(out_dir) / cell.name / RESULT_FILE
        if not path.exists():
            continue
        result = load_result(path)
        same = {k: v for k, v in result.config.items() if k != "resume"} == \
            {k: v for k, v in cell.config.to_dict().items() if k != "resume"}
        if result.status == "complete" and same:
            results.append(result)
    return results
