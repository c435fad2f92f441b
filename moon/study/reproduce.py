"""Check committed results by training them again: same configuration, same seed, same number of
torch threads, compared metric by metric.

    python -m moon reproduce book/results/full-cpu --cells 4

A run is seeded end to end (weights, masks, data order, OOD sampling), so on the same CPU and
library versions a rerun gives the same numbers. What can differ between machines is the order of
floating-point reductions (another CPU's vector units or another thread count); the report says by
how much, and ``tolerance`` decides what counts as "the same".
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from moon.results import RESULT_FILE, flatten, group_mean_columns, load_result

log = logging.getLogger(__name__)
COMPARED = ("id.", "ood.", "masks.density")   # metrics, not timings or provenance
# The numbers the book's verdict reads, reported apart from the largest difference (which is
# usually in a secondary detector's FPR95): accuracy, ECE, MSP's AUROC averaged over the near and
# the far sets (today's groups, moon.ood.sets.group_means, for both runs) and on any one set.
HEADLINE = {"accuracy": "id.accuracy", "ECE": "id.ece", "near MSP AUROC": "group.near.msp.auroc",
            "far MSP AUROC": "group.far.msp.auroc", "MSP AUROC on one set": "ood.*.msp.auroc"}


@dataclass(frozen=True)
class Check:
    """One rerun: the committed run's folder, how many metrics were compared, the largest absolute
    difference, the metric where it occurred, whether it is within the tolerance, and the
    largest absolute difference of each :data:`HEADLINE` metric."""
    run: str
    metrics: int
    max_abs_diff: float
    worst: str
    same: bool
    headline: dict[str, float] = field(default_factory=dict)


def pick(folder: str | Path, cells: int) -> list[Path]:
    """``cells`` run folders of ``folder`` with a complete result, evenly spaced in name order
    (deterministic, and spread over the grid rather than its first block)."""
    if not Path(folder).is_dir():
        raise ValueError(f"{folder} does not exist; give a study's result folder, e.g. "
                         f"book/results/full-cpu")
    runs = sorted(p.parent for p in Path(folder).glob(f"*/{RESULT_FILE}"))
    runs = [r for r in runs if load_result(r).status == "complete"]
    if not runs:
        raise ValueError(f"{folder} has no complete runs to reproduce")
    if cells >= len(runs):
        return runs
    step = len(runs) / cells
    return [runs[int(i * step)] for i in range(cells)]


def compare(committed: dict, rerun: dict, tolerance: float = 0.0) -> tuple[int, float, str, bool]:
    """Compare the metric columns of two flattened results: (count, max |diff|, worst key, same).
    A metric present in one but not the other counts as an infinite difference."""
    keys = sorted(k for k in set(committed) | set(rerun) if k.startswith(COMPARED))
    worst, largest = "", 0.0
    for key in keys:
        diff = _abs_diff(committed.get(key), rerun.get(key))
        if diff > largest:
            worst, largest = key, diff
    return len(keys), largest, worst, largest <= tolerance


def _abs_diff(a: Any, b: Any) -> float:
    """|a - b| for two numbers; 0 or infinity for anything else (equal or not; NaN equals NaN)."""
    if isinstance(a, bool) or isinstance(b, bool) or not all(
            isinstance(v, (int, float)) for v in (a, b)):
        return 0.0 if a == b else math.inf
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(float(a) - float(b))


def headline_diffs(committed: dict, rerun: dict) -> dict[str, float]:
    """The largest absolute difference of each :data:`HEADLINE` metric between two flattened
    results (a pattern's largest over the keys it matches; NaN where neither has one)."""
    out = {}
    for name, pattern in HEADLINE.items():
        keys = sorted(k for k in set(committed) | set(rerun) if fnmatchcase(k, pattern))
        out[name] = max((_abs_diff(committed.get(k), rerun.get(k)) for k in keys),
                        default=math.nan)
    return out


def rerun(run_dir: str | Path, tolerance: float = 0.0, out: str | Path | None = None) -> Check:
    """Train and evaluate ``run_dir``'s configuration again (in ``out``, default a temporary
    folder) with the torch threads its provenance records, and compare the metrics."""
    import torch

    from moon.configure import from_params
    from moon.runner import run

    committed, threads = _committed(run_dir)
    cfg = from_params({**committed.config, "resume": False})
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = run(cfg, Path(out) if out else Path(tmp), progress=False)
    finally:
        torch.set_num_threads(before)
    if fresh.status != "complete":
        raise RuntimeError(f"the rerun of {run_dir} failed: {fresh.error}")
    before_row, after_row = _row(committed), _row(fresh)
    count, largest, worst, same = compare(before_row, after_row, tolerance)
    return Check(str(run_dir), count, largest, worst, same, headline_diffs(before_row, after_row))


def _row(result) -> dict:
    """A result flattened, with its group means as ``group.<group>.<detector>.<metric>``."""
    return {**flatten(result), **group_mean_columns(result, "group")}


def _committed(run_dir: str | Path):
    """The committed result of ``run_dir`` and the torch thread count it records (None when not
    recorded), checked before anything runs: a result that is not what a run writes, or a thread
    count that is not a positive whole number, raises :class:`~moon.errors.CorruptFile` naming
    the file (not torch's ``set_num_threads`` error or a ``TypeError`` from the config)."""
    from moon.errors import CorruptFile
    from moon.resultcheck import check_result
    from moon.results import result_path

    path = result_path(run_dir)
    committed = load_result(run_dir)
    check_result(committed, path)
    provenance = committed.provenance if isinstance(committed.provenance, dict) else {}
    threads = provenance.get("num_threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise CorruptFile(f"{path}: provenance.num_threads is {threads!r}; a run records a "
                          f"positive whole number of torch threads (or null)")
    return committed, threads


def reproduce(folder: str | Path, cells: int = 4, tolerance: float = 0.0,
              progress: bool | None = None) -> list[Check]:
    """Rerun ``cells`` of the runs in ``folder`` (:func:`pick`) and compare each (:func:`rerun`)."""
    from tqdm import tqdm

    checks = []
    for run_dir in tqdm(pick(folder, cells), desc="reproduce", unit="run",
                        disable=progress is False):
        checks.append(rerun(run_dir, tolerance))
        log.info("%s: %d metrics, max |diff| %.3g (%s)", run_dir.name, checks[-1].metrics,
                 checks[-1].max_abs_diff, checks[-1].worst or "-")
    return checks
