"""Evaluation of the model a run reports: ID calibration and every detector on every OOD set.

Logits once, scores many: one forward pass per dataset (:func:`moon.outputs.extract`), then every
score, detector and metric works on those tensors. Accuracy, NLL, Brier and the calibration errors
are over the K known classes (with a K+1 head the unknown logit is left out and the K known logits
renormalised; design.md section 3). Temperature scaling fitted on the validation split gives the
reference ``ts_ece``/``ts_nll``/``ts_brier`` (and ``temperature``). Besides the metrics, compact
curve data go into the result so figures can be drawn without the model: the reliability
diagram, ROC curves on a fixed FPR grid and score histograms (``result.extra["curves"]``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_curve
from torch import nn

from moon.config import RunConfig
from moon.data import IDData
from moon.loaders import TensorLoader
from moon.metrics import (auroc, calibration, fit_temperature, ood_metrics, released_ece,
                          reliability)
from moon.ood.detectors import DICE, Detector
from moon.ood.registry import DETECTORS, make_detector, options_for
from moon.ood.sets import OOD_SETS, group_means, load_ood, ood_source
from moon.outputs import Outputs, extract

log = logging.getLogger(__name__)

FPR_GRID = np.linspace(0.0, 1.0, 101)
HIST_BINS = 40
DICE_SWEEP = (0.0, 50.0, 70.0, 90.0, 95.0, 99.0)   # DICE percentiles of the post-hoc chapter's sweep


def capped(x: torch.Tensor, y: torch.Tensor | None, limit: int):
    """The first ``limit`` items (all when ``limit`` is 0)."""
    if 0 < limit < len(x):
        return x[:limit], (None if y is None else y[:limit])
    return x, y


def _loader(x: torch.Tensor, y: torch.Tensor | None, data: IDData, cfg: RunConfig, device):
    labels = y if y is not None else torch.full((len(x),), -1, dtype=torch.long)
    return TensorLoader(x, labels, data.mean, data.std, cfg.eval_batch_size, device=device)


def detector_options(cfg: RunConfig, **fitted: Any) -> dict[str, dict[str, Any]]:
    """Constructor options of every registered detector: its RunConfig fields, and the values the
    evaluation fitted that it declares (``temperature`` for ``msp_ts``)."""
    return {name: options_for(name, cfg, **fitted) for name in DETECTORS}


def fit_subset(data: IDData, cfg: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The ID training images detectors are fitted on: a seeded random ``fit_samples`` of the
    training split (of the run's subset when ``max_train_samples`` caps it)."""
    x, y = data.train_x, data.train_y
    limit = min(v for v in (cfg.fit_samples, cfg.max_train_samples, len(y)) if v > 0)
    if limit < len(y):
        gen = torch.Generator().manual_seed(cfg.train_subset_seed)
        keep = torch.randperm(len(y), generator=gen)[:limit]
        x, y = x[keep], y[keep]
    return x, y


def fit_detectors(model: nn.Module, data: IDData, cfg: RunConfig, device,
                  temperature: float | None = None) -> dict[str, Detector]:
    """Every detector of ``cfg``, fitted on :func:`fit_subset` of the ID training split
    (``temperature``: the one fitted on the validation split, for ``msp_ts``)."""
    options = detector_options(cfg, temperature=temperature)
    detectors = {name: make_detector(name, model, data.num_classes, **options.get(name, {}))
                 for name in cfg.detector_list}
    if any(d.needs_fit for d in detectors.values()):
        train = extract(model, _loader(*fit_subset(data, cfg), data, cfg, device), device)
        for det in detectors.values():
            det.fit(train)
    return detectors


def evaluate(model: nn.Module, data: IDData, cfg: RunConfig, device: torch.device) -> dict[str, Any]:
    """``{"id", "ood", "ood_summary", "ood_sources", "constant_scores", "curves", "dice_sweep",
    "unknown_mass", "seconds"}`` for the model the run reports; ``ood_summary`` is :func:`moon.ood.sets.group_means`,
    ``ood_sources`` maps every OOD set to where its images came from
    (:func:`moon.ood.sets.ood_source`). ``dice_sweep`` is ``{set: {p: AUROC}}`` of DICE at every
    :data:`DICE_SWEEP` percentile; ``unknown_mass`` is ``{"id_test" | set: mean p(unknown)}``
    (None without the unknown class); ``constant_scores`` the detectors that gave every ID and OOD
    image the same score (a collapsed model). ``id`` adds ``ece_released`` (:func:`moon.metrics.released_ece`)
    to the ECE over the K known classes.

    The steps: the ID test and validation passes (:func:`in_distribution`), the detectors fitted
    and scoring the ID test images, every OOD set scored (:func:`score_ood_sets`), the curves."""
    start = time.perf_counter()
    log.info("evaluating %d detectors on %d OOD sets", len(cfg.detector_list),
             len(cfg.ood_set_list))
    id_pass = in_distribution(model, data, cfg, device)
    detectors = fit_detectors(model, data, cfg, device, temperature=id_pass.metrics["temperature"])
    id_scores = {name: det.score(id_pass.test, id_pass.loader) for name, det in detectors.items()}
    sets = score_ood_sets(model, data, cfg, device, detectors, id_pass, id_scores, start)
    curves = {"reliability": id_pass.reliability, **score_curves(id_scores, sets.scores)}
    id_metrics = dict(id_pass.metrics)
    if "dice" in detectors:
        id_metrics["dice_kept_fraction"] = detectors["dice"].kept_fraction
    constant = [d for d in detectors
                if _constant(id_scores[d], *(sets.scores[s][d] for s in sets.metrics))]
    mass = {"id_test": unknown_mass(id_pass.test.logits, data.num_classes), **sets.unknown_mass}
    return {"id": id_metrics, "ood": sets.metrics, "ood_summary": group_means(sets.metrics),
            "ood_sources": sets.sources, "constant_scores": constant, "curves": curves,
            "dice_sweep": sets.dice_sweep,
            "unknown_mass": mass if mass["id_test"] is not None else None,
            "seconds": time.perf_counter() - start}


@dataclasses.dataclass
class IDPass:
    """The ID test images' outputs (and their loader), the ID metrics (calibration over the K known
    classes, the validation-fitted ``temperature``, ``ts_*`` after scaling, ``ece_released``) and
    the reliability diagram's data."""
    test: Outputs
    loader: TensorLoader
    metrics: dict[str, float]
    reliability: dict[str, Any]


def in_distribution(model: nn.Module, data: IDData, cfg: RunConfig, device) -> IDPass:
    """One pass over the ID test split and one over the validation split (capped at
    ``max_eval_samples``): calibration, the fitted temperature and calibration after it."""
    x, y = capped(data.test_x, data.test_y, cfg.max_eval_samples)
    loader = _loader(x, y, data, cfg, device)
    test = extract(model, loader, device)
    K = data.num_classes
    cal = calibration(test.logits, test.labels, num_known=K)
    vx, vy = capped(data.val_x, data.val_y, cfg.max_eval_samples)
    val = extract(model, _loader(vx, vy, data, cfg, device), device)
    temperature = fit_temperature(val.logits, val.labels, num_known=K)
    scaled = calibration(test.logits[:, :K] / temperature, test.labels, num_known=K)
    conf, pred = torch.softmax(test.logits[:, :K].double(), dim=1).max(dim=1)
    metrics = dataclasses.asdict(cal)
    metrics.update(temperature=temperature, ts_ece=scaled.ece, ts_nll=scaled.nll,
                   ts_brier=scaled.brier, ece_released=released_ece(test.logits, test.labels))
    return IDPass(test, loader, metrics, dataclasses.asdict(reliability(conf, pred == test.labels)))


@dataclasses.dataclass
class OODPass:
    """Every OOD set's metrics ``{set: {detector: {metric: value}}}`` and scores, where its images
    came from, DICE's percentile sweep and the unknown class's mean probability on it."""
    metrics: dict[str, dict[str, dict[str, float]]]
    scores: dict[str, dict[str, torch.Tensor]]
    sources: dict[str, str]
    dice_sweep: dict[str, dict[str, float]]
    unknown_mass: dict[str, float | None]


def score_ood_sets(model: nn.Module, data: IDData, cfg: RunConfig, device,
                   detectors: dict[str, Detector], id_pass: IDPass,
                   id_scores: dict[str, torch.Tensor], start: float) -> OODPass:
    """One pass over each OOD set of ``cfg`` (capped at ``max_eval_samples``), scored by every
    fitted detector against its ID test scores, and by DICE at every :data:`DICE_SWEEP` percentile
    (``start``: when the evaluation began, for the progress lines)."""
    sweep = dice_at_sweep(detectors.get("dice"))
    sweep_id = {p: det.score(id_pass.test) for p, det in sweep.items()}
    out = OODPass({}, {}, {}, {}, {})
    for i, name in enumerate(cfg.ood_set_list, 1):
        ox, _ = capped(load_ood(name, data, seed=cfg.seed), None, cfg.max_eval_samples)
        out.sources[name] = ood_source(name, data)
        loader = _loader(ox, None, data, cfg, device)
        outputs = extract(model, loader, device)
        scores = out.scores[name] = {d: det.score(outputs, loader) for d, det in detectors.items()}
        out.metrics[name] = {d: dataclasses.asdict(ood_metrics(id_scores[d], s))
                             for d, s in scores.items()}
        if sweep:
            out.dice_sweep[name] = {p: auroc(sweep_id[p], det.score(outputs))
                                    for p, det in sweep.items()}
        out.unknown_mass[name] = unknown_mass(outputs.logits, data.num_classes)
        log.info("OOD set %d/%d, %s: %d images scored (%.0f s)", i, len(cfg.ood_set_list), name,
                 len(ox), time.perf_counter() - start)
    return out


def _constant(*scores: torch.Tensor) -> bool:
    """Whether every value of every tensor in ``scores`` is the same."""
    values = torch.cat([s.reshape(-1) for s in scores])
    return bool(len(values) == 0 or (values == values[0]).all())


def dice_at_sweep(dice: DICE | None) -> dict[str, DICE]:
    """The fitted DICE at every percentile of :data:`DICE_SWEEP`, keyed ``"0"``, ``"50"``, ...,
    all from its one fitted mean feature (empty without DICE among the run's detectors)."""
    return {} if dice is None else {f"{p:g}": dice.at(p) for p in DICE_SWEEP}


def unknown_mass(logits: torch.Tensor, num_known: int) -> float | None:
    """Mean probability of the unknown class, the last column of the softmax over all K+1
    outputs (None for a head without the unknown class)."""
    if logits.shape[1] != num_known + 1:
        return None
    return float(torch.softmax(logits.double(), dim=1)[:, -1].mean())


def score_curves(id_scores: dict[str, torch.Tensor],
                 ood_scores: dict[str, dict[str, torch.Tensor]]) -> dict[str, Any]:
    """ROC curves (TPR on a fixed 101-point FPR grid, 4 decimals; ID positive) and 40-bin score
    histograms with edges spanning the 0.5th-99.5th percentiles of all scores of a detector (the
    curves are for drawing; the metrics are computed from the full scores)."""
    roc: dict[str, Any] = {"fpr": FPR_GRID.tolist(), "tpr": {}}
    hist: dict[str, Any] = {}
    for det, ids in id_scores.items():
        ids = ids.double().numpy()
        everything = np.concatenate([ids] + [ood_scores[s][det].double().numpy() for s in ood_scores])
        lo, hi = np.percentile(everything, [0.5, 99.5])
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, HIST_BINS + 1)
        hist[det] = {"edges": np.round(edges, 6).tolist(), "id": _counts(ids, edges)}
        for name in ood_scores:
            ood = ood_scores[name][det].double().numpy()
            hist[det][name] = _counts(ood, edges)
            y = np.r_[np.ones(len(ids)), np.zeros(len(ood))]
            fpr, tpr, _ = roc_curve(y, np.r_[ids, ood])
            roc["tpr"].setdefault(name, {})[det] = np.round(np.interp(FPR_GRID, fpr, tpr), 4).tolist()
    return {"roc": roc, "hist": hist, "ood_kind": {s: OOD_SETS[s].kind for s in ood_scores}}


def _counts(values: np.ndarray, edges: np.ndarray) -> list[int]:
    """Histogram counts, values outside the edges clipped into the first and last bins."""
    return np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0].tolist()


def outputs_for(model: nn.Module, data: IDData, cfg: RunConfig, device) -> dict[str, Outputs]:
    """Logits and features of the detectors' ID training subset (``"train"``), the ID test set
    (``"id"``) and every OOD set of ``cfg`` (by name), each capped like the run's evaluation."""
    x, y = capped(data.test_x, data.test_y, cfg.max_eval_samples)
    out = {"train": extract(model, _loader(*fit_subset(data, cfg), data, cfg, device), device),
           "id": extract(model, _loader(x, y, data, cfg, device), device)}
    for name in cfg.ood_set_list:
        ox, _ = capped(load_ood(name, data, seed=cfg.seed), None, cfg.max_eval_samples)
        out[name] = extract(model, _loader(ox, None, data, cfg, device), device)
    return out

