"""Running a study: every cell not yet complete, resumable (:func:`run_study`), and reading its
results back (:func:`collect`). The study file and its cells are :mod:`moon.study.design`'s; where
and how a cell runs, :mod:`moon.study.engines`'s."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from moon.config import differing_fields
from moon.errors import FolderInUse, MoonError
from moon.locks import StudyLock
from moon.study.design import Cell, Study, load_study
from moon.study.engines import check_engine, execute

log = logging.getLogger(__name__)


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

    check_engine(engine, via, workers)
    study = load_study(study) if not isinstance(study, Study) else study
    study.check_only(only, preset)
    cells = study.cells(preset, only, **overrides)
    signature = _signature(study, preset, only, overrides)
    with StudyLock(out_dir, signature):
        jobs, statuses = _plan(cells, Path(out_dir))
        bar = tqdm(total=len(cells), desc=f"study {study.name}", unit="cell",
                   disable=progress is False, initial=len(statuses))
        todo = [c for c in cells if c.name not in statuses]
        for cell, (status, error) in zip(todo, execute(jobs, workers, via, engine, bar)):
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
