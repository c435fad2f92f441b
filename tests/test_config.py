"""RunConfig: defaults are valid, every rule rejects a bad value with a message naming it."""

import dataclasses

import pytest

from moon.config import RunConfig, field_names
from moon.configure import PRESETS, from_namespace, from_params, parse_overrides


def test_defaults_are_valid_and_frozen():
    cfg = RunConfig()
    assert cfg.method == "rigl" and cfg.unknown_class and cfg.uses_averaging
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.density = 0.5  # type: ignore[misc]


@pytest.mark.parametrize("overrides, fragments", [
    ({"dataset": "imagenet"}, ["dataset='imagenet'", "fashion_mnist", "cifar100"]),
    ({"model": "vgg"}, ["model='vgg'", "mlp", "lenet5", "resnet18"]),
    ({"method": "snip"}, ["method='snip'", "dense", "static", "set", "rigl", "cigl"]),
    ({"sparse_init": "er"}, ["sparse_init='er'", "erk", "uniform"]),
    ({"density": 0.0}, ["density=0.0", "(0, 1]"]),
    ({"density": 1.5}, ["density=1.5", "(0, 1]"]),
    ({"method": "dense", "density": 0.5}, ["density=0.5", "method=dense needs density=1"]),
    ({"method": "rigl", "density": 1.0}, ["density=1.0", "needs density < 1"]),
    ({"epochs": 0}, ["epochs=0", ">= 1"]),
    ({"batch_size": 0}, ["batch_size=0", ">= 1"]),
    ({"eval_batch_size": -1}, ["eval_batch_size=-1", ">= 1"]),
    ({"lr": 0.0}, ["lr=0.0", "> 0"]),
    ({"lr_final": 0.5}, ["lr_final=0.5", "(0, lr]"]),
    ({"momentum": 1.0}, ["momentum=1.0", "[0, 1)"]),
    ({"lr_warmup_epochs": 21.0}, ["lr_warmup_epochs=21.0", "[0, 20]"]),
    ({"weight_decay": -1e-4}, ["weight_decay=-0.0001", ">= 0"]),
    ({"update_interval": 0}, ["update_interval=0", ">= 1"]),
    ({"drop_fraction": 1.0}, ["drop_fraction=1.0", "[0, 1)"]),
    ({"update_end": 0.0}, ["update_end=0.0", "(0, 1]"]),
    ({"dpnum": 1}, ["dpnum=1", ">= 2"]),
    ({"alpha_final": 0.0}, ["alpha_final=0.0", "> 0"]),
    ({"alpha_init_factor": -1.0}, ["alpha_init_factor=-1.0", "> 0"]),
    ({"warmup_epochs": 20, "epochs": 20}, ["warmup_epochs=20", "[0, 20)"]),
    ({"average_epochs": 0}, ["average_epochs=0", "[1, 20]"]),
    ({"seed": -1}, ["seed=-1", ">= 0"]),
    ({"max_train_samples": -5}, ["max_train_samples=-5", ">= 0"]),
    ({"max_eval_samples": -5}, ["max_eval_samples=-5", "0 (all) or at least 100"]),
    ({"max_eval_samples": 1}, ["max_eval_samples=1", "0 (all) or at least 100"]),
    ({"device": "gpu"}, ["device='gpu'", "auto, cpu"]),
    ({"ood_sets": "digits,svhn"}, ["ood_sets='digits,svhn'", "digits", "photos"]),
    ({"ood_sets": "heldout"}, ["ood_sets='heldout'"]),  # heldout needs fashion_mnist_6
    ({"detectors": "msp,foo"}, ["detectors='msp,foo'", "energy", "dice"]),
    ({"detectors": "unknown", "unknown_class": False}, ["detectors='unknown'", "unknown_class=true"]),
    ({"epochs": 2.5}, ["epochs=2.5", "int"]),
    ({"unknown_class": "yes"}, ["unknown_class='yes'", "bool"]),
    ({"density": float("nan")}, ["density=nan", "finite"]),
])
def test_each_rule_names_field_value_and_allowed(overrides, fragments):
    with pytest.raises(ValueError) as info:
        RunConfig(**overrides)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_derived_windows_scale_with_epochs():
    assert RunConfig(epochs=100).warmup == 5 and RunConfig(epochs=100).averaged_epochs == 20
    assert RunConfig(epochs=2).warmup == 1 and RunConfig(epochs=2).averaged_epochs == 1
    assert RunConfig(warmup_epochs=0).warmup == 0
    assert RunConfig(averaging=False).averaged_epochs == 0
    assert RunConfig(method="cigl", averaging=False).uses_averaging  # CigL includes averaging


def test_lists_are_normalised_and_auto_resolves():
    cfg = RunConfig(ood_sets=["digits", "photos"], detectors=" msp , energy ")
    assert cfg.ood_sets == "digits,photos" and cfg.ood_set_list == ("digits", "photos")
    assert cfg.detector_list == ("msp", "energy")
    auto = RunConfig()
    assert auto.ood_set_list == ("digits", "mnist", "animals", "photos", "textures", "gaussian",
                                 "uniform")
    assert "unknown" in auto.detector_list
    assert "unknown" not in RunConfig(unknown_class=False).detector_list
    six = RunConfig(dataset="fashion_mnist_6")
    assert "heldout" in six.ood_set_list


def test_from_params_rejects_unknown_keys_listing_valid_ones():
    with pytest.raises(ValueError) as info:
        from_params({"densty": 0.1})
    assert "densty" in str(info.value) and "density" in str(info.value)
    with pytest.raises(ValueError, match="preset='tiny'"):
        from_params({}, preset="tiny")


def test_presets_apply_and_overrides_win():
    assert set(PRESETS) >= {"smoke", "quick", "full"}
    for name, overrides in PRESETS.items():
        assert set(overrides) <= set(field_names()), name
        from_params({}, preset=name)
    cfg = from_params({"epochs": 3}, preset="smoke")
    assert cfg.epochs == 3 and cfg.max_train_samples == PRESETS["smoke"]["max_train_samples"]


def test_parse_overrides_types_values_from_the_fields():
    parsed = parse_overrides(["density=0.1", "epochs=3", "unknown_class=false",
                              "warmup_epochs=none", "ood_sets=digits,photos", "method=set"])
    assert parsed == {"density": 0.1, "epochs": 3, "unknown_class": False, "warmup_epochs": None,
                      "ood_sets": "digits,photos", "method": "set"}
    with pytest.raises(ValueError, match="epochs='x'"):
        parse_overrides(["epochs=x"])
    with pytest.raises(ValueError, match="unknown config key 'foo'"):
        parse_overrides(["foo=1"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["density"])


def test_from_namespace_lets_presets_fill_fields_left_at_default():
    namespace = RunConfig().to_dict() | {"density": 0.02, "unrelated": 1}
    cfg = from_namespace(namespace, preset="smoke")
    assert cfg.density == 0.02 and cfg.epochs == PRESETS["smoke"]["epochs"]
    assert from_namespace(namespace).epochs == RunConfig().epochs
