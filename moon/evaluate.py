"""Evaluation of a trained model: ID calibration on the test set (and, with the detectors, OOD).

Accuracy, NLL, Brier and the calibration errors are computed over the K known classes: with a K+1
head the unknown logit is left out and the K known logits are renormalised (design.md, section 3).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from torch import nn

from moon.config import RunConfig
from moon.data import IDData
from moon.loaders import TensorLoader
from moon.metrics import calibration
from moon.train import Outputs, extract


def capped(x: torch.Tensor, y: torch.Tensor | None, limit: int):
    """The first ``limit`` items (all when ``limit`` is 0)."""
    if 0 < limit < len(x):
        return x[:limit], (None if y is None else y[:limit])
    return x, y


def test_outputs(model: nn.Module, data: IDData, cfg: RunConfig, device: torch.device) -> Outputs:
    """Logits and features of the (capped) ID test set."""
    x, y = capped(data.test_x, data.test_y, cfg.max_eval_samples)
    loader = TensorLoader(x, y, data.mean, data.std, cfg.eval_batch_size, device=device)
    return extract(model, loader, device)


def evaluate(model: nn.Module, data: IDData, cfg: RunConfig, device: torch.device
             ) -> tuple[dict[str, Any], dict[str, Any], float]:
    """``(id_metrics, ood_metrics, seconds)`` for the model that the run reports."""
    start = time.perf_counter()
    test = test_outputs(model, data, cfg, device)
    id_metrics = dataclasses.asdict(calibration(test.logits, test.labels, num_known=data.num_classes))
    return id_metrics, {}, time.perf_counter() - start
