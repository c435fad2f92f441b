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

    def cells(self, preset: str | None = None, **overrides: Any) -> list[Cell]:
        """Every cell of the grid (restricted by the study's ``preset`` section, if any), each built
        from RunConfig's ``preset`` and the base, the cell's axes and ``overrides``."""
        out, seen = [], set()
        for block in self.grid:
            block = self._restricted(block, preset)
            if block is None:
                continue
            for values in itertools.product(*block.values()):
                axes = dict(zip(block, values))
                name = ",".join(f"{k}={v}" for k, v in axes.items())
                if name not in seen:
                    seen.add(name)
                    out.append(Cell(name, axes, self._config(axes, preset, overrides)))
        return out

    def _restricted(self, block: dict[str, list[Any]], preset: str | None):
        keep = self.presets.get(preset or "", {})
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
              progress: bool | None = None, **overrides: Any) -> dict[str, str]:
    """Run every cell not yet complete, one after another; returns ``{cell: status}``. A failed
    cell is recorded in its result file and reported; the others go on."""
    import moon
    from tqdm import tqdm

    study = load_study(study) if not isinstance(study, Study) else study
    cells = study.cells(preset, **overrides)
    root = Path(out_dir)
    statuses = {}
    for cell in tqdm(cells, desc=f"study {study.name}", unit="cell", disable=progress is False):
        result = moon.run(cell.config.replace(resume=True), root / cell.name,
                          raise_on_failure=False, progress=False)
        statuses[cell.name] = result.status
        if result.status != "complete":
            log.error("cell %s failed: %s", cell.name, result.error)
    return statuses
