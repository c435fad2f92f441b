"""Pure tensor functions for sparse masks: per-layer densities, exact initial masks, drop and grow.

Masks are boolean tensors shaped like the weight they cover (``True`` = active). Every function
returns new tensors and never touches a model; :mod:`moon.sparse.masking` applies them.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch


def erk_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """Erdos-Renyi-kernel per-layer densities with the re-solve for layers that would exceed 1.

    Layer ``l`` of shape ``s`` gets ``d_l = eps * sum(s) / prod(s)`` (kernel dims included), with
    ``eps`` chosen so that ``sum_l d_l * n_l = density * sum_l n_l``. If some ``d_l`` would exceed 1,
    the layers with the largest raw score become dense and ``eps`` is re-solved over the rest, until
    no layer exceeds 1 (reference section 4.3; CigL A.3).
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density={density!r} must be in (0, 1]")
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    dense: set[str] = set()
    target = density * sum(sizes.values())
    while True:
        free = [n for n in shapes if n not in dense]
        if not free:
            return {n: 1.0 for n in shapes}
        budget = target - sum(sizes[n] for n in dense)
        eps = budget / sum(raw[n] * sizes[n] for n in free)
        top = max(raw[n] for n in free)
        if eps * top <= 1.0:
            return {n: (1.0 if n in dense else eps * raw[n]) for n in shapes}
        dense.update(n for n in free if raw[n] == top)


def uniform_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """The same density for every maskable layer."""
    return {name: float(density) for name in shapes}


def layer_counts(densities: Mapping[str, float], shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """Exact active-weight counts: ``round(d_l * n_l)``, at least 1, so the global density is
    within one weight per layer of the target."""
    return {n: min(math.prod(shapes[n]), max(1, round(d * math.prod(shapes[n]))))
            for n, d in densities.items()}


PREFILTER_MIN = 1 << 16     # tensors smaller than this go straight to torch.topk
PREFILTER_SAMPLE = 8192     # entries of the strided sample that sets the prefilter threshold


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A boolean mask with exactly ``k`` ``True`` entries, at the ``k`` largest ``scores``."""
    flat = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if k > 0:
        flat[topk_indices(scores.flatten(), k)] = True
    return flat.view(scores.shape)


def topk_indices(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest entries of the 1-D ``flat``: exactly ``torch.topk``'s set.

    Why not ``torch.topk`` alone: on a whole layer (235,200 weights for the MLP's first) it is most
    of a RigL update's cost on the CPU. A strided sample (no random numbers drawn) gives a threshold
    ``t`` with about twice ``k`` entries at or above it; ``torch.topk`` then runs on those
    candidates. When the ``k``-th and ``k+1``-th largest values differ, the top-``k`` set is unique,
    so it equals ``torch.topk``'s on the whole tensor; when they tie (the set would depend on how
    ``torch.topk`` breaks ties), or the threshold keeps too few candidates or is not finite, the
    whole tensor goes to ``torch.topk``, as before. Either way the result is ``torch.topk``'s."""
    n = flat.numel()
    if n < PREFILTER_MIN or 32 * (k + 1) > n or bool(torch.isnan(flat).any()):
        return torch.topk(flat, k, sorted=False).indices    # (topk ranks NaN above everything)
    sample = flat[:: n // PREFILTER_SAMPLE]
    rank = min(sample.numel(), math.ceil(2 * (k + 1) * sample.numel() / n) + 16)
    threshold = torch.topk(sample, rank, sorted=True).values[-1]
    if not torch.isfinite(threshold):
        return torch.topk(flat, k, sorted=False).indices
    candidates = (flat >= threshold).nonzero().flatten()
    if candidates.numel() <= k:
        return torch.topk(flat, k, sorted=False).indices
    top = torch.topk(flat[candidates], k + 1, sorted=True)
    if top.values[k - 1] == top.values[k]:            # a tie at the boundary: not unique
        return torch.topk(flat, k, sorted=False).indices
    return candidates[top.indices[:k]]


def random_mask(shape: Sequence[int], count: int, generator: torch.Generator) -> torch.Tensor:
    """Exactly ``count`` active entries at uniformly random positions (top-k of random scores)."""
    scores = torch.rand(tuple(shape), generator=generator, device=generator.device)
    return topk_mask(scores, count)


def bernoulli_mask(shape: Sequence[int], density: float, generator: torch.Generator) -> torch.Tensor:
    """Each entry active independently with probability ``density``: the released code's init
    (``as_released``; reference section 4.3), whose per-layer counts are only right on average."""
    return torch.rand(tuple(shape), generator=generator, device=generator.device) < density


def drop_magnitude(weight: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """Deactivate the ``n`` active entries of smallest ``|weight|``; returns the new mask."""
    nnz = int(mask.sum())
    if not 0 <= n <= nnz:
        raise ValueError(f"cannot drop {n} of {nnz} active weights")
    scores = weight.detach().abs().float().masked_fill(~mask, math.inf)
    return mask & ~topk_mask(-scores, n)


def grow_gradient(grad: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RigL growth: activate the ``n`` inactive entries of largest ``|grad|`` (the dense gradient;
    entries just dropped are candidates). Returns ``(new_mask, grown)``."""
    return _grow(torch.where(mask, -1.0, grad.detach().abs().float()), mask, n)


def grow_random(mask: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """SET growth: activate ``n`` inactive entries chosen uniformly at random."""
    scores = torch.rand(mask.shape, generator=generator, device=generator.device)
    return _grow(torch.where(mask, -1.0, scores), mask, n)


def _grow(scores: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activate the ``n`` best-scoring inactive entries (inactive scores are >= 0, active -1)."""
    inactive = mask.numel() - int(mask.sum())
    if not 0 <= n <= inactive:
        raise ValueError(f"cannot grow {n} weights with {inactive} inactive positions")
    grown = topk_mask(scores, n)
    return mask | grown, grown


def swap_count(fraction: float, nnz: int, numel: int) -> int:
    """Weights to drop and regrow in a layer: ``ceil(fraction * nnz)`` (reference 4.6), but never
    more than the layer's inactive positions, so dense and nearly dense layers keep their weights
    (a general form of the released ``adjust_prune_rate`` rule)."""
    return min(math.ceil(fraction * nnz), numel - nnz)
