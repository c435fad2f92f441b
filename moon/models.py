"""The model a run trains: :func:`model_for` builds the architecture of
:mod:`moon.architectures` that a :class:`~moon.config.RunConfig` names, with its head sized for the
dataset and the unknown class."""

from __future__ import annotations

from moon.architectures import Classifier, build_model
from moon.config import RunConfig
from moon.data import ID_SETS


def num_outputs(cfg: RunConfig) -> int:
    """K for the plain head, K+1 with the unknown class (for every dataset; see reference 1.1)."""
    return ID_SETS[cfg.dataset].num_classes + int(cfg.unknown_class)


def model_for(cfg: RunConfig) -> Classifier:
    """The model a run trains, initialised from the global RNG (seed it first)."""
    spec = ID_SETS[cfg.dataset]
    return build_model(cfg.model, num_outputs(cfg), spec.channels, spec.size, cfg.width)
