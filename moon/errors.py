"""Errors a person can act on.

A :class:`MoonError` carries a message that names what was wrong, where, and what to do about it;
the command line prints that message alone on one line and exits with status 2 (``--debug`` shows
the traceback). Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class MoonError(Exception):
    """An error whose message says what to do; no traceback is needed to act on it."""


class FolderInUse(MoonError):
    """The output folder holds a complete result of another configuration (or of a newer code
    version); writing there would lose it."""


class FolderLocked(MoonError):
    """Another live process is writing the output folder."""


class LockLost(FolderLocked):
    """A writer's folder lock is no longer its own (the lock file was deleted or replaced, or the
    parent that handed it down is gone), so it stopped before writing."""


class CorruptFile(MoonError):
    """A result, checkpoint or model file exists but cannot be read."""


class NotWritable(MoonError):
    """The output folder cannot be created or written."""


class OutputExists(MoonError):
    """A command's output path names a file that is there already, or one of a run's own records
    (its result, model, checkpoint or notebook), which no command writes over."""


class BadStudy(MoonError, ValueError):
    """A study file (or a study built in Python) is malformed: an unknown key, a wrong shape, a
    name that would leave the output folder. A ``ValueError`` too, as config mistakes are."""


class BadData(MoonError, ValueError):
    """A dataset file is unreadable or disagrees with itself or with the run: a truncated or
    broken file, images and labels that do not pair up, labels outside the classes, images of
    another size than the model is built for, an OOD set that holds the ID images."""
