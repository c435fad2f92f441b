"""What a model gives for a dataset: :class:`Outputs` (logits, penultimate features, labels) and
:func:`extract`, the one forward pass that produces them.

A ground-floor module (it imports no other module of moon): the detectors fit on and score
:class:`Outputs`, the evaluation and the training loop produce them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Outputs:
    """One pass of a model over a dataset, on the CPU: logits ``[N, C]``, features ``[N, D]``."""
    logits: torch.Tensor
    features: torch.Tensor
    labels: torch.Tensor | None


@torch.inference_mode()
def extract(model: nn.Module, loader, device: torch.device | str | None = None) -> Outputs:
    """Logits and penultimate features of every batch of ``loader`` in one forward pass each."""
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    logits, feats, labels = [], [], []
    for batch in loader:
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        f = model.features(x.to(device, non_blocking=True))
        logits.append(model.head(f).float().cpu())
        feats.append(f.float().cpu())
        if y is not None:
            labels.append(y.cpu())
    return Outputs(torch.cat(logits), torch.cat(feats), torch.cat(labels) if labels else None)
