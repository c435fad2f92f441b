"""Helpers for the papermill templates in ``notebooks/``.

papermill injects every ``-p NAME VALUE`` as an assignment after the ``parameters`` cell, whether or
not the template declares ``NAME``; a misspelt name (``-p densty 0.1``) would run the defaults and
exit 0. :func:`check_parameters`, which the first statement after the parameters runs
(:func:`chapter`, or :func:`study_chapter` in a study's chapter), refuses such names.

:func:`show_whole_tables` sets pandas' display options for a page of the book, and
:func:`show_figures_as_images` makes a figure show as a PNG image whatever ``MPLBACKEND`` says.
:func:`errors_first` prints a bad parameter's one-line message to the terminal that runs papermill,
before papermill's traceback. :func:`log_to_terminal` sends the package's progress lines (epochs,
evaluation) to the terminal that started the kernel, not into the notebook
(``scripts/run_chapters.py`` turns it on in its kernels).
"""

from __future__ import annotations

import difflib
import io
import logging
import os
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

from moon.config import field_names

NOTEBOOK_FIELDS = ("preset", "out_dir")
# A study chapter's parameters: these RunConfig fields (the model is an axis of the studies) and
# which study, which part of its grid, whether to run its missing cells.
STUDY_FIELDS = ("dataset", "epochs", "sparse_init")
STUDY_PARAMETERS = ("study", "only", "run_missing")
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


def _png(fig) -> bytes:
    import io

    from moon.report.plotting import DPI

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def show_figures_as_images() -> None:
    """Make IPython show a matplotlib figure (returned by a cell or passed to ``display``) as a
    PNG image, whatever the backend.

    Only matplotlib's inline backend registers that PNG formatter, and it is chosen only when
    ``MPLBACKEND`` is unset: a shell that exports ``MPLBACKEND=Agg`` (a headless server, CI) made
    every page of the book show "<Figure size 970x229 with 4 Axes>" instead of its figures.
    Registering the formatter here does not depend on the backend. Outside IPython it does
    nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure

    shell.display_formatter.formatters["image/png"].for_type(Figure, _png)


def _one_line_first(shell, etype, value, tb, tb_offset=None):
    """IPython's handler for :class:`~moon.errors.MoonError` and ``ValueError``: the message, one
    line, on the kernel's own stderr (the terminal that started papermill or jupyter), then the
    usual traceback in the notebook, which papermill needs to see the cell fail."""
    message = " ".join(str(value).split("\n")[:1]) or etype.__name__
    try:
        print(f"error: {message}", file=terminal_stream(), flush=True)
    except (OSError, ValueError, AttributeError):   # no terminal: the notebook has it anyway
        pass
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def errors_first() -> None:
    """Say a bad input in one line first (``papermill ... -p density 2`` ends with dozens of
    lines of papermill's and the kernel's traceback, the message last); the traceback stays in
    the notebook. Outside IPython it does nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        from moon.errors import MoonError

        shell.set_custom_exc((MoonError, ValueError), _one_line_first)


class _NotebookStderr(logging.Handler):
    """Warnings and errors into the cell's stderr output, as Python's last-resort handler writes
    them when no handler is set (adding one turns that off)."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:   # the template chose where its log goes: the root has it
            return
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:   # logging must never break the cell
            self.handleError(record)


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def terminal_stream():
    """A text stream onto the kernel process's own stderr, the terminal (or log) of whatever
    started it: ipykernel points file descriptor 2 at the notebook's stderr output and keeps a copy
    of the original (``_original_stdstream_copy``); outside a kernel, ``sys.__stderr__``."""
    fd = getattr(sys.stderr, "_original_stdstream_copy", None)
    if fd is None:
        return sys.__stderr__
    return io.TextIOWrapper(io.FileIO(os.dup(fd), "w"), line_buffering=True)


def log_to_terminal(prefix: str = "", level: int = logging.INFO) -> None:
    """Progress of the ``moon`` loggers (one line per epoch, per OOD set evaluated, ...) at
    ``level`` and up to :func:`terminal_stream`, each line led by ``prefix``; warnings and errors
    stay where they went before, in the cell's stderr output. Calling it again replaces the
    handlers it added."""
    logger = logging.getLogger("moon")
    for handler in list(logger.handlers):
        if getattr(handler, "_moon_notebook", False):
            logger.removeHandler(handler)
    terminal = logging.StreamHandler(terminal_stream())
    terminal.setFormatter(logging.Formatter(f"{prefix}%(message)s"))
    terminal.addFilter(_BelowWarning())
    notebook = _NotebookStderr(logging.WARNING)
    for handler in (terminal, notebook):
        handler._moon_notebook = True
        logger.addHandler(handler)
    logger.setLevel(level)


def chapter(namespace: Mapping[str, Any], allowed: Iterable[str] | None = None,
            extra: Iterable[str] = ()) -> None:
    """The first statement of every template, after its parameters: bad input said in one line
    (:func:`errors_first`), undeclared ``-p`` names refused (:func:`check_parameters` with
    ``allowed`` and ``extra``), whole tables and figures as images for the book's pages."""
    errors_first()
    check_parameters(namespace, allowed, extra)
    show_whole_tables()
    show_figures_as_images()


def study_chapter(namespace: Mapping[str, Any], extra: Iterable[str] = ()):
    """A study chapter's first statement: :func:`chapter` with the study parameters
    (:data:`STUDY_FIELDS`, :data:`STUDY_PARAMETERS` and the chapter's own ``extra``), then its
    results, from those parameters (``study``, ``out_dir``, ``preset``, ``only``, ``run_missing``
    and the RunConfig fields ``-p`` changed): ``(results, frame, shown)``, where ``shown`` is the
    page's "Results shown" line in Markdown (with the result files left out as corrupt, if any).

    With ``run_missing`` the study's unfinished cells run first (each failed cell's error is in
    its ``result.json``; their count is printed) and the results are collected exactly; without
    it a committed study is shown as it ran, even if a default changed since. The study's log
    goes to the cell's text output at warning level: a failed cell is part of the page's report
    (its reason, one line), not a broken page."""
    from moon.configure import overrides_from_namespace
    from moon.report.frame import corrupt_markdown, describe_runs, results_frame
    from moon.study import collect, run_study

    chapter(namespace, STUDY_FIELDS, (*STUDY_PARAMETERS, *extra))
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(message)s", force=True)
    study, out_dir, preset = namespace["study"], namespace["out_dir"], namespace["preset"]
    only, run_missing = namespace["only"], namespace["run_missing"]
    overrides = overrides_from_namespace(namespace)
    if run_missing:
        statuses = run_study(study, out_dir, preset=preset, only=only, progress=False, **overrides)
        failed = sorted(name for name, status in statuses.items() if status != "complete")
        if failed:
            print(f"{len(failed)} failed, e.g. {', '.join(failed[:3])}: see "
                  f"{out_dir}/<run>/result.json")
    results = collect(study, out_dir, preset=preset, only=only, exact=run_missing, **overrides)
    frame = results_frame(results)
    left_out = corrupt_markdown(frame)      # files that are not what a run writes: listed, not averaged
    shown = f"**Results shown:** study `{study}`, {describe_runs(frame)} (`{out_dir}`)."
    return results, frame, shown + (f"\n\n{left_out}" if left_out else "")
