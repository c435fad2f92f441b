"""Folder locks (design.md, section 8): one writer per run folder, one study's settings per folder.

* :class:`FolderLock`: an ``fcntl`` lock on ``<folder>/.moon.lock``, held for a run's life. A second
  writer fails at once with :class:`~moon.errors.FolderLocked`, naming the holder's PID. A study
  worker that locks a cell for a notebook kernel (another process) hands it the lock's token through
  ``$MOON_LOCK_TOKEN``, so the kernel's run proceeds under its parent's lock (only a descendant of
  the holder may). Before every write of a result, checkpoint or model, :func:`check_lock` makes
  sure the lock is still the writer's (a deleted lock file, a lock taken meanwhile: the writer
  stops with :class:`~moon.errors.LockLost`).
* :class:`StudyLock`: a shared lock that marks a folder as written by a study of one signature.

Why hand-written: the ``filelock`` package offers locks but neither the holder's PID nor a hand-over
to a child process; ``fcntl.flock`` is released by the kernel when its holder dies, even by SIGKILL,
so a stale lock can never block a folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moon.errors import FolderLocked, LockLost, NotWritable

try:                                     # POSIX; elsewhere folders are not locked
    import fcntl
except ImportError:                      # pragma: no cover
    fcntl = None

LOCK_FILE = ".moon.lock"
TOKEN_ENV = "MOON_LOCK_TOKEN"


def now_iso() -> str:
    """Current UTC time as ISO-8601 with seconds, e.g. ``2025-01-31T12:00:00+00:00`` (a lock's
    ``since``; a result's ``started`` and ``finished``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class FolderLock:
    """Exclusive lock on one folder for as long as the ``with`` block (or until :meth:`release`).

    ``shared_token``: when the lock is held by a process that handed this token down (the study
    worker that started this notebook kernel), proceed without locking again. The holder must be
    this process or one of its ancestors: the token is an environment variable, and a copy of it
    in an unrelated process (another shell, another study) must not let a second writer in.

    A held lock is checked again before every result, checkpoint or model lands in the folder
    (:func:`check_lock`, called by every atomic write): ``fcntl`` locks the lock file's inode, so a
    deleted ``.moon.lock`` would let a second run lock a new file and write beside this one.
    """

    def __init__(self, folder: str | os.PathLike, shared_token: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.token = secrets.token_hex(8)
        self.shared_token = shared_token if shared_token is not None else os.environ.get(TOKEN_ENV)
        self._fd: int | None = None
        self._file: tuple[int, int] | None = None     # (st_dev, st_ino) of the file we lock
        self._pid = os.getpid()
        self.holder: dict = {}                        # the parent's lock, when inherited
        self.inherited = False

    def acquire(self) -> "FolderLock":
        ensure_writable(self.folder)
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            return self._inherit(holder)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": now_iso(), "token": self.token}).encode())
        self._fd, self._pid = fd, os.getpid()
        stat = os.fstat(fd)
        self._file = (stat.st_dev, stat.st_ino)
        _HELD.setdefault(_key(self.folder), []).append(self)
        return self

    def _inherit(self, holder: dict) -> "FolderLock":
        """Proceed under ``holder``'s lock if it handed us its token, else :class:`FolderLocked`."""
        who = (f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
               f"{holder.get('since', '?')}")
        if not (self.shared_token and holder.get("token") == self.shared_token):
            raise FolderLocked(f"{self.folder} is being written by another process ({who}); wait "
                               f"for it to finish, or write somewhere else (--out DIR / -p out_dir "
                               f"DIR)")
        if holder.get("host") != socket.gethostname() or not _is_self_or_ancestor(holder.get("pid")):
            raise FolderLocked(f"{self.folder} is being written by another process ({who}); "
                               f"${TOKEN_ENV} matches its lock, but that process is not this "
                               f"process's parent, and a token copied into another environment "
                               f"hands over nothing: unset {TOKEN_ENV}, wait for it to finish, or "
                               f"write somewhere else (--out DIR)")
        self.inherited, self.holder = True, holder      # our parent holds it for us
        _HELD.setdefault(_key(self.folder), []).append(self)
        return self

    def check(self) -> None:
        """Raise :class:`~moon.errors.LockLost` unless the folder's lock is still this writer's:
        its own lock file (same inode, its token, its PID), or, inherited, its parent's lock,
        held, with the token handed down."""
        if fcntl is None or not self.held:
            return
        if self._fd is not None:
            stat = _stat(self.path)
            holder = _read_holder(self._fd)
            mine = (stat is not None and (stat.st_dev, stat.st_ino) == self._file
                    and holder.get("token") == self.token and self._pid == os.getpid())
        else:
            holder = lock_holder(self.folder) or {}
            mine = (holder.get("token") == self.shared_token
                    and holder.get("pid") == self.holder.get("pid")
                    and pid_alive(int(holder.get("pid") or 0)))
        if not mine:
            raise LockLost(self._lost())

    def _lost(self) -> str:
        now = lock_holder(self.folder) if self.path.exists() else None
        what = (f"its lock file {self.path} was removed" if not self.path.exists() else
                f"the folder is now locked by PID {now.get('pid', '?')}" if now else
                "its lock file was replaced")
        return (f"{self.folder} is no longer locked by this run: {what} while it ran, so another "
                f"process may be writing there; this run stopped without writing its result. "
                f"Run it again (resume=true continues from its last checkpoint)")

    def release(self) -> None:
        locks = _HELD.get(_key(self.folder), [])
        if self in locks:
            locks.remove(self)
        self.inherited = False
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self.inherited

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# The folder locks this process holds or inherited, by the folder's real path.
_HELD: dict[str, list[FolderLock]] = {}


def _key(folder: str | os.PathLike) -> str:
    return os.path.realpath(folder)


def check_lock(folder: str | os.PathLike) -> None:
    """Before a file lands in ``folder``: every lock this process holds on it must still be its own
    (:meth:`FolderLock.check`). A folder this process never locked is not checked."""
    for lock in list(_HELD.get(_key(folder), ())):
        lock.check()


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _is_self_or_ancestor(pid: Any) -> bool:
    """Whether ``pid`` is this process or one of its parents (psutil; else the direct parent)."""
    if not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return True
    try:
        import psutil

        return pid in {p.pid for p in psutil.Process().parents()}
    except ImportError:                   # pragma: no cover
        return pid == os.getppid()


def _read_holder(fd: int) -> dict:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    return {}


def lock_holder(folder: str | os.PathLike) -> dict | None:
    """``{"pid", "host", "since"}`` of the live process holding ``folder``'s lock, else None."""
    path = Path(folder) / LOCK_FILE
    if fcntl is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` if needed and check that files can be written in it."""
    if folder.exists() and not folder.is_dir():
        raise NotWritable(f"{folder} exists and is not a folder; choose another output folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe.pid{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise NotWritable(f"cannot write to {folder} ({reason}); choose a folder you can write "
                          f"(--out DIR / -p out_dir DIR)") from None



class StudyLock:
    """Marks ``out`` as written by a study of one ``signature`` for the ``with`` block.

    Each study process holds a shared ``fcntl`` lock on ``out/.study-<signature>.lock`` (its PID is
    appended inside). On entry, a held lock file of another signature means a live study of other
    settings writes here: :class:`~moon.errors.FolderLocked`, naming its PID(s). Studies of the
    same signature hold the same file together and split the cells through the cells' own locks.
    """

    def __init__(self, out: str | os.PathLike, signature: str):
        self.out, self.signature = Path(out), signature
        self._fd: int | None = None

    def __enter__(self) -> "StudyLock":
        ensure_writable(self.out)
        for other in self.out.glob(".study-*.lock"):
            if other.name == f".study-{self.signature}.lock":
                continue
            pids = _live_holders(other)
            if pids:
                raise FolderLocked(
                    f"{self.out} is being written by another study with other settings (PID "
                    f"{', '.join(pids)}); wait for it to finish, or write this one to another "
                    f"folder (--out DIR)")
        path = self.out / f".study-{self.signature}.lock"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)             # closing releases the lock
            self._fd = None


def _live_holders(path: Path) -> list[str]:
    """PIDs written in a study lock file that someone still holds, or [] when nobody does."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pids = path.read_text().split()
            return [p for p in dict.fromkeys(pids) if p.isdigit() and pid_alive(int(p))] or ["?"]
        fcntl.flock(fd, fcntl.LOCK_UN)
        return []
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:           # exists, owned by someone else
        return True
    return True
