"""Schedules as pure functions of the global step: topology updates, drop fraction, learning rate.

Steps are 0-based optimizer iterations over the whole run (``epoch * steps_per_epoch + i``); every
iteration counts, including topology-update iterations (reference, section 4.9).
"""

from __future__ import annotations

import math


def update_stop_step(total_steps: int, stop_fraction: float) -> int:
    """The first step at which topology updates no longer happen: ``floor(stop_fraction * total)``."""
    return int(math.floor(stop_fraction * total_steps))


def is_update_step(step: int, interval: int, total_steps: int, stop_fraction: float) -> bool:
    """A drop-and-grow update happens on every ``interval``-th step before the stop step.

    The test is ``(step + 1) % interval == 0 and step < stop`` (RigL's global-step rule, reference
    section 4.5); on such a step the trainer updates the topology instead of taking an optimizer step.
    """
    return (step + 1) % interval == 0 and step < update_stop_step(total_steps, stop_fraction)


def drop_fraction(step: int, total_steps: int, initial: float, stop_fraction: float) -> float:
    """Cosine decay of the drop fraction from ``initial`` at step 0 to 0 at the stop step.

    ``f(t) = initial / 2 * (1 + cos(pi * t / T))`` with ``T = stop_fraction * total_steps``
    (reference section 4.5, "INTENDED"); 0 from ``T`` on.
    """
    stop = update_stop_step(total_steps, stop_fraction)
    if stop <= 0 or step >= stop:
        return 0.0
    return 0.5 * initial * (1.0 + math.cos(math.pi * step / stop))


def released_drop_fraction(step: int, epochs: int, initial: float, stop_fraction: float) -> float:
    """The released code's drop fraction (``as_released``; reference section 4.5 and bug 2 of 9).

    Its cosine has ``T_max = end_when``, the number of *epochs* with updates (70 of 100), but is
    stepped once per *iteration*, so it reaches ``T_max - 1`` within the first epoch and then stays
    frozen: every update uses ``initial / 2 * (1 + cos(pi * (T_max - 1) / T_max))`` (1.51e-4 for
    0.3 and 70), which makes the released "dynamic" sparse training almost static.
    """
    t_max = max(1, round(stop_fraction * epochs))
    k = min(step, t_max - 1)
    return 0.5 * initial * (1.0 + math.cos(math.pi * k / t_max))


def learning_rate(step: int, steps_per_epoch: int, epochs: int, average_epochs: int,
                  lr: float, lr_final: float, warmup_epochs: float = 0.0) -> float:
    """Cosine from ``lr`` to ``lr_final`` over the epochs before the averaging window, then constant,
    after an optional linear warm-up.

    With ``E`` epochs, ``A`` averaged epochs and ``N`` steps per epoch (reference section 3):
    ``lr(s) = lr_final + (lr - lr_final) / 2 * (1 + cos(pi * s / ((E - A) * N)))`` while
    ``s // N < E - A``, and ``lr_final`` afterwards, so the averaged snapshots share one LR.
    Without averaging (``A = 0``) the cosine spans the whole run. During the first
    ``W = warmup_epochs * N`` steps the value is multiplied by ``(s + 1) / W`` (a linear warm-up,
    as in CigL's recipe); the cosine itself is not delayed.
    """
    cosine_steps = (epochs - average_epochs) * steps_per_epoch
    if cosine_steps <= 0 or step >= cosine_steps:
        value = lr_final
    else:
        value = lr_final + 0.5 * (lr - lr_final) * (1.0 + math.cos(math.pi * step / cosine_steps))
    warmup_steps = warmup_epochs * steps_per_epoch
    return value * min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else value
