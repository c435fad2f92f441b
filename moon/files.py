"""Files that are never half-written, and what their writers leave behind (design.md, section 8).

* Atomic writes (:func:`atomic_write_bytes`, :func:`atomic_torch_save`): the data goes to a
  temporary file in the destination folder, is flushed and ``fsync``-ed, then ``os.replace``-d over
  the target. A reader sees the old file or the new one, never a half-written one, and a failed
  write leaves no temporary file behind. Just before the rename, a folder this process locked is
  checked to be still locked by it (:func:`moon.locks.check_lock`), so no writer can forget it.
* Temporaries carry their writer's PID (:func:`temp_prefix`), so :func:`remove_stale_temporaries`
  removes only those of dead processes.
* :func:`load_checkpoint`: ``torch.load(weights_only=True)`` whose failure is one actionable line.
* :func:`remove_empty_dirs`: the clean-up after a failed download.

The ground floor: this module imports only :mod:`moon.errors` and :mod:`moon.locks`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from moon.errors import CorruptFile, NotWritable
from moon.locks import check_lock, pid_alive

_TEMP_PID = re.compile(r"^\..+\.pid(\d+)\..*\.tmp$")


# --------------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Yield a binary temp file beside ``path``; on success fsync and ``os.replace`` it onto ``path``.

    On any failure (in the caller's block, the fsync or the replace) the temp file is removed and the
    previous ``path``, if any, is untouched. A failed write (a full disk, an I/O error: an
    ``OSError``, or torch's ``RuntimeError`` "enforce fail at inline_container.cc", which loses
    the errno) raises :class:`~moon.errors.NotWritable` saying so in one line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(mode="wb", delete=False, dir=path.parent,
                                      prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, 0o666 & ~_umask())   # temp files are private; results are not
        check_lock(path.parent)                 # the folder is still this writer's (design.md 8)
        os.replace(tmp.name, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        if isinstance(err, OSError) or (isinstance(err, RuntimeError) and _TORCH_WRITE in str(err)):
            raise _write_error(path, err) from None
        raise
    _fsync_dir(path.parent)


_TORCH_WRITE = "inline_container"     # torch.save's writer failed (it keeps no errno)


def _write_error(path: Path, err: BaseException):
    """One line for a failed write of ``path``: what was written, why, and that nothing complete
    was touched (the temporary is gone; the previous file, if any, is as it was)."""
    try:
        full = getattr(err, "errno", None) == errno.ENOSPC or \
            shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        full = False
    reason = ("the disk is full (no space left on device)" if full else
              getattr(err, "strerror", None) or str(err).splitlines()[0])
    kept = (f"the {path.name} there is as it was" if path.exists()
            else f"no {path.name} was written")
    return NotWritable(f"cannot write {path}: {reason}; nothing complete was touched ({kept}, "
                       f"the partial file was removed): free space or write elsewhere, then "
                       f"run again")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable where the platform allows opening a folder (POSIX); else skip."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, ``os.replace``)."""
    with _atomic_file(path) as f:
        f.write(data)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, so a crash never leaves a truncated checkpoint."""
    import torch
    with _atomic_file(path) as f:
        torch.save(obj, f)
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Temporaries, checkpoints, clean-up
# --------------------------------------------------------------------------------------------------
def temp_prefix(name: str) -> str:
    """Prefix of a temporary file for ``name`` written by this process (its PID is in the name)."""
    return f".{name}.pid{os.getpid()}."


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete the temporaries that dead writers left in ``folder`` (a process killed with SIGKILL
    cannot clean up after itself); a live process's temporaries are kept. Returns how many went."""
    folder = Path(folder)
    removed = 0
    for path in (folder.glob(".*.tmp") if folder.is_dir() else ()):
        match = _TEMP_PID.match(path.name)
        if match and pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; an unreadable file raises :class:`CorruptFile` with
    one line that names it and the fix (never torch's advice to load untrusted pickles)."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:          # truncated zip, random bytes, foreign pickle, ...
        size = path.stat().st_size if path.exists() else 0
        what = "an empty file" if size == 0 else f"not a readable checkpoint ({type(err).__name__})"
        raise CorruptFile(f"{path} is {what}; delete it to start that run afresh, or pass "
                          f"overwrite=true") from None


def remove_empty_dirs(root: Path, keep: set[Path]) -> None:
    """Remove folders under (and including) ``root`` that are empty and not in ``keep``."""
    if not root.is_dir():
        return
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if path not in keep and not any(path.iterdir()):
            path.rmdir()
    if root not in keep and not any(root.iterdir()):
        shutil.rmtree(root, ignore_errors=True)


