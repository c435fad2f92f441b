"""Sparse training that runs sparse: masked linear layers trained through CSR kernels.

The masked trainer multiplies dense tensors and masks them, so a linear layer ``y = x W^T + b``
(``W`` ``[out, in]``, batch ``B``) costs ``out * in * B`` multiply-adds three times per step
whatever its density. Here a layer with ``nnz`` active weights holds them as CSR values ``v`` on
the mask's structure (rows ``r_k``, columns ``c_k``) and each product costs ``nnz * B``:

* forward:          ``y^T = W_csr @ x^T + b``                 (``torch.addmm``, sparse first operand)
* input gradient:   ``dx^T = (W^T)_csr @ dy^T``               (the same values, permuted to CSC order)
* weight gradient:  ``dv_k = sum_b dy[b, r_k] * x[b, c_k]``   (``torch.sparse.sampled_addmm``: ``dy^T x``
                    at the mask's positions only)
* bias gradient:    ``db = sum_b dy[b, :]``

SGD (Nesterov momentum, weight decay) runs on ``v`` and an ``nnz``-long momentum buffer through
``torch.optim.SGD`` with the trainer's settings and learning rate, so every active weight sees the
masked trainer's elementwise arithmetic; inactive weights there are 0 with zero momentum (reference
4.4) and have nothing to update. Only the float sums of the products differ in order.

Everything about masks stays with :class:`~moon.sparse.masking.Masking`, on the dense weight, which
is written from ``v`` (:meth:`CsrTraining.sync`) before anything reads it: averaging snapshots,
validation, checkpoints and topology updates.

* Topology updates (SET, RigL, CigL): on an update step a layer also forms the dense gradient
  ``dy^T x`` (RigL and CigL grow from it; SET needs none; the masked trainer computes it every step),
  ``v`` and its momentum go back to the dense layout, ``Masking.update`` drops and grows exactly as in
  the masked trainer, and the CSR structure is rebuilt from the new masks: same masks, same counts.
* CigL (reference A.4): ``Masking`` draws the keep-mask ``D`` of every layer (one dense draw per layer
  and step, so the random stream is the masked trainer's); a CSR layer takes ``D`` at its active
  positions, runs forward with ``s * v * D``, and undoes the step where ``D = 0``.
* Checkpoints are in the masked trainer's layout (dense weights; dense momentum, zero outside the
  mask), so a checkpoint written on either path resumes on the other.

Convolutions stay masked-dense: an im2col copy per step costs more than the sparse product saves
at these sizes (``bench/sparse_inference.py``). ``kernel="auto"`` chooses the layers that train on
CSR once, before the first step (:mod:`moon.sparse.kernel_choice`); ``kernel="csr"`` takes every
masked linear layer.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

KERNELS = ("masked", "csr", "auto")   # RunConfig.kernel: masked is the reference path
GROWS_FROM_GRADIENT = ("rigl", "cigl")


def _csr(crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
         shape: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix on prepared int32 indices (checked once, when the structure is built)."""
    with warnings.catch_warnings():   # "sparse CSR support is in beta": we test what we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)


class _CsrLinearFunction(torch.autograd.Function):
    """``y = x W^T + b`` with ``W`` given as CSR values on ``layer``'s structure (module docstring)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)   # cuSPARSE: float32
    def forward(ctx, x, values, bias, layer):
        xt = x.t()                                   # [in, B]: free after a CSR layer's output
        xt = xt if xt.is_contiguous() else xt.contiguous()
        w = layer.matrix(values)
        # y [B, out] stored feature-major, written as y^T [out, B]: not a view, so an in-place
        # ReLU on it stays cheap (a view would make autograd copy whole tensors), and the next
        # CSR layer's x^T is contiguous without a copy
        y = torch.empty_strided((x.shape[0], layer.shape[0]), (1, x.shape[0]), dtype=x.dtype,
                                device=x.device)
        if bias is None:
            torch.mm(w, xt, out=y.t())
        else:
            torch.addmm(bias.unsqueeze(1), w, xt, out=y.t())
        ctx.layer, ctx.has_bias = layer, bias is not None
        ctx.save_for_backward(x, values)
        return y

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        x, values = ctx.saved_tensors
        layer = ctx.layer
        gt = grad.t()                                                           # [out, B]
        gt = gt if gt.is_contiguous() else gt.contiguous()
        gx = gv = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.sparse.mm(layer.transposed(values), gt).t()          # [B, in]
        if ctx.needs_input_grad[1]:
            if layer.want_dense_grad:                # update step: the dense gradient, for growth
                layer.dense_grad = gt @ x            # [out, in]
                gv = layer.dense_grad.view(-1)[layer.flat]
            else:
                gv = torch.sparse.sampled_addmm(layer.matrix(values), gt, x, beta=0.0).values()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gt.sum(1)
        return gx, gv, gb, None


class CsrLinear(nn.Module):
    """Stands in for a masked ``nn.Linear`` while it trains on CSR. Its parameters are the
    linear's own objects under the same names, so ``state_dict``, the averager and ``Masking``
    see the same model; ``values`` (not a parameter) is what the CSR optimizer steps. In eval
    mode it is the plain linear layer on the (synced) dense weight."""

    def __init__(self, name: str, linear: nn.Linear, mask: torch.Tensor):
        super().__init__()
        self.name, self.shape = name, tuple(linear.weight.shape)
        self.weight, self.bias = linear.weight, linear.bias
        self.want_dense_grad = False
        self.dense_grad: torch.Tensor | None = None
        self.factor: torch.Tensor | None = None      # CigL: s * D at the active positions
        self.stale = False                           # dense weight behind the values
        self.rebuild(mask)

    @torch.no_grad()
    def rebuild(self, mask: torch.Tensor) -> None:
        """The CSR structure of ``mask`` (row-major), its transpose's (by column, then row) and
        the permutation ``perm`` with ``values_T = values[perm]``; values from the dense weight."""
        out_f, in_f = self.shape
        flat = mask.reshape(-1).nonzero().squeeze(1)                    # sorted: CSR order
        rows, cols = flat // in_f, flat % in_f
        self.flat = flat
        self.crow = _offsets(rows, out_f)
        self.cols = cols.int()
        self.perm = torch.argsort(cols * out_f + rows)
        self.tcrow, self.tcols = _offsets(cols, in_f), rows[self.perm].int()
        self.values = self.weight.detach().reshape(-1)[flat].clone().requires_grad_(True)
        self.stale = False

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        return _csr(self.crow, self.cols, values, self.shape)

    def transposed(self, values: torch.Tensor) -> torch.Tensor:
        return _csr(self.tcrow, self.tcols, values.index_select(0, self.perm),
                    (self.shape[1], self.shape[0]))

    @torch.no_grad()
    def sync(self) -> None:
        """Write the values into the dense weight (inactive entries stay exactly 0)."""
        if self.stale:
            self.weight.view(-1).index_copy_(0, self.flat, self.values.detach())
            self.stale = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self.sync()
            return F.linear(x, self.weight, self.bias)
        values = self.values if self.factor is None else self.values * self.factor
        lead = x.shape[:-1]
        y = _CsrLinearFunction.apply(x.reshape(-1, x.shape[-1]), values, self.bias, self)
        return y if len(lead) == 1 else y.reshape(*lead, self.shape[0])


def _offsets(index: torch.Tensor, n: int) -> torch.Tensor:
    """CSR row offsets (int32) of a sorted-by-row list of row indices."""
    crow = torch.zeros(n + 1, dtype=torch.int64, device=index.device)
    crow[1:] = torch.bincount(index, minlength=n).cumsum(0)
    return crow.int()


def linear_layers(model: nn.Module, masking: Any) -> dict[str, tuple[nn.Module, str, nn.Linear]]:
    """The masked ``nn.Linear`` s of ``model``: ``{weight name: (parent, attribute, linear)}``."""
    out = {}
    for parent_name, parent in model.named_modules():
        for attr, child in parent.named_children():
            name = f"{parent_name}.{attr}" if parent_name else attr
            if type(child) is nn.Linear and f"{name}.weight" in masking.params:
                out[f"{name}.weight"] = (parent, attr, child)
    return out


class CsrTraining:
    """Runs the chosen masked linear layers of a model on CSR during training (module docstring).

    The trainer calls :meth:`attach` before its first step and :meth:`detach` at the end of
    training; per step :meth:`before_forward`, then :meth:`step` or :meth:`update`."""

    def __init__(self, model: nn.Module, masking: Any, optimizer: torch.optim.Optimizer,
                 kernel: str = "csr", batch_size: int = 128):
        if kernel not in KERNELS[1:]:
            raise ValueError(f"kernel={kernel!r}: CsrTraining runs csr or auto (masked needs none)")
        if masking.as_released:
            raise ValueError("kernel=csr/auto needs as_released=false: the released DropConnect "
                             "stashes and restores dense weights every step")
        self.model, self.masking, self.optimizer = model, masking, optimizer
        self.kernel, self.batch_size = kernel, batch_size
        self.candidates = linear_layers(model, masking)
        self.plan: dict[str, str] | None = None
        self.timings: dict[str, dict[str, float]] = {}   # auto: per layer, median seconds by kind
        self.check: dict[str, Any] | None = None          # auto: the whole-model check (check_plan)
        self.layers: dict[str, CsrLinear] = {}
        self.values_optimizer: torch.optim.SGD | None = None
        self._attached = False

    @property
    def attached(self) -> bool:
        return self._attached

    @property
    def names(self) -> tuple[str, ...]:
        """The layers on CSR now (the masked trainer's ``Masking`` skips them)."""
        return tuple(self.layers)

    # --- attach / detach ----------------------------------------------------------------------------
    def attach(self) -> None:
        """Put a :class:`CsrLinear` in place of each layer of :attr:`plan` that trains on CSR, and
        move their momentum from the optimizer's dense state to the values' optimizer.
        ``kernel="csr"`` plans every candidate layer on CSR; ``kernel="auto"`` needs its plan set
        first (:func:`moon.sparse.kernel_choice.auto_plan`)."""
        if self.plan is None:
            if self.kernel == "auto":
                raise ValueError("kernel=auto: set the plan first (moon.sparse.kernel_choice."
                                 "auto_plan times the first batch)")
            self.plan = {name: "csr" for name in self.candidates}
            log.info("training kernels: %s", self.plan)
        for name, kind in self.plan.items():
            if kind == "csr":
                parent, attr, linear = self.candidates[name]
                layer = CsrLinear(name, linear, self.masking.masks[name])
                setattr(parent, attr, layer.train(linear.training))
                self.layers[name] = layer
        self._new_values_optimizer()
        self._attached = True

    def detach(self) -> None:
        """Dense weights and momentum back into the model and the optimizer; plain layers back."""
        self.sync()
        for name, (parent, attr, linear) in self.candidates.items():
            if name in self.layers:
                self._dense_momentum_to_optimizer(self.layers[name])
                setattr(parent, attr, linear)
        self.layers, self.values_optimizer, self._attached = {}, None, False

    def _new_values_optimizer(self) -> None:
        """SGD on the values with the trainer's settings; momentum gathered from the dense
        buffers (removed from the dense optimizer's state: that memory is what we save)."""
        group = self.optimizer.param_groups[0]
        kwargs = {k: group[k] for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov",
                                        "fused", "foreach") if k in group}
        values = [layer.values for layer in self.layers.values()]
        self.values_optimizer = torch.optim.SGD(values, **kwargs) if values else None
        for layer in self.layers.values():
            state = self.optimizer.state.pop(layer.weight, {})
            buf = state.get("momentum_buffer")
            if buf is not None:
                self.values_optimizer.state[layer.values]["momentum_buffer"] = \
                    buf.reshape(-1)[layer.flat].clone()

    def _momentum(self, layer: CsrLinear) -> torch.Tensor | None:
        if self.values_optimizer is None:
            return None
        return self.values_optimizer.state.get(layer.values, {}).get("momentum_buffer")

    def _dense_momentum(self, layer: CsrLinear) -> torch.Tensor | None:
        buf = self._momentum(layer)
        if buf is None:
            return None
        dense = torch.zeros_like(layer.weight)
        dense.view(-1).index_copy_(0, layer.flat, buf)
        return dense

    def _dense_momentum_to_optimizer(self, layer: CsrLinear) -> None:
        dense = self._dense_momentum(layer)
        if dense is not None:
            self.optimizer.state[layer.weight]["momentum_buffer"] = dense

    # --- per step -----------------------------------------------------------------------------------
    def before_forward(self, update_step: bool) -> None:
        """Whether this step forms dense gradients (RigL/CigL update steps), and CigL's factor
        ``s * D`` at the active positions (``Masking.before_forward`` drew ``D``)."""
        dense = update_step and self.masking.method in GROWS_FROM_GRADIENT
        cigl = self.masking.method == "cigl"
        scale = self.masking.dpnum / (self.masking.dpnum - 1)
        for name, layer in self.layers.items():
            layer.want_dense_grad, layer.dense_grad, layer.values.grad = dense, None, None
            if cigl:
                keep = self.masking.keep[name].reshape(-1)[layer.flat]
                layer.factor = keep.to(layer.values.dtype) * scale

    @torch.no_grad()
    def step(self) -> None:
        """SGD on the values at the trainer's current LR; CigL: undone where ``D = 0``."""
        if self.values_optimizer is None:
            return
        for group in self.values_optimizer.param_groups:
            group["lr"] = self.optimizer.param_groups[0]["lr"]
        saved = {}
        for name, layer in self.layers.items():
            if layer.factor is not None:
                buf = self._momentum(layer)
                saved[name] = (layer.values.clone(), None if buf is None else buf.clone())
        self.values_optimizer.step()
        self.values_optimizer.zero_grad(set_to_none=True)
        for name, layer in self.layers.items():
            layer.stale = True
            if name in saved:
                dropped = layer.factor == 0
                theta, buf = saved[name]
                layer.values.copy_(torch.where(dropped, theta, layer.values))
                if buf is not None:
                    now = self._momentum(layer)
                    now.copy_(torch.where(dropped, buf, now))
                layer.factor = None

    @torch.no_grad()
    def update(self, fraction: float) -> dict[str, int]:
        """A topology update by ``Masking.update`` on the dense layout, then the CSR structure
        and the values' momentum rebuilt from the new masks."""
        self.sync()
        for layer in self.layers.values():
            layer.weight.grad = layer.dense_grad
            self._dense_momentum_to_optimizer(layer)
        swaps = self.masking.update(fraction, self.optimizer)
        for name, layer in self.layers.items():
            layer.weight.grad, layer.dense_grad, layer.factor = None, None, None
            layer.rebuild(self.masking.masks[name])
        self._new_values_optimizer()
        return swaps

    def sync(self) -> None:
        for layer in self.layers.values():
            layer.sync()

    def optimizer_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """``optimizer.state_dict()`` in the masked trainer's layout: dense momentum for CSR
        layers' weights (zero outside the mask), under their parameter indices."""
        index = {id(p): i for i, p in enumerate(self.optimizer.param_groups[0]["params"])}
        packed = dict(state["state"])
        for layer in self.layers.values():
            dense = self._dense_momentum(layer)
            if dense is not None:
                packed[index[id(layer.weight)]] = {"momentum_buffer": dense}
        return {**state, "state": packed}
