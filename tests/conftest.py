"""Shared fixtures: small synthetic datasets in the real on-disk formats, so the real loading code runs
without the real (large, possibly absent) files.

``synthetic_root`` writes, once per session, a fake system dataset folder laid out like Debian's and
torchvision's: ``fashion-mnist/*.gz`` (IDX), ``cifar-10-batches-py/`` and ``cifar-100-python/`` (python
pickles). ``fake_data`` points moon at it (``MOON_SYSTEM_DATA``) with an empty ``MOON_DATA``.

No test reads a real data set: for the whole session (and the processes it starts: study workers,
papermill kernels, Ray) ``MOON_DATA`` and ``MOON_SYSTEM_DATA`` name empty folders, so neither the
repository's ``data/`` nor ``/usr/share/datasets`` is seen, and where the ``animal-mnist`` package
is not installed (``make install`` adds it; ``pip install -e .[test]`` does not) a stand-in package
with the same file layout and 10,000 synthetic silhouettes is put on the path
(:func:`animal_stand_in`), so the offline ``animals`` set and its reading code work either way.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

N_TRAIN, N_TEST = 120, 40        # balanced over 10 classes: 12 and 4 per class


ANIMALS_FILE = "data/Animal_MNIST/animal_data_version_3.gz"   # as in moon.ood.shipped
_SESSION_DIRS: list[str] = []


def animal_stand_in(root: Path, n: int = 10000, seed: int = 0) -> Path:
    """Write a stand-in ``animal_mnist`` package under ``root`` (returned: the folder to put on the
    path): an ``__init__`` that must never run (the real one imports TensorFlow) and the real
    package's data file, a gzipped pickle of a uint8 ``[n, 28, 28]`` array of white ellipses on
    black, centred, as the real silhouettes are (border pixels 0, the centre bright)."""
    package = root / "animal_mnist"
    (package / Path(ANIMALS_FILE).parent).mkdir(parents=True)
    (package / "__init__.py").write_text(
        'raise ImportError("test stand-in for animal-mnist: only its data file is read")\n')
    rng = np.random.default_rng(seed)
    centre = rng.uniform(12.5, 15.5, size=(n, 2, 1, 1))
    radii = rng.uniform(6.0, 9.5, size=(n, 2, 1, 1))
    rows, cols = np.mgrid[0:28, 0:28]
    inside = (((rows - centre[:, 0]) / radii[:, 0]) ** 2
              + ((cols - centre[:, 1]) / radii[:, 1]) ** 2) <= 1
    images = np.where(inside, rng.integers(200, 256, size=(n, 28, 28)), 0).astype(np.uint8)
    images[:, 14, 14] = 255                 # every image reaches the pixel range's ends
    with gzip.open(package / ANIMALS_FILE, "wb") as f:
        pickle.dump(images, f, protocol=4)
    return root


def pytest_configure(config):
    """Keep the session (and every process it starts) off the real data sets: empty data roots,
    and the animal-mnist stand-in where the package is missing (module docstring). Under
    pytest-xdist (``make test`` runs ``-n 2``) each worker, and what it starts, computes on one
    thread, so the workers share the cores instead of oversubscribing them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"
    base = Path(tempfile.mkdtemp(prefix="moon-tests-"))
    _SESSION_DIRS.append(str(base))
    for var, name in (("MOON_DATA", "user-data"), ("MOON_SYSTEM_DATA", "system-data")):
        (base / name).mkdir()
        os.environ[var] = str(base / name)
    if importlib.util.find_spec("animal_mnist") is None:
        shim = str(animal_stand_in(base / "shim"))
        sys.path.insert(0, shim)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [shim] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        importlib.invalidate_caches()


def pytest_unconfigure(config):
    for folder in _SESSION_DIRS:
        shutil.rmtree(folder, ignore_errors=True)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(payload)


def synthetic_images(n: int, shape: tuple[int, ...], labels: np.ndarray, seed: int) -> np.ndarray:
    """Random uint8 images whose brightness depends on the class (so classes differ visibly), with
    every tenth pixel, offset by the class, lit: a pattern an MLP learns in a few dozen steps, so a
    short run on these files ends above chance (runs at chance are recorded failed)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 128, size=(n, *shape))
    labels = labels.reshape(-1, *[1] * len(shape))
    lit = (np.arange(int(np.prod(shape))).reshape(shape)[None] % 10) == labels % 10
    return (base + 12 * labels + 160 * lit).clip(0, 255).astype(np.uint8)


def balanced_labels(n: int, classes: int, seed: int) -> np.ndarray:
    """``n`` labels, each class equally often, in a shuffled order."""
    return np.random.default_rng(seed).permutation(np.arange(n) % classes).astype(np.uint8)


def _write_fashion(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    arrays = {}
    for prefix, n, seed in (("train", N_TRAIN, 1), ("t10k", N_TEST, 2)):
        y = balanced_labels(n, 10, seed)
        x = synthetic_images(n, (28, 28), y, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
        arrays[f"{prefix}_x"], arrays[f"{prefix}_y"] = x, y
    return arrays


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _write_cifar10(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    y = balanced_labels(N_TRAIN, 10, 3)
    x = synthetic_images(N_TRAIN, (3 * 32 * 32,), y, 3)
    per = N_TRAIN // 5
    for i in range(5):       # python-2 style bytes keys, as in the real files
        _dump(folder / f"data_batch_{i + 1}",
              {b"data": x[i * per:(i + 1) * per], b"labels": y[i * per:(i + 1) * per].tolist()})
    ty = balanced_labels(N_TEST, 10, 4)
    tx = synthetic_images(N_TEST, (3 * 32 * 32,), ty, 4)
    _dump(folder / "test_batch", {b"data": tx, b"labels": ty.tolist()})
    _dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return {"train_x": x, "train_y": y, "t10k_x": tx, "t10k_y": ty}


def _write_cifar100(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    arrays = {}
    for name, n, seed in (("train", N_TRAIN, 5), ("test", N_TEST, 6)):
        fine = np.arange(n) % 100
        x = synthetic_images(n, (3 * 32 * 32,), fine % 10, seed)
        _dump(folder / name, {"data": x, "fine_labels": fine.tolist(),
                              "coarse_labels": (fine // 5).tolist()})   # str keys this time
        arrays[f"{name}_x"], arrays[f"{name}_fine"] = x, fine
    _dump(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    return arrays


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """A fake system dataset folder and the arrays written into it, by family."""
    root = tmp_path_factory.mktemp("system-datasets")
    written = {"fashion_mnist": _write_fashion(root / "fashion-mnist"),
               "cifar10": _write_cifar10(root / "cifar-10-batches-py"),
               "cifar100": _write_cifar100(root / "cifar-100-python")}
    return root, written


@pytest.fixture
def fake_data(synthetic_root, tmp_path, monkeypatch):
    """moon.data reads the synthetic files: empty ``MOON_DATA``, fake ``MOON_SYSTEM_DATA``."""
    from moon import data

    root, written = synthetic_root
    user = tmp_path / "user-data"
    user.mkdir()
    monkeypatch.setenv("MOON_DATA", str(user))
    monkeypatch.setenv("MOON_SYSTEM_DATA", str(root))
    data.clear_cache()
    yield written
    data.clear_cache()


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """Both data roots point at empty folders; returns them."""
    from moon import data

    user, system = tmp_path / "user", tmp_path / "system"
    user.mkdir()
    system.mkdir()
    monkeypatch.setenv("MOON_DATA", str(user))
    monkeypatch.setenv("MOON_SYSTEM_DATA", str(system))
    data.clear_cache()
    yield user, system
    data.clear_cache()


def learnable_id_data(n_train: int = 640, n_eval: int = 200, seed: int = 0):
    """A small in-memory Fashion-MNIST-shaped ID set that a LeNet can learn: each class is a fixed
    random template plus noise."""
    from moon.data import ID_SETS, IDData, channel_stats

    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(10, 1, 28, 28, generator=g) * 255

    def draw(n):
        y = torch.arange(n) % 10
        x = templates[y] * 0.8 + torch.rand(n, 1, 28, 28, generator=g) * 50
        return x.clamp(0, 255).to(torch.uint8), y

    (trx, try_), (vax, vay), (tex, tey) = draw(n_train), draw(n_eval), draw(n_eval)
    mean, std = channel_stats(trx)
    return IDData("fashion_mnist", 10, tuple(str(i) for i in range(10)), trx, try_, vax, vay,
                  tex, tey, mean, std, ID_SETS["fashion_mnist"])


@pytest.fixture
def tiny_fashion(monkeypatch):
    """``moon.run`` trains on :func:`learnable_id_data` instead of the real Fashion-MNIST.

    The tests using it check machinery (resume, locks, folders, exports), with runs of 5 to 40
    SGD steps that leave most sparse models at chance accuracy (10-15% of 200 images). The chance
    test holds at any evaluation size and would record them failed, so it is off here, explicitly;
    tests/test_rundir.py checks it directly and end to end with it on (``chance_check``)."""
    import moon.runner

    data = learnable_id_data()
    monkeypatch.setattr(moon.runner, "load_id", lambda name, **kw: data)
    monkeypatch.setattr(moon.runner, "check_learned", lambda *args, **kwargs: None)
    return data


@pytest.fixture
def chance_check(monkeypatch):
    """Turns the chance test back on for runs on :func:`tiny_fashion`."""
    import moon.runner
    import moon.train

    monkeypatch.setattr(moon.runner, "check_learned", moon.train.check_learned)
