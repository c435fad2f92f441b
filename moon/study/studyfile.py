"""Reading a study file (``studies/<name>.yaml``): checked like a configuration, before any cell.

A study file is user input as much as a ``key=value`` override, and a mistake in it used to surface
as an ``AttributeError`` deep in the grid expansion, or not at all: a misspelt ``bsae:`` was
ignored and every cell ran without its base. :func:`read_study` returns the file's sections with
their shapes checked (the grid a list of mappings of lists, variants a mapping of mappings, ...),
and every refusal is one :class:`~moon.errors.BadStudy` line that names the file and what is wrong.

Names end up in paths: a study's ``name`` is its default output folder (``runs/<name>``) and each
cell's folder is named by its axes and values (``method=rigl,seed=0``), so a value such as
``x/../../../escaped`` or a name such as ``../../elsewhere`` would write outside the study's
folder. Such names are refused here (:func:`check_folder_part`).
"""

from __future__ import annotations

import difflib
from pathlib import Path, PureWindowsPath
from typing import Any

import yaml

from moon.config import field_names
from moon.errors import BadStudy

KEYS = ("name", "description", "base", "variants", "grid", "presets", "order_by", "endpoints")
ENDPOINT_KEYS = ("primary", "secondary", "by", "alpha", "power", "families")
SCALARS = (str, int, float, bool)


def read_study(path: Path) -> dict[str, Any]:
    """The sections of the study file at ``path`` (missing ones as empty), their shapes checked."""
    where = f"study file {path}"
    raw = _parse(path, where)
    if raw is None:
        raise BadStudy(f"{where} is empty; a study needs at least a grid, e.g. "
                       f"grid: [{{seed: [0, 1]}}]")
    if not isinstance(raw, dict):
        raise BadStudy(f"{where} must be a mapping of keys ({', '.join(KEYS)}), not a "
                       f"{_kind(raw)}")
    _known(raw, KEYS, where, "key")
    if "grid" not in raw:
        raise BadStudy(f"{where} has no grid: add one, e.g. grid: [{{seed: [0, 1]}}]")
    variants = _variants(raw.get("variants"), where)
    return {"name": _name(raw.get("name", path.stem), where),
            "description": _text(raw.get("description"), "description", where),
            "base": _overrides(raw.get("base"), "base", where),
            "variants": variants,
            "grid": _grid(raw["grid"], where),
            "presets": _presets(raw.get("presets"), where),
            "order_by": _strings(raw.get("order_by"), "order_by", where),
            "endpoints": _endpoints(raw.get("endpoints"), where)}


def check_folder_part(text: str, where: str) -> None:
    """Refuse ``text`` as part of a cell's folder name when it could make the folder lie outside
    the study's folder (a path separator, a NUL byte)."""
    if any(c in text for c in ("/", "\\", "\0")):
        raise BadStudy(f"{where}: {text!r} cannot be part of a folder name (it holds a path "
                       f"separator): its cells would be written outside the study's folder")


def _parse(path: Path, where: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BadStudy(f"{where} is not UTF-8 text") from None
    except yaml.constructor.ConstructorError as err:
        raise BadStudy(f"{where}{_at(err)}: a YAML tag that study files do not allow ("
                       f"{err.problem}); they hold plain mappings, lists and values") from None
    except yaml.YAMLError as err:
        raise BadStudy(f"{where} is not valid YAML{_at(err)}: "
                       f"{getattr(err, 'problem', None) or err}") from None


def _at(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _kind(value: Any) -> str:
    return {list: "list", dict: "mapping", str: "string"}.get(type(value), type(value).__name__)


def _known(mapping: dict, allowed: tuple[str, ...], where: str, what: str) -> None:
    """Refuse a key of ``mapping`` outside ``allowed``, with the close matches."""
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise BadStudy(f"{where}: unknown {what} {key!r}{hint}; known: {', '.join(allowed)}")


def _mapping(value: Any, what: str, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadStudy(f"{where}: {what} must be a mapping, not a {_kind(value)}")
    return value


def _name(name: Any, where: str) -> str:
    """The study's name: a plain folder name, since ``runs/<name>`` is its default output."""
    if (not isinstance(name, str) or name in ("", ".", "..") or PureWindowsPath(name).drive
            or any(c in name for c in ("/", "\\", "\0"))):
        raise BadStudy(f"{where}: name {name!r} cannot be a folder name (the default output is "
                       f"runs/NAME): use letters, digits, '-' and '_'")
    return name


def _text(value: Any, what: str, where: str) -> str:
    if value is not None and not isinstance(value, str):
        raise BadStudy(f"{where}: {what} must be text, not a {_kind(value)}")
    return value or ""


def _overrides(value: Any, what: str, where: str) -> dict[str, Any]:
    """RunConfig overrides (``base``, a variant's bundle): a mapping of known field names."""
    value = _mapping(value, what, where)
    fields = field_names()
    for key in value:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise BadStudy(f"{where}: {what}: unknown config key {key!r}{hint}")
    return value


def _variants(value: Any, where: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{group: {value: {field: v}}}``; groups and values name cells' folders."""
    variants = _mapping(value, "variants", where)
    fields = set(field_names())
    for group, bundles in variants.items():
        check_folder_part(str(group), f"{where}: variants")
        if group in fields:
            raise BadStudy(f"{where}: variants: a group cannot be named like the config field "
                           f"{group!r} (an axis {group} would be ambiguous)")
        if not isinstance(bundles, dict):
            raise BadStudy(f"{where}: variants.{group} must be a mapping of named override "
                           f"bundles, not a {_kind(bundles)}")
        for name, bundle in bundles.items():
            check_folder_part(str(name), f"{where}: variants.{group}")
            _overrides(bundle, f"variants.{group}.{name}", where)
    return {g: {n: dict(b or {}) for n, b in bs.items()} for g, bs in variants.items()}


def _axes(block: Any, what: str, where: str) -> dict[str, list[Any]]:
    """One mapping of axis -> non-empty list of plain values (a grid block, a preset)."""
    if not isinstance(block, dict):
        raise BadStudy(f"{where}: {what} must be a mapping of axes to lists of values, not a "
                       f"{_kind(block)}")
    for axis, values in block.items():
        check_folder_part(str(axis), f"{where}: {what}")
        if not isinstance(values, list):
            raise BadStudy(f"{where}: {what}: {axis} must be a list of values, e.g. {axis}: "
                           f"[{values!r}], not a {_kind(values)}")
        if not values:
            raise BadStudy(f"{where}: {what}: {axis} lists no values")
        for v in values:
            if not isinstance(v, SCALARS):
                raise BadStudy(f"{where}: {what}: {axis} values must be plain values, not a "
                               f"{_kind(v)} ({v!r})")
            check_folder_part(str(v), f"{where}: {what}: {axis}")
    return block


def _grid(grid: Any, where: str) -> list[dict[str, list[Any]]]:
    if not isinstance(grid, list) or not grid:
        raise BadStudy(f"{where}: grid must be a list of blocks, e.g. grid: [{{seed: [0, 1]}}], "
                       f"not " + (f"a {_kind(grid)}" if grid else "empty"))
    for i, block in enumerate(grid, 1):
        if not isinstance(block, dict):
            raise BadStudy(f"{where}: grid block {i} must be a mapping of axes to lists of "
                           f"values, not a {_kind(block)}")
        _axes(block, f"grid block {i}", where)
    return grid


def _presets(value: Any, where: str) -> dict[str, dict[str, list[Any]]]:
    presets = _mapping(value, "presets", where)
    for name, keep in presets.items():
        if not isinstance(keep, dict):
            raise BadStudy(f"{where}: presets.{name} must be a mapping of axes to the values "
                           f"kept, not a {_kind(keep)}")
        _axes(keep, f"presets.{name}", where)
    return presets


def _strings(value: Any, what: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadStudy(f"{where}: {what} must be a list of axis names, e.g. {what}: [seed]")
    return value


def _endpoints(value: Any, where: str) -> dict[str, Any]:
    endpoints = _mapping(value, "endpoints", where)
    _known(endpoints, ENDPOINT_KEYS, f"{where}: endpoints", "key")
    return endpoints
