"""Detectors on penultimate features: ViM, RMDS, fDBD, ASH and SCALE (higher = more ID).

Where pytorch-ood (0.4) has the detector and it works on pre-extracted features, it does the work:
we hand it the K known rows of the head (a K+1 head's unknown row takes no part, as in every
detector of :mod:`moon.ood.detectors`) and flip its outlier score once, in
:func:`moon.ood.scores.from_outlier`. pytorch-ood is imported on first use (it takes seconds).
RMDS is ours (its docstring says why). The cross-checks against pytorch-ood are in
``tests/test_crosscheck.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from moon.ood import scores
from moon.ood.detectors import Detector, Mahalanobis, whitening

if TYPE_CHECKING:
    from moon.outputs import Outputs


def known_linear(detector: Detector) -> nn.Linear:
    """An ``nn.Linear`` holding the K known rows of a detector's head (a copy, on the CPU)."""
    w, b = detector.weight[:detector.num_known], detector.bias[:detector.num_known]
    head = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    return head.requires_grad_(False)


class ViM(Detector):
    """ViM, virtual-logit matching (Wang et al. 2022, CVPR, section 3).

    With the origin ``o = -W^+ b`` and ``P`` the eigenvectors of the ``D - d`` smallest eigenvalues
    of the ID training features' covariance about ``o``: residual ``r(h) = ||(h - o) P||``, scale
    ``alpha = mean max_k f_k / mean r`` on the training features, and score
    ``logsumexp_k f_k - alpha r(h)`` (energy minus the virtual logit; the paper's softmax
    probability of the virtual class ranks the same). ``d`` = ``dim``, by default ``D // 2`` (256 of
    512 on a ResNet-18, OpenOOD's CIFAR setting; 42 of 84 on LeNet-5). Computed by
    ``pytorch_ood.detector.ViM`` on the K known rows; its pseudo-inverse copes with a sparse head.
    """

    name, needs_fit = "vim", True

    def __init__(self, head: nn.Linear, num_known: int, dim: int | None = None):
        super().__init__(head, num_known)
        self.dim, self._vim = dim, None

    def fit(self, train: Outputs) -> "ViM":
        from pytorch_ood.detector import ViM as PoodViM
        h = train.features.float()
        d = self.dim if self.dim is not None else h.shape[1] // 2
        if not 0 < d < h.shape[1]:
            raise ValueError(f"ViM needs 0 < dim < D = {h.shape[1]} (the feature size), got {d}")
        self._vim = PoodViM(None, d=d, w=self.weight[:self.num_known], b=self.bias[:self.num_known])
        self._vim.fit_features(h, train.labels)
        return super().fit(train)

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        return scores.from_outlier(self._vim.predict_features(outputs.features.float()))


class RMDS(Mahalanobis):
    """Relative Mahalanobis distance (Ren et al. 2021, "A simple fix to Mahalanobis distance",
    section 3): ``d_k`` the squared distance to class mean ``mu_k`` under the shared covariance (as in
    :class:`Mahalanobis`), ``d_0`` the one to a single Gaussian fitted to all ID training features;
    score ``-min_k (d_k(h) - d_0(h))``.

    Ours, not ``pytorch_ood.detector.RMD``: that one inverts the covariances in float32 with a 1e-6
    ridge and fails ("input matrix is singular") on rank-deficient features, which dead or
    collinear ReLU units of sparse models give; here both use the float64 pseudo-inverse, like
    :class:`Mahalanobis`. The two rank the same on full-rank features (tests/test_crosscheck.py).
    """

    name = "rmds"

    def fit(self, train: Outputs) -> "RMDS":
        h = train.features.double()
        self.background_mean = h.mean(dim=0)
        centred = h - self.background_mean
        self._background_root = whitening(
            torch.linalg.pinv(centred.T @ centred / len(h), hermitian=True))
        return super().fit(train)

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        h = outputs.features.double()
        background = ((h - self.background_mean) @ self._background_root).pow(2).sum(dim=1)
        return (-(self._distances(h) - background).min(dim=0).values).float()


class FDBD(Detector):
    """fDBD, feature distance to decision boundaries (Liu & Qin 2024, ICML, section 3): with ``c*`` the
    predicted class and ``mu`` the mean ID training feature,
    ``1/(K-1) sum_{c != c*} |f_c* - f_c| / ||w_c* - w_c|| / ||h - mu||`` (the distance of ``h`` to
    each boundary of the linear head, relative to its distance from the ID mean). Computed by
    ``pytorch_ood.detector.fDBD`` on the K known rows, so the boundaries are between known classes.
    """

    name, needs_fit = "fdbd", True

    def fit(self, train: Outputs) -> "FDBD":
        from pytorch_ood.detector import fDBD
        self._fdbd = fDBD(None, known_linear(self)).fit_features(train.features.float())
        return super().fit(train)

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        return scores.from_outlier(self._fdbd.predict_features(outputs.features.float()))


class _Shaped(Detector):
    """Shape the penultimate features of each sample, re-apply the head's K known rows and take
    the energy ``logsumexp_k f_k`` (pytorch-ood's shaping on ``[N, D, 1, 1]`` maps). The shaping
    rescales by ``exp(s_1 / s_2)``, undefined for a sample whose (ReLU) features are all zero:
    nothing to shape, so it keeps the energy of the bias alone, which is what its logits are."""

    def __init__(self, head: nn.Linear, num_known: int, p: float = 90.0):
        super().__init__(head, num_known)
        if not 0 <= p < 100:
            raise ValueError(f"{self.name} needs a percentile 0 <= p < 100, got p={p}")
        self.p = p

    def _shaper(self, head):
        raise NotImplementedError

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        h = outputs.features.float()
        w, b = self.weight[:self.num_known], self.bias[:self.num_known]
        shaper = self._shaper(lambda x: x.flatten(1) @ w.T + b)
        out = scores.from_outlier(shaper.predict_feature_maps(h[:, :, None, None]))
        dead = ~h.any(dim=1)           # every feature zero
        out[dead] = torch.logsumexp(b, dim=0).to(out.dtype)
        return out


class ASH(_Shaped):
    """ASH-S, activation shaping (Djurisic et al. 2023, ICLR, section 3): per sample, zero the
    features below their ``p``-th percentile (``p`` = 90), multiply the rest by
    ``exp(s_1 / s_2)`` with ``s_1``, ``s_2`` the feature sums before and after pruning, then energy
    over the K known logits. ``pytorch_ood.detector.ASH`` with ``variant="ash-s"``."""

    name = "ash"

    def _shaper(self, head):
        from pytorch_ood.detector import ASH as PoodASH
        return PoodASH(backbone=None, head=head, variant="ash-s", percentile=self.p / 100.0)


class SCALE(_Shaped):
    """SCALE (Xu et al. 2024, ICLR, section 4): ASH-S's factor ``exp(s_1 / s_2)`` (``s_2`` the sum
    of the features above their ``p``-th percentile) applied to *all* features, nothing pruned,
    then energy over the K known logits. ``p`` = 85 by default (OpenOOD's default for SCALE).
    ``pytorch_ood.detector.SCALE``."""

    name = "scale"

    def __init__(self, head: nn.Linear, num_known: int, p: float = 85.0):
        super().__init__(head, num_known, p)

    def _shaper(self, head):
        from pytorch_ood.detector import SCALE as PoodSCALE
        return PoodSCALE(backbone=None, head=head, percentile=self.p / 100.0)
