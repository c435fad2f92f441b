"""The unknown-aware (K+1) loss of MOON and its auto-tuned weight alpha.

Reference: ``reference/moon-released-code.md`` sections 1.3-1.4 (the loss), 2 (the auto-tuning)
and 8.1 items 2-3 (what a re-implementation must get right).

The head has K+1 outputs; the last is "unknown" and is never a target. For a batch of B samples with
logits ``z_i`` and labels ``y_i`` (all in float32, whatever autocast produced)::

    p_i = softmax(z_i)                    over all K+1 outputs
    h_i = -log p_{i, y_i}                 (K+1)-way cross-entropy (log_softmax + nll)
    u_i = p_{i, K}                        unknown-class probability (clamped at 1 - 1e-7
                                          after warm-up; an inert safeguard)
    correct_i = [argmax_j z_ij == y_i]    over ALL K+1 logits: predicting "unknown" is wrong
    w_i = 1                               if correct_i
        = 1 + alpha / (1 + alpha * u_i)   otherwise (u is NOT detached: gradient flows through w)
    loss = (1/B) * sum_i h_i * w_i

Schedule (epochs are 1-based):

* Warm-up, ``epoch <= warmup_epochs``: ``loss = mean(h)`` (plain (K+1)-way CE). Every training call
  updates an EWMA of the detached batch statistic ``a_t = mean((1 - u) * h)``: ``E <- a_t`` on the
  first call, else ``E <- mu * a_t + (1 - mu) * E`` with ``mu = 0.05``.
* Main phase: at the first main-phase call (epoch ``e0``) the EWMA takes that batch (with clamped
  u), then::

      alpha0 = E / alpha_init_factor
      delta  = (alpha_final - alpha0) / (total_epochs - e0)
      alpha(e) = alpha0 + (e - e0) * delta         for e0 <= e < total_epochs
      alpha(e) = alpha_final                        for e >= total_epochs

  so alpha moves linearly, one step per epoch, and equals ``alpha_final`` in the last epoch. It is
  computed from the epoch number, not accumulated, so resuming or skipping epochs is exact. Edge:
  if the first post-warm-up epoch is already the last one (``e0 == total_epochs``), there is no ramp
  and alpha is ``alpha_final`` at once (``alpha0`` is still recorded). ``alpha_auto=False`` (the
  "fixed alpha" ablation) uses ``alpha = alpha_final`` from the first main-phase step. After that
  the EWMA is no longer updated: the released code recomputes it every step but never reads it
  again (reference 1.5), so skipping it changes nothing but the cost.

Gradient note (reference section 1.4). For a misclassified sample, before the 1/B::

    dL/dz_unknown = u * [ w - h * alpha^2 * (1 - u) / (1 + alpha * u)^2 ]

so gradient descent raises the unknown logit only when ``h * alpha^2 (1-u) / (1+alpha u)^2 > w``;
for u ~ 0 that needs ``h > (1 + alpha) / alpha^2`` (h > 2 at alpha = 1, never at alpha = 0.01).
Correct samples always push u down. The unknown class therefore only takes mass late in training,
from confidently wrong samples.

Warm-up length: the paper uses 5 of 100 epochs. Short runs scale it: ``RunConfig.warmup`` is
``warmup_epochs`` when set, else 5% of the epochs, at least 1 (see ``moon/config.py``). A warm-up as
long as the run means plain CE throughout (alpha stays None).

With ``unknown_class=False`` the loss is plain cross-entropy over the K outputs and nothing else.

Speed: a training call never waits for the device. The EWMA lives on the batch's device (read as a
float only at alpha initialisation and in ``state_dict``). Targets are not checked per batch:
:meth:`UnknownAwareLoss.check_targets` checks a dataset's labels once (the trainer calls it).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from moon.data import ID_SETS

log = logging.getLogger(__name__)

U_CLAMP = 1.0 - 1e-7             # reference 1.3 step 1: u <- min(u, 1 - 1e-7) after warm-up
_STATE_KEYS = ("alpha", "alpha0", "ewma", "alpha_set_epoch")


class UnknownAwareLoss:
    """MOON's K+1 loss with the EWMA-initialised, linearly ramped alpha (see the module docstring).

    Call it as ``loss_fn(logits, target, epoch)`` with ``epoch`` 1-based; pass
    ``update_state=False`` for evaluation, which then uses the alpha of ``epoch`` without changing
    any state (and plain CE if no main-phase training call has set alpha0 yet).
    """

    def __init__(self, num_known: int, unknown_class: bool, warmup_epochs: int, total_epochs: int,
                 alpha_final: float = 1.0, alpha_init_factor: float = 64.0, alpha_auto: bool = True,
                 ewma_momentum: float = 0.05) -> None:
        _check_args(num_known, warmup_epochs, total_epochs, alpha_final, alpha_init_factor,
                    ewma_momentum)
        self.num_known = int(num_known)
        self.unknown_class = bool(unknown_class)
        self.warmup_epochs = int(warmup_epochs)
        self.total_epochs = int(total_epochs)
        self.alpha_final = float(alpha_final)
        self.alpha_init_factor = float(alpha_init_factor)
        self.alpha_auto = bool(alpha_auto)
        self.ewma_momentum = float(ewma_momentum)
        self.alpha: float | None = None            # None during warm-up
        self.last_unknown_sum = None               # sum of p(unknown) over the last batch (device)
        self.alpha0: float | None = None           # alpha at epoch alpha_set_epoch
        self.alpha_set_epoch: int | None = None    # e0: the first main-phase epoch
        # EWMA of mean((1 - u) * h) per training call, kept as a 0-d float32 tensor on the batch's
        # device so that training never waits for the device (read it through ``ewma``).
        self._ewma: Tensor | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> "UnknownAwareLoss":
        """Build from a :class:`moon.config.RunConfig` (K from ``moon.data.ID_SETS``)."""
        return cls(num_known=ID_SETS[cfg.dataset].num_classes, unknown_class=cfg.unknown_class,
                   warmup_epochs=cfg.warmup, total_epochs=cfg.epochs,
                   alpha_final=cfg.alpha_final, alpha_init_factor=cfg.alpha_init_factor,
                   alpha_auto=getattr(cfg, "alpha_auto", True))

    # --- the loss ---------------------------------------------------------------------------------
    def __call__(self, logits: Tensor, target: Tensor, epoch: int,
                 update_state: bool = True) -> Tensor:
        """Scalar mean loss of a batch; ``logits`` (B, K+1) or (B, K), ``target`` (B,) in [0, K)."""
        logits = logits.float()
        self._check_logits(logits)
        if not self.unknown_class:
            return F.cross_entropy(logits, target)
        log_p = F.log_softmax(logits, dim=1)
        h = F.nll_loss(log_p, target, reduction="none")            # (B,)
        u = log_p[:, -1].exp()                                     # (B,) softmax(z)[:, K]
        if update_state:        # the trainer's diagnostic, from what the loss computes anyway
            self.last_unknown_sum = u.detach().sum()
        warm = epoch <= self.warmup_epochs
        if not warm:
            u = u.clamp(max=U_CLAMP)
        if update_state and self.alpha0 is None:
            self._update_ewma(u, h)
        if warm:
            return h.mean()
        if update_state:
            self._update_alpha(epoch)
            alpha = self.alpha
        else:
            alpha = self.alpha_at(epoch)
        if alpha is None:   # evaluation in the main phase before any main-phase training call
            return h.mean()
        with torch.no_grad():
            correct = logits.argmax(dim=1) == target
        w = torch.where(correct, torch.ones_like(u), 1.0 + alpha / (1.0 + alpha * u))
        return (h * w).mean()

    def _check_logits(self, logits: Tensor) -> None:
        want = self.num_known + 1 if self.unknown_class else self.num_known
        if logits.dim() != 2 or logits.shape[1] != want:
            head = "K+1" if self.unknown_class else "K"
            raise ValueError(f"logits of shape {tuple(logits.shape)}: expected (batch, {want}) "
                             f"({head} outputs, K={self.num_known}, "
                             f"unknown_class={self.unknown_class})")

    def check_targets(self, labels: Tensor) -> None:
        """Raise ValueError unless every label is in ``[0, K)``: with the K+1 head the last output
        (index K) is "unknown" and never a target. Called once per dataset, not per batch."""
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_known):
            raise ValueError(f"labels must be in [0, {self.num_known}); found "
                             f"[{int(labels.min())}, {int(labels.max())}]: the last output "
                             f"(index {self.num_known}) is 'unknown' and is never a target")

    def _update_ewma(self, u: Tensor, h: Tensor) -> None:
        """``E <- a_t`` on the first call, else ``E <- mu a_t + (1 - mu) E``; a_t = mean((1-u) h)."""
        a_t = ((1.0 - u.detach()) * h.detach()).mean()
        if self._ewma is None:
            self._ewma = a_t
        else:
            mu = self.ewma_momentum
            self._ewma = mu * a_t + (1.0 - mu) * self._ewma.to(a_t.device)

    @property
    def ewma(self) -> float | None:
        """The EWMA of ``mean((1 - u) * h)`` as a Python float (a device sync), None before any
        training call."""
        return None if self._ewma is None else float(self._ewma)

    # --- the alpha schedule -----------------------------------------------------------------------
    @property
    def delta(self) -> float | None:
        """Per-epoch alpha step ``(alpha_final - alpha0) / (total_epochs - e0)``; None before e0."""
        if self.alpha0 is None or self.alpha_set_epoch is None:
            return None
        if self.alpha_set_epoch >= self.total_epochs:
            return 0.0
        return (self.alpha_final - self.alpha0) / (self.total_epochs - self.alpha_set_epoch)

    def alpha_at(self, epoch: int) -> float | None:
        """alpha in ``epoch``: ``alpha0 + (epoch - e0) * delta``, exactly alpha_final from the last
        epoch on (and never before e0); None while alpha is not yet initialised."""
        if self.alpha0 is None or self.alpha_set_epoch is None:
            return None
        if epoch >= self.total_epochs:
            return self.alpha_final
        return self.alpha0 + max(0, epoch - self.alpha_set_epoch) * self.delta

    def _update_alpha(self, epoch: int) -> None:
        """Initialise alpha0 at the first main-phase call, then set alpha for ``epoch``."""
        if self.alpha0 is None:
            ewma = self.ewma                       # the one sync of the schedule
            self.alpha0 = ewma / self.alpha_init_factor if self.alpha_auto else self.alpha_final
            self.alpha_set_epoch = int(epoch)
            log.info("alpha initialised at epoch %d: EWMA=%.6g, alpha0=%.6g, delta=%.6g per epoch "
                     "(auto=%s)", epoch, ewma, self.alpha0, self.delta, self.alpha_auto)
        self.alpha = self.alpha_at(epoch)

    # --- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, float | int | None]:
        """Plain Python numbers (or None), safe for ``torch.load(weights_only=True)``."""
        return {"alpha": self.alpha, "alpha0": self.alpha0, "ewma": self.ewma,
                "alpha_set_epoch": self.alpha_set_epoch}

    def load_state_dict(self, state: dict) -> None:
        """Restore the schedule state; missing or extra keys raise KeyError naming them."""
        missing = [k for k in _STATE_KEYS if k not in state]
        extra = sorted(str(k) for k in state if k not in _STATE_KEYS)
        if missing or extra:
            raise KeyError(f"UnknownAwareLoss state: missing keys {missing}, unexpected keys "
                           f"{extra} (expected exactly {list(_STATE_KEYS)})")
        self.alpha = _opt_float(state["alpha"])
        self.alpha0 = _opt_float(state["alpha0"])
        ewma = state["ewma"]
        self._ewma = None if ewma is None else torch.tensor(float(ewma), dtype=torch.float32)
        e0 = state["alpha_set_epoch"]
        self.alpha_set_epoch = None if e0 is None else int(e0)

    def __repr__(self) -> str:
        return (f"UnknownAwareLoss(K={self.num_known}, unknown_class={self.unknown_class}, "
                f"warmup={self.warmup_epochs}, epochs={self.total_epochs}, alpha={self.alpha})")


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _check_args(num_known: int, warmup_epochs: int, total_epochs: int, alpha_final: float,
                alpha_init_factor: float, ewma_momentum: float) -> None:
    if num_known < 1:
        raise ValueError(f"num_known={num_known!r} is not allowed: an integer >= 1")
    if total_epochs < 1:
        raise ValueError(f"total_epochs={total_epochs!r} is not allowed: an integer >= 1")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} is not allowed: an integer >= 0")
    if not alpha_final > 0:
        raise ValueError(f"alpha_final={alpha_final!r} is not allowed: a number > 0")
    if not alpha_init_factor > 0:
        raise ValueError(f"alpha_init_factor={alpha_init_factor!r} is not allowed: a number > 0")
    if not 0 < ewma_momentum <= 1:
        raise ValueError(f"ewma_momentum={ewma_momentum!r} is not allowed: a number in (0, 1]")
