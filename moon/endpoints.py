"""The declared primary endpoints of a study, tested as one family.

A study file declares, before it runs, which comparisons answer its question (``endpoints:`` in
``studies/paper.yaml``): a contrast (MOON minus baseline, paired by seed), the cells it covers and
the metrics. :func:`primary_endpoints` gives, per cell and metric, the mean paired difference, its
95% t-interval, the two-sided p-value, the smallest difference this many seeds detects with 80%
power given the measured spread (:func:`moon.metrics.min_detectable_effect`), and Holm's adjusted
p-value across the whole family (:func:`moon.metrics.holm`), raw and adjusted side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moon.compare import paired_moon_frame
from moon.metrics import holm


def primary_endpoints(frame: "pd.DataFrame", endpoints: Mapping[str, Any]) -> "pd.DataFrame":
    """The primary family of ``endpoints`` (a study's ``endpoints`` section) evaluated on
    ``frame`` (:func:`moon.report.results_frame`): one row per cell and metric with ``mean_diff,
    low, high, p_value, p_holm, significant, mde, n``, in the frame's units (fractions)."""
    primary = endpoints.get("primary") or {}
    contrast = primary.get("contrast", {})
    if contrast and contrast.get("axis") != "moon":
        raise ValueError(f"contrast {contrast}: only MOON - baseline (axis moon) is implemented")
    metrics = list(primary["metrics"])
    cells = dict(primary.get("cells", {}))
    alpha = float(primary.get("alpha", 0.05))
    keep = frame
    for axis, values in cells.items():
        keep = keep[keep[axis].isin(values)]
    long = paired_moon_frame(keep, metrics=metrics, level=1 - alpha)
    long["p_holm"] = holm(long["p_value"].to_numpy())
    long["significant"] = long["p_holm"] < alpha
    return long
