"""OOD-detection and calibration metrics, bootstrap intervals and across-seed statistics.

Conventions (design.md, section 3; reference/cigl-and-dice.md, B.6):

* every score is *higher = more in-distribution*, and **ID is the positive class**;
* metrics are fractions in [0, 1]; only report code multiplies by 100;
* everything is computed in float64 on the CPU, from tensors or arrays;
* with a K+1 head ("unknown" last), accuracy, NLL, Brier and the calibration errors are computed over
  the K known classes: the softmax is taken over the first K logits only (renormalised), and the
  prediction is their argmax. The one exception is :func:`released_ece`, the released MOON code's
  convention (softmax, confidence and prediction over all K+1 outputs; 10 bins; 1.0 dropped).

Results are frozen dataclasses; ``dataclasses.asdict`` turns one into a JSON-ready dict.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

log = logging.getLogger(__name__)

TPR_LEVEL = 0.95            # FPR is reported at this true-positive rate on ID scores
_TPR_TOL = 1e-12            # tpr = k / N is exact to rounding; do not miss 0.95 by one ulp


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------
def _numpy(x: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """``x`` (tensor, array or sequence) as a CPU numpy array of ``dtype``; tensors are detached."""
    if hasattr(x, "detach"):                       # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be read as a {np.dtype(dtype).name} array: {exc}") from exc


def _vector(x: Any, name: str, finite: bool = True) -> np.ndarray:
    """A non-empty 1-D float64 array; non-finite values raise ``ValueError`` when ``finite``."""
    arr = _numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; at least one value is needed")
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf); scores must be finite")
    return arr


def _confidence_correct(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(confidence in [0, 1], correct as bool)`` of equal length."""
    conf = _vector(confidence, "confidence")
    corr = _numpy(correct, "correct", dtype=np.float64)
    if corr.shape != conf.shape:
        raise ValueError(f"correct has shape {tuple(corr.shape)}, confidence {tuple(conf.shape)}")
    if np.any((conf < 0) | (conf > 1)):
        raise ValueError("confidence must lie in [0, 1] (a probability)")
    return conf, corr.astype(bool)


def _check_bins(n_bins: int) -> None:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


# --------------------------------------------------------------------------------------------------
# OOD detection
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OODMetrics:
    """Threshold-free and fixed-TPR detection metrics; ID positive, fractions in [0, 1]."""

    auroc: float        # area under ROC; 1 = perfect, 0.5 = chance
    aupr_in: float      # average precision with ID as positive class
    aupr_out: float     # average precision with OOD as positive class (scores negated)
    fpr95: float        # share of OOD scores >= the threshold that keeps 95% of ID; lower is better


def fpr_at_tpr(id_scores: Any, ood_scores: Any, tpr_level: float = TPR_LEVEL) -> float:
    """False-positive rate at the first ROC threshold whose TPR on ID scores reaches ``tpr_level``.

    With ``fpr, tpr, thr = roc_curve(y, s)`` (y = 1 for ID), this is ``fpr[i]`` for the first ``i``
    with ``tpr[i] >= tpr_level``. Equivalently: let ``k = ceil(tpr_level * N_ID)`` and ``tau`` be the
    k-th largest ID score; then ``FPR = mean_j 1[ood_j >= tau]``. The threshold comes from ID scores
    only (reference B.6). The released code uses ``tau = sort(id)[round(0.05 N_ID)]`` and a strict
    ``>``; the two agree except for OOD scores tied exactly with ``tau``, which count here as
    accepted (false positives), and the choice of order statistic when ``0.05 N_ID`` is not an
    integer (we keep at least 95% of ID, not 94.99%).
    """
    ids, oods = _vector(id_scores, "id_scores"), _vector(ood_scores, "ood_scores")
    y = np.concatenate([np.ones(ids.size), np.zeros(oods.size)])
    fpr, tpr, _ = roc_curve(y, np.concatenate([ids, oods]), drop_intermediate=False)
    first = int(np.flatnonzero(tpr >= tpr_level - _TPR_TOL)[0])
    return float(fpr[first])


def auroc(id_scores: Any, ood_scores: Any) -> float:
    """:func:`ood_metrics`'s AUROC alone (``roc_auc_score``, ID positive), for sweeps that need no
    other metric."""
    ids, oods = _vector(id_scores, "id_scores"), _vector(ood_scores, "ood_scores")
    return float(roc_auc_score(np.r_[np.ones(ids.size), np.zeros(oods.size)], np.r_[ids, oods]))


def ood_metrics(id_scores: Any, ood_scores: Any) -> OODMetrics:
    """AUROC, AUPR-In, AUPR-Out and FPR@95TPR of 1-D scores where higher means in-distribution.

    With labels ``y = 1`` for ID and ``0`` for OOD and scores ``s``:

    * AUROC    = ``roc_auc_score(y, s)`` = P(s_id > s_ood) + 0.5 P(s_id = s_ood) (Mann-Whitney U);
    * AUPR-In  = ``average_precision_score(y, s)`` = sum_n (R_n - R_{n-1}) P_n, ID positive;
    * AUPR-Out = ``average_precision_score(1 - y, -s)``, OOD positive;
    * FPR95    = :func:`fpr_at_tpr` at TPR = 0.95.

    Empty or non-finite inputs raise ``ValueError``. Reference: cigl-and-dice.md B.6 (the released
    trapezoid AUPRs match average precision to ~1e-4).
    """
    ids, oods = _vector(id_scores, "id_scores"), _vector(ood_scores, "ood_scores")
    y = np.concatenate([np.ones(ids.size), np.zeros(oods.size)])
    s = np.concatenate([ids, oods])
    return OODMetrics(auroc=float(roc_auc_score(y, s)),
                      aupr_in=float(average_precision_score(y, s)),
                      aupr_out=float(average_precision_score(1 - y, -s)),
                      fpr95=fpr_at_tpr(ids, oods))


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reliability:
    """Per-bin reliability diagram data; ``confidence``/``accuracy`` are NaN for empty bins."""

    bin_lower: tuple[float, ...]
    bin_upper: tuple[float, ...]
    confidence: tuple[float, ...]      # mean confidence of the bin's samples
    accuracy: tuple[float, ...]        # share of the bin's samples that are correct
    count: tuple[float, ...]           # number of samples in the bin


@dataclass(frozen=True)
class Calibration:
    """Accuracy and calibration of a classifier over the K known classes."""

    accuracy: float
    nll: float
    brier: float
    ece: float
    mce: float
    adaptive_ece: float
    n: int


def bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each confidence: b with b/B <= c < (b+1)/B; the last bin also holds c = 1.

    Edges are ``np.linspace(0, 1, B + 1)``, the same ones :class:`Reliability` reports.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)


def reliability(confidence: Any, correct: Any, n_bins: int = 15) -> Reliability:
    """Mean confidence, accuracy and count in ``n_bins`` equal-width confidence bins.

    Bin b covers ``[b/B, (b+1)/B)``, except the last, ``[(B-1)/B, 1]``, which includes confidence
    exactly 1.0. The released code silently drops samples with confidence exactly 1.0 (common for
    over-confident networks); we do not, so every sample lands in exactly one bin.
    """
    _check_bins(n_bins)
    conf, corr = _confidence_correct(confidence, correct)
    idx = bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(idx, weights=corr.astype(np.float64), minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return Reliability(bin_lower=tuple(map(float, edges[:-1])), bin_upper=tuple(map(float, edges[1:])),
                       confidence=tuple(map(float, mean_conf)), accuracy=tuple(map(float, mean_acc)),
                       count=tuple(map(float, count)))


def expected_calibration_error(confidence: Any, correct: Any, n_bins: int = 15) -> tuple[float, float]:
    """``(ECE, MCE)`` over ``n_bins`` equal-width bins (see :func:`reliability` for the bins).

    ECE = sum_b (n_b / N) |acc_b - conf_b|;  MCE = max over non-empty b of |acc_b - conf_b|.
    Reference: Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. (3) and (5).
    """
    rel = reliability(confidence, correct, n_bins)
    count = np.asarray(rel.count)
    full = count > 0
    gap = np.abs(np.asarray(rel.accuracy)[full] - np.asarray(rel.confidence)[full])
    ece = float(np.sum(count[full] / count.sum() * gap))
    return ece, float(gap.max())


def adaptive_ece(confidence: Any, correct: Any, n_bins: int = 15) -> float:
    """Equal-mass ECE: sort by confidence, split into ``n_bins`` near-equal groups (``array_split``).

    ACE = sum_b (n_b / N) |acc_b - conf_b| over the non-empty groups (fewer samples than bins leaves
    some empty). Ties are ordered stably. Reference: Nixon et al. 2019, "Measuring Calibration in
    Deep Learning" (adaptive calibration error).
    """
    _check_bins(n_bins)
    conf, corr = _confidence_correct(confidence, correct)
    order = np.argsort(conf, kind="stable")
    total = 0.0
    for group in np.array_split(order, n_bins):
        if group.size:
            total += group.size * abs(float(corr[group].mean()) - float(conf[group].mean()))
    return total / conf.size


def _known_log_probs(logits: Any, labels: Any, num_known: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(log p over the known classes (N, K), labels (N,))`` in float64."""
    z = _numpy(logits, "logits")
    y = _numpy(labels, "labels", dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"logits must be a non-empty (N, C) array, got shape {tuple(z.shape)}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},), got {tuple(y.shape)}")
    if num_known is not None:
        if not 1 <= num_known <= z.shape[1]:
            raise ValueError(f"num_known={num_known} must be in [1, {z.shape[1]}] (logit columns)")
        z = z[:, :num_known]                       # drop the "unknown" column(s)
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or inf")
    if np.any(y != np.round(y)) or np.any((y < 0) | (y >= z.shape[1])):
        raise ValueError(f"labels must be integers in [0, {z.shape[1]}) (the known classes)")
    shifted = z - z.max(axis=1, keepdims=True)     # log_softmax, stable: z - logsumexp(z)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return logp, y.astype(np.int64)


def calibration(logits: Any, labels: Any, num_known: int | None = None, n_bins: int = 15) -> Calibration:
    """Accuracy, NLL, Brier, ECE, MCE and adaptive ECE of ``(N, C)`` logits against labels.

    With ``p = softmax(z[:, :K])`` (K = ``num_known``, or all C columns when None):

    * accuracy = mean 1[argmax_k p_k = y];
    * NLL      = mean -log p_y (natural log, from log_softmax);
    * Brier    = mean_i sum_k (p_ik - 1[k = y_i])^2 (multi-class Brier, summed over classes, in [0, 2]);
    * ECE/MCE  = :func:`expected_calibration_error` of the max probability, ``n_bins`` equal-width;
    * adaptive_ece = :func:`adaptive_ece` (equal-mass bins).

    With a K+1 head pass ``num_known=K``: the unknown logit is ignored and the K known probabilities
    are renormalised, so every number here is over the K known classes (design.md, section 3).
    """
    logp, y = _known_log_probs(logits, labels, num_known)
    n = y.size
    p = np.exp(logp)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = pred == y
    ece, mce = expected_calibration_error(conf, correct, n_bins)
    return Calibration(accuracy=float(correct.mean()),
                       nll=float(-logp[np.arange(n), y].mean()),
                       brier=float(((p - onehot) ** 2).sum(axis=1).mean()),
                       ece=ece, mce=mce, adaptive_ece=adaptive_ece(conf, correct, n_bins), n=int(n))


def released_ece(logits: Any, labels: Any, n_bins: int = 10) -> float:
    """ECE as the released MOON code reports it (reference moon-released-code.md 5.4).

    Unlike :func:`calibration` (softmax over the K known logits, 15 bins, every sample binned):

    * ``p`` = softmax over **all** C outputs (K+1 with the unknown class), in float32 as there;
      confidence = max over all C and prediction = argmax over all C, so a sample predicted
      "unknown" counts as wrong (and its confidence is the unknown probability);
    * ``n_bins`` = 10 equal-width bins ``[b/B, (b+1)/B)``: a confidence of exactly 1.0 falls in no
      bin and is dropped, from the sum and from the normalisation alike;
    * ECE = sum_b (n_b / n_kept) |acc_b - conf_b| over the non-empty bins (NaN if nothing is kept).
    """
    z = torch.as_tensor(_numpy(logits, "logits", dtype=np.float32))
    y = _numpy(labels, "labels", dtype=np.int64)
    if z.ndim != 2 or y.shape != (z.shape[0],) or z.shape[0] == 0:
        raise ValueError(f"need logits (N, C) and labels (N,), got {tuple(z.shape)} and {y.shape}")
    conf, pred = torch.softmax(z, dim=1).max(dim=1)
    conf, correct = conf.double().numpy(), pred.numpy() == y
    kept = conf < 1.0
    if not kept.any():
        return float("nan")
    return expected_calibration_error(conf[kept], correct[kept], n_bins)[0]


def fit_temperature(logits: Any, labels: Any, num_known: int | None = None) -> float:
    """Temperature scaling (Guo et al. 2017): the ``T > 0`` minimising the NLL of
    ``softmax(z[:, :K] / T)`` on held-out data (the validation split), found by a bounded 1-D
    search over ``log T`` in [-4, 4]. Accuracy is unchanged; only the confidence is rescaled."""
    from scipy.optimize import minimize_scalar

    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    z = z[:, :num_known] if num_known is not None else z
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / np.exp(log_t), y))

    return float(np.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded").x))


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
    data = [_numpy(a, f"arrays[{i}]", dtype=None) for i, a in enumerate(arrays)]
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
    arr = _vector(values, name, finite=False)
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
    interval is the point. ``n`` counts ``values``.
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
    return Paired(mean_diff=diff, low=low, high=high, excludes_zero=bool(low > 0 or high < 0),
                  n=int(a.size))
