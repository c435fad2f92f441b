"""Is a result file what a run writes? The schema check every reader of a result applies.

A result file is plain JSON that anyone can edit, and Python's JSON reader accepts ``NaN``. A
complete result is reused (``resume=true``, the sweep's skip of finished cells) and averaged into the
book, so one whose metrics are not what a run writes (design.md, section 3) must be refused where it
is read, not averaged: a NaN accuracy would vanish from a mean, a string would stop a chapter, an
AUROC of 5 would move a verdict. :func:`result_problems` lists what is wrong, in words;
:func:`check_result` raises :class:`~moon.errors.CorruptFile` naming the file.

What a complete result must hold (types, finite values, ranges): a ``config`` that RunConfig accepts;
``id`` with every contract metric (accuracy, nll, brier, ece, mce, adaptive_ece) a finite number,
fractions in [0, 1]; ``ood`` non-empty, with every OOD set the config names explicitly, each ``{detector: {auroc,
aupr_in, aupr_out, fpr95}}`` in [0, 1]; ``masks.density`` in [0, 1]; ``history`` a list of rows,
``timing`` and ``provenance`` mappings. Extra numeric keys beside the contract's (``id.temperature``)
may be null (the writer stores a non-finite value as null) but not text or lists. A failed result
carries no metrics: only its status and config are checked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from moon.errors import CorruptFile

ID_METRICS = ("accuracy", "nll", "brier", "ece", "mce", "adaptive_ece")
OOD_METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")
# Metrics that are fractions (design.md, section 3); the others are only non-negative.
FRACTIONS = {"accuracy", "ece", "mce", "adaptive_ece", *OOD_METRICS}
STATUSES = ("running", "complete", "failed")


def _number_problem(where: str, value: Any, fraction: bool) -> str | None:
    """Why ``value`` is not a metric a run writes, or None: a finite number (not a bool), in
    [0, 1] for a fraction, else at least 0."""
    allowed = "a finite number in [0, 1]" if fraction else "a finite number >= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{where} is {_shown(value)}; a run writes {allowed}"
    if not math.isfinite(value) or value < 0 or (fraction and value > 1):
        return f"{where} is {value!r}; a run writes {allowed}"
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    kind = type(value).__name__
    return f"a {kind} ({text[:40]})" if value is not None else "null"


def _id_problems(section: Any) -> list[str]:
    if not isinstance(section, Mapping) or not section:
        return [f"id is {'empty' if isinstance(section, Mapping) else _shown(section)}; a "
                f"complete run writes {', '.join(ID_METRICS)}"]
    problems = [f"id.{k} is missing" for k in ID_METRICS if k not in section]
    for key, value in section.items():
        if key in ID_METRICS:
            problem = _number_problem(f"id.{key}", value, key in FRACTIONS)
        elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                    or not math.isfinite(value)):
            problem = f"id.{key} is {_shown(value)}; a run writes a finite number or null"
        else:
            problem = None
        if problem:
            problems.append(problem)
    return problems


def _ood_problems(section: Any, sets: tuple[str, ...]) -> list[str]:
    if not isinstance(section, Mapping):
        return [f"ood is {_shown(section)}; a run writes {{set: {{detector: metrics}}}}"]
    if not section:
        return ["ood is empty; a complete run writes every OOD set's metrics"]
    problems = [f"ood.{name} is missing (the config names it)" for name in sets
                if name not in section]
    for name, detectors in section.items():
        if not isinstance(detectors, Mapping) or not detectors:
            problems.append(f"ood.{name} is {_shown(detectors) if not isinstance(detectors, Mapping) else 'empty'}; "
                            f"a run writes {{detector: {{{', '.join(OOD_METRICS)}}}}}")
            continue
        for detector, metrics in detectors.items():
            where = f"ood.{name}.{detector}"
            if not isinstance(metrics, Mapping):
                problems.append(f"{where} is {_shown(metrics)}; a run writes {', '.join(OOD_METRICS)}")
                continue
            problems += [f"{where}.{k} is missing" for k in OOD_METRICS if k not in metrics]
            problems += [p for k in OOD_METRICS if k in metrics
                         for p in [_number_problem(f"{where}.{k}", metrics[k], True)] if p]
    return problems


def _config_problems(config: Any):
    """(problems, RunConfig or None) for a stored config."""
    from moon.configure import from_params

    if not isinstance(config, Mapping):
        return [f"config is {_shown(config)}; a run writes its RunConfig fields"], None
    try:
        return [], from_params(config)
    except (ValueError, TypeError) as err:
        return [f"config: {err}"], None


def result_problems(data: Any) -> list[str]:
    """What keeps ``data`` (a result's JSON object, or a :class:`~moon.results.RunResult`) from
    being a result a run writes; empty when it is one."""
    if hasattr(data, "to_dict"):
        data = data.to_dict()
    if not isinstance(data, Mapping):
        return [f"the file holds {_shown(data)}, not a result object"]
    status = data.get("status")
    if status not in STATUSES:
        return [f"status is {_shown(status)}; a run writes one of {', '.join(STATUSES)}"]
    problems, cfg = _config_problems(data.get("config"))
    if status != "complete":
        return problems
    problems += _id_problems(data.get("id"))
    # Sets named in the config must be there; "auto" has grown over time, so older results of
    # auto hold fewer sets than today's auto names.
    named = cfg.ood_set_list if cfg is not None and cfg.ood_sets != "auto" else ()
    problems += _ood_problems(data.get("ood"), named)
    masks = data.get("masks")
    if not isinstance(masks, Mapping) or "density" not in masks:
        problems.append("masks.density is missing; a run writes the measured density")
    else:
        problems += [p for p in [_number_problem("masks.density", masks["density"], True)] if p]
    for key, kind in (("history", list), ("timing", Mapping), ("provenance", Mapping)):
        if key in data and not isinstance(data[key], kind):
            problems.append(f"{key} is {_shown(data[key])}; a run writes a "
                            f"{'list of rows' if kind is list else 'mapping'}")
    if isinstance(data.get("history"), list) and not all(isinstance(r, Mapping) for r in data["history"]):
        problems.append("history holds a row that is not a mapping")
    return problems


def check_result(data: Any, path: str | os.PathLike) -> None:
    """Raise :class:`~moon.errors.CorruptFile` naming ``path`` and what is wrong when ``data`` is
    not a result a run writes (:func:`result_problems`); the message is one line."""
    problems = result_problems(data)
    if problems:
        more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
        raise CorruptFile(f"{path} is not a result a run writes: {'; '.join(problems[:2])}{more}")
