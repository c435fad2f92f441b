"""The trainer end to end on a tiny synthetic set: result contract, determinism, resume, NaN guard."""

import json

import pytest
import torch

import moon
from moon.config import RunConfig
from moon.configure import from_params
from moon.errors import FolderInUse
from moon.recipe.losses import UnknownAwareLoss
from moon.results import load_result
from moon.sparse.masks import layer_counts
import moon.train
from moon.train import CHECKPOINT, Trainer, TrainingDiverged

# max_eval_samples: every OOD set evaluated on its first 512 images, as in the smoke preset (the
# whole sets are 25,000 images, most of a run's time here); the ID test split (200) is whole.
FAST = dict(epochs=3, batch_size=128, lr=0.05, lr_final=0.005, update_interval=2,
            eval_batch_size=512, device="cpu", detectors="msp", max_eval_samples=512)


def cfg_of(**kw) -> RunConfig:
    return from_params({**FAST, **kw})


def metrics_of(result):
    return {"id": result.id, "history": [{k: v for k, v in row.items() if k != "seconds"}
                                         for row in result.history], "masks": result.masks}


def test_run_writes_a_complete_result_with_measured_densities(tiny_fashion, tmp_path):
    cfg = cfg_of(method="rigl", density=0.05, model="mlp", batch_size=32)
    result = moon.run(cfg, tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["status"] == "complete" and on_disk["error"] is None
    assert set(on_disk) >= {"config", "status", "error", "history", "masks", "id", "ood",
                            "timing", "provenance"}
    assert on_disk["config"] == cfg.to_dict()
    assert [row["epoch"] for row in on_disk["history"]] == [1, 2, 3]
    assert set(on_disk["history"][0]) >= {"epoch", "train_loss", "train_acc", "val_acc", "alpha",
                                          "drop_fraction", "density", "seconds"}
    assert set(on_disk["id"]) >= {"accuracy", "nll", "brier", "ece", "mce", "adaptive_ece"}
    assert set(on_disk["timing"]) >= {"train_seconds", "eval_seconds", "train_images_per_second",
                                      "peak_memory_bytes"}
    assert on_disk["extra"]["flops"]["forward_sparse"] < on_disk["extra"]["flops"]["forward_dense"]
    assert 0 < on_disk["id"]["temperature"] and on_disk["id"]["ts_ece"] >= 0
    assert set(on_disk["provenance"]) >= {"git_sha", "versions", "device", "started", "finished"}
    # measured density: the target within one weight per layer; the averaged weights stay inside
    layers = result.masks["layers"]
    total = sum(p.numel() for n, p in moon.models.model_for(cfg).named_parameters() if n in layers)
    assert abs(result.masks["density"] - 0.05) * total <= len(layers)
    assert result.masks["nonzero_density"] <= result.masks["density"]
    assert result.history[-1]["alpha"] == pytest.approx(cfg.alpha_final)
    assert result.id["accuracy"] > 0.8     # it learns the synthetic classes (chance is 0.1)


def test_same_seed_gives_identical_metrics(tiny_fashion, tmp_path):
    cfg = cfg_of(method="set", density=0.1)
    a = moon.run(cfg, tmp_path / "a", progress=False)
    b = moon.run(cfg, tmp_path / "b", progress=False)
    c = moon.run(cfg.replace(seed=1), tmp_path / "c", progress=False)
    assert metrics_of(a) == metrics_of(b)
    assert metrics_of(a) != metrics_of(c)


@pytest.mark.parametrize("method", ["rigl", "cigl", "dense"])
def test_resume_equals_an_uninterrupted_run(tiny_fashion, tmp_path, monkeypatch, method):
    cfg = cfg_of(method=method, density=1.0 if method == "dense" else 0.1, epochs=4)
    full = moon.run(cfg, tmp_path / "full", progress=False)

    original = Trainer._end_epoch

    def killed_after_two(self, epoch, *args):
        original(self, epoch, *args)
        if epoch == 2:
            raise KeyboardInterrupt  # like a SIGINT after the epoch-2 checkpoint

    monkeypatch.setattr(Trainer, "_end_epoch", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        moon.run(cfg, tmp_path / "part", progress=False)
    assert (tmp_path / "part" / CHECKPOINT).exists()
    assert not (tmp_path / "part" / "result.json").exists()   # nothing partial looks complete
    monkeypatch.setattr(Trainer, "_end_epoch", original)
    resumed = moon.run(cfg.replace(resume=True), tmp_path / "part", progress=False)
    assert metrics_of(resumed) == metrics_of(full)


def test_resume_reuses_a_finished_run_and_rejects_another_config(tiny_fashion, tmp_path):
    cfg = cfg_of(method="static", density=0.2, epochs=2)
    first = moon.run(cfg, tmp_path, progress=False)
    again = moon.run(cfg.replace(resume=True), tmp_path, progress=False)
    assert again.provenance["started"] == first.provenance["started"]
    other = cfg.replace(density=0.3, resume=True)
    (tmp_path / "result.json").unlink()
    with pytest.raises(FolderInUse, match="density"):      # refused before any compute
        moon.run(other, tmp_path, progress=False)
    assert not (tmp_path / "result.json").exists()


def test_checkpoint_loads_strictly(tiny_fashion, tmp_path):
    cfg = cfg_of(method="rigl", density=0.1, epochs=1)
    moon.run(cfg, tmp_path, progress=False)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    state["model"].pop("head.weight")
    trainer = Trainer(cfg, tiny_fashion, torch.device("cpu"), progress=False)
    with pytest.raises(RuntimeError, match="head.weight"):
        trainer.load_state_dict(state)


def test_non_finite_loss_stops_naming_epoch_and_step(tiny_fashion, tmp_path, monkeypatch):
    original, calls = UnknownAwareLoss.__call__, {"n": 0}

    def poisoned(self, logits, target, epoch, update_state=True):
        calls["n"] += 1
        loss = original(self, logits, target, epoch, update_state)
        return loss * float("nan") if calls["n"] == 8 else loss   # global step 7

    monkeypatch.setattr(UnknownAwareLoss, "__call__", poisoned)
    cfg = cfg_of(method="rigl", density=0.1)
    with pytest.raises(TrainingDiverged, match="epoch 2, step 2"):
        moon.run(cfg, tmp_path, progress=False)
    failed = load_result(tmp_path)
    assert failed.status == "failed" and "epoch 2, step 2" in failed.error
    assert failed.id == {}
    calls["n"] = 0
    result = moon.run(cfg, tmp_path / "quiet", progress=False, raise_on_failure=False)
    assert result.status == "failed"


def test_update_steps_skip_the_optimizer_and_averaging_keeps_the_mask(tiny_fashion):
    cfg = cfg_of(method="rigl", density=0.05, epochs=4, update_end=1.0)
    trainer = Trainer(cfg, tiny_fashion, torch.device("cpu"), progress=False)
    assert cfg.update_stop == 0.75      # clipped to the start of the averaging window
    model = trainer.fit()
    for name, p in dict(model.named_parameters()).items():
        if name in trainer.masking.masks:
            assert torch.all(p[~trainer.masking.masks[name]] == 0)
    for name, p in trainer.masking.params.items():   # the trainer's (fused) SGD state, too
        inactive = ~trainer.masking.masks[name]
        assert torch.all(p[inactive] == 0)
        assert torch.all(trainer.optimizer.state[p]["momentum_buffer"][inactive] == 0)
    counts = layer_counts(trainer.masking.target, {n: m.shape for n, m in trainer.masking.masks.items()})
    assert {n: int(m.sum()) for n, m in trainer.masking.masks.items()} == counts


def test_cli_run(tiny_fashion, tmp_path, capsys):
    from moon.__main__ import main

    code = main(["run", "--preset", "smoke", "--out", str(tmp_path), "method=static",
                 "density=0.2", "device=cpu", "epochs=1"])
    assert code == 0 and load_result(tmp_path).status == "complete"
    assert main(["run", "--out", str(tmp_path), "density=2"]) == 2
    assert "density=2.0" in capsys.readouterr().err


def test_load_model_round_trip_is_strict(tiny_fashion, tmp_path):
    from moon.runner import MODEL_FILE, load_model

    cfg = cfg_of(method="rigl", density=0.1, epochs=1)
    result = moon.run(cfg, tmp_path, progress=False)
    model, loaded_cfg = load_model(tmp_path)
    assert loaded_cfg == cfg and model.head.out_features == 11
    from moon.evaluate import evaluate
    assert evaluate(model, tiny_fashion, cfg, torch.device("cpu"))["id"]["accuracy"] == \
        pytest.approx(result.id["accuracy"])
    state = torch.load(tmp_path / MODEL_FILE, weights_only=True)
    state["model"]["head.weight"] = torch.zeros(10, 84)
    torch.save(state, tmp_path / MODEL_FILE)
    with pytest.raises(RuntimeError, match="head.weight"):
        load_model(tmp_path)


def test_the_evaluated_model_is_the_averaged_one(tiny_fashion, tmp_path, monkeypatch):
    """Evaluation (and model.pt) see the weight average, not the last trained weights."""
    seen = {}
    real_evaluate, real_final = moon.runner.evaluate, Trainer.final_model

    def spy_evaluate(model, *args, **kwargs):
        seen["evaluated"] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_evaluate(model, *args, **kwargs)

    def spy_final(self):
        seen["trained"] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return real_final(self)

    monkeypatch.setattr(moon.runner, "evaluate", spy_evaluate)
    monkeypatch.setattr(Trainer, "final_model", spy_final)
    cfg = cfg_of(model="mlp", method="static", density=0.2, epochs=3, averaging=True,
                 average_epochs=2, unknown_class=False)
    moon.run(cfg, tmp_path, progress=False)
    weights = [k for k in seen["trained"] if k.endswith("weight")]
    assert any(not torch.equal(seen["evaluated"][k], seen["trained"][k]) for k in weights)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[k], seen["evaluated"][k]) for k in weights)


def test_update_steps_take_no_optimizer_step(tiny_fashion, monkeypatch):
    """On a topology-update step the batch's gradient only drives growth (reference 4.9)."""
    cfg = cfg_of(model="mlp", method="rigl", density=0.1, epochs=2, update_interval=3,
                 update_end=1.0, averaging=False)
    trainer = Trainer(cfg, tiny_fashion, torch.device("cpu"), progress=False)
    calls = {"opt": 0, "update": 0}
    real_step, real_update = trainer.optimizer.step, trainer.masking.update

    def count_step(*a, **k):
        calls["opt"] += 1
        return real_step(*a, **k)

    def count_update(*a, **k):
        calls["update"] += 1
        return real_update(*a, **k)

    monkeypatch.setattr(trainer.optimizer, "step", count_step)
    monkeypatch.setattr(trainer.masking, "update", count_update)
    trainer.fit()
    assert calls["update"] == trainer.topology_updates > 0
    assert calls["opt"] + calls["update"] == trainer.total_steps
    assert trainer.history[-1]["topology_updates"] == trainer.topology_updates
    row = trainer.history[-1]                       # the regime, epoch by epoch
    assert row["val_temperature"] > 0 and 0 <= row["val_ece"] <= 1 and row["val_nll"] > 0


def test_paper_preset_is_the_papers_schedule():
    from moon.configure import from_params
    cfg = from_params({"method": "rigl", "density": 0.05}, "paper")
    assert (cfg.epochs, cfg.warmup, cfg.averaged_epochs, cfg.max_train_samples) == (100, 5, 20, 0)
    assert cfg.update_stop == 0.7 and cfg.update_interval is None


# --- the regime study's fields: lr_hold_epochs, subset_seed, width ----------------------------------
def test_lr_hold_gives_a_baseline_moons_lr_schedule(tiny_fashion):
    """``lr_hold_epochs`` ends the cosine where MOON's averaging starts, without averaging: the
    per-step LR of a baseline with it equals MOON's, and differs from the plain baseline's."""
    base = cfg_of(model="mlp", method="dense", density=1.0, epochs=10, unknown_class=False,
                  averaging=False, average_epochs=2)
    lrs = {}
    for name, cfg in {"baseline": base, "moon_lr": base.replace(lr_hold_epochs=2),
                      "moon": base.replace(unknown_class=True, averaging=True)}.items():
        trainer = Trainer(cfg, tiny_fashion, torch.device("cpu"), progress=False)
        lrs[name] = [trainer._lr_factor(s) for s in range(trainer.total_steps)]
    assert lrs["moon_lr"] == lrs["moon"] and lrs["baseline"] != lrs["moon"]
    steps = len(lrs["moon"]) // 10
    assert set(lrs["moon_lr"][8 * steps:]) == {base.lr_final / base.lr}
    assert lrs["baseline"][8 * steps] > base.lr_final / base.lr


def test_lr_hold_must_cover_the_averaging_window():
    with pytest.raises(ValueError, match="lr_hold_epochs"):
        cfg_of(epochs=10, average_epochs=4, averaging=True, lr_hold_epochs=2)
    with pytest.raises(ValueError, match="lr_hold_epochs"):
        cfg_of(epochs=10, lr_hold_epochs=10)
    assert cfg_of(epochs=10, averaging=False, unknown_class=False).lr_hold == 0


def test_subset_seed_fixes_the_images_across_seeds_and_nests_sizes(tiny_fashion):
    from moon.evaluate import fit_subset
    from moon.loaders import make_loaders

    def rows(x):
        return {tuple(img.flatten().tolist()) for img in x}

    def images(n, seed, subset_seed):
        loader = make_loaders(tiny_fashion, 64, seed, max_train_samples=n, subset_seed=subset_seed)
        return rows(loader.train.images)

    assert images(200, 0, 7) == images(200, 3, 7)            # the same images for every seed
    assert images(200, 0, None) != images(200, 3, None)      # default: the run's seed draws them
    assert images(100, 1, 7) < images(300, 2, 7)             # nested: 100 of the 300
    cfg = cfg_of(max_train_samples=200, subset_seed=7, seed=3, fit_samples=100)
    fitted = rows(fit_subset(tiny_fashion, cfg)[0])          # detectors fit on those images
    assert len(fitted) == 100 and fitted < images(200, 3, 7)


def test_width_widens_both_hidden_layers_of_the_mlp():
    from moon.models import model_for

    wide = model_for(cfg_of(model="mlp", width=64, method="dense", density=1.0))
    shapes = [tuple(p.shape) for n, p in wide.named_parameters() if n.endswith("weight")]
    assert shapes == [(64, 784), (64, 64), (11, 64)]
    plain = model_for(cfg_of(model="mlp", method="dense", density=1.0))
    assert [tuple(p.shape) for n, p in plain.named_parameters() if n.endswith("weight")] == [
        (300, 784), (100, 300), (11, 100)]
    with pytest.raises(ValueError, match="width"):
        cfg_of(model="lenet5", width=64)
