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


def run_study(study: Study | str, out_dir: str | Path, preset: str | None = None,
              workers: int = 1, only: dict[str, list[Any]] | None = None,
              progress: bool | None = None, **overrides: Any) -> dict[str, str]:
    """Run every cell not yet complete; returns ``{cell: status}``. A failed cell is recorded in
    its result file and reported; the others go on. ``workers > 1`` runs cells in that many local
    processes, each with ``cores // workers`` torch threads so they do not fight over cores."""
    from tqdm import tqdm

    study = load_study(study) if not isinstance(study, Study) else study
    cells = study.cells(preset, only, **overrides)
    root = Path(out_dir)
    jobs = [(cell.config.replace(resume=True), str(root / cell.name)) for cell in cells]
    bar = tqdm(total=len(jobs), desc=f"study {study.name}", unit="cell", disable=progress is False)
    statuses: dict[str, str] = {}
    for cell, (status, error) in zip(cells, _execute(jobs, workers, bar)):
        statuses[cell.name] = status
        if status != "complete":
            log.error("cell %s failed: %s", cell.name, error)
    bar.close()
    return statuses


def _run_cell(job: tuple[RunConfig, str], threads: int | None = None) -> tuple[str, str | None]:
    """One cell in this process: ``moon.run`` with failures recorded, not raised."""
    import torch

    import moon

    if threads:
        torch.set_num_threads(threads)
    cfg, out = job
    result = moon.run(cfg, out, raise_on_failure=False, progress=False)
    return result.status, result.error


def _execute(jobs: list, workers: int, bar) -> list[tuple[str, str | None]]:
    """Results of ``_run_cell`` for every job, in order; sequential or in a process pool."""
    if workers <= 1:
        out = []
        for job in jobs:
            out.append(_run_cell(job))
            bar.update(1)
        return out
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_run_cell, job, threads) for job in jobs]
        for future in futures:   # in submission order; the bar moves as each one finishes
            future.add_done_callback(lambda _: bar.update(1))
        return [future.result() for future in futures]


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
