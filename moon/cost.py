"""Cost accounting: theoretical FLOPs of sparse training and the peak memory of a run.

Our masks are applied by value, so training runs dense kernels and the measured time does not
shrink with density; the FLOPs below are what kernels that skip inactive weights would need, in the
accounting of the RigL paper (Evci et al. 2020, appendix H): a training step costs three forward
passes (forward, gradient with respect to activations, gradient with respect to weights), and
RigL's dense gradient on update steps adds ``f_D`` every ``update_interval`` steps.
"""

from __future__ import annotations

import resource
import sys

import torch
from torch import nn

from moon.data import ID_SETS
from moon.models import model_for
from moon.sparse.masking import maskable_parameters


@torch.no_grad()
def layer_macs(model: nn.Module, image_shape: tuple[int, int, int]) -> dict[str, int]:
    """Multiply-accumulates of each convolution and linear weight for one image's forward pass."""
    names = {module: f"{name}.weight" for name, module in model.named_modules()
             if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))}
    macs: dict[str, int] = {}

    def hook(module, inputs, output):
        per_output = module.weight[0].numel()             # c_in/groups * kernel, or n_in
        spatial = output[0].numel() // module.weight.shape[0]
        macs[names[module]] = per_output * module.weight.shape[0] * spatial

    handles = [m.register_forward_hook(hook) for m in names]
    model.eval()(torch.zeros(1, *image_shape, device=next(model.parameters()).device))
    for h in handles:
        h.remove()
    return macs


def forward_flops(macs: dict[str, int], densities: dict[str, float] | None = None) -> float:
    """FLOPs (2 per multiply-accumulate) of a forward pass with per-layer ``densities``."""
    densities = densities or {}
    return 2.0 * sum(m * densities.get(name, 1.0) for name, m in macs.items())


def training_flops_per_image(cfg, densities: dict[str, float] | None = None,
                             update_interval: int | None = None) -> dict[str, float]:
    """``{"forward_dense", "forward_sparse", "train_step"}`` FLOPs per image for ``cfg``'s model.

    Dense, static and SET: ``3 f_S``; RigL and CigL: ``(3 f_S dT + 2 f_S + f_D) / (dT + 1)``
    (RigL paper's accounting; dT = ``update_interval``, the run's own when ``cfg`` leaves it to the
    steps per epoch), ignoring the short update window's end.
    """
    spec = ID_SETS[cfg.dataset]
    model = model_for(cfg)
    macs = layer_macs(model, (spec.channels, spec.size, spec.size))
    if densities is None and cfg.method != "dense":
        from moon.sparse.masks import erk_densities, uniform_densities

        shapes = {n: tuple(p.shape) for n, p in maskable_parameters(model).items()}
        init = erk_densities if cfg.sparse_init == "erk" else uniform_densities
        densities = init(shapes, cfg.density)
    f_d, f_s = forward_flops(macs), forward_flops(macs, densities)
    if cfg.method in ("rigl", "cigl"):
        dt = update_interval or cfg.update_interval
        if dt is None:
            raise ValueError("update_interval is left to the steps per epoch: pass the run's")
        step = (3 * f_s * dt + 2 * f_s + f_d) / (dt + 1)
    else:
        step = 3 * f_s
    return {"forward_dense": f_d, "forward_sparse": f_s, "train_step": step}


def peak_memory(device: torch.device) -> dict[str, float | str]:
    """Peak memory of the run so far: CUDA's peak allocation on a GPU, else the process's peak
    resident set size (which covers everything the process did, so it describes one run only when
    the run has its process to itself, as sweep cells with workers do)."""
    if device.type == "cuda":
        return {"peak_memory_bytes": float(torch.cuda.max_memory_allocated(device)),
                "peak_memory_kind": "cuda_max_allocated"}
    scale = 1 if sys.platform == "darwin" else 1024   # ru_maxrss is KiB on Linux, bytes on macOS
    return {"peak_memory_bytes": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale),
            "peak_memory_kind": "process_max_rss"}
