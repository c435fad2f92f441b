"""Helpers for the papermill templates in ``notebooks/``.

papermill injects every ``-p NAME VALUE`` as an assignment after the ``parameters`` cell, whether or
not the template declares ``NAME``; a misspelt name (``-p densty 0.1``) would run the defaults and
exit 0. :func:`check_parameters`, the first statement after the parameters, refuses such names.
:func:`show_whole_tables` sets pandas' display options for a page of the book.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping
from typing import Any

from moon.config import field_names

NOTEBOOK_FIELDS = ("preset", "out_dir")
# Names an IPython kernel defines in every namespace.
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def check_parameters(namespace: Mapping[str, Any], allowed: Iterable[str] | None = None,
                     extra: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming every public name in ``namespace`` (a notebook's ``globals()``)
    that is not a declared parameter, with the close matches.

    ``allowed``: the template's parameter names (default: every RunConfig field), plus ``preset``,
    ``out_dir`` and ``extra``. Modules, functions and classes are not parameters and are skipped.
    """
    names = set(field_names() if allowed is None else allowed) | set(NOTEBOOK_FIELDS) | set(extra)
    unknown = sorted(k for k, v in namespace.items()
                     if not k.startswith("_") and k not in names and k not in _KERNEL_NAMES
                     and not isinstance(v, (types.ModuleType, types.FunctionType, type)))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(names), n=3)
            hints.append(f"{name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        raise ValueError(f"unknown notebook parameter(s) {', '.join(hints)}; this notebook's "
                         f"parameters are: {', '.join(sorted(names))}")


def show_whole_tables() -> None:
    """Let pandas show every row, column and character of a table (its defaults cut a table at
    60 rows, 20 columns and 50 characters per cell, with "..." where the book must show the
    text, such as a data source or a published claim)."""
    import pandas as pd

    for option in ("display.max_rows", "display.max_columns", "display.max_colwidth"):
        pd.set_option(option, None)
