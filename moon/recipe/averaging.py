"""Weight averaging (MOON's "voting") with a BatchNorm refresh, on ``torch.optim.swa_utils``.

Reference: ``reference/moon-released-code.md`` section 3 and 8.1 item 5. Despite its name, MOON's
"voting scheme" averages *weights*, not predictions: a uniform running mean of snapshots (SWA)::

    avg <- avg + (w - avg) / (n + 1),   n <- n + 1         (exact mean of all n snapshots)

over every parameter (BN affine included; buffers are copied from the latest snapshot and BN running
statistics are recomputed at the end). This is ``AveragedModel``'s default average.

When snapshots are taken (epochs 1-based, steps 0-based, ``start_epoch = total_epochs -
average_epochs``):

* the first snapshot is the model at the END of epoch ``start_epoch`` (:meth:`on_epoch_end`).
  If ``start_epoch == 0`` (average the whole run) it is taken at the first :meth:`on_step` call of
  epoch 1, before that step's own snapshot check (i.e. after one optimizer step; a trainer may
  instead call ``on_epoch_end(model, 0)`` before training to start from the initial weights);
* default, evenly spaced: in each epoch after ``start_epoch``, after the optimizer step of
  ``step_in_epoch`` when ``(step_in_epoch + 1) % stride == 0``, ``stride = max(1, steps_per_epoch //
  snapshots_per_epoch)`` (10 per epoch, the last at the epoch end, when ``steps_per_epoch`` is a
  multiple of 10). This is what the released code evidently intended;
* ``as_released=True``, the released code's "burst": in each epoch after ``start_epoch``, the FIRST
  ``ave_num = max(1, int(steps_per_epoch / 10))`` consecutive steps (1-based ``t`` with
  ``(t - 1) // ave_num == 0``; ``//`` where ``%`` was meant, bug #4 in reference section 9), so
  ``snapshots_per_epoch`` is not used. On CIFAR (391 steps) that is 39 snapshots in a row per epoch.

Keeping the learning rate constant inside the averaging window (``lr_final`` over the last
``average_epochs`` epochs) is the trainer's and ``moon.sparse.schedules``' job, not this module's.

:meth:`finalize` recomputes BatchNorm statistics with ``update_bn`` (an exact cumulative average
over one train-mode pass of the training loader, as the reference's ``bn_update`` does) and returns
the averaged module. **The averaged model is the one that is evaluated and saved** (reference
section 3: the OOD test loads ``model_swa.ckpt``). If the topology is frozen before the window opens
(the reference stops mask updates at 70% of training, averaging starts at 80%), every snapshot
shares one mask and the average is exactly as sparse as the network; ``finalize(masks=...)`` checks
this. Snapshots cost one foreach lerp over the parameters on the model's device.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, update_bn

log = logging.getLogger(__name__)

_CONFIG_KEYS = ("total_epochs", "average_epochs", "steps_per_epoch", "snapshots_per_epoch",
                "as_released")
_STATE_KEYS = ("averaged",) + _CONFIG_KEYS


class WeightAverager:
    """Uniform running mean of snapshots of ``model`` over the last ``average_epochs`` epochs.

    Call :meth:`on_step` after every optimizer step, :meth:`on_epoch_end` after every epoch, and
    :meth:`finalize` once at the end to get the averaged, BN-refreshed module to evaluate.
    """

    def __init__(self, model: nn.Module, total_epochs: int, average_epochs: int,
                 steps_per_epoch: int, snapshots_per_epoch: int = 10,
                 as_released: bool = False) -> None:
        _check_args(total_epochs, average_epochs, steps_per_epoch, snapshots_per_epoch)
        self.total_epochs = int(total_epochs)
        self.average_epochs = int(average_epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.snapshots_per_epoch = int(snapshots_per_epoch)
        self.as_released = bool(as_released)
        self.start_epoch = self.total_epochs - self.average_epochs    # copy at the END of it
        self.stride = max(1, self.steps_per_epoch // self.snapshots_per_epoch)
        self.ave_num = max(1, int(self.steps_per_epoch / 10))         # released burst length
        self._averaged = AveragedModel(model)      # deep copy; default uniform (SWA) average
        self._started = False     # a snapshot exists (a Python mirror: no device sync to ask)

    # --- when to snapshot -------------------------------------------------------------------------
    def is_snapshot_step(self, epoch: int, step_in_epoch: int) -> bool:
        """Whether the step ``step_in_epoch`` (0-based) of ``epoch`` (1-based) is folded in."""
        if epoch <= self.start_epoch:
            return False
        if self.as_released:
            return step_in_epoch // self.ave_num == 0      # (t - 1) // ave_num == 0, t = step + 1
        return (step_in_epoch + 1) % self.stride == 0

    @property
    def snapshot_steps(self) -> tuple[int, ...]:
        """The 0-based steps snapshotted in each epoch after ``start_epoch``."""
        return tuple(s for s in range(self.steps_per_epoch)
                     if self.is_snapshot_step(self.start_epoch + 1, s))

    def wants_snapshot(self, epoch: int, step_in_epoch: int) -> bool:
        """Whether :meth:`on_step` at this step takes a snapshot (a caller can get the weights
        ready first)."""
        return ((self.start_epoch == 0 and epoch == 1 and not self._started)
                or self.is_snapshot_step(epoch, step_in_epoch))

    def on_step(self, model: nn.Module, epoch: int, step_in_epoch: int) -> bool:
        """Call after each optimizer step; returns True if a snapshot was taken."""
        took = False
        if self.start_epoch == 0 and epoch == 1 and not self._started:
            self._snapshot(model)          # the "before training" copy of start_epoch == 0
            took = True
        if self.is_snapshot_step(epoch, step_in_epoch):
            self._snapshot(model)
            took = True
        return took

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Take the initial copy at the end of epoch ``start_epoch``; nothing otherwise."""
        if epoch != self.start_epoch:
            return
        if self._started:
            log.warning("averaging: %d snapshot(s) already taken at the end of epoch %d; "
                        "not taking the initial copy again", self.n_averaged, epoch)
            return
        self._snapshot(model)
        log.info("averaging: initial copy at the end of epoch %d; averaging epochs %d-%d",
                 epoch, epoch + 1, self.total_epochs)

    def _snapshot(self, model: nn.Module) -> None:
        self._averaged.update_parameters(model)
        self._started = True

    # --- the result -------------------------------------------------------------------------------
    @property
    def n_averaged(self) -> int:
        """Number of snapshots folded into the mean so far."""
        return int(self._averaged.n_averaged)

    @property
    def averaged_model(self) -> nn.Module:
        """The running mean as a plain module (BN statistics not refreshed: see finalize)."""
        return self._averaged.module

    def finalize(self, loader: Iterable[Any], device: torch.device | str | None,
                 masks: dict[str, Tensor] | None = None) -> nn.Module:
        """Check sparsity, refresh BN statistics over ``loader`` and return the averaged module.

        ``masks`` maps parameter names to 0/1 tensors; every averaged weight where the mask is 0
        must be exactly 0, else RuntimeError naming the layer. ``update_bn`` (cumulative average,
        train mode, one pass; ``(x, y)`` batches use ``x``) runs only if the model has BatchNorm.
        """
        if self.n_averaged == 0:
            raise RuntimeError(f"weight averaging has no snapshot: training must reach the end of "
                               f"epoch {self.start_epoch} (total_epochs={self.total_epochs}, "
                               f"average_epochs={self.average_epochs}) before finalize()")
        module = self._averaged.module
        if masks is not None:
            check_masked_zeros(module, masks)
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
            update_bn(loader, module, device=None if device is None else torch.device(device))
        log.info("averaging: final model is the mean of %d snapshots", self.n_averaged)
        return module

    # --- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The AveragedModel's state (with ``n_averaged``) and the plain schedule settings."""
        state: dict[str, Any] = {"averaged": self._averaged.state_dict()}
        state.update({k: getattr(self, k) for k in _CONFIG_KEYS})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Strict: keys must match exactly (KeyError), settings must match (ValueError), and the
        averaged tensors must match in names and shapes (torch's strict load, RuntimeError)."""
        missing = [k for k in _STATE_KEYS if k not in state]
        extra = sorted(str(k) for k in state if k not in _STATE_KEYS)
        if missing or extra:
            raise KeyError(f"WeightAverager state: missing keys {missing}, unexpected keys {extra}"
                           f" (expected exactly {list(_STATE_KEYS)})")
        changed = [f"{k}: saved {state[k]!r}, now {getattr(self, k)!r}"
                   for k in _CONFIG_KEYS if state[k] != getattr(self, k)]
        if changed:
            raise ValueError("WeightAverager state was saved with different settings: "
                             + ", ".join(changed))
        self._averaged.load_state_dict(state["averaged"], strict=True)
        self._started = self.n_averaged > 0


def check_masked_zeros(module: nn.Module, masks: dict[str, Tensor]) -> None:
    """Raise RuntimeError naming each layer whose weights are nonzero where its mask is 0."""
    params = dict(module.named_parameters())
    unknown = sorted(name for name in masks if name not in params)
    if unknown:
        raise KeyError(f"masks name parameters the averaged model does not have: {unknown}")
    bad = []
    for name, mask in masks.items():
        weight = params[name].detach()
        if mask.shape != weight.shape:
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, "
                             f"the weight has {tuple(weight.shape)}")
        leaked = int(((mask.to(weight.device) == 0) & (weight != 0)).sum())
        if leaked:
            bad.append(f"{name} ({leaked} nonzero)")
    if bad:
        raise RuntimeError("averaged model is not sparse where the masks are 0: " + ", ".join(bad)
                           + "; snapshots must share one mask (freeze the topology before the "
                           "averaging window)")


def _check_args(total_epochs: int, average_epochs: int, steps_per_epoch: int,
                snapshots_per_epoch: int) -> None:
    if total_epochs < 1:
        raise ValueError(f"total_epochs={total_epochs!r} is not allowed: an integer >= 1")
    if not 1 <= average_epochs <= total_epochs:
        raise ValueError(f"average_epochs={average_epochs!r} is not allowed: an integer in "
                         f"[1, total_epochs] = [1, {total_epochs}]")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch!r} is not allowed: an integer >= 1")
    if snapshots_per_epoch < 1:
        raise ValueError(f"snapshots_per_epoch={snapshots_per_epoch!r} is not allowed: "
                         "an integer >= 1")
