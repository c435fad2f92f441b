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

from moon.config import RunConfig, differing_fields, field_names, from_params
from moon.errors import BadStudy, FolderInUse, FolderLocked, MoonError
from moon.locks import StudyLock

log = logging.getLogger(__name__)
STUDIES = Path(__file__).resolve().parents[2] / "studies"


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
    order_by: list[str] = field(default_factory=list)   # axes that order the cells (stable)
    endpoints: dict[str, Any] = field(default_factory=dict)   # declared comparisons (statistics)

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
                name = cell_name(axes, self.name)
                if name not in seen:
                    seen.add(name)
                    out.append(Cell(name, axes, self._config(axes, preset, overrides)))
        for axis in reversed(self.order_by):
            out.sort(key=lambda c: (axis not in c.axes, c.axes.get(axis, 0)))
        return out

    def axes(self) -> set[str]:
        """Every axis some block of the grid varies."""
        return {axis for block in self.grid for axis in block}

    def check_only(self, only: dict[str, list[Any]] | None, preset: str | None = None) -> None:
        """Refuse an ``only`` restriction that names an axis the grid lacks or keeps no cell, so a
        typo never runs (or reports) silently nothing or everything."""
        if not only:
            return
        bad = sorted(set(only) - self.axes())
        if bad:
            raise ValueError(f"--only {bad[0]}=...: {bad[0]!r} is not an axis of study "
                             f"{self.name}; its axes are {', '.join(sorted(self.axes()))}")
        if not self.cells(preset, only):
            values = {axis: sorted({v for b in self.grid for v in b.get(axis, [])}, key=str)
                      for axis in only}
            raise ValueError(f"--only {only} matches no cell of study {self.name}"
                             + (f" (preset {preset})" if preset else "") + "; the axes' values: "
                             + "; ".join(f"{a}: {', '.join(map(str, v))}" for a, v in values.items()))

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


def cell_name(axes: dict[str, Any], study: str = "") -> str:
    """A cell's folder name, ``method=rigl,seed=0``; refused (:class:`~moon.errors.BadStudy`)
    when an axis or value holds a path separator, so no cell is written outside the study's
    folder, whether the study came from a file or was built in Python."""
    from moon.study.studyfile import check_folder_part

    for axis, value in axes.items():
        check_folder_part(f"{axis}={value}", f"study {study}")
    return ",".join(f"{k}={v}" for k, v in axes.items())


def load_study(name_or_path: str | Path) -> Study:
    """A study by name (``studies/<name>.yaml``) or path, checked before any cell is built
    (:func:`~moon.study.studyfile.read_study`: keys, shapes, folder names); bad axes fail with the
    valid names. Every refusal is one :class:`~moon.errors.BadStudy` line naming the file."""
    from moon.study.studyfile import read_study

    path = Path(name_or_path)
    if not path.suffix:
        path = STUDIES / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in STUDIES.glob("*.yaml"))
        raise FileNotFoundError(f"no study {str(name_or_path)!r}: {path} does not exist; "
                                f"studies: {', '.join(known)}")
    study = Study(**read_study(path))
    _check_axes(study, f"study file {path}")
    return study


def _check_axes(study: Study, where: str) -> None:
    """Every axis of the grid is a RunConfig field or a variant group whose values are defined;
    presets and ``order_by`` name axes of the grid."""
    valid = set(field_names()) | set(study.variants)
    for block in study.grid:
        bad = sorted(set(block) - valid)
        if bad:
            raise BadStudy(f"{where}: unknown axis {bad}; axes are RunConfig fields "
                           f"or variant groups ({', '.join(sorted(study.variants))})")
        for axis in set(block) & set(study.variants):
            undefined = [v for v in block[axis] if v not in study.variants[axis]]
            if undefined:
                raise BadStudy(f"{where}: {axis} value(s) {undefined} are not defined "
                               f"under variants.{axis} (defined: "
                               f"{', '.join(map(str, study.variants[axis]))})")
    for preset, keep in study.presets.items():
        bad = sorted(set(keep) - study.axes())
        if bad:
            raise BadStudy(f"{where}: preset {preset!r} restricts unknown axis {bad}; "
                           f"the grid's axes are {', '.join(sorted(study.axes()))}")
    bad = sorted(set(study.order_by) - study.axes())
    if bad:
        raise BadStudy(f"{where}: order_by names {bad}, not axes of the grid "
                       f"({', '.join(sorted(study.axes()))})")


ENGINES = ("local", "ray")
VIA = ("notebook", "run")
TEMPLATE = Path(__file__).resolve().parents[2] / "notebooks" / "ood_eval.ipynb"
NOTEBOOK = "ood_eval.ipynb"


def run_study(study: Study | str, out_dir: str | Path, preset: str | None = None,
              workers: int = 1, engine: str = "local", via: str = "notebook",
              only: dict[str, list[Any]] | None = None, progress: bool | None = None,
              **overrides: Any) -> dict[str, str]:
    """Run every cell not yet complete; returns ``{cell: status}`` (complete | failed | busy).

    ``via="notebook"`` executes ``notebooks/ood_eval.ipynb`` through papermill for a cell and keeps
    the executed notebook beside its ``result.json``; ``via="run"`` calls ``moon.run`` directly.
    ``engine="local"`` runs ``workers`` processes on this machine (each with ``cores // workers``
    torch threads, so they do not fight over cores); ``engine="ray"`` submits every cell as a Ray
    task (one GPU per task where the cluster has GPUs) to the cluster at ``RAY_ADDRESS``, or to a
    local Ray instance. A failed cell is recorded in its result file and reported; the others go
    on. Finished cells are skipped, so a killed study continues where it stopped.

    Before any compute: a cell folder holding a complete result of another configuration stops
    the whole study (:class:`~moon.errors.FolderInUse`; ``overwrite=True`` replaces them), and so
    does a live study of other settings writing into ``out_dir`` (:class:`~moon.errors.FolderLocked`).
    Two studies of the same settings share the cells: a cell another process is running is
    reported ``busy`` and left to it. A cell whose ``result.json`` is unreadable or not what a run
    writes (:mod:`moon.resultcheck`) runs again, its file kept as ``result.corrupt.json``.
    """
    from tqdm import tqdm

    if engine not in ENGINES or via not in VIA:
        raise ValueError(f"engine={engine!r}, via={via!r}: choose engine from {ENGINES}, via from {VIA}")
    if workers < 1:
        raise ValueError(f"workers={workers}: use at least 1 worker process")
    study = load_study(study) if not isinstance(study, Study) else study
    study.check_only(only, preset)
    cells = study.cells(preset, only, **overrides)
    signature = _signature(study, preset, only, overrides)
    with StudyLock(out_dir, signature):
        jobs, statuses = _plan(cells, Path(out_dir))
        bar = tqdm(total=len(cells), desc=f"study {study.name}", unit="cell",
                   disable=progress is False, initial=len(statuses))
        execute = _execute_ray if engine == "ray" else _execute_local
        todo = [c for c in cells if c.name not in statuses]
        for cell, (status, error) in zip(todo, execute(jobs, workers, via, bar)):
            statuses[cell.name] = status
            if status == "failed":
                log.error("cell %s failed: %s", cell.name, error)
            elif status == "busy":
                log.warning("cell %s is being run by another process: %s", cell.name, error)
        bar.close()
    return {c.name: statuses[c.name] for c in cells}


def _plan(cells: list[Cell], out: Path) -> tuple[list, dict[str, str]]:
    """The jobs to run, and the statuses of the cells that need none (complete); a cell whose
    result is corrupt is a job (its file is set aside, never deleted); refuses, before anything runs, to write over complete results of another configuration."""
    from moon.errors import CorruptFile
    from moon.rundir import inspect_folder

    jobs, statuses, refused = [], {}, []
    for cell in cells:
        folder = out / cell.name
        cfg = cell.config.replace(resume=True)
        try:
            state = inspect_folder(folder, cfg.to_dict(), resume=True)
        except CorruptFile as err:        # run again; _run_cell keeps the file aside first
            log.warning("cell %s runs again: %s", cell.name, err)
            jobs.append((cfg, str(folder)))
            continue
        if state.kind == "reusable":
            statuses[cell.name] = "complete"
            continue
        if state.kind == "other" and not cfg.overwrite:
            refused.append(f"{cell.name} ({state.detail})")
        jobs.append((cfg, str(folder)))
    if refused:
        raise FolderInUse(
            f"{len(refused)} cell folder(s) in {out} hold complete results of another "
            f"configuration, e.g. {refused[0]}; nothing was run. Write this study to another "
            f"folder (--out DIR), or pass overwrite=true to replace them")
    return jobs, statuses


def _signature(study: Study, preset, only, overrides) -> str:
    """A short hash of what a study run produces: same signature, same cells and configurations."""
    import hashlib
    import json

    key = json.dumps([study.name, study.base, study.grid, study.variants, preset, only,
                      sorted(overrides.items())], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _run_cell(job: tuple[RunConfig, str], threads: int | None = None,
              via: str = "run") -> tuple[str, str | None]:
    """One cell in this process (or, for notebooks, in a kernel it starts), under the cell
    folder's lock; failures are recorded, not raised. A cell locked by another process is
    ``busy``."""
    import os

    import torch

    from moon.errors import MoonError
    from moon.locks import TOKEN_ENV, FolderLock
    from moon.rundir import corrupt_reason, set_aside
    from moon.runner import run

    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)   # the notebook kernel inherits it
    cfg, out = job
    lock = FolderLock(out, shared_token="")
    try:
        lock.acquire()
    except FolderLocked as err:
        return "busy", str(err)
    except MoonError as err:
        return "failed", str(err)
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = lock.token        # the run (or its kernel) works under this lock
    try:
        reason = corrupt_reason(out)
        if reason:                            # kept beside the rerun, never over it
            set_aside(out, reason)
        if via == "notebook":
            return _run_notebook(cfg, Path(out))
        result = run(cfg, out, raise_on_failure=False, progress=False)
        return result.status, result.error
    except MoonError as err:
        return "failed", str(err)
    finally:
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous
        lock.release()


def _run_notebook(cfg: RunConfig, out: Path) -> tuple[str, str | None]:
    """Execute the ``ood_eval`` template for ``cfg`` into ``out``: written under a temporary name
    and renamed when complete, so a killed cell never leaves a finished-looking notebook."""
    import os

    import papermill as pm

    from moon.results import FAILED_FILE, RESULT_FILE, load_result
    from moon.locks import check_lock

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
        check_lock(out)
        os.replace(partial, out / "ood_eval.failed.ipynb")
        return "failed", f"{err.ename}: {err.evalue}"
    check_lock(out)                     # the cell is still this worker's before its notebook lands
    os.replace(partial, final)
    failed = out / FAILED_FILE
    result = load_result(failed if failed.exists() and not (out / RESULT_FILE).exists() else out)
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


class Collected(list):
    """The results :func:`collect` kept, with ``corrupt``: ``[(path, reason)]`` for the result
    files it left out because they are not what a run writes (listed apart by the report, never
    averaged, never silently dropped)."""

    def __init__(self, results=(), corrupt=()):
        super().__init__(results)
        self.corrupt = list(corrupt)


def collect(study: Study | str, out_dir: str | Path, preset: str | None = None,
            only: dict[str, list[Any]] | None = None, exact: bool = True,
            **overrides: Any) -> Collected:
    """The complete results of exactly this study's cells (for ``preset`` and ``overrides``) in
    ``out_dir``: cells not run yet, failed, or run with another configuration are left out.
    ``exact=False`` keeps a cell's complete result even when its configuration differs from what
    the cell would run today (a committed study shown as it ran; the differences are logged).
    A file that cannot be read, or whose metrics or config are not what a run writes
    (:mod:`moon.resultcheck`), is left out and listed in the answer's ``corrupt``."""
    from moon.resultcheck import check_result
    from moon.results import RESULT_FILE, load_result

    from collections import Counter

    study = load_study(study) if not isinstance(study, Study) else study
    results, differing = Collected(), Counter()
    for cell in study.cells(preset, only, **overrides):
        path = Path(out_dir) / cell.name / RESULT_FILE
        if not path.exists():
            continue
        try:
            result = load_result(path)
            if result.status == "complete":
                check_result(result, path)
        except (ValueError, MoonError) as err:     # reported apart, never a crash
            log.error("leaving out %s: %s", path, err)
            results.corrupt.append((str(path), str(err)))
            continue
        differs = differing_fields(result.config, cell.config.to_dict())
        if result.status == "complete" and (not differs or not exact):
            if differs:
                differing[tuple(differs)] += 1
            results.append(result)
    for differs, count in differing.items():      # one line per difference, not one per cell
        log.info("%s: %d of the %d results shown ran with %s differing from today's cells",
                 study.name, count, len(results), list(differs))
    return results
