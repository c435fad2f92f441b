"""OOD detectors: ``fit(train_outputs) -> self`` on ID training data, ``score(outputs) -> Tensor``.

Every score is higher = more in-distribution. Detectors work on :class:`moon.outputs.Outputs` (logits
and penultimate features of one forward pass); ODIN alone needs the inputs again, for its gradient
step, and takes the loader as well. With a K+1 head every detector uses the K known classes only.
The detectors on penultimate features built on pytorch-ood are in :mod:`moon.ood.feature_detectors`;
every name is declared once, with its options, in :data:`moon.ood.registry.DETECTORS`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor, nn

from moon.ood import scores

if TYPE_CHECKING:   # moon.train imports moon.config, which reads the registry built from here
    from moon.outputs import Outputs


class NotFittedError(RuntimeError):
    """A detector that needs ID training data was asked to score before ``fit``."""


class Detector:
    """Base class: a name, ``fit`` (a no-op unless the detector needs training data) and ``score``."""

    name = "detector"
    needs_fit = False      # fitted on ID training outputs before scoring
    needs_inputs = False   # scores the inputs again (ODIN): built with the model, scored with a loader

    def __init__(self, head: nn.Linear, num_known: int):
        self.num_known = num_known
        self.weight = head.weight.detach().float().cpu()     # [C, D]
        self.bias = (head.bias.detach().float().cpu() if head.bias is not None
                     else torch.zeros(self.weight.shape[0]))
        self._fitted = not self.needs_fit

    def fit(self, train: Outputs) -> "Detector":
        self._fitted = True
        return self

    def score(self, outputs: Outputs, loader: Any = None) -> Tensor:
        if not self._fitted:
            raise NotFittedError(f"detector {self.name!r} must be fitted on ID training outputs "
                                 "first: call .fit(train_outputs)")
        return self._score(outputs, loader)

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        raise NotImplementedError


class LogitScore(Detector):
    """A score computed from the logits alone (see :mod:`moon.ood.scores`)."""

    def __init__(self, head: nn.Linear, num_known: int, fn: Callable[[Tensor, int], Tensor],
                 name: str):
        super().__init__(head, num_known)
        self.name, self._fn = name, fn

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        return self._fn(outputs.logits, self.num_known)


class DICE(Detector):
    """DICE (Sun & Li 2022; reference Part B): sparsify the head by contribution, then energy.

    ``V = m * W`` with ``m`` the mean ID training feature; keep ``V > tau`` where ``tau`` is the
    ``p``-th percentile (linear interpolation, one global threshold); logits ``h @ (W * M).T + b``,
    bias kept, nothing rescaled; score = logsumexp over the K known masked logits (T = 1).
    Choices for a sparse K+1 head (reference Part C), with the defaults used in this study:

    * ``rows="known"``: only the K known rows are masked and scored; the unknown row takes no
      part (C.5 b). ``rows="all"`` ranks all rows together but still scores the known ones.
    * ``over="active"``: the percentile is taken over the head's active (nonzero) weights, so ``p``
      means the same at every density (C.4 recommendation); ``over="all"`` counts zeros too, as the
      original code does on dense heads.
    * ``p = 0`` keeps every weight, which is exactly the energy score.

    After ``fit``, ``kept_fraction`` is the share of the scored rows' entries kept.
    """

    name, needs_fit = "dice", True

    def __init__(self, head: nn.Linear, num_known: int, p: float = 90.0, rows: str = "known",
                 over: str = "active"):
        super().__init__(head, num_known)
        _check_dice(p, rows, over)
        self.p, self.rows, self.over = p, rows, over
        self.mean: Tensor | None = None
        self.masked_weight: Tensor | None = None
        self.kept_fraction: float | None = None

    def fit(self, train: Outputs) -> "DICE":
        self.mean = train.features.float().mean(dim=0)
        self._mask()
        return super().fit(train)

    def at(self, p: float) -> "DICE":
        """This detector at percentile ``p``, reusing the fitted mean feature (no data pass: the
        post-hoc chapter's sweep over ``p``)."""
        if self.mean is None:
            raise NotFittedError("DICE.at(p) needs a fitted detector: call .fit(train_outputs)")
        _check_dice(p, self.rows, self.over)
        other = copy.copy(self)
        other.p = p
        other._mask()
        return other

    def _mask(self) -> None:
        ranked = self.weight if self.rows == "all" else self.weight[:self.num_known]
        contribution = self.mean[None, :] * ranked
        if self.p == 0:
            keep = torch.ones_like(ranked, dtype=torch.bool)
        else:
            pool = contribution[ranked != 0] if self.over == "active" else contribution.flatten()
            tau = torch.quantile(pool.double(), self.p / 100.0).float()
            keep = contribution > tau
        masked = (ranked * keep)[:self.num_known]
        self.masked_weight = masked
        self.kept_fraction = float((masked != 0).float().mean())

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        logits = outputs.features.float() @ self.masked_weight.T + self.bias[:self.num_known]
        return torch.logsumexp(logits, dim=1)


def _check_dice(p: float, rows: str, over: str) -> None:
    if not 0 <= p < 100 or rows not in ("known", "all") or over not in ("active", "all"):
        raise ValueError(f"DICE needs 0 <= p < 100, rows in (known, all), over in (active, all);"
                         f" got p={p}, rows={rows!r}, over={over!r}")


class TemperatureMSP(Detector):
    """MSP after temperature scaling (Guo et al. 2017): ``max_k softmax(f_k / T)`` over the K known
    logits, with ``T`` fitted on the validation split by :func:`moon.metrics.fit_temperature` (the
    evaluation passes it in; it is the ``temperature`` of the ID metrics). The same K-way softmax
    the temperature was fitted on, computed by ``pytorch_ood.detector.MaxSoftmax.score``."""

    name = "msp_ts"

    def __init__(self, head: nn.Linear, num_known: int, temperature: float | None = None):
        super().__init__(head, num_known)
        if temperature is None or not temperature > 0:
            raise ValueError(f"msp_ts needs the temperature fitted on the validation split (> 0), "
                             f"got {temperature!r}: pass temperature=fit_temperature(val logits)")
        self.temperature = float(temperature)

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        from pytorch_ood.detector import MaxSoftmax
        known = outputs.logits[:, :self.num_known].double()
        return scores.from_outlier(MaxSoftmax.score(known, t=self.temperature))


class ReAct(Detector):
    """ReAct (Sun et al. 2021): clip features at the ``p``-th percentile ``c`` of the ID training
    activations, ``h <- min(h, c)``, then energy over the K known logits."""

    name, needs_fit = "react", True

    def __init__(self, head: nn.Linear, num_known: int, p: float = 90.0):
        super().__init__(head, num_known)
        self.p, self.clip = p, None

    def fit(self, train: Outputs) -> "ReAct":
        flat = train.features.float().flatten()
        if flat.numel() > 10_000_000:  # torch.quantile's input limit; a strided sample suffices
            flat = flat[:: flat.numel() // 10_000_000 + 1]
        self.clip = float(torch.quantile(flat, self.p / 100.0))
        return super().fit(train)

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        logits = outputs.features.float().clamp(max=self.clip) @ self.weight.T + self.bias
        return scores.energy(logits, self.num_known)


class Mahalanobis(Detector):
    """Mahalanobis distance on features (Lee et al. 2018, without input pre-processing): class
    means ``mu_c`` and one shared covariance from ID training features; score
    ``-min_c (h - mu_c)^T S^+ (h - mu_c)`` (pseudo-inverse: ReLU features can be rank deficient)."""

    name, needs_fit = "mahalanobis", True

    def fit(self, train: Outputs) -> "Mahalanobis":
        h, y = train.features.double(), train.labels
        present = [c for c in range(self.num_known) if bool((y == c).any())]
        means = torch.stack([h[y == c].mean(dim=0) for c in present])
        lookup = torch.full((self.num_known,), -1, dtype=torch.long)
        lookup[present] = torch.arange(len(present))
        self.means = means
        centred = h - means[lookup[y]]
        self.precision = torch.linalg.pinv(centred.T @ centred / len(h), hermitian=True)
        self._root = whitening(self.precision)
        self._white_means = means @ self._root
        return super().fit(train)

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        return (-self._distances(outputs.features.double()).min(dim=0).values).float()

    def _distances(self, h: Tensor) -> Tensor:
        """Squared distances ``[C_present, N]`` of float64 features ``h`` to the class means:
        ``||(h - mu) R||^2 = |hR|^2 - 2 hR.muR + |muR|^2`` with ``R R^T = S^+`` (one matmul for all
        classes instead of one ``[N, D] x [D, D]`` product per class)."""
        hw, mw = h @ self._root, self._white_means
        d = (hw * hw).sum(dim=1)[None, :] - 2.0 * mw @ hw.T + (mw * mw).sum(dim=1)[:, None]
        return d.clamp(min=0.0)


def whitening(precision: Tensor) -> Tensor:
    """``R`` with ``R R^T = precision`` for a symmetric positive semi-definite matrix (from its
    eigendecomposition; round-off negative eigenvalues count as 0)."""
    values, vectors = torch.linalg.eigh(precision)
    return vectors * values.clamp(min=0.0).sqrt()[None, :]


class KNN(Detector):
    """Deep nearest neighbours (Sun et al. 2022): L2-normalised features; score = minus the
    distance to the ``k``-th nearest ID training feature, computed in chunks with torch."""

    name, needs_fit = "knn", True

    def __init__(self, head: nn.Linear, num_known: int, k: int = 50, chunk: int = 512):
        super().__init__(head, num_known)
        self.k, self.chunk, self.bank = k, chunk, None

    def fit(self, train: Outputs) -> "KNN":
        self.bank = nn.functional.normalize(train.features.float(), dim=1)
        return super().fit(train)

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        k = min(self.k, len(self.bank))
        queries = nn.functional.normalize(outputs.features.float(), dim=1)
        sims = [torch.topk(q @ self.bank.T, k, dim=1).values[:, -1] for q in queries.split(self.chunk)]
        return -torch.sqrt((2.0 - 2.0 * torch.cat(sims)).clamp(min=0.0))


class ODIN(Detector):
    """ODIN (Liang et al. 2018): temperature-scaled MSP over the K known classes after a small input
    step that raises it: ``x' = x - eps * sign(-grad_x log max_k softmax(f(x)/T)_k)``. Needs the model
    and the inputs (``loader`` of normalised images); ``T = 1000``, ``eps = 0.0014`` by default."""

    name, needs_inputs = "odin", True

    def __init__(self, head: nn.Linear, num_known: int, model: nn.Module,
                 temperature: float = 1000.0, epsilon: float = 0.0014):
        super().__init__(head, num_known)
        self.model, self.temperature, self.epsilon = model, temperature, epsilon

    def _score(self, outputs: Outputs, loader: Any) -> Tensor:
        if loader is None:
            raise ValueError("ODIN perturbs the inputs: pass the loader the outputs came from")
        self.model.eval()
        params = list(self.model.parameters())
        wanted = [p.requires_grad for p in params]
        out = []
        try:   # only the input's gradient is needed: weight gradients would cost a third of the pass
            for p in params:
                p.requires_grad_(False)
            for batch in loader:
                x = (batch[0] if isinstance(batch, (tuple, list)) else batch).to(params[0].device)
                out.append(self._score_batch(x).cpu())
        finally:
            for p, w in zip(params, wanted):
                p.requires_grad_(w)
        return torch.cat(out)

    def _score_batch(self, x: Tensor) -> Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            logits = self.model(x)[:, :self.num_known].float() / self.temperature
            loss = -torch.log_softmax(logits, dim=1).max(dim=1).values.sum()
            (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            logits = self.model(x - self.epsilon * grad.sign())[:, :self.num_known].float()
            return torch.softmax(logits / self.temperature, dim=1).max(dim=1).values

