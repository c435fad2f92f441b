"""Statistics of the numbers: bootstrap intervals over samples, and summaries, paired and
unpaired intervals, power and multiple-testing adjustment over seeds.

Every interval the reports show comes from here (:mod:`moon.report.stats` calls these); the
metrics themselves are in :mod:`moon.metrics`. Inputs are tensors, arrays or sequences, read in
float64 on the CPU.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Input handling (shared with moon.metrics)
# --------------------------------------------------------------------------------------------------
def as_array(x: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """``x`` (tensor, array or sequence) as a CPU numpy array of ``dtype``; tensors are detached."""
    if hasattr(x, "detach"):                       # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be read as a {np.dtype(dtype).name} array: {exc}") from exc


def as_vector(x: Any, name: str, finite: bool = True) -> np.ndarray:
    """A non-empty 1-D float64 array; non-finite values raise ``ValueError`` when ``finite``."""
    arr = as_array(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one value is needed")
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf); scores must be finite")
    return arr



# --------------------------------------------------------------------------------------------------
# Uncertainty of the numbers: bootstrap over samples, statistics over seeds
# --------------------------------------------------------------------------------------------------
def bootstrap_ci(metric_fn: Callable[..., float], *arrays: Any, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, independent: bool = False) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of ``metric_fn(*arrays)``.

    Each replicate draws N indices with replacement (``numpy.random.default_rng(seed)``) and
    evaluates ``metric_fn`` on the rows they pick; the interval is the ``(1-level)/2`` and
    ``(1+level)/2`` quantiles of the replicates. By default all arrays share one set of indices
    (paired rows: logits and labels). ``independent=True`` resamples each array on its own, for
    two-sample metrics such as ``lambda i, o: ood_metrics(i, o).auroc`` on ID and OOD scores.
    Replicates where the metric is not finite are dropped (logged). Deterministic given ``seed``.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array to resample")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got level={level}, n_boot={n_boot}")
    data = [as_array(a, f"arrays[{i}]", dtype=None) for i, a in enumerate(arrays)]
    sizes = [len(a) for a in data]
    if min(sizes) == 0 or (not independent and len(set(sizes)) > 1):
        raise ValueError(f"arrays must be non-empty and (unless independent) of equal length: {sizes}")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        if independent:
            picks = [a[rng.integers(0, len(a), len(a))] for a in data]
        else:
            idx = rng.integers(0, sizes[0], sizes[0])
            picks = [a[idx] for a in data]
        values[b] = float(metric_fn(*picks))
    finite = values[np.isfinite(values)]
    if finite.size < n_boot:
        log.warning("bootstrap: %d of %d replicates gave a non-finite metric and were dropped",
                    n_boot - finite.size, n_boot)
    if finite.size == 0:
        raise ValueError("bootstrap: the metric was not finite on any replicate")
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class SeedSummary:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) over seeds."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class Paired:
    """Mean per-seed difference (method - baseline) with a t confidence interval."""

    mean_diff: float
    low: float
    high: float
    excludes_zero: bool     # the interval lies strictly on one side of 0
    n: int
    p_value: float = float("nan")   # two-sided paired t-test of mean_diff = 0 (nan for n < 2)
    sd: float = float("nan")        # standard deviation of the differences (ddof = 1)
    mde: float = float("nan")       # smallest true difference detected with 80% power at 5%


def _finite_values(values: Sequence[float] | Any, name: str) -> np.ndarray:
    arr = as_vector(values, name, finite=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has NaN or inf; drop failed runs before summarising")
    return arr


def seed_summary(values: Sequence[float] | Any) -> SeedSummary:
    """mean = (1/n) sum v_i;  std = sqrt(sum (v_i - mean)^2 / (n - 1)), and 0 when n = 1."""
    v = _finite_values(values, "values")
    std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return SeedSummary(mean=float(v.mean()), std=std, n=int(v.size))


def paired_comparison(method_values: Sequence[float] | Any, base_values: Sequence[float] | Any,
                      level: float = 0.95) -> Paired:
    """Paired t interval for the mean of ``d_i = method_i - base_i`` (same seeds, same order).

    mean_diff = dbar = (1/n) sum d_i;  interval = dbar -+ t_{(1+level)/2, n-1} * s_d / sqrt(n), with
    s_d the ddof = 1 standard deviation. ``excludes_zero`` is ``low > 0 or high < 0``. With n = 1
    there is no spread to estimate: ``low = high = mean_diff`` and ``excludes_zero`` is False.
    """
    m, b = _finite_values(method_values, "method_values"), _finite_values(base_values, "base_values")
    if m.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {m.size} and {b.size}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = m - b
    n, mean = int(d.size), float(d.mean())
    if n == 1:
        return Paired(mean_diff=mean, low=mean, high=mean, excludes_zero=False, n=1)
    sd = float(np.std(d, ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if sd > 0:
        p = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
    else:
        p = 1.0 if mean == 0 else 0.0
    return Paired(mean_diff=mean, low=low, high=high, excludes_zero=bool(low > 0 or high < 0), n=n,
                  p_value=p, sd=sd, mde=min_detectable_effect(sd, n, alpha=1 - level))


def min_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t-test at level ``alpha`` detects with
    probability ``power``, for ``n`` pairs whose differences spread with standard deviation ``sd``.

    ``MDE = d* * sd`` where the standardised effect ``d*`` solves the noncentral-t power equation
    ``P(|T| > t_{1-alpha/2, n-1} | T ~ t'(n-1, d* sqrt(n))) = power`` (statsmodels' ``TTestPower``;
    about ``(t_{1-alpha/2} + t_{power}) / sqrt(n)``). nan for n < 2 (no spread to measure).
    """
    if n < 2 or not math.isfinite(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    from statsmodels.stats.power import TTestPower

    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power,
                                 alternative="two-sided")
    return float(d) * sd


def holm(p_values: Sequence[float] | Any) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (statsmodels ``multipletests``): the
    adjusted value controls the family-wise error rate; nan entries stay nan."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def mean_interval(values: Sequence[float] | Any, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) with low/high = mean -+ t_{(1+level)/2, n-1} * s / sqrt(n) (s with ddof 1):
    :func:`paired_comparison` against zeros. Non-finite values are dropped; NaN bounds for one value,
    NaN everywhere for none."""
    p = np.asarray(values, dtype=float)
    p = p[np.isfinite(p)]
    if p.size < 2:
        return (float(p.mean()) if p.size else math.nan), math.nan, math.nan
    paired = paired_comparison(p, np.zeros_like(p), level)
    return paired.mean_diff, paired.low, paired.high


def welch_interval(values: Sequence[float] | Any, base_values: Sequence[float] | Any,
                   level: float = 0.95) -> Paired:
    """Unpaired mean(values) - mean(base_values) with a Welch t-interval (Welch 1947).

    se = sqrt(s_a^2/n_a + s_b^2/n_b);  nu = se^4 / ((s_a^2/n_a)^2/(n_a-1) + (s_b^2/n_b)^2/(n_b-1))
    (Welch-Satterthwaite);  interval = diff -+ t_{(1+level)/2, nu} * se. With fewer than 2 values on
    a side the spread is unknown: low = high = NaN and ``excludes_zero`` False; with se = 0 the
    interval is the point. ``n`` counts ``values``. ``p_value`` is Welch's two-sided t-test
    (scipy ``ttest_ind(equal_var=False)``), so a family of these can be Holm-adjusted; ``mde`` the
    smallest true difference detected with 80% power at ``1 - level`` (statsmodels'
    ``TTestIndPower`` on the pooled standard deviation, for these group sizes).
    """
    a, b = (np.asarray(v, dtype=float) for v in (values, base_values))
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        raise ValueError(f"welch_interval needs values on both sides, got {a.size} and {b.size}")
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Paired(mean_diff=diff, low=math.nan, high=math.nan, excludes_zero=False, n=a.size)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    half = 0.0 if se == 0 else float(stats.t.ppf((1 + level) / 2, (va + vb) ** 2 / (
        va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)))) * se
    low, high = diff - half, diff + half
    if se > 0:
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    else:
        p = 1.0 if diff == 0 else 0.0
    pooled = math.sqrt((a.var(ddof=1) * (a.size - 1) + b.var(ddof=1) * (b.size - 1))
                       / (a.size + b.size - 2))
    return Paired(mean_diff=diff, low=low, high=high, excludes_zero=bool(low > 0 or high < 0),
                  n=int(a.size), p_value=p, sd=pooled,
                  mde=_independent_mde(pooled, a.size, b.size, alpha=1 - level))


def _independent_mde(sd: float, n_a: int, n_b: int, alpha: float = 0.05,
                     power: float = 0.8) -> float:
    """The smallest true difference of two independent means (group sizes ``n_a``, ``n_b``, common
    spread ``sd``) a two-sided t-test at ``alpha`` detects with ``power`` (statsmodels'
    ``TTestIndPower``)."""
    if sd == 0:
        return 0.0
    from statsmodels.stats.power import TTestIndPower

    d = TTestIndPower().solve_power(effect_size=None, nobs1=n_a, ratio=n_b / n_a, alpha=alpha,
                                    power=power, alternative="two-sided")
    return float(d) * sd
