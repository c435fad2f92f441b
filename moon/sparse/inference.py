"""Inference that runs sparse: each masked layer with the faster of a CSR and a dense kernel.

Kernels, for a weight ``W`` ``[out, in]`` with ``nnz`` non-zeros and a batch of ``B``:

* linear, ``csr``: ``y^T = W_csr @ x^T + b`` (``torch.addmm`` with a sparse CSR first operand: MKL's
  sparse BLAS on the CPU, cuSPARSE on CUDA), ``nnz * B`` multiply-adds. The result is the transposed
  view of a ``[out, B]`` buffer, so the next CSR layer's ``x^T`` is contiguous without a copy;
* linear, ``dense``: ``F.linear``, ``out * in * B`` multiply-adds;
* conv2d, ``csr``: im2col (``Tensor.unfold``, a copy of ``C kh kw x B Ho Wo`` values), then the
  lowered weight ``W_csr`` ``[out, C kh kw]`` times those columns;
* conv2d, ``dense``: ``F.conv2d`` (oneDNN on the CPU).

Which is faster depends on the density, the shapes, the batch and the threads, so it is measured,
not modelled. On the first forward of each key ``(batch bucket, threads)`` (buckets: the next power
of two), every layer times both kernels on the input it actually receives (median of ``repeats``) and
keeps the faster, ties going to dense (:func:`choose`). Then the whole model is timed with that plan
and with dense kernels everywhere, in interleaved rounds, and the all-dense plan is kept unless the
mixed one is faster by more than ``margin`` (5%; :func:`settle`): layers that a kernel choice does not
time (activations and pooling on a CSR layer's transposed output) are covered, and a plan that gains
less than the noise of a busy machine is not worth the risk. So the module is never slower than the
dense model by more than the noise of that measurement.
"""

from __future__ import annotations

import functools
import statistics
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("dense", "csr")          # the order breaks ties: dense first
Timer = Callable[[Callable[[], Any], str], float]


def choose(seconds: dict[str, float]) -> str:
    """The kernel with the smallest measured time; on a tie the one listed first in ``KINDS``."""
    return min(sorted(seconds, key=KINDS.index), key=lambda k: seconds[k])


def settle(plan: dict[str, str], plan_seconds: float, dense_seconds: float,
           margin: float = 0.0) -> dict[str, str]:
    """Keep the per-layer ``plan`` only if the whole model ran faster with it than all-dense, by
    more than ``margin`` (a fraction of the dense time); otherwise every layer runs dense."""
    keep = plan_seconds < (1.0 - margin) * dense_seconds
    return dict(plan) if keep else {name: "dense" for name in plan}


def batch_bucket(batch: int) -> int:
    """The power of two at or above ``batch``: batches of similar size share one decision."""
    return 1 << max(0, int(batch) - 1).bit_length()


class MedianTimer:
    """Median seconds of one call of ``fn`` over ``repeats`` timed rounds after a warm-up call; each
    round runs ``fn`` often enough to last about ``round_seconds`` (short kernels need many)."""

    def __init__(self, repeats: int = 5, round_seconds: float = 2e-3):
        self.repeats, self.round_seconds = repeats, round_seconds

    def __call__(self, fn: Callable[[], Any], label: str = "") -> float:
        start = time.perf_counter()
        _synced(fn)
        number = max(1, int(self.round_seconds / max(time.perf_counter() - start, 1e-7)))
        rounds = []
        for _ in range(self.repeats):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            _synced(lambda: None)
            rounds.append((time.perf_counter() - start) / number)
        return statistics.median(rounds)


def _synced(fn: Callable[[], Any]) -> Any:
    out = fn()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return out


def to_csr(weight2d: torch.Tensor) -> torch.Tensor:
    """A 2-D weight as sparse CSR with int32 indices (what MKL's and cuSPARSE's kernels take)."""
    with warnings.catch_warnings():   # "sparse CSR support is in beta": we test what we use
        warnings.simplefilter("ignore", UserWarning)
        csr = weight2d.to_sparse_csr()
    return csr_tensor(csr.crow_indices(), csr.col_indices(), csr.values(), tuple(csr.shape))


def csr_tensor(crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
               shape: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix from its parts, indices widened to int32, invariants checked."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow.int(), cols.int(), values, shape,
                                       check_invariants=True)


def feature_major(x: torch.Tensor) -> torch.Tensor:
    """``x^T`` of a 2-D ``x``, contiguous: a view when ``x`` is a transposed view already (the
    output of a CSR layer), else a copy. On the CPU numpy's transposing copy is used: it took
    half the time of torch's for [64..512, 400..784] float32 here (torch 2.14)."""
    t = x.t()
    if t.is_contiguous():
        return t
    if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not x.requires_grad and x.is_contiguous()):
        return torch.from_numpy(np.ascontiguousarray(x.numpy().T))
    return t.contiguous()


class SparseLayer(nn.Module):
    """A masked weight held as CSR (``csr``, ``[out, fan_in]``) and, when a plan needs it, dense
    (``dense``, the original shape). ``kind`` says which kernel the next forward uses."""

    def __init__(self, name: str, shape: tuple[int, ...], csr: torch.Tensor | None,
                 dense: torch.Tensor | None, bias: torch.Tensor | None):
        super().__init__()
        if csr is None and dense is None:
            raise ValueError(f"{name}: a sparse layer needs its weight as CSR or dense")
        self.name, self.shape = name, tuple(shape)
        self.register_buffer("bias", bias)
        self.register_buffer("csr", csr, persistent=False)
        self.register_buffer("dense", dense, persistent=False)
        self.kinds = KINDS if csr is not None and self.csr_supported() else ("dense",)
        self.timer: Timer | None = None       # set for one forward: time the kernels, then choose
        self.seconds: dict[str, float] = {}

        self.kind = "dense"

    @property
    def kind(self) -> str:
        return self._kind

    @kind.setter
    def kind(self, kind: str) -> None:
        """Choose the kernel of the next forwards, bound once: the dense kernel is the torch
        function with its tensors attached, so a forward costs what ``nn.Linear``'s does."""
        if kind not in self.kinds:
            raise ValueError(f"{self.name}: kernel {kind!r} is not available; it has {self.kinds}")
        if kind == "dense":
            self.dense_weight()
        self._bias_col = None if self.bias is None else self.bias.unsqueeze(1)     # [out, 1]
        self._kind, self._kernel = kind, (self._csr if kind == "csr" else self._bound_dense())

    def _apply(self, fn, recurse: bool = True):
        out = super()._apply(fn, recurse)
        self.kind = self._kind              # rebind the kernel to the moved tensors
        return out

    def csr_supported(self) -> bool:
        return True

    @property
    def nnz(self) -> int:
        return int(self.csr._nnz()) if self.csr is not None else int(self.dense.count_nonzero())

    def dense_weight(self) -> torch.Tensor:
        if self.dense is None:
            self.dense = self.csr.to_dense().view(self.shape)
        return self.dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.timer is not None:
            self.seconds = {k: self.timer(lambda k=k: self.run(k, x), f"{self.name}:{k}")
                            for k in self.kinds}
            self.kind, self.timer = choose(self.seconds), None
        return self._kernel(x)

    def run(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        if kind == "csr":
            return self._csr(x)
        self.dense_weight()
        return self._bound_dense()(x)

    def _csr(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _bound_dense(self) -> Callable[[torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def _matmul(self, cols: torch.Tensor) -> torch.Tensor:
        """``W_csr @ cols + b[:, None]``: ``[out, fan_in] x [fan_in, n] -> [out, n]``."""
        if self._bias_col is None:
            return torch.sparse.mm(self.csr, cols)
        return torch.addmm(self._bias_col, self.csr, cols)


class SparseLinear(SparseLayer):
    """``nn.Linear`` with a CSR kernel: ``y = (W_csr @ x^T + b)^T``."""

    def _csr(self, x: torch.Tensor) -> torch.Tensor:
        # few ops: each costs microseconds of dispatch, which batch-1 and -64 forwards feel
        if x.dim() == 2:
            return self._matmul(feature_major(x)).t()      # x^T [in, B]: free after a CSR layer
        lead = x.shape[:-1]
        xt = feature_major(x.reshape(-1, x.shape[-1]))
        return self._matmul(xt).t().reshape(*lead, self.shape[0])

    def _bound_dense(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return functools.partial(F.linear, weight=self.dense, bias=self.bias)


class SparseConv2d(SparseLayer):
    """``nn.Conv2d`` with an im2col + CSR kernel (groups 1, dilation 1, zero padding) beside it."""

    def __init__(self, name: str, conv: nn.Conv2d, csr: torch.Tensor | None,
                 dense: torch.Tensor | None, bias: torch.Tensor | None):
        if conv.padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode={conv.padding_mode!r} is not supported "
                             f"(only zeros)")
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups, self.padding_mode = conv.dilation, conv.groups, conv.padding_mode
        super().__init__(name, tuple(conv.weight.shape), csr, dense, bias)

    def csr_supported(self) -> bool:
        return self.groups == 1 and tuple(self.dilation) == (1, 1) and not isinstance(self.padding, str)

    def _csr(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.shape[2:], self.stride, self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        patches = x.unfold(2, kh, sh).unfold(3, kw, sw)                # [B, C, Ho, Wo, kh, kw]
        b, c, ho, wo = patches.shape[:4]
        cols = patches.permute(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, b * ho * wo)
        return self._matmul(cols).view(self.shape[0], b, ho, wo).transpose(0, 1)

    def _bound_dense(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return functools.partial(F.conv2d, weight=self.dense, bias=self.bias, stride=self.stride,
                                 padding=self.padding, dilation=self.dilation, groups=self.groups)


def direct_calls(net: nn.Module) -> list[Callable[[torch.Tensor], torch.Tensor]] | None:
    """``net.body`` (an ``nn.Sequential``) and ``net.head`` as a list of plain calls: a sparse
    layer's bound kernel, ``torch.relu_`` for an in-place ReLU, ``Tensor.flatten``, ``F.max_pool2d``
    with the module's settings. Each ``nn.Module.__call__`` costs microseconds of dispatch, which a
    small model at a small batch feels (about a quarter of the MLP's sparse forward at batch 64);
    the arithmetic is the same, so the output is identical (tested). None when a module has no
    direct form (the module calls are kept)."""
    body, head = getattr(net, "body", None), getattr(net, "head", None)
    if not isinstance(body, nn.Sequential) or head is None:
        return None
    steps = [_direct_call(m) for m in (*body, head)]
    return None if any(step is None for step in steps) else steps


def _direct_call(m: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if isinstance(m, SparseLayer):
        return lambda x, m=m: m._kernel(x)         # looked up per call: a new plan rebinds it
    if type(m) is nn.ReLU:
        return torch.relu_ if m.inplace else torch.relu
    if type(m) is nn.Flatten:
        return lambda x, a=m.start_dim, b=m.end_dim: x.flatten(a, b)
    if type(m) is nn.MaxPool2d and not m.return_indices:
        return functools.partial(F.max_pool2d, kernel_size=m.kernel_size, stride=m.stride,
                                 padding=m.padding, dilation=m.dilation, ceil_mode=m.ceil_mode)
    if type(m) in (nn.Linear, nn.Conv2d, nn.Identity):
        return m.forward
    return None


class SparseModel(nn.Module):
    """A classifier whose masked layers are :class:`SparseLayer` s, with a kernel plan per key
    ``(batch bucket, threads)``: ``kernel="auto"`` measures it on first use (module docstring);
    ``"csr"`` or ``"dense"`` forces one kernel wherever a layer has it (for tests and benchmarks).

    ``choices`` is ``{(batch bucket, threads): {layer: "csr" | "dense"}}``; ``timings`` holds the
    measured seconds behind each decision.
    """

    def __init__(self, net: nn.Module, kernel: str = "auto", timer: Timer | None = None,
                 margin: float = 0.05, rounds: int = 3):
        super().__init__()
        if kernel not in ("auto", *KINDS):
            raise ValueError(f"kernel={kernel!r} is not known; choose auto, {', '.join(KINDS)}")
        self.net, self.kernel = net, kernel
        self.timer, self.margin, self.rounds = timer or MedianTimer(), margin, rounds
        self.layers = {m.name: m for m in net.modules() if isinstance(m, SparseLayer)}
        self._plans: dict[tuple[int, int], dict[str, str]] = {}
        self._timings: dict[tuple[int, int], dict[str, Any]] = {}
        self._active: tuple[int, int] | None = None

    # --- the classifier contract (moon.architectures) --------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._use(x)
        steps = self._steps()
        if steps is None:
            return self.net(x)
        for step in steps:
            x = step(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self._use(x)
        steps = self._steps()
        if steps is None:
            return self.net.features(x)
        for step in steps[:-1]:
            x = step(x)
        return x

    def _steps(self) -> list[Callable[[torch.Tensor], torch.Tensor]] | None:
        """The body's layers and the head as direct calls, built once (:func:`direct_calls`);
        None while any module has hooks, so hooks always run."""
        if not hasattr(self, "_direct"):
            self._direct = direct_calls(self.net)
        if self._direct is not None and any(m._forward_hooks or m._forward_pre_hooks
                                            for m in self.net.modules()):
            return None
        return self._direct

    @property
    def head(self) -> nn.Module:
        return self.net.head

    @property
    def num_outputs(self) -> int:
        return self.net.head.shape[0]

    # --- plans ----------------------------------------------------------------------------------
    @property
    def choices(self) -> dict[tuple[int, int], dict[str, str]]:
        return {key: dict(plan) for key, plan in self._plans.items()}

    @property
    def timings(self) -> dict[tuple[int, int], dict[str, Any]]:
        return {key: dict(t) for key, t in self._timings.items()}

    def key(self, batch: int, threads: int | None = None) -> tuple[int, int]:
        return batch_bucket(batch), threads or torch.get_num_threads()

    def _use(self, x: torch.Tensor) -> None:
        key = self.key(x.shape[0])
        if key == self._active:
            return
        plan = self._plans.get(key)
        if plan is None:
            plan = self.calibrate(x) if self.kernel == "auto" else self._forced(self.kernel)
            self._plans[key] = plan
        self._apply(plan)
        self._active = key

    def _forced(self, kind: str) -> dict[str, str]:
        return {n: (kind if kind in layer.kinds else "dense") for n, layer in self.layers.items()}

    def _apply(self, plan: dict[str, str]) -> None:
        for name, layer in self.layers.items():
            layer.kind = plan[name]
        self._active = None

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> dict[str, str]:
        """Decide (and record) the plan for ``x``'s key by timing, as the module docstring says."""
        key = self.key(x.shape[0])
        for layer in self.layers.values():
            layer.timer = self.timer
        self.net(x)                                    # each layer times its kernels, keeps one
        plan = {n: layer.kind for n, layer in self.layers.items()}
        seconds = {"plan": [], "dense": []}
        if any(kind != "dense" for kind in plan.values()):
            for _ in range(self.rounds):               # interleaved: load changes hit both
                for name, p in (("plan", plan), ("dense", self._forced("dense"))):
                    self._apply(p)
                    seconds[name].append(self.timer(lambda: self.net(x), f"model:{name}"))
        plan_s, dense_s = (statistics.median(v) if v else None for v in seconds.values())
        settled = settle(plan, plan_s, dense_s, self.margin) if plan_s is not None else plan
        self._timings[key] = {"layers": {n: dict(layer.seconds) for n, layer in self.layers.items()},
                              "model": {"plan": plan_s, "dense": dense_s}}
        self._plans[key] = settled
        self._apply(settled)
        self.release()
        return settled

    def release(self) -> None:
        """Free dense copies of weights that no recorded plan runs densely (CSR stays)."""
        for name, layer in self.layers.items():
            unused = all(p.get(name) != "dense" for p in self._plans.values())
            if layer.csr is not None and unused and layer.kind == "csr":
                layer.dense = None
