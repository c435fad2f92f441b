"""One registry of detectors: config, evaluation and tables read their names from it, and what an
evaluation produces agrees with it. Also the evaluation's diagnostics (DICE sweep, unknown-class
mass, the released ECE) and the per-epoch unknown mass in the training history."""

import dataclasses

import pytest
import torch

from conftest import learnable_id_data
from moon import config
from moon.report import tables as compare
from moon.config import RunConfig
from moon.configure import from_params
from moon.evaluate import DICE_SWEEP, detector_options, evaluate
from moon.metrics import released_ece
from moon.models import model_for
from moon.ood.registry import DETECTORS, make_detector
from moon.train import Trainer

FIELDS = {f.name for f in dataclasses.fields(RunConfig)}


def test_config_reads_its_detector_lists_from_the_registry():
    assert config.DETECTORS == tuple(DETECTORS)
    assert set(config.UNKNOWN_ONLY_DETECTORS) == {n for n, s in DETECTORS.items()
                                                  if s.needs_unknown_class}
    assert RunConfig().detector_list == tuple(DETECTORS)
    assert "unknown" not in RunConfig(unknown_class=False).detector_list
    assert set(compare.POSTHOC_DETECTORS) <= set(DETECTORS)
    with pytest.raises(ValueError, match="choose from msp"):
        RunConfig(detectors="msp,nope")


def test_every_option_is_a_run_config_field_and_reaches_the_detector():
    cfg = RunConfig(dice_p=70.0, react_p=80.0, knn_k=7, ash_p=60.0, scale_p=75.0)
    options = detector_options(cfg, temperature=1.5)
    assert set(options) == set(DETECTORS)
    net = model_for(cfg)
    for name, spec in DETECTORS.items():
        assert set(spec.options.values()) <= FIELDS, name
        assert spec.paper, name
        det = make_detector(name, net, 10, **options[name])
        assert det.name == name and det.needs_fit == spec.needs_fit
        for option, field in spec.options.items():
            assert getattr(det, option) == getattr(cfg, field), (name, option)
    assert options["msp_ts"] == {"temperature": 1.5}


@pytest.mark.parametrize("field", ["ash_p", "scale_p"])
def test_shaping_percentiles_are_validated(field):
    with pytest.raises(ValueError, match=field):
        RunConfig(**{field: 100.0})


def small_cfg(**kw):
    return from_params(dict(epochs=1, device="cpu", ood_sets="gaussian,uniform",
                            max_eval_samples=100, fit_samples=200, eval_batch_size=256, **kw))


@pytest.mark.parametrize("unknown_class", [True, False])
def test_evaluate_produces_exactly_the_registry_detectors_and_its_diagnostics(unknown_class):
    data = learnable_id_data(n_train=300, n_eval=120)
    cfg = small_cfg(unknown_class=unknown_class)
    torch.manual_seed(0)
    model = model_for(cfg).eval()
    out = evaluate(model, data, cfg, torch.device("cpu"))
    expected = [n for n, s in DETECTORS.items() if unknown_class or not s.needs_unknown_class]
    for name in cfg.ood_set_list:
        assert list(out["ood"][name]) == expected
        sweep = out["dice_sweep"][name]
        assert list(sweep) == [f"{p:g}" for p in DICE_SWEEP]
        assert sweep["90"] == pytest.approx(out["ood"][name]["dice"]["auroc"])   # dice_p = 90
        assert sweep["0"] == pytest.approx(out["ood"][name]["energy"]["auroc"])  # p = 0: energy
    ids = out["id"]
    assert {"ece", "temperature", "ts_ece", "ece_released"} <= set(ids)
    with torch.no_grad():
        logits = model(((data.test_x[:100].float() / 255 - data.mean[0]) / data.std[0]))
    assert ids["ece_released"] == pytest.approx(released_ece(logits, data.test_y[:100]), abs=1e-5)
    if unknown_class:
        mass = out["unknown_mass"]
        assert set(mass) == {"id_test", *cfg.ood_set_list}
        assert mass["id_test"] == pytest.approx(
            float(torch.softmax(logits.double(), 1)[:, -1].mean()), abs=1e-5)
        assert all(0 < m < 1 for m in mass.values())
    else:
        assert out["unknown_mass"] is None


@pytest.mark.parametrize("unknown_class", [True, False])
def test_history_has_the_mean_unknown_mass_of_the_training_batches(unknown_class):
    data = learnable_id_data(n_train=256, n_eval=64)
    cfg = from_params(dict(epochs=2, batch_size=64, device="cpu", method="dense", density=1.0,
                           averaging=False, unknown_class=unknown_class))
    trainer = Trainer(cfg, data, torch.device("cpu"), progress=False)
    seen = {1: [], 2: []}
    epoch = {"now": 1}

    def record(module, args, output):   # the training logits, as the step computed them
        if module.training:
            seen[epoch["now"]].append(torch.softmax(output.detach().double(), 1)[:, -1])

    original = trainer._end_epoch

    def end_epoch(*args):
        original(*args)
        epoch["now"] += 1

    trainer._end_epoch = end_epoch
    trainer.model.head.register_forward_hook(record)
    trainer.fit()
    rows = trainer.history
    if not unknown_class:
        assert all(row["unknown_mass"] is None for row in rows)
        return
    for row in rows:
        assert row["unknown_mass"] == pytest.approx(float(torch.cat(seen[row["epoch"]]).mean()),
                                                    abs=1e-6)
    # CE over K+1 never targets the unknown class: its mass starts near 1/11 and falls
    assert rows[1]["unknown_mass"] < rows[0]["unknown_mass"] < 1 / 11 + 0.02


def test_a_run_stores_the_sweep_the_unknown_mass_and_the_released_ece(tiny_fashion, tmp_path):
    import moon
    from moon.results import load_result

    cfg = small_cfg(method="dense", density=1.0, detectors="msp,energy,dice", batch_size=128)
    moon.run(cfg, tmp_path, progress=False)
    result = load_result(tmp_path)
    assert set(result.extra["dice_sweep"]) == {"gaussian", "uniform"}
    assert set(result.extra["unknown_mass"]) == {"id_test", "gaussian", "uniform"}
    assert 0 < result.history[0]["unknown_mass"] < 1
    assert 0 <= result.id["ece_released"] <= 1 and result.id["temperature"] > 0


def test_every_detector_has_a_page_name_declared_with_it():
    """A detector's name in the book comes from its registry entry (one declaration): a new
    detector without a label would print as an empty string on every page."""
    from moon.ood.registry import DETECTORS
    from moon.report.frame import DETECTOR_NAMES

    labels = [spec.label for spec in DETECTORS.values()]
    assert all(labels) and len(set(labels)) == len(labels)
    assert list(DETECTOR_NAMES) == list(DETECTORS)
