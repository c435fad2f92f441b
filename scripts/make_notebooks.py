"""Write the papermill templates ``notebooks/*.ipynb`` (outputs cleared) from their readable
sources ``notebooks/src/*.py``, jupytext percent scripts: ``# %%`` starts a code cell (its tags and
MyST-NB figure caption on that line), ``# %% [markdown]`` a markdown cell.

Each source's ``parameters`` cell holds what is the template's own (``preset``, ``out_dir``, a
study's name and folders; the header lines and the presets' names are written here) and one line ``# RunConfig fields: a, b, c`` (or ``all``, or ``study``:
:data:`moon.notebook.STUDY_FIELDS`), which is
written out here as one assignment per field at RunConfig's default, with the field's help from
its metadata (:func:`moon.config.field_docs`), so the cell never drifts from RunConfig. Run after
changing a source or a RunConfig field:

    .venv/bin/python scripts/make_notebooks.py

``tests/test_notebooks.py`` fails when a committed template differs from what this writes.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import jupytext
import nbformat as nbf

from moon.config import RunConfig, field_docs
from moon.configure import PRESETS
from moon.notebook import STUDY_FIELDS

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "notebooks" / "src"
FIELDS_LINE = re.compile(r"^# RunConfig fields: ([\w, ]+?)(?:\s+\(.*\))?$", re.M)
COLUMN = 36                  # where a parameter's comment starts
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}
HEADER = ("# Parameters (papermill): RunConfig fields, plus `preset` and `out_dir`.\n"
          "# A field left at its default is filled by the preset, if one is given.\n")
PRESET_LINE = re.compile(r"^preset = (.+?)\s*$", re.M)


def field_lines(names: list[str]) -> str:
    """One assignment per RunConfig field at its default, with its help as a comment (wrapped at
    104 characters, continued in the same column)."""
    defaults, docs = RunConfig().to_dict(), field_docs()
    lines = []
    for name in names:
        if name not in docs:
            raise ValueError(f"{name!r} in a parameters cell is not a RunConfig field")
        assignment = f"{name} = {defaults[name]!r}"
        wrapped = textwrap.wrap(docs[name], width=104 - COLUMN - 2) or [""]
        lines.append(f"{assignment.ljust(COLUMN - 1)} # {wrapped[0]}".rstrip())
        lines += [" " * COLUMN + f"# {more}" for more in wrapped[1:]]
    return "\n".join(lines)


def expand_parameters(source: str) -> str:
    """A source's parameters cell written out: :data:`HEADER` first, the ``preset`` line with the
    presets there are (:data:`moon.configure.PRESETS`), the ``# RunConfig fields:`` line as one
    assignment per field."""
    presets = " | ".join(["None", *(f'"{name}"' for name in PRESETS)])
    source = HEADER + PRESET_LINE.sub(
        lambda m: f"preset = {m.group(1)}".ljust(COLUMN) + f"# {presets}", source, count=1)
    match = FIELDS_LINE.search(source)
    if match is None:
        raise ValueError("a parameters cell needs a '# RunConfig fields: ...' line")
    listed = [n.strip() for n in match.group(1).split(",") if n.strip()]
    names = {"all": list(field_docs()), "study": list(STUDY_FIELDS)}.get(",".join(listed), listed)
    return source[:match.start()] + field_lines(names) + source[match.end():]


def build(path: Path) -> nbf.NotebookNode:
    """The template written from the source ``path``."""
    nb = jupytext.read(path, fmt="py:percent")
    nb.metadata = nbf.NotebookNode(kernelspec=KERNEL)
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", ()):
            cell.source = expand_parameters(cell.source)
        cell["id"] = f"cell-{i}"          # stable ids: regenerating changes only what changed
    return nb


def templates() -> dict[str, nbf.NotebookNode]:
    """Every template, by name, from :data:`SOURCES`."""
    return {path.stem: build(path) for path in sorted(SOURCES.glob("*.py"))}


def main() -> None:
    for name, nb in templates().items():
        nbf.write(nb, ROOT / "notebooks" / f"{name}.ipynb")
        print(f"notebooks/{name}.ipynb")


if __name__ == "__main__":
    main()
