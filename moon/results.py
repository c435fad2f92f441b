"""Result files: :class:`RunResult`, atomic JSON save/load, provenance and flat table rows.

Every run writes one ``result.json`` (design.md, section 3). Book numbers come only from these files,
so writes are atomic (:func:`moon.files.atomic_write_bytes`: a temporary file beside the target,
``fsync``, ``os.replace``; the folder's lock checked just before the rename).

JSON has no NaN or infinity: a sanitising pass turns non-finite floats into ``null`` and numpy/torch
scalars into Python numbers before writing (``allow_nan=False`` then guarantees valid JSON).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from moon.files import atomic_write_bytes
from moon.version import __version__

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
FAILED_FILE = "result.failed.json"      # a failure beside a complete result, never over it
# Version of what a result holds. A result is reused only when its schema is one this code reads
# (not newer); bump it when the meaning of a stored metric changes. 2: the offline benchmark's
# near/far/noise groups, the extra detectors and the MOON diagnostics.
RESULT_SCHEMA = 2
STATUSES = ("running", "complete", "failed")


@dataclass
class RunResult:
    """Everything one run records; serialised as one JSON object (design.md, section 3)."""

    config: dict                                   # every RunConfig field (cfg.to_dict())
    status: str = "running"                        # running | complete | failed
    error: str | None = None                       # message when failed
    history: list[dict] = field(default_factory=list)   # one row per epoch (epoch, train_loss, ...)
    masks: dict = field(default_factory=dict)      # {"density": float, "layers": {name: float}}
    id: dict = field(default_factory=dict)         # accuracy, nll, brier, ece, mce, adaptive_ece
    ood: dict = field(default_factory=dict)        # {set: {detector: {auroc, aupr_in, aupr_out, fpr95}}}
    timing: dict = field(default_factory=dict)     # train_seconds, eval_seconds, train_images_per_second
    provenance: dict = field(default_factory=dict)  # git_sha, versions, device, started, finished, ...
    extra: dict = field(default_factory=dict)      # anything else (e.g. alpha0)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not allowed; use one of {STATUSES}")
        if not isinstance(self.config, Mapping):
            raise ValueError(f"config must be a dict of RunConfig fields, got {type(self.config).__name__}")

    def to_dict(self) -> dict:
        """The JSON object (a deep copy), keys in the contract's order."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunResult:
        """Inverse of :meth:`to_dict`; unknown top-level keys are kept in ``extra``."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a result must be a JSON object, got {type(d).__name__}")
        if "config" not in d:
            raise ValueError("a result needs a 'config' key (the run's RunConfig fields)")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = dict(kwargs.pop("extra", None) or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        return cls(**kwargs, extra=extra)

    @property
    def config_obj(self):
        """The run's :class:`moon.config.RunConfig` (validated again from the stored fields)."""
        from moon.configure import from_params
        return from_params(self.config)


# --------------------------------------------------------------------------------------------------
# Sanitising
# --------------------------------------------------------------------------------------------------
def sanitise(obj: Any, where: str = "result") -> Any:
    """A JSON-ready copy: non-finite floats -> None, numpy/torch scalars and arrays -> Python values.

    Dicts keep their order (keys become strings), tuples become lists, ``Path`` becomes ``str`` and
    dataclasses become dicts. Anything else raises ``TypeError`` naming where it was found.
    """
    if isinstance(obj, np.generic):                # before float: np.float64 subclasses float
        return sanitise(obj.item(), where)
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    torch = sys.modules.get("torch")               # a tensor can only exist if torch is imported
    if isinstance(obj, np.ndarray) or (torch is not None and isinstance(obj, torch.Tensor)):
        return sanitise(obj.tolist(), where)
    if isinstance(obj, Mapping):
        return {str(k): sanitise(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitise(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sanitise(dataclasses.asdict(obj), where)
    raise TypeError(f"{where}: cannot store a {type(obj).__name__} in a result file")


# --------------------------------------------------------------------------------------------------
# Save and load
# --------------------------------------------------------------------------------------------------
def result_path(path: str | os.PathLike) -> Path:
    """``path`` itself when it ends in ``.json``, else ``path/result.json`` (a run folder)."""
    path = Path(path)
    return path if path.suffix == ".json" and not path.is_dir() else path / RESULT_FILE


def save_result(result: RunResult, path: str | os.PathLike) -> Path:
    """Atomically write ``result`` as JSON (indent 2, contract key order); returns the file's path.

    ``path`` is a ``.json`` file or a run folder (then ``folder/result.json``); folders are created.
    """
    target = result_path(path)
    text = json.dumps(sanitise(result.to_dict()), indent=2, sort_keys=False, allow_nan=False)
    atomic_write_bytes(target, (text + "\n").encode("utf-8"))
    log.debug("wrote %s (status %s)", target, result.status)
    return target


def load_result(path: str | os.PathLike) -> RunResult:
    """Read one result file (or ``folder/result.json``).

    Raises ``FileNotFoundError`` naming the path when it is missing and ``ValueError`` naming the
    file when it is not valid JSON or not a result object.
    """
    target = result_path(path)
    if not target.is_file():
        raise FileNotFoundError(f"no result file at {target} (looked for it from {path})")
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
        return RunResult.from_dict(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{target} is not valid JSON: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{target} is not a valid result file: {exc}") from exc


def load_results(root: str | os.PathLike, pattern: str = f"**/{RESULT_FILE}",
                 status: str | None = "complete") -> list[RunResult]:
    """All results under ``root`` matching ``pattern``, sorted by path; only ``status`` ones
    (``None`` keeps every status). A missing ``root`` raises ``FileNotFoundError``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist")
    if status is not None and status not in STATUSES:
        raise ValueError(f"status={status!r} is not allowed; use one of {STATUSES} or None")
    results = [load_result(p) for p in sorted(root.glob(pattern)) if p.is_file()]
    kept = [r for r in results if status is None or r.status == status]
    log.debug("loaded %d of %d results under %s (status %s)", len(kept), len(results), root, status)
    return kept


# --------------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------------
def _git(*args: str) -> str | None:
    """Output of ``git args`` in the folder holding the moon package; None when git is unavailable."""
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _version(dist: str, module: str) -> str | None:
    """Installed version of a distribution, falling back to ``module.__version__``; None if absent."""
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        mod = sys.modules.get(module)
        return getattr(mod, "__version__", None)


def provenance(device: str) -> dict:
    """Where and with what a run ran; the caller adds ``started`` and ``finished`` (:func:`now_iso`).

    ``git_sha`` is ``git rev-parse HEAD`` of the repository holding the package (None outside one);
    ``git_dirty`` is whether tracked files differ from ``HEAD`` (``git status --porcelain
    --untracked-files=no``; None without git).
    """
    import torch

    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if sha is not None else None
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": _version("torchvision", "torchvision"), "numpy": np.__version__,
                "sklearn": _version("scikit-learn", "sklearn"),
                "moon": __version__,
                "cuda": torch.version.cuda}
    return {"schema": RESULT_SCHEMA, "git_sha": sha.strip() if sha else None,
            "git_dirty": None if status is None else bool(status.strip()),
            "versions": versions, "device": str(device), "num_threads": torch.get_num_threads(),
            "hostname": socket.gethostname(), "platform": platform.platform()}


# --------------------------------------------------------------------------------------------------
# Flat rows for tables
# --------------------------------------------------------------------------------------------------
def _flatten_into(row: dict, prefix: str, value: Any) -> None:
    """Add ``prefix.key...`` entries for every scalar leaf of nested dicts (lists are skipped)."""
    if isinstance(value, Mapping):
        for key, sub in value.items():
            _flatten_into(row, f"{prefix}.{key}", sub)
    elif not isinstance(value, (list, tuple)):
        row[prefix] = value


def flatten(result: RunResult | Mapping[str, Any]) -> dict:
    """One flat row: plain config field names, ``status``, ``error``, ``id.<metric>``,
    ``ood.<set>.<detector>.<metric>``, ``timing.<key>``, ``masks.density`` and scalar ``extra.<key>``.

    Per-layer densities, history and provenance stay in the file (they are not table columns).
    """
    if not isinstance(result, RunResult):
        result = RunResult.from_dict(result)
    row: dict[str, Any] = dict(result.config)
    row["status"], row["error"] = result.status, result.error
    for section in ("id", "ood", "timing"):
        _flatten_into(row, section, getattr(result, section))
    row["masks.density"] = result.masks.get("density")
    _flatten_into(row, "extra", result.extra)
    return row


def group_mean_columns(result: RunResult, prefix: str = "ood") -> dict:
    """``<prefix>.<group>.<detector>.<metric>`` for a result's group means
    (:func:`moon.ood.sets.group_means`: each set's group from today's registry, else from the
    result's own record in ``extra.curves.ood_kind``)."""
    from moon.ood.sets import group_means

    row: dict[str, Any] = {}
    recorded = result.extra.get("curves", {}).get("ood_kind")
    _flatten_into(row, prefix, group_means(result.ood, recorded))
    return row
