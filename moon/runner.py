"""``moon.run(cfg)``: train, evaluate and write one ``result.json`` (design.md, section 3)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from moon.config import RunConfig
from moon.cost import peak_memory, training_flops_per_image
from moon.data import load_id
from moon.evaluate import evaluate
from moon.masking import maskable_parameters
from moon.results import (
    RESULT_FILE,
    RunResult,
    atomic_torch_save,
    load_result,
    now_iso,
    provenance,
    remove_stale_temporaries,
    save_result,
)
from moon.train import CHECKPOINT, Trainer, resolve_device

log = logging.getLogger(__name__)
MODEL_FILE = "model.pt"


def run(cfg: RunConfig, out_dir: str | Path | None = None, raise_on_failure: bool = True,
        progress: bool | None = None) -> RunResult:
    """Train and evaluate ``cfg``; write ``out_dir/result.json`` (and the evaluated ``model.pt``).

    With ``cfg.resume`` a finished result in ``out_dir`` with the same configuration is returned as
    it is, and an interrupted run continues from its last epoch checkpoint. A failure (a diverged
    loss, missing data, ...) is recorded as ``status: "failed"`` with the message, then re-raised
    unless ``raise_on_failure`` is False. ``progress``: the tqdm bar (None: on a terminal only).
    """
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        remove_stale_temporaries(out)
    if out is not None and cfg.resume:
        finished = finished_result(out, cfg)
        if finished is not None:
            return finished
    device = resolve_device(cfg.device)
    result = RunResult(config=cfg.to_dict(), provenance=provenance(str(device)))
    result.provenance["started"] = now_iso()
    try:
        _train_and_evaluate(cfg, device, out, result, progress)
        result.status = "complete"
    except Exception as err:  # recorded in the result file, then re-raised
        result.status, result.error = "failed", f"{type(err).__name__}: {err}"
        log.error("run failed: %s", result.error)
        if raise_on_failure:
            raise
    finally:
        result.provenance["finished"] = now_iso()
        if out is not None and result.status != "running":
            save_result(result, out)
    return result


def _train_and_evaluate(cfg: RunConfig, device: torch.device, out: Path | None,
                        result: RunResult, progress: bool | None) -> None:
    data = load_id(cfg.dataset)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, data, device, out, progress=progress)
    if out is not None and cfg.resume:
        trainer.resume_from(out / CHECKPOINT)
    model = trainer.fit()
    result.history = trainer.history
    result.masks = mask_summary(trainer, model)
    evaluation = evaluate(model, data, cfg, device)
    result.id, result.ood, eval_seconds = evaluation["id"], evaluation["ood"], evaluation["seconds"]
    result.extra["ood_summary"] = evaluation["ood_summary"]
    result.extra["curves"] = evaluation["curves"]
    images = cfg.epochs * len(trainer.loaders.train.labels)
    result.timing = {"train_seconds": trainer.train_seconds, "eval_seconds": eval_seconds,
                     "train_images_per_second": images / max(trainer.train_seconds, 1e-9),
                     **peak_memory(device)}
    result.extra["flops"] = training_flops_per_image(cfg, result.masks["layers"]
                                                     if trainer.masking else None)
    result.extra["alpha0"] = trainer.criterion.alpha0
    result.extra["alpha_final_epoch"] = trainer.criterion.alpha
    if out is not None:
        atomic_torch_save({"config": cfg.to_dict(), "model": model.state_dict()}, out / MODEL_FILE)


def mask_summary(trainer: Trainer, model: nn.Module) -> dict:
    """Measured densities: the masks' (``density``, ``layers``) and the evaluated model's share of
    nonzero maskable weights (``nonzero_density``, at most ``density``: grown weights start at 0)."""
    weights = maskable_parameters(model)
    nonzero = sum(int(torch.count_nonzero(w)) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    if trainer.masking is None:
        layers = {n: 1.0 for n in weights}
        density = 1.0
    else:
        layers, density = trainer.masking.layer_densities(), trainer.masking.density()
    return {"density": density, "target": trainer.cfg.density, "layers": layers,
            "nonzero_density": nonzero / total}


def finished_result(out: Path, cfg: RunConfig) -> RunResult | None:
    """A complete result of the same configuration already in ``out``, if any."""
    path = out / RESULT_FILE
    if not path.exists():
        return None
    done = load_result(path)
    same = {k: v for k, v in done.config.items() if k != "resume"} == \
        {k: v for k, v in cfg.to_dict().items() if k != "resume"}
    if done.status == "complete" and same:
        log.info("reusing the finished run in %s", out)
        return done
    return None


def load_model(out_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig]:
    """The evaluated model a run saved (``model.pt``) and its config; ``weights_only=True`` and a
    strict key/shape check, so a mismatched head can never load silently."""
    from moon.config import from_params
    from moon.models import model_for

    state = torch.load(Path(out_dir) / MODEL_FILE, map_location=device, weights_only=True)
    cfg = from_params(state["config"])
    model = model_for(cfg).to(device)
    model.load_state_dict(state["model"], strict=True)
    return model.eval(), cfg

