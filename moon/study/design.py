"""A study's design: a base configuration and a grid of overrides, expanded into cells.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moon.config import RunConfig, field_names
from moon.configure import from_params
from moon.errors import BadStudy

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
