"""``moon.run(cfg)``: train, evaluate and write one ``result.json`` (design.md, section 3)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from torch import nn

from moon.config import RunConfig, check_knn_k, differing_fields
from moon.cost import peak_memory, training_flops_per_image
from moon.data import load_id
from moon.errors import CorruptFile, FolderInUse, LockLost
from moon.evaluate import capped, evaluate
from moon.files import atomic_torch_save, load_checkpoint, remove_stale_temporaries
from moon.locks import FolderLock, now_iso
from moon.results import FAILED_FILE, RunResult, provenance, save_result
from moon.rundir import clear_run_files, inspect_folder, refuse_other, set_aside
from moon.sparse.masking import maskable_parameters
from moon.train import CHECKPOINT, Trainer, check_learned, check_scores, resolve_device

log = logging.getLogger(__name__)
MODEL_FILE = "model.pt"


def run(cfg: RunConfig, out_dir: str | Path | None = None, raise_on_failure: bool = True,
        progress: bool | None = None) -> RunResult:
    """Train and evaluate ``cfg``; write ``out_dir/result.json`` (and the evaluated ``model.pt``).

    The folder is locked for the run's life and checked before any compute (design.md, section
    8): a complete result of *another* configuration there is never written over (the run stops
    with :class:`~moon.errors.FolderInUse` unless ``cfg.overwrite``); a second writer stops with
    :class:`~moon.errors.FolderLocked`; an unreadable ``result.json``, or one whose metrics are not
    what a run writes, stops with :class:`~moon.errors.CorruptFile` (with ``cfg.overwrite`` it is
    kept as ``result.corrupt.json`` and the run goes on). These refusals are raised whatever ``raise_on_failure``.

    With ``cfg.resume`` a finished result of the same configuration (whose model file loads) is
    returned as it is, and an interrupted run continues from its last epoch checkpoint. A failure
    of the run itself (a diverged loss, missing data, ...) is recorded as ``status: "failed"`` with
    the message, in ``result.json``, or in ``result.failed.json`` beside a complete result that is
    kept, then re-raised unless ``raise_on_failure`` is False. ``progress``: the tqdm bar (None: on
    a terminal only).
    """
    if out_dir is None:
        return _attempt(cfg, None, raise_on_failure, progress, keep_result=False)
    out = Path(out_dir)
    with FolderLock(out):
        remove_stale_temporaries(out)
        try:
            state = inspect_folder(out, cfg.to_dict(), cfg.resume)
        except CorruptFile as err:
            if not cfg.overwrite:
                raise
            set_aside(out, str(err))          # overwrite replaces it, but keeps it aside
            state = inspect_folder(out, cfg.to_dict(), cfg.resume)
        if state.kind == "reusable":
            log.info("reusing the finished run in %s", out)
            return state.result
        if state.kind == "other":
            if not cfg.overwrite:
                raise refuse_other(out, state)
            log.warning("overwrite=true: replacing %s (%s)", out, state.detail)
            clear_run_files(out)
        elif cfg.overwrite:
            clear_run_files(out)
        if state.kind == "same" and state.detail:
            log.warning("training %s again: %s", out, state.detail)
        if cfg.resume:
            _check_checkpoint(out, cfg)
        return _attempt(cfg, out, raise_on_failure, progress,
                        keep_result=state.kind == "same" and not cfg.overwrite)


def _attempt(cfg: RunConfig, out: Path | None, raise_on_failure: bool, progress: bool | None,
             keep_result: bool) -> RunResult:
    """One training-and-evaluation attempt; the result is written even when it fails, beside a
    complete result of the same configuration when ``keep_result`` (never over it)."""
    device = resolve_device(cfg.device)
    result = RunResult(config=cfg.to_dict(), provenance=provenance(str(device)))
    result.provenance["started"] = now_iso()
    try:
        _train_and_evaluate(cfg, device, out, result, progress)
        result.status = "complete"
    except LockLost:          # the folder is no longer this run's: nothing is written there
        result.status = "running"
        raise
    except Exception as err:  # recorded in the result file, then re-raised
        result.status, result.error = "failed", f"{type(err).__name__}: {err}"
        if not raise_on_failure:
            log.error("run failed: %s", result.error)
        if raise_on_failure:
            raise
    finally:
        result.provenance["finished"] = now_iso()
        if out is not None and result.status != "running":
            failed_beside = keep_result and result.status == "failed"
            save_result(result, out / FAILED_FILE if failed_beside else out)
    if out is not None and result.status == "complete":
        with contextlib.suppress(FileNotFoundError):
            (out / FAILED_FILE).unlink()
    return result


def _check_checkpoint(out: Path, cfg: RunConfig) -> None:
    """With ``resume``, a checkpoint of another configuration stops the run before any compute."""
    path = out / CHECKPOINT
    if not path.exists():
        return
    saved = load_checkpoint(path).get("config", {})
    diff = differing_fields(saved, cfg.to_dict())
    if diff:
        raise FolderInUse(f"the checkpoint {path} belongs to another configuration (fields that "
                          f"differ: {', '.join(diff)}); write this run to another folder, run "
                          f"with resume=false to start afresh, or pass overwrite=true")


def preflight(cfg: RunConfig, data) -> None:
    """Everything a run needs, checked before training: every OOD set can be built (so a missing
    download fails now, not after an hour of training) and the detectors' fit set is big enough."""
    from moon.evaluate import fit_subset
    from moon.ood.sets import load_ood

    for name in cfg.ood_set_list:
        load_ood(name, data, seed=cfg.seed, n=8)
    check_knn_k(cfg, len(fit_subset(data, cfg)[1]))


def _train_and_evaluate(cfg: RunConfig, device: torch.device, out: Path | None,
                        result: RunResult, progress: bool | None) -> None:
    result.extra["stage"] = "preflight"     # kept in a failed result: where it stopped
    data = load_id(cfg.dataset)
    preflight(cfg, data)
    result.extra["stage"] = "training"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, data, device, out, progress=progress)
    if out is not None and cfg.resume:
        trainer.resume_from(out / CHECKPOINT)
    model = trainer.fit()
    result.extra["stage"] = "evaluation"
    result.history = trainer.history
    result.masks = mask_summary(trainer, model)
    evaluation = evaluate(model, data, cfg, device)
    result.id, result.ood, eval_seconds = evaluation["id"], evaluation["ood"], evaluation["seconds"]
    result.extra["ood_summary"] = evaluation["ood_summary"]
    result.extra["ood_sources"] = evaluation["ood_sources"]
    result.extra["curves"] = evaluation["curves"]
    result.extra["dice_sweep"] = evaluation["dice_sweep"]
    result.extra["unknown_mass"] = evaluation["unknown_mass"]
    images = cfg.epochs * len(trainer.loaders.train.labels)
    result.timing = {"train_seconds": trainer.train_seconds, "eval_seconds": eval_seconds,
                     "train_images_per_second": images / max(trainer.train_seconds, 1e-9),
                     **peak_memory(device)}
    result.extra["flops"] = training_flops_per_image(
        cfg, result.masks["layers"] if trainer.masking else None, trainer.update_interval)
    result.extra["update_interval"] = trainer.update_interval
    if trainer.kernel_plan is not None:      # kernel=csr/auto: which layers trained on CSR
        result.extra["training_kernels"] = trainer.kernel_plan
    if trainer.kernel_check is not None:     # kernel=auto: the timings behind that plan
        result.extra["training_kernels_check"] = trainer.kernel_check
    result.extra["topology_updates"] = trainer.topology_updates
    result.extra["alpha0"] = trainer.criterion.alpha0
    result.extra["alpha_final_epoch"] = trainer.criterion.alpha
    check_scores(result.ood, evaluation["constant_scores"], cfg.detector_list)
    labels = capped(data.test_y, None, cfg.max_eval_samples)[0]
    check_learned(result.id["accuracy"], data.num_classes, len(labels),
                  majority=float(torch.bincount(labels).max()) / max(len(labels), 1))
    del result.extra["stage"]
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
    """A complete, reusable result of the same configuration already in ``out``, if any (an
    unreadable ``result.json`` raises :class:`~moon.errors.CorruptFile`)."""
    state = inspect_folder(out, cfg.to_dict(), resume=True)
    return state.result if state.kind == "reusable" else None


def load_model(out_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig]:
    """The evaluated model a run saved (``model.pt``) and its config; ``weights_only=True`` and a
    strict key/shape check, so a mismatched head can never load silently."""
    from moon.configure import from_params
    from moon.models import model_for

    state = load_checkpoint(Path(out_dir) / MODEL_FILE, map_location=device)
    cfg = from_params(state["config"])
    model = model_for(cfg).to(device)
    model.load_state_dict(state["model"], strict=True)
    return model.eval(), cfg

