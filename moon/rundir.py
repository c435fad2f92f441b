"""Run folders that protect what they hold (design.md, section 8).

* Locks live in :mod:`moon.locks`: :class:`~moon.locks.FolderLock` holds a run folder for a run's
  life and is checked again before every write; :class:`~moon.locks.StudyLock` marks a study's folder.
* :func:`inspect_folder`: what a folder holds (nothing, a complete result of this configuration,
  of another one, a corrupt file), so a run decides *before any compute* whether it may write there.
  A folder holding a complete result of another configuration is never written unless the user asks
  for ``overwrite``.
* Temporaries, checkpoints and atomic writes live in :mod:`moon.files`.
* :func:`check_output_file`: a file a command other than the run is about to write (an export) is
  never one of a run's records, and never an existing file unless the user says ``--force``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moon.config import EXECUTION_FIELDS, differing_fields
from moon.configure import from_params
from moon.errors import CorruptFile, FolderInUse, NotWritable, OutputExists
from moon.files import load_checkpoint
from moon.locks import LOCK_FILE
from moon.resultcheck import check_result
from moon.results import RESULT_FILE, RESULT_SCHEMA, load_result

log = logging.getLogger(__name__)

# The files a run writes: what ``overwrite`` removes before it starts.
RUN_FILES = ("result.json", "result.failed.json", "model.pt", "checkpoint.pt", "model.csr.pt",
             "model.dense.pt")
# What a run folder keeps as its record: a folder holding one of these is a run folder, and no
# other command writes a file of these names there, not even with --force.
RUN_RECORDS = ("result.json", "result.failed.json", "result.corrupt.json", "model.pt",
               "checkpoint.pt", "ood_eval.ipynb", "ood_eval.failed.ipynb", LOCK_FILE)


def is_run_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds what a run writes (its result, model, checkpoint or lock)."""
    return any((Path(folder) / name).exists() for name in RUN_RECORDS)


def check_output_file(path: str | os.PathLike, force: bool = False) -> Path:
    """``path``, once it is safe for a command to write a file there; call it before any work.

    A run's records (:data:`RUN_RECORDS` inside a run folder, symbolic links followed) are never
    written over: an export named ``RUN/result.json`` would destroy the result it came from. Any
    other existing file is replaced only with ``force`` (``--force``): a typo in ``--out`` must not
    cost a file the user kept."""
    path = Path(path)
    if path.is_dir():
        raise NotWritable(f"{path} is a folder; --out names the file to write, not a folder")
    real = path.resolve()
    if real.name in RUN_RECORDS and is_run_folder(real.parent):
        raise OutputExists(f"{path} is the run's own {real.name} (in {real.parent}); no command "
                           f"writes over a run's records, not even with --force: choose another file")
    if os.path.lexists(path) and not force:
        raise OutputExists(f"{path} exists; pass --force to replace it, or write elsewhere "
                           f"(--out PATH)")
    return path


# --------------------------------------------------------------------------------------------------
# What a folder holds
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FolderState:
    """``kind``: empty | reusable | same (same configuration, not reusable) | other | partial."""
    kind: str
    detail: str = ""
    result: Any = None


def inspect_folder(folder: str | os.PathLike, config: dict, resume: bool) -> FolderState:
    """What ``folder`` holds for a run of ``config`` (a RunConfig dict).

    Raises :class:`CorruptFile` when ``result.json`` cannot be read, or is a complete result of
    this configuration whose metrics are not what a run writes (:mod:`moon.resultcheck`), since
    neither reusing nor replacing it is safe to decide silently.
    """
    folder = Path(folder)
    path = folder / RESULT_FILE
    if not path.exists():
        return FolderState("partial" if (folder / "checkpoint.pt").exists() else "empty")
    try:
        done = load_result(path)
    except (ValueError, OSError) as err:
        raise CorruptFile(f"{err}; delete it to run this cell again, or pass overwrite=true "
                          f"to replace the folder's contents") from None
    if done.status != "complete":
        return FolderState("partial", f"a {done.status} result", done)
    schema = done.provenance.get("schema", 1)
    diff = differing_fields(done.config, config)
    if diff:
        return FolderState("other", "fields that differ: " + ", ".join(diff), done)
    if schema > RESULT_SCHEMA:
        return FolderState("other", f"written by a newer moon (result schema {schema}, this code "
                                    f"reads up to {RESULT_SCHEMA})", done)
    try:
        check_result(done, path)          # never reuse metrics a run did not write
    except CorruptFile as err:
        raise CorruptFile(f"{err}; move it aside to run this configuration again (a study does "
                          f"that itself), or pass overwrite=true to replace it") from None
    model = folder / "model.pt"
    if model.exists():
        try:
            load_checkpoint(model)
        except CorruptFile as err:
            return FolderState("same", str(err), done)
    return FolderState("reusable" if resume else "same", "", done)


def corrupt_reason(folder: str | os.PathLike) -> str | None:
    """Why ``folder/result.json`` cannot be used (unreadable, or a complete result whose metrics
    or config are not what a run writes), or None when it is absent or sound."""
    path = Path(folder) / RESULT_FILE
    if not path.exists():
        return None
    try:
        done = load_result(path)
        if done.status == "complete":
            check_result(done, path)
    except (ValueError, OSError, CorruptFile) as err:
        return str(err)
    return None


def set_aside(folder: str | os.PathLike, reason: str) -> Path:
    """Rename a corrupt ``folder/result.json`` to ``result.corrupt.json`` (``result.corrupt.N.json``
    when taken) and record ``reason`` beside it, so a rerun of the cell loses nothing (design.md,
    section 8). Call it under the folder's lock. Returns the new path."""
    folder = Path(folder)
    n = 0
    while (folder / _corrupt_name(n)).exists() or (folder / _corrupt_name(n, ".txt")).exists():
        n += 1
    kept = folder / _corrupt_name(n)
    os.replace(folder / "result.json", kept)
    (folder / _corrupt_name(n, ".txt")).write_text(reason + "\n", encoding="utf-8")
    log.warning("set aside %s: %s", kept, reason)
    return kept


def _corrupt_name(n: int, suffix: str = ".json") -> str:
    return f"result.corrupt{'' if n == 0 else f'.{n}'}{suffix}"


def refuse_other(folder: Path, state: FolderState) -> FolderInUse:
    return FolderInUse(
        f"{folder} holds a complete result of another configuration ({state.detail}); write this "
        f"run to another folder (--out DIR / -p out_dir DIR), or pass overwrite=true to replace it")


def clear_run_files(folder: Path) -> None:
    """Remove what a previous run left (for ``overwrite``): its result, model and checkpoint."""
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()


def run_folder_name(cfg: Any, preset: str | None = None) -> str:
    """A folder name that identifies ``cfg``: the preset, then every field that differs from the
    preset's value (``preset=smoke,method=set,density=0.02``), or ``default``. Runs of different
    configurations get different folders, so default output paths never collide."""
    base = from_params({}, preset=preset).to_dict()
    parts = [f"preset={preset}"] if preset else []
    parts += [f"{k}={v}" for k, v in cfg.to_dict().items()
              if k not in EXECUTION_FIELDS and v != base[k]]
    return ",".join(parts) or "default"
