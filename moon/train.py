"""The training loop for every method (dense, static, SET, RigL, CigL, each with or without MOON).

Per iteration (reference section 4.9)::

    masking.before_forward()                    # CigL only: forward sees s * theta * D * M
    loss = criterion(model(x), y, epoch)        # the unknown-aware loss (plain CE during warm-up)
    loss.backward()                             # dense gradients
    if update step: masking.update(f(step))     # drop and grow instead of an optimizer step
    else:           masking.step(optimizer)     # step, then W *= M, momentum *= M
    scheduler.step()                            # cosine LR, constant in the averaging window
    averager.on_step(model, ...)                # snapshots inside the averaging window

A checkpoint (model, masks, optimizer, scheduler, loss state, averager, data order) is written
atomically after every epoch; ``resume`` continues from it and ends with the same metrics.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from moon.config import RunConfig, differing_fields
from moon.data import IDData
from moon.files import atomic_torch_save, load_checkpoint
from moon.loaders import make_loaders
from moon.metrics import calibration, fit_temperature
from moon.models import model_for
from moon.outputs import extract
from moon.recipe.averaging import WeightAverager
from moon.recipe.losses import UnknownAwareLoss
from moon.sparse import schedules
from moon.sparse.masking import Masking
from moon.sparse.kernel_choice import auto_plan
from moon.sparse.training import CsrTraining

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, exploded, or the model ended at chance accuracy."""


# An epoch's mean training loss this many times the first epoch's is an explosion: MOON's weights
# raise a sample's loss by at most 1 + alpha (alpha_final <= a few), so no healthy run gets near it.
LOSS_EXPLOSION = 100.0
# ... and so is one this many times log(K) (the loss of a uniform guess) in any epoch, the first
# included: a run whose loss explodes in epoch 1 has no healthy epoch to be compared with.
LOSS_CEILING = 1e3
# One-sided level of the chance test: the hits must be above a constant guess at p <= 0.001, about
# the three standard errors the normal bound used (which it could trust only from 1,000 images).
CHANCE_ALPHA = 1e-3


def check_learned(accuracy: float, num_classes: int, n: int, majority: float | None = None) -> None:
    """Raise :class:`TrainingDiverged` when ``accuracy`` on ``n`` test images is not above chance:
    a diverged run whose loss stayed finite ends there, with every AUROC near 0.5, and must not
    enter the tables as a normal run.

    Chance is the best constant guess: 1/K, or ``majority`` (the share of the commonest class among
    the evaluated labels) when that is higher. The test is the exact one-sided binomial test
    (``scipy.stats.binomtest``) of the ``round(accuracy * n)`` hits, so it holds at any ``n``; with
    very few images it cannot tell learning from luck, and the run fails rather than pass unseen."""
    from scipy.stats import binomtest

    chance = max(1.0 / num_classes, majority or 0.0)
    if n < 1 or chance >= 1.0:
        return
    hits = min(n, max(0, round(accuracy * n)))
    p = binomtest(hits, n, chance, alternative="greater").pvalue
    if p > CHANCE_ALPHA:
        raise TrainingDiverged(
            f"the model ended at chance accuracy ({100 * accuracy:.1f}% on {n} test images; a "
            f"constant guess gets {100 * chance:.1f}% with {num_classes} classes, binomial p = "
            f"{p:.2g} > {CHANCE_ALPHA:g}): the run diverged or did not learn; lower lr or check "
            f"the data")


def check_scores(ood: dict[str, dict[str, dict[str, float]]], constant: list[str],
                 detectors: list[str]) -> None:
    """Raise :class:`TrainingDiverged` when every detector gave every image the same score (so
    every AUROC is exactly 0.5): the model's outputs are constant, nothing was evaluated."""
    aurocs = [m["auroc"] for per_set in ood.values() for m in per_set.values()]
    if aurocs and set(detectors) <= set(constant) and all(a == 0.5 for a in aurocs):
        raise TrainingDiverged(
            f"every detector gave every image the same score (AUROC 0.500 on all {len(ood)} OOD "
            f"sets): the model's outputs are constant, so the run diverged or collapsed; lower "
            f"lr or check the data")


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum and weight decay on every parameter (reference 8.1 item 4), as
    one fused kernel per step where PyTorch has one (CPU and CUDA: about 3x faster on the CPU)."""
    kwargs = dict(lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                  weight_decay=cfg.weight_decay)
    try:
        return torch.optim.SGD(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, ValueError):
        return torch.optim.SGD(model.parameters(), **kwargs)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available here; use device=auto or cpu")
    return device


class Trainer:
    """Holds everything that changes during training and can be checkpointed."""

    def __init__(self, cfg: RunConfig, data: IDData, device: torch.device,
                 out_dir: Path | None = None, progress: bool | None = None):
        """``progress``: show the tqdm bar; None shows it on a terminal only (not in notebooks or
        logs, where every refresh would become a line of output)."""
        if progress is None:
            progress = sys.stderr.isatty()
        self.cfg, self.data, self.device, self.out_dir, self.progress = cfg, data, device, out_dir, progress
        torch.manual_seed(cfg.seed)
        self.model = model_for(cfg).to(device)
        self.loaders = make_loaders(data, cfg.batch_size, cfg.seed, device, cfg.max_train_samples,
                                    cfg.eval_batch_size, cfg.train_subset_seed)
        self.steps_per_epoch = len(self.loaders.train)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.optimizer = make_optimizer(self.model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.masking = Masking.from_config(self.model, cfg) if cfg.is_sparse else None
        # kernel=csr/auto: masked linear layers train on CSR (moon.sparse.training), attached at
        # the first step and detached after the last; kernel=masked leaves this loop as it was
        self.csr = (CsrTraining(self.model, self.masking, self.optimizer, cfg.kernel,
                                cfg.batch_size)
                    if self.masking is not None and cfg.kernel != "masked" else None)
        self.criterion = UnknownAwareLoss.from_config(cfg)
        self.criterion.check_targets(self.loaders.train.labels)
        self.averager = (WeightAverager(self.model, cfg.epochs, cfg.averaged_epochs,
                                        self.steps_per_epoch, as_released=cfg.as_released)
                         if cfg.uses_averaging else None)
        self.num_known = data.num_classes
        self.history: list[dict[str, Any]] = []
        self.epochs_done = 0
        self.train_seconds = 0.0
        self.last_drop_fraction = 0.0
        self.update_interval = cfg.update_interval or schedules.default_update_interval(
            self.steps_per_epoch)
        self.topology_updates = 0
        self._first_bad = torch.tensor(-1, device=device)

    def _lr_factor(self, step: int) -> float:
        cfg = self.cfg
        return schedules.learning_rate(step, self.steps_per_epoch, cfg.epochs, cfg.lr_hold,
                                       cfg.lr, cfg.lr_final, cfg.lr_warmup_epochs) / cfg.lr

    # --- the loop ---------------------------------------------------------------------------------
    def fit(self) -> nn.Module:
        """Train the remaining epochs; return the model to evaluate (the averaged one if any)."""
        bar = tqdm(total=self.total_steps, initial=self.epochs_done * self.steps_per_epoch,
                   disable=not self.progress, unit="step", dynamic_ncols=True)
        try:
            for epoch in range(self.epochs_done + 1, self.cfg.epochs + 1):
                self._train_epoch(epoch, bar)
        finally:
            bar.close()
            if self.csr is not None and self.csr.attached:
                self.csr.detach()          # plain layers, dense weights and momentum back
        return self.final_model()

    @property
    def kernel_plan(self) -> dict[str, str] | None:
        """Which kernel trained each masked linear layer (None: all masked, the reference)."""
        return None if self.csr is None or self.csr.plan is None else dict(self.csr.plan)

    @property
    def kernel_check(self) -> dict[str, Any] | None:
        """kernel=auto: the per-layer timings (median seconds by kind) and the whole-model check
        behind :attr:`kernel_plan` (``model`` is None when every layer chose masked on its own,
        so there was nothing to check); None for the other kernels or before the first step."""
        if self.csr is None or self.csr.kernel != "auto" or self.csr.plan is None:
            return None
        return {"layers": dict(self.csr.timings), "model": self.csr.check}

    def _train_epoch(self, epoch: int, bar: tqdm) -> None:
        start = time.perf_counter()
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        unknown_sum = torch.zeros((), device=self.device)   # sum of p(unknown), on the device
        seen = 0
        for i, (x, y) in enumerate(self.loaders.train):
            step = (epoch - 1) * self.steps_per_epoch + i
            loss, hits, unknown = self._train_step(x, y, epoch, step)
            loss_sum += loss.detach() * len(y)
            correct += hits
            if unknown is not None:
                unknown_sum += unknown
            seen += len(y)
            if self.averager is not None:
                if self.csr is not None and self.averager.wants_snapshot(epoch, i):
                    self.csr.sync()        # the snapshot reads the dense weights
                self.averager.on_step(self.model, epoch, i)
            if i % 50 == 0 or i == self.steps_per_epoch - 1:
                self._check_finite(epoch)
                bar.set_description(f"epoch {epoch}/{self.cfg.epochs}")
                bar.set_postfix(self._postfix(loss_sum / seen, correct / seen), refresh=False)
            bar.update(1)
        if self.csr is not None:
            self.csr.sync()
        if self.averager is not None:
            self.averager.on_epoch_end(self.model, epoch)
        self._end_epoch(epoch, float(loss_sum) / seen, int(correct) / seen,
                        time.perf_counter() - start,
                        float(unknown_sum) / seen if self.cfg.unknown_class else None)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int):
        csr = self._csr_layers(x, y, epoch)
        skip = csr.names if csr is not None else ()      # () leaves Masking's step as it was
        update = self.masking is not None and self.masking.dynamic and self._is_update_step(step)
        if self.masking is not None:
            self.masking.before_forward(skip=skip)
        if csr is not None:
            csr.before_forward(update)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits = self.model(x)
        loss = self.criterion(logits, y, epoch)
        self._first_bad = torch.where((self._first_bad < 0) & ~torch.isfinite(loss.detach()),
                                      step, self._first_bad)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if update:
            self.last_drop_fraction = self._drop_fraction(step)
            if csr is not None:
                csr.update(self.last_drop_fraction)
            else:
                self.masking.update(self.last_drop_fraction, self.optimizer)
            self.topology_updates += 1
        elif self.masking is not None:
            self.masking.step(self.optimizer, skip=skip)
            if csr is not None:
                csr.step()
        else:
            self.optimizer.step()
        self.scheduler.step()
        hits = (logits.detach()[:, :self.num_known].argmax(1) == y).sum()
        # MOON diagnostic: the batch's summed unknown-class probability (softmax over all K+1),
        # taken from the loss, which computes it anyway; left on the device (no host sync per step)
        unknown = self.criterion.last_unknown_sum if self.cfg.unknown_class else None
        return loss, hits, unknown

    def _csr_layers(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> CsrTraining | None:
        """The CSR layers' trainer, attached, when any layer runs on CSR (kernel=csr/auto); None
        runs the masked step (kernel=masked, or auto keeping every layer masked). kernel=auto
        times whole steps on this batch with this epoch's loss (on copies) before choosing."""
        if self.csr is None:
            return None
        if not self.csr.attached:
            if self.csr.kernel == "auto" and self.csr.plan is None:
                self.csr.plan = auto_plan(self.csr, (x, y),
                                          functools.partial(self.criterion, epoch=epoch))
            self.csr.attach()
        return self.csr if self.csr.names else None

    def _is_update_step(self, step: int) -> bool:
        cfg = self.cfg
        if cfg.as_released:
            return schedules.is_released_update_step(step, self.steps_per_epoch, cfg.epochs,
                                                     self.update_interval)
        return schedules.is_update_step(step, self.update_interval, self.total_steps, cfg.update_stop)

    def _drop_fraction(self, step: int) -> float:
        cfg = self.cfg
        if cfg.as_released:
            return schedules.released_drop_fraction(step, cfg.drop_fraction)
        return schedules.drop_fraction(step, self.total_steps, cfg.drop_fraction, cfg.update_stop)

    def _check_finite(self, epoch: int) -> None:
        """Stop on the first non-finite loss, naming its epoch and step (checked every 50 steps and
        at epoch ends, so a GPU run is not synchronised every step)."""
        bad = int(self._first_bad)
        if bad >= 0:
            bad_epoch = bad // self.steps_per_epoch + 1
            raise TrainingDiverged(
                f"non-finite loss at epoch {bad_epoch}, step {bad % self.steps_per_epoch} "
                f"(global step {bad}); lower lr (now {self.cfg.lr}) or check the data")

    def _check_explosion(self, epoch: int, train_loss: float) -> None:
        """Stop when the epoch's mean loss is not finite, exceeds :data:`LOSS_CEILING` x log(K), or
        exceeds :data:`LOSS_EXPLOSION` times the first epoch's: with a too-large lr the loss can
        stay finite (1e33) while the model is destroyed, already in epoch 1."""
        ceiling = LOSS_CEILING * math.log(max(self.num_known, 2))
        first = self.history[0]["train_loss"] if self.history else train_loss
        if not math.isfinite(train_loss):
            reason = "is not finite"
        elif train_loss > ceiling:
            reason = f"over {LOSS_CEILING:g} x log({self.num_known}) = {ceiling:.3g}"
        elif train_loss > LOSS_EXPLOSION * max(first, 1e-3):
            reason = f"over {LOSS_EXPLOSION:g}x epoch 1's {first:.3g}"
        else:
            return
        raise TrainingDiverged(f"the training loss exploded: {train_loss:.3g} in epoch {epoch}, "
                               f"{reason}; lower lr (now {self.cfg.lr})")

    def _postfix(self, loss: torch.Tensor, acc: torch.Tensor) -> dict[str, str]:
        alpha = self.criterion.alpha
        return {"loss": f"{float(loss):.3f}", "acc": f"{float(acc):.3f}",
                "density": f"{self.masking.density() if self.masking else 1.0:.3f}",
                "alpha": "-" if alpha is None else f"{alpha:.4f}"}

    def _end_epoch(self, epoch: int, train_loss: float, train_acc: float, seconds: float,
                   unknown_mass: float | None = None) -> None:
        """Checks, the validation accuracy and the epoch's history row, then the checkpoint.
        ``unknown_mass``: the mean p(unknown) on the epoch's training batches (None: no K+1 head)."""
        self._check_finite(epoch)
        self._check_explosion(epoch, train_loss)
        val = extract(self.model, self.loaders.val, self.device)
        self.train_seconds += seconds
        cal = calibration(val.logits, val.labels, num_known=self.num_known)
        self.history.append({
            "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
            "val_acc": float((val.logits[:, :self.num_known].argmax(1) == val.labels).float().mean()),
            # the regime: is the model over-confident (T > 1) on held-out data, epoch by epoch?
            "val_ece": cal.ece, "val_nll": cal.nll,
            "val_temperature": fit_temperature(val.logits, val.labels, num_known=self.num_known),
            "alpha": self.criterion.alpha, "drop_fraction": self.last_drop_fraction,
            "unknown_mass": unknown_mass,
            "density": self.masking.density() if self.masking else 1.0,
            "lr": self.optimizer.param_groups[0]["lr"], "topology_updates": self.topology_updates,
            "seconds": seconds})
        self.epochs_done = epoch
        row = self.history[-1]
        log.info("epoch %d/%d: loss %.3f, train acc %.1f%%, val acc %.1f%% (%.1f s)", epoch,
                 self.cfg.epochs, train_loss, 100 * train_acc, 100 * row["val_acc"], seconds)
        if self.out_dir is not None:
            atomic_torch_save(self.state_dict(), self.out_dir / CHECKPOINT)

    def final_model(self) -> nn.Module:
        """The averaged model with BatchNorm statistics recomputed on training data (its support
        checked against the mask), or the trained model itself."""
        if self.averager is None:
            return self.model
        masks = self.masking.float_masks() if self.masking is not None else None
        return self.averager.finalize(self.loaders.train, self.device, masks)

    # --- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """In the masked trainer's layout whatever the kernel (dense weights and momentum)."""
        optimizer = self.optimizer.state_dict()
        if self.csr is not None and self.csr.attached:
            self.csr.sync()
            optimizer = self.csr.optimizer_state(optimizer)
        return {"config": self.cfg.to_dict(), "epochs_done": self.epochs_done,
                "train_seconds": self.train_seconds, "history": self.history,
                "last_drop_fraction": self.last_drop_fraction,
                "topology_updates": self.topology_updates,
                "model": self.model.state_dict(), "optimizer": optimizer,
                "scheduler": self.scheduler.state_dict(), "loss": self.criterion.state_dict(),
                "masking": self.masking.state_dict() if self.masking else None,
                "averager": self.averager.state_dict() if self.averager else None,
                "data_order": self.loaders.train.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; keys and shapes are checked strictly."""
        _check_same_config(state["config"], self.cfg)
        if self.csr is not None and self.csr.attached:
            self.csr.detach()              # re-attached from the loaded state at the next step
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.criterion.load_state_dict(state["loss"])
        if self.masking is not None:
            self.masking.load_state_dict(state["masking"])
        if self.averager is not None:
            self.averager.load_state_dict(state["averager"])
        self.loaders.train.generator.set_state(state["data_order"])
        self.epochs_done, self.train_seconds = state["epochs_done"], state["train_seconds"]
        self.history, self.last_drop_fraction = list(state["history"]), state["last_drop_fraction"]
        self.topology_updates = state.get("topology_updates", 0)

    def resume_from(self, path: Path) -> bool:
        """Load ``path`` if it exists (``weights_only=True``); returns whether it did."""
        if not path.exists():
            return False
        self.load_state_dict(load_checkpoint(path, map_location=self.device))
        log.info("resumed %s after epoch %d of %d", path, self.epochs_done, self.cfg.epochs)
        return True


def _check_same_config(saved: dict[str, Any], cfg: RunConfig) -> None:
    """A checkpoint continues only the run that wrote it (``resume`` itself may differ)."""
    diff = differing_fields(saved, cfg.to_dict())
    if diff:
        raise ValueError(f"the checkpoint was written by a different configuration; fields that "
                         f"differ: {', '.join(diff)}")
