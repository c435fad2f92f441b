"""Every score and detector a run can use, declared once: :data:`DETECTORS` (name -> spec).

A spec says how to build the detector, whether it is fitted on ID training outputs, whether it
needs the K+1 head, which of its options come from which :class:`moon.config.RunConfig` field, which
are fitted by the evaluation itself (``msp_ts``: the validation temperature), and its paper.
``moon.config`` (the allowed and default names), ``moon.evaluate`` (options, what is produced) and
the benchmark read their lists from here; ``tests/test_registry.py`` fails when a list disagrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from torch import Tensor, nn

from moon.ood import scores
from moon.ood.detectors import (DICE, KNN, ODIN, Detector, LogitScore, Mahalanobis, ReAct,
                                TemperatureMSP)
from moon.ood.feature_detectors import ASH, FDBD, RMDS, SCALE, ViM


@dataclass(frozen=True)
class DetectorSpec:
    """How to build one detector. ``score`` (a logits function) makes it a :class:`LogitScore`;
    otherwise ``cls`` is built on the model's head. ``options`` maps a constructor keyword to the
    RunConfig field that sets it; ``fitted`` names keywords the evaluation computes and passes."""

    paper: str
    label: str = ""                     # its name on a page (moon.report.frame.DETECTOR_NAMES)
    cls: type[Detector] = LogitScore
    score: Callable[[Tensor, int], Tensor] | None = None
    needs_unknown_class: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    fitted: tuple[str, ...] = ()

    @property
    def needs_fit(self) -> bool:
        return self.cls.needs_fit

    @property
    def needs_inputs(self) -> bool:
        return self.cls.needs_inputs

    def build(self, name: str, model: nn.Module, num_known: int, **options: Any) -> Detector:
        if self.score is not None:
            return LogitScore(model.head, num_known, self.score, name)
        if self.needs_inputs:
            return self.cls(model.head, num_known, model=model, **options)
        return self.cls(model.head, num_known, **options)


_SPECS = {
    # --- from the logits alone ------------------------------------------------------------------
    "msp": DetectorSpec("Hendrycks & Gimpel 2017; over K of the (K+1)-way softmax as the released "
                        "MOON code (reference moon-released-code.md 5.1)",
                        label="MSP", score=scores.msp),
    "msp_renorm": DetectorSpec("Hendrycks & Gimpel 2017, softmax over the K known logits",
                               label="MSP over K",
                               score=scores.msp_renorm),
    "msp_ts": DetectorSpec("Guo et al. 2017 (temperature scaling) + MSP",
                           label="MSP, temperature-scaled", cls=TemperatureMSP,
                           fitted=("temperature",)),
    "max_logit": DetectorSpec("Hendrycks et al. 2022, scaling OOD detection",
                              label="max logit", score=scores.max_logit),
    "energy": DetectorSpec("Liu et al. 2020, energy-based OOD detection",
                           label="energy", score=scores.energy),
    "entropy": DetectorSpec("negative softmax entropy (e.g. Chan et al. 2021)",
                            label="entropy", score=scores.entropy),
    "gen": DetectorSpec("Liu et al. 2023, GEN (CVPR)", label="GEN", score=scores.gen),
    "unknown": DetectorSpec("1 - p(unknown) of the K+1 head (MOON)",
                            label="unknown class", score=scores.unknown,
                            needs_unknown_class=True),
    # --- the head's weights and ID training statistics -----------------------------------------------
    "dice": DetectorSpec("Sun & Li 2022, DICE (ECCV; reference cigl-and-dice.md Part B)",
                         label="DICE", cls=DICE,
                         options={"p": "dice_p"}),
    "react": DetectorSpec("Sun et al. 2021, ReAct (NeurIPS)",
                          label="ReAct", cls=ReAct, options={"p": "react_p"}),
    "ash": DetectorSpec("Djurisic et al. 2023, ASH (ICLR), ASH-S",
                        label="ASH-S", cls=ASH, options={"p": "ash_p"}),
    "scale": DetectorSpec("Xu et al. 2024, SCALE (ICLR)",
                          label="SCALE", cls=SCALE, options={"p": "scale_p"}),
    "odin": DetectorSpec("Liang et al. 2018, ODIN (ICLR)", label="ODIN", cls=ODIN),
    # --- feature-space ------------------------------------------------------------------------------
    "mahalanobis": DetectorSpec("Lee et al. 2018, Mahalanobis (NeurIPS), no input pre-processing",
                                label="Mahalanobis",
                                cls=Mahalanobis),
    "rmds": DetectorSpec("Ren et al. 2021, relative Mahalanobis distance", label="RMDS", cls=RMDS),
    "knn": DetectorSpec("Sun et al. 2022, deep nearest neighbours (ICML)", label="KNN", cls=KNN,
                        options={"k": "knn_k"}),
    "vim": DetectorSpec("Wang et al. 2022, ViM (CVPR)", label="ViM", cls=ViM),
    "fdbd": DetectorSpec("Liu & Qin 2024, fDBD (ICML)", label="fDBD", cls=FDBD),
}
DETECTORS: Mapping[str, DetectorSpec] = MappingProxyType(_SPECS)


def make_detector(name: str, model: nn.Module, num_known: int, **options: Any) -> Detector:
    """The detector ``name`` for ``model`` (its ``head`` gives the weights; ODIN also needs the
    model itself). ``options`` are the spec's constructor keywords (see :func:`options_for`)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    return DETECTORS[name].build(name, model, num_known, **options)


def options_for(name: str, cfg: Any, **fitted: Any) -> dict[str, Any]:
    """The constructor keywords of detector ``name``: its RunConfig fields read from ``cfg``, and
    the ``fitted`` values it declares (e.g. ``temperature=...`` for ``msp_ts``)."""
    spec = DETECTORS[name]
    out = {option: getattr(cfg, field_name) for option, field_name in spec.options.items()}
    out.update({key: fitted[key] for key in spec.fitted if key in fitted})
    return out
