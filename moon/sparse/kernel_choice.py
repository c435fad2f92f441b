"""``kernel="auto"``: which masked linear layers train on CSR, decided once, before the first
step, by timing (:func:`auto_plan`).

1. per layer (:func:`choose_plan`): CSR only when a one-off timing of the layer's training step
   (forward, both gradients, optimizer step) on the run's batch size beats the masked one by more
   than ``MARGIN``; ties and noise stay masked;
2. whole model (:func:`check_plan`): if any layer chose CSR, whole training steps (forward, loss,
   backward, optimizer step, as the trainer does them) are timed on the first batch with that plan
   and with every layer masked, in interleaved rounds, on copies. The plan is kept only if it beats
   all-masked by more than ``MARGIN``; otherwise every layer stays masked and the run takes the
   masked trainer's own step, bit for bit. Per-layer timings are noisy on a busy machine and miss
   what lies between layers (activations on a CSR layer's transposed output, the loss), so this
   is what keeps ``auto`` from being slower than ``masked`` beyond the noise of one measurement.
"""

from __future__ import annotations

import copy
import logging
import statistics
from typing import Any, Callable

import torch
from torch import nn

from moon.sparse.inference import MedianTimer
from moon.sparse.training import CsrLinear, CsrTraining

log = logging.getLogger(__name__)

MARGIN = 0.05                         # CSR must beat masked by this fraction of its time
MODEL_ROUNDS = 5                      # interleaved rounds of the whole-model check


def auto_plan(training: CsrTraining, batch: tuple[torch.Tensor, torch.Tensor],
              loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, str]:
    """``{layer: "csr" | "masked"}`` for ``training``'s candidate layers: :func:`choose_plan`,
    then :func:`check_plan` on whole training steps of the first ``batch`` ``(x, y)`` with the
    trainer's ``loss(logits, y)`` (on copies of both)."""
    plan = check_plan(training, choose_plan(training), batch, loss)
    log.info("training kernels: %s", plan)
    return plan


def choose_plan(training: CsrTraining, timer=None, rounds: int = 3) -> dict[str, str]:
    """Per layer: ``csr`` when its training step timed faster than the masked one by more than
    :data:`MARGIN` (medians of ``rounds`` interleaved rounds, on copies: the model is untouched)."""
    timer = timer or MedianTimer(repeats=3, round_seconds=5e-3)
    plan = {}
    # the model's input needs no gradient: the layer it reaches first forms no dx
    first = next(m for m in training.model.modules()
                 if next(m.parameters(recurse=False), None) is not None)
    for name, (_, _, linear) in training.candidates.items():
        steps = _layer_steps(linear, training.masking.masks[name], training.optimizer,
                             training.batch_size, needs_input_grad=linear is not first)
        med = _interleaved(steps, timer, rounds, name)
        training.timings[name] = med
        plan[name] = "csr" if faster(med["csr"], med["masked"]) else "masked"
    return plan


def faster(seconds: float, masked_seconds: float) -> bool:
    """Whether ``seconds`` beat the masked time by more than :data:`MARGIN` of it: gains within
    the noise of a busy machine are not worth leaving the reference path for."""
    return seconds < (1.0 - MARGIN) * masked_seconds


def _interleaved(steps: dict[str, Callable[[], Any]], timer, rounds: int,
                 label: str) -> dict[str, float]:
    """Median seconds of each step over ``rounds`` rounds that time every step once, the order
    reversed every other round: a change of the machine's load hits all of them alike."""
    seconds: dict[str, list[float]] = {kind: [] for kind in steps}
    for r in range(rounds):
        for kind in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            seconds[kind].append(timer(steps[kind], f"{label}:{kind}"))
    return {kind: statistics.median(v) for kind, v in seconds.items()}


def check_plan(training: CsrTraining, plan: dict[str, str], batch: tuple[torch.Tensor, torch.Tensor],
               loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], timer=None,
               rounds: int = MODEL_ROUNDS) -> dict[str, str]:
    """The whole-model check of ``kernel="auto"`` (module docstring): ``plan`` if whole training
    steps on ``batch`` ran faster with it than with every layer masked (:func:`faster`), else
    every layer masked. Copies of the model, masks, optimizer and loss are stepped, inside a
    forked global random stream: the run is untouched. The decision and its times go to
    ``training.check`` (the run's result reports it)."""
    if all(kind == "masked" for kind in plan.values()):
        return dict(plan)
    timer = timer or MedianTimer(repeats=3, round_seconds=5e-3)
    x, y = batch
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        steps = {"plan": _model_step(training, plan, x, y, loss),
                 "masked": _model_step(training, None, x, y, loss)}
        med = _interleaved(steps, timer, rounds, "model")
    kept = faster(med["plan"], med["masked"])
    training.check = {"plan": dict(plan), "seconds": med, "kept": kept, "margin": MARGIN,
                      "rounds": rounds}
    log.info("kernel=auto, whole training step: %.3g s with the per-layer plan, %.3g s all masked: "
             "%s", med["plan"], med["masked"], "plan kept" if kept else "all masked")
    return dict(plan) if kept else {name: "masked" for name in plan}


def _model_step(training: CsrTraining, plan: dict[str, str] | None, x: torch.Tensor,
                y: torch.Tensor, loss: Callable) -> Callable[[], None]:
    """One training step of copies of the model, masks, optimizer and loss, as the trainer takes
    it between topology updates (``Trainer._train_step``): with ``plan``'s layers on CSR, or
    (``None``) every layer masked. Topology updates are rare (every 100 steps or so) and left out."""
    model, masking, optimizer, loss = copy.deepcopy(
        (training.model, training.masking, training.optimizer, loss))
    csr = None
    if plan is not None:
        csr = CsrTraining(model, masking, optimizer, "csr", training.batch_size)
        csr.plan = dict(plan)
        csr.attach()
    skip = csr.names if csr is not None else ()
    cuda = x.device.type == "cuda"

    def step() -> None:
        masking.before_forward(skip=skip)
        if csr is not None:
            csr.before_forward(False)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(x)
        value = loss(logits, y)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        masking.step(optimizer, skip=skip)
        if csr is not None:
            csr.step()

    return step


def _layer_steps(linear: nn.Linear, mask: torch.Tensor, optimizer: torch.optim.Optimizer,
                 batch: int, needs_input_grad: bool) -> dict[str, Any]:
    """One training step of a copy of ``linear`` on a random batch, masked and on CSR."""
    gen = torch.Generator(device=mask.device).manual_seed(0)   # leaves the global RNG alone
    device, out_f, in_f = mask.device, *linear.weight.shape
    x = torch.rand(batch, in_f, generator=gen, device=device).requires_grad_(needs_input_grad)
    g = torch.rand(batch, out_f, generator=gen, device=device)
    group = optimizer.param_groups[0]
    kwargs = {k: group[k] for k in ("lr", "momentum", "weight_decay", "nesterov", "fused") if k in group}
    factor = mask.to(linear.weight.dtype)
    dense, copy = (_copy_of(linear, factor) for _ in range(2))
    dense_opt = torch.optim.SGD(dense.parameters(), **kwargs)
    layer = CsrLinear("timing", copy, mask)
    csr_opt = torch.optim.SGD([layer.values] + ([copy.bias] if copy.bias is not None else []), **kwargs)

    def masked() -> None:
        dense(x).backward(g)
        dense.weight.grad.mul_(factor)
        dense_opt.step()
        dense_opt.zero_grad(set_to_none=True)

    def csr() -> None:
        layer(x).backward(g)
        csr_opt.step()
        csr_opt.zero_grad(set_to_none=True)

    return {"masked": masked, "csr": csr}


@torch.no_grad()
def _copy_of(linear: nn.Linear, factor: torch.Tensor) -> nn.Linear:
    """A masked copy of ``linear``, made without drawing from the global random stream."""
    out_f, in_f = linear.weight.shape
    copy = nn.utils.skip_init(nn.Linear, in_f, out_f, bias=linear.bias is not None,
                              device=factor.device)
    copy.weight.copy_(linear.weight * factor)
    if linear.bias is not None:
        copy.bias.copy_(linear.bias)
    return copy
