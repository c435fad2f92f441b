"""Scores from logits: higher = more in-distribution (design.md, section 3).

Every function takes logits ``[N, C]`` and ``num_known`` = K; with the unknown class C = K+1 and the
last column is "unknown". Scores are ``[N]`` tensors on the logits' device, float32 (float64 for
those computed in float64, where a float32 result would tie saturated samples). The names a
user chooses from are declared once, in :data:`moon.ood.registry.DETECTORS`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _known(logits: Tensor, num_known: int) -> Tensor:
    if logits.dim() != 2 or logits.shape[1] not in (num_known, num_known + 1):
        raise ValueError(f"logits of shape {tuple(logits.shape)}: expected (N, K) or (N, K+1) "
                         f"with K={num_known}")
    return logits[:, :num_known].float()


def msp(logits: Tensor, num_known: int) -> Tensor:
    """Maximum softmax probability over the K known classes of the softmax over *all* outputs:
    mass on the unknown class lowers it (the released code's score; reference section 5.1)."""
    _known(logits, num_known)
    return torch.softmax(logits.float(), dim=1)[:, :num_known].max(dim=1).values


def msp_renorm(logits: Tensor, num_known: int) -> Tensor:
    """Maximum softmax probability of the softmax over the K known logits only."""
    return torch.softmax(_known(logits, num_known), dim=1).max(dim=1).values


def max_logit(logits: Tensor, num_known: int) -> Tensor:
    """Largest known-class logit (Hendrycks et al. 2022)."""
    return _known(logits, num_known).max(dim=1).values


def energy(logits: Tensor, num_known: int, temperature: float = 1.0) -> Tensor:
    """Negative energy ``T * logsumexp(f_k / T)`` over the K known logits (Liu et al. 2020; T = 1 as
    DICE uses it, CigL/DICE reference B.4). Including the unknown logit would be wrong: a large
    unknown logit would *raise* the ID score (reference Part C item 6)."""
    return temperature * torch.logsumexp(_known(logits, num_known) / temperature, dim=1)


def unknown(logits: Tensor, num_known: int) -> Tensor:
    """``1 - p(unknown)`` of the (K+1)-way softmax; needs the unknown class."""
    if logits.shape[1] != num_known + 1:
        raise ValueError("the 'unknown' score needs a K+1 head (unknown_class=true)")
    return 1.0 - torch.softmax(logits.float(), dim=1)[:, -1]


# --------------------------------------------------------------------------------------------------
# Scores taken from pytorch-ood (imported on first use: the package takes seconds to import)
# --------------------------------------------------------------------------------------------------
def from_outlier(outlier_scores: Tensor) -> Tensor:
    """pytorch-ood returns *outlier* scores (higher = more OOD); ours are higher = more ID. This is
    the one place where the sign is flipped: every score taken from pytorch-ood passes through it.
    The dtype is kept (a float64 score cast to float32 would tie the most confident samples)."""
    return -outlier_scores


def entropy(logits: Tensor, num_known: int) -> Tensor:
    """Negative entropy ``sum_k p_k log p_k`` of the softmax over the K known logits
    (``pytorch_ood.detector.Entropy.score``, which clips ``p`` at 1e-7; the entropy baseline, as in
    Chan et al. 2021). The K
    known logits renormalised, not all K+1: mass piled on the unknown class would make the
    distribution peaked again and look in-distribution (as for energy, reference Part C item 6)."""
    from pytorch_ood.detector import Entropy
    return from_outlier(Entropy.score(_known(logits, num_known).double()))


def gen(logits: Tensor, num_known: int, gamma: float = 0.1, top: int = 100) -> Tensor:
    """GEN, generalized entropy (Liu et al. 2023, CVPR, section 3): with ``p`` the softmax over the K
    known logits sorted in decreasing order, ``-sum_{j <= M} p_j^gamma (1 - p_j)^gamma`` over the
    ``M = min(K, top)`` largest (``top`` = 100, ``gamma`` = 0.1 as in the paper).
    ``pytorch_ood.detector.GEN.score`` averages instead of summing (a constant factor: same ranking)
    and clips ``p`` to [1e-7, 1 - 1e-7]. Known logits only, as for :func:`entropy`."""
    from pytorch_ood.detector import GEN
    z = _known(logits, num_known).double()
    return from_outlier(GEN.score(z, gamma=gamma, M=min(num_known, top)))
