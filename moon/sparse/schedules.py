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


# The released code's topology schedule (reference section 4.5): an update on every 80th of 391
# iterations of an epoch, for the first 70% of the epochs, with a drop-rate cosine of T_max = 70.
RELEASED_INTERVAL, RELEASED_STEPS_PER_EPOCH = 80, 391
RELEASED_UPDATE_END = 0.7
RELEASED_T_MAX = 70


def default_update_interval(steps_per_epoch: int) -> int:
    """The released update frequency scaled to this run: ``round(N * 80 / 391)`` steps for ``N``
    steps per epoch (about 5 updates an epoch), at least 1, so no schedule gets only a handful."""
    return max(1, round(steps_per_epoch * RELEASED_INTERVAL / RELEASED_STEPS_PER_EPOCH))


def is_released_update_step(step: int, steps_per_epoch: int, epochs: int, interval: int) -> bool:
    """The released positions (``as_released``): the 1-based iteration within the epoch is a
    multiple of ``interval``, in the first ``round(0.7 * epochs)`` epochs (``(epoch - 1) <
    end_when``; reference section 4.5)."""
    epoch, i = divmod(step, steps_per_epoch)
    return (i + 1) % interval == 0 and epoch < round(RELEASED_UPDATE_END * epochs)


def released_drop_fraction(step: int, initial: float) -> float:
    """The released code's drop fraction (``as_released``; reference section 4.5 and bug 2 of 9).

    Its cosine has ``T_max = end_when = 70``, meant as epochs but stepped once per *iteration*, so
    at any run length it reaches ``T_max - 1`` within the first 70 iterations and then stays
    frozen: every later update uses ``initial / 2 * (1 + cos(69 pi / 70))`` (1.5104e-4 for 0.3),
    which makes the released "dynamic" sparse training almost static.
    """
    k = min(step, RELEASED_T_MAX - 1)
    return 0.5 * initial * (1.0 + math.cos(math.pi * k / RELEASED_T_MAX))


def learning_rate(step: int, steps_per_epoch: int, epochs: int, hold_epochs: int,
                  lr: float, lr_final: float, warmup_epochs: float = 0.0) -> float:
    """Cosine from ``lr`` to ``lr_final`` over the epochs before the last ``hold_epochs`` (the
    averaging window unless ``lr_hold_epochs`` says otherwise), then constant, after an optional
    linear warm-up.

    With ``E`` epochs, ``A`` held epochs and ``N`` steps per epoch (reference section 3):
    ``lr(s) = lr_final + (lr - lr_final) / 2 * (1 + cos(pi * s / ((E - A) * N)))`` while
    ``s // N < E - A``, and ``lr_final`` afterwards, so the averaged snapshots share one LR.
    Without averaging and without ``lr_hold_epochs`` (``A = 0``) the cosine spans the whole run. During the first
    ``W = warmup_epochs * N`` steps the value is multiplied by ``(s + 1) / W`` (a linear warm-up,
    as in CigL's recipe); the cosine itself is not delayed.
    """
    cosine_steps = (epochs - hold_epochs) * steps_per_epoch
    if cosine_steps <= 0 or step >= cosine_steps:
        value = lr_final
    else:
        value = lr_final + 0.5 * (lr - lr_final) * (1.0 + math.cos(math.pi * step / cosine_steps))
    warmup_steps = warmup_epochs * steps_per_epoch
    return value * min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else value
