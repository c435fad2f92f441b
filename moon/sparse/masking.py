"""The mask holder: which weights are active, keeping them sparse, and updating the topology.

Sparse: the weights of every convolution and linear layer (first conv and head included).
Dense: biases and normalisation layers (reference section 4.2). Masks are held by parameter name.

Per optimizer step (reference section 4.4): ``W <- W * M`` and ``momentum <- momentum * M`` after the
step, so inactive weights are exactly 0 with zero momentum. Gradients stay dense: masking is by
value, so ``weight.grad`` of an inactive weight is the dense gradient RigL grows from, at no extra
cost on ordinary steps.

CigL (CigL reference A.4-A.7) adds a random keep-mask ``D`` drawn afresh every step (keep
probability ``1 - 1/dpnum``): the forward pass uses ``s * theta * D * M`` with ``s = k/(k-1)`` and
only entries with ``D * M = 1`` are updated. ``as_released`` instead reproduces the released
stash/restore "DropConnect" (reference section 4.8) for every sparse method.
"""

from __future__ import annotations

from typing import Any, Collection

import torch
from torch import nn

from moon.sparse import masks as M

METHODS_WITH_UPDATES = ("set", "rigl", "cigl")   # the others keep their topology


def maskable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights of every convolution and linear layer, by parameter name."""
    return {f"{name}.weight" if name else "weight": module.weight
            for name, module in model.named_modules()
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))}


class Masking:
    """Masks of a model's maskable weights; applies them and updates the topology."""

    def __init__(self, model: nn.Module, density: float, method: str = "rigl",
                 sparse_init: str = "erk", seed: int = 0, as_released: bool = False,
                 dpnum: int = 100, rescale_init: bool = False):
        self.model, self.method, self.as_released, self.dpnum = model, method, as_released, dpnum
        self.params = maskable_parameters(model)
        device = next(iter(self.params.values())).device
        self.generator = torch.Generator(device=device).manual_seed(10_007 + seed)
        shapes = {n: tuple(p.shape) for n, p in self.params.items()}
        init = M.erk_densities if sparse_init == "erk" else M.uniform_densities
        self.target = init(shapes, density)
        if as_released:  # reference 4.3: element-wise Bernoulli, counts right only on average
            self.masks = {n: M.bernoulli_mask(shapes[n], d, self.generator)
                          for n, d in self.target.items()}
        else:
            counts = M.layer_counts(self.target, shapes)
            self.masks = {n: M.random_mask(shapes[n], counts[n], self.generator) for n in shapes}
        self.keep: dict[str, torch.Tensor] = {}    # CigL / released random keep-masks D
        self.stash: dict[str, torch.Tensor] = {}   # released stash R (dense initial weights)
        self._theta: dict[str, torch.Tensor] = {}  # CigL: unscaled weights during one step
        if rescale_init:
            self._rescale_init()
        if as_released:
            self.keep = {n: torch.ones_like(m) for n, m in self.masks.items()}
            self.stash = {n: p.detach().clone() for n, p in self.params.items()}
        self._refresh()
        self.apply_()

    @torch.no_grad()
    def _rescale_init(self) -> None:
        """Multiply each layer's initial weights by ``1/sqrt(d_l)``: a unit then keeps the output
        variance of its dense initialisation with a fraction ``d_l`` of its inputs (sparsity-aware
        initialisation, Evci et al. 2022). Without it, networks without normalisation (the MLP,
        LeNet-5) do not train at all at 5% density: the signal shrinks by ``sqrt(d_l)`` per layer."""
        for name, p in self.params.items():
            active = float(self.masks[name].float().mean())
            if 0.0 < active < 1.0:
                p.mul_(active ** -0.5)

    def _refresh(self) -> None:
        """Float copies of the masks in each weight's dtype: an in-place multiply by a float mask
        is about 6x faster than by a bool one on the CPU."""
        self._factors = {n: m.to(self.params[n].dtype) for n, m in self.masks.items()}

    @classmethod
    def from_config(cls, model: nn.Module, cfg: Any) -> "Masking":
        return cls(model, cfg.density, cfg.method, cfg.sparse_init, cfg.seed, cfg.as_released,
                   cfg.dpnum, cfg.rescale_init)

    # --- keeping weights sparse -----------------------------------------------------------------
    @torch.no_grad()
    def apply_(self, optimizer: torch.optim.Optimizer | None = None, skip: Collection[str] = ()) -> None:
        """``W <- W * M`` in place, and the momentum of inactive weights to 0. ``skip``: layers
        trained elsewhere (:mod:`moon.sparse.training`'s CSR layers), left untouched."""
        for name, p in self.params.items():
            if name in skip:
                continue
            m = self._factors[name]
            p.mul_(m)
            buf = _momentum(optimizer, p)
            if buf is not None:
                buf.mul_(m)

    @property
    def dynamic(self) -> bool:
        """Whether the topology changes during training (SET, RigL, CigL)."""
        return self.method in METHODS_WITH_UPDATES

    @property
    def _cigl(self) -> bool:
        return self.method == "cigl" and not self.as_released

    @torch.no_grad()
    def before_forward(self, skip: Collection[str] = ()) -> None:
        """CigL: draw ``D`` and make the forward pass see ``s * theta * D * M``. Layers in
        ``skip`` get their ``D`` drawn (the random stream stays the masked trainer's) but keep
        their weights: a CSR layer applies ``D`` to its active values itself."""
        if not self._cigl:
            return
        scale = self.dpnum / (self.dpnum - 1)
        for name, p in self.params.items():
            self.keep[name] = self._draw_keep(p.shape)
            if name in skip:
                continue
            self._theta[name] = p.detach().clone()
            p.mul_(self.keep[name] & self.masks[name]).mul_(scale)

    @torch.no_grad()
    def step(self, optimizer: torch.optim.Optimizer, skip: Collection[str] = ()) -> None:
        """One optimizer step that leaves the weights sparse (reference 4.4; CigL A.4). Layers in
        ``skip`` (CSR layers, stepped by :mod:`moon.sparse.training`) have no gradient here."""
        if self._cigl:
            self._cigl_step(optimizer, skip)
            self.apply_(optimizer, skip)
        elif self.as_released:
            self._released_dropconnect()
            optimizer.step()
            self.apply_(optimizer)
        else:
            # grad <- grad * M before the step instead of W *= M and momentum *= M after it: an
            # inactive weight (0, zero momentum) then gets a zero update and stays exactly 0, and
            # active entries see the same elementwise arithmetic, so the result is bit-identical
            # with one multiply per layer instead of two (the step's fixed cost, bench/train_overhead)
            for name, p in self.params.items():
                if p.grad is not None:
                    p.grad.mul_(self._factors[name])
            optimizer.step()

    def _cigl_step(self, optimizer: torch.optim.Optimizer, skip: Collection[str] = ()) -> None:
        """Chain rule ``dL/dtheta = s * D * dL/dW``; restore ``theta``; step; undo the step on
        dropped entries (weights and momentum), so ``theta`` changes only where ``D * M = 1``."""
        scale = self.dpnum / (self.dpnum - 1)
        saved = {}
        params = {n: p for n, p in self.params.items() if n not in skip}
        for name, p in params.items():
            if p.grad is not None:
                p.grad.mul_(self.keep[name]).mul_(scale)
            p.copy_(self._theta[name])
            buf = _momentum(optimizer, p)
            saved[name] = None if buf is None else buf.clone()
        optimizer.step()
        for name, p in params.items():
            dropped = ~self.keep[name]
            p.copy_(torch.where(dropped, self._theta[name], p))
            buf = _momentum(optimizer, p)
            if buf is not None and saved[name] is not None:
                buf.copy_(torch.where(dropped, saved[name], buf))
        self._theta.clear()

    def _released_dropconnect(self) -> None:
        """The released per-step stash/restore (reference 4.8), before ``optimizer.step()``:
        ``R <- R(1-A) + 0.99 W A``; ``W <- W A + (100/99) R (1-A)``; new ``D`` (keep w.p. 0.99);
        ``W <- W D M``. Dropped weights take this step's update from 0 and are restored, with the
        update discarded, at the next step; nothing is rescaled."""
        keep_p = (self.dpnum - 1) / self.dpnum
        for name, p in self.params.items():
            active = self.keep[name] & self.masks[name]
            self.stash[name] = torch.where(active, p * keep_p, self.stash[name])
            p.copy_(torch.where(active, p, self.stash[name] / keep_p))
            self.keep[name] = self._draw_keep(p.shape)
            p.mul_(self.keep[name] & self.masks[name])

    def _draw_keep(self, shape: torch.Size) -> torch.Tensor:
        """Keep each entry with probability ``1 - 1/dpnum``."""
        u = torch.rand(tuple(shape), generator=self.generator, device=self.generator.device)
        return u >= 1.0 / self.dpnum

    # --- topology updates ---------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, fraction: float, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
        """Drop the ``ceil(fraction * nnz)`` smallest-magnitude active weights of each layer and grow
        as many: RigL/CigL at the largest dense-gradient magnitudes, SET at random, among the
        inactive positions (just-dropped ones included). Grown weights and their momentum start at
        0; per-layer counts are preserved exactly. Returns the swap count per layer."""
        if not self.dynamic:
            raise ValueError(f"method={self.method} has a fixed topology")
        if self._theta:  # CigL: rank and grow on theta, not on the scaled, dropped forward weights
            for name, theta in self._theta.items():
                self.params[name].copy_(theta)
            self._theta.clear()
        swaps = {}
        for name, p in self.params.items():
            mask = self.masks[name]
            n = M.swap_count(fraction, int(mask.sum()), mask.numel())
            swaps[name] = n
            if n == 0:
                continue
            kept = M.drop_magnitude(p, mask, n)
            if self.method == "set":
                self.masks[name], grown = M.grow_random(kept, n, self.generator)
            else:
                if p.grad is None:
                    raise RuntimeError(f"RigL growth needs the gradient of {name}; run backward first")
                self.masks[name], grown = M.grow_gradient(p.grad, kept, n)
            p.masked_fill_(grown, 0.0)
            buf = _momentum(optimizer, p)
            if buf is not None:
                buf.masked_fill_(grown, 0.0)
        self._refresh()
        self.apply_(optimizer)
        return swaps

    # --- measurements -----------------------------------------------------------------------------
    def density(self) -> float:
        """Measured global density of the maskable weights (active / total)."""
        active = sum(int(m.sum()) for m in self.masks.values())
        return active / sum(m.numel() for m in self.masks.values())

    def layer_densities(self) -> dict[str, float]:
        return {n: int(m.sum()) / m.numel() for n, m in self.masks.items()}

    def float_masks(self) -> dict[str, torch.Tensor]:
        return {n: m.float() for n, m in self.masks.items()}

    # --- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # CigL's keep-mask and weight copy live within one step; only the released stash persists.
        persist = self.as_released
        return {"masks": {n: m.cpu() for n, m in self.masks.items()},
                "keep": {n: m.cpu() for n, m in self.keep.items()} if persist else {},
                "stash": {n: t.cpu() for n, t in self.stash.items()} if persist else {},
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load masks into this object, checking keys and shapes strictly."""
        expected = {"masks", "keep", "stash", "generator"}
        if set(state) != expected:
            raise KeyError(f"masking state has keys {sorted(state)}, expected {sorted(expected)}")
        for group in ("masks", "keep", "stash"):
            want = set(self.params) if (group == "masks" or self.as_released) else set()
            if set(state[group]) != want:
                raise KeyError(f"masking state[{group!r}] has layers {sorted(state[group])}, "
                               f"expected {sorted(want)}")
            for name, tensor in state[group].items():
                if tuple(tensor.shape) != tuple(self.params[name].shape):
                    raise ValueError(f"masking state[{group!r}][{name!r}] has shape "
                                     f"{tuple(tensor.shape)}, expected {tuple(self.params[name].shape)}")
        device = self.generator.device
        self.masks = {n: m.to(device=device, dtype=torch.bool) for n, m in state["masks"].items()}
        if self.as_released:
            self.keep = {n: m.to(device=device, dtype=torch.bool) for n, m in state["keep"].items()}
            self.stash = {n: t.to(device) for n, t in state["stash"].items()}
        self.generator.set_state(state["generator"])
        self._refresh()
        self.apply_()


def _momentum(optimizer: torch.optim.Optimizer | None, p: torch.Tensor) -> torch.Tensor | None:
    if optimizer is None:
        return None
    return optimizer.state.get(p, {}).get("momentum_buffer")
