"""OOD-detection and calibration metrics (their intervals and the statistics over seeds are in
:mod:`moon.statistics`).

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

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from moon.statistics import as_array as _numpy
from moon.statistics import as_vector as _vector

TPR_LEVEL = 0.95            # FPR is reported at this true-positive rate on ID scores
_TPR_TOL = 1e-12            # tpr = k / N is exact to rounding; do not miss 0.95 by one ulp


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------
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
