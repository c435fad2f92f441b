"""Scores from logits: higher = more in-distribution (design.md, section 3).

Every function takes logits ``[N, C]`` and ``num_known`` = K; with the unknown class C = K+1 and the
last column is "unknown". Scores are float32 ``[N]`` tensors on the logits' device.
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


LOGIT_SCORES = {"msp": msp, "msp_renorm": msp_renorm, "max_logit": max_logit, "energy": energy,
                "unknown": unknown}
