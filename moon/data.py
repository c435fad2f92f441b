"""Datasets: the registry of in-distribution (ID) sets, locating files, in-memory tensors.

Every image set is held in memory as a ``uint8`` tensor ``[N, C, H, W]`` in the ID set's pixel range
(0..255); normalisation with the ID training mean/std happens per batch in
:class:`moon.loaders.TensorLoader`. OOD sets (their registry, groups and builders) are in
:mod:`moon.ood.sets`. Pickled data is read with an allow-list unpickler (:func:`read_pickle`).

Locating files tries, in order (design.md, section 4):
1. ``$MOON_DATA`` if set, else the repository's ``data/`` folder;
2. the system dataset folder ``/usr/share/datasets/<name>`` (Debian: ``apt-get install
   dataset-fashion-mnist`` gives Fashion-MNIST as IDX ``.gz`` files);
3. torchvision's download into the first folder, when a network exists.
"""

from __future__ import annotations

import gzip
import importlib
import logging
import math
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from moon.datacheck import check_cifar_batches, check_idx_splits, check_image_shape
from moon.errors import BadData
from moon.files import remove_empty_dirs

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_6_KNOWN = (0, 1, 2, 3, 4, 5)    # fashion_mnist_6 trains on these classes ...
FASHION_6_HELDOUT = (6, 7, 8, 9)        # ... and these are its near-OOD "heldout" set


@dataclass(frozen=True)
class IDSpec:
    """An in-distribution dataset."""
    name: str
    num_classes: int
    channels: int
    size: int
    source: str                 # file family: "fashion_mnist", "mnist", "cifar10", "cifar100"
    description: str
    classes: tuple[int, ...] | None = None   # class subset of the source (open-set splits)


ID_SETS: dict[str, IDSpec] = {s.name: s for s in (
    IDSpec("fashion_mnist", 10, 1, 28, "fashion_mnist", "Fashion-MNIST, 10 classes (embedded default)"),
    IDSpec("fashion_mnist_6", 6, 1, 28, "fashion_mnist",
           "Fashion-MNIST open-set split: trains on classes 0-5, classes 6-9 are OOD",
           classes=FASHION_6_KNOWN),
    IDSpec("mnist", 10, 1, 28, "mnist", "MNIST handwritten digits"),
    IDSpec("cifar10", 10, 3, 32, "cifar10", "CIFAR-10"),
    IDSpec("cifar100", 100, 3, 32, "cifar100", "CIFAR-100"),
)}


# --------------------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------------------
SYSTEM_DATA = Path("/usr/share/datasets")   # where Debian's dataset-* packages install
_SPLIT_SEED = 12345                         # fixed: the validation split never depends on the run seed
_VAL_FRACTION = 12                          # the last 1/12 of the permuted training file is validation
SOURCE_TRAIN_IMAGES = {"fashion_mnist": 60000, "mnist": 60000, "cifar10": 50000, "cifar100": 50000}

# Per source family: the folder layouts looked for under every root, and the files that must be there.
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_LAYOUTS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    "mnist": ("mnist", "MNIST/raw"),
    "kmnist": ("kmnist", "KMNIST/raw"),
    "cifar10": ("cifar-10-batches-py",),
    "cifar100": ("cifar-100-python",),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "fashion_mnist": _IDX_FILES, "mnist": _IDX_FILES, "kmnist": _IDX_FILES,
    "cifar10": tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
    "cifar100": ("train", "test"),
}
_TORCHVISION_CLASS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "kmnist": "KMNIST",
                      "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def train_split_size(name: str, validation: bool = True) -> float:
    """Images in the training split of ID set ``name`` (the source's training file less the 1/12
    :func:`load_id` keeps for validation; ``validation=False``: the whole file), without reading
    it; NaN for a class-subset set, whose split size depends on the permutation."""
    spec = ID_SETS[name]
    if spec.classes is not None:
        return float("nan")
    total = SOURCE_TRAIN_IMAGES[spec.source]
    return float(total - total // _VAL_FRACTION if validation else total)


def data_roots() -> list[Path]:
    """Folders searched for datasets, in order: ``$MOON_DATA`` (else ``<repo>/data``), then the system
    dataset folder (``$MOON_SYSTEM_DATA``, else ``/usr/share/datasets``)."""
    user = os.environ.get("MOON_DATA") or str(Path(__file__).resolve().parent.parent / "data")
    system = os.environ.get("MOON_SYSTEM_DATA") or str(SYSTEM_DATA)
    return [Path(user).expanduser(), Path(system).expanduser()]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is in none of the folders looked in; the message lists them and how to get it."""

    def __init__(self, name: str, tried: list[Path], download_error: str | None = None):
        self.name, self.tried = name, list(tried)
        ways = []
        if name == "fashion_mnist":
            ways.append(f"apt-get install dataset-fashion-mnist   (Debian/Ubuntu: installs "
                        f"{SYSTEM_DATA / 'fashion-mnist'})")
        ways += [f"put the files in one of the layouts above under $MOON_DATA (unset: <repo>/data; "
                 f"now {data_roots()[0]})",
                 "run with a network so torchvision downloads it (download=True)"]
        msg = (f"dataset {name!r} not found. Looked in:\n"
               + "".join(f"  {p}\n" for p in self.tried)
               + "Ways to get it:\n" + "".join(f"  - {w}\n" for w in ways))
        if download_error:
            msg += f"The download failed: {download_error}\n"
        super().__init__(msg.rstrip("\n"))


def _has_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists (plain first)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate(source: str) -> Path:
    """The first folder holding a complete copy of ``source``; raises :class:`DatasetNotFoundError`."""
    tried = []
    for root in data_roots():
        for layout in _LAYOUTS[source]:
            folder = root / layout
            tried.append(folder)
            if all(_has_file(folder, f) for f in _REQUIRED[source]):
                return folder
    raise DatasetNotFoundError(source, tried)


def _existing_dirs(root: Path) -> set[Path]:
    """``root``'s ancestors-to-be-kept: the folders that exist under it now (and itself)."""
    if not root.is_dir():
        return set()
    return {root, *(p for p in root.rglob("*") if p.is_dir())}


def find_source(source: str, download: bool | None = None) -> Path:
    """Locate ``source``; if missing and ``download`` is not False, let torchvision download it into
    ``data_roots()[0]`` and locate again."""
    try:
        return locate(source)
    except DatasetNotFoundError as missing:
        if download is False:
            raise
        root = data_roots()[0]
        log.info("%s not found locally; trying torchvision's download into %s", source, root)
        existing = _existing_dirs(root)
        try:
            import torchvision
            root.mkdir(parents=True, exist_ok=True)
            getattr(torchvision.datasets, _TORCHVISION_CLASS[source])(
                root=str(root), train=False, download=True)
        except Exception as exc:   # no network shows up as URLError, OSError, RuntimeError, ...
            remove_empty_dirs(root, existing)   # a failed download leaves no empty folders
            raise DatasetNotFoundError(source, missing.tried, f"{type(exc).__name__}: {exc}") from exc
        return locate(source)


# --------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``): magic ``0 0 <dtype> <ndim>``, then ``ndim`` big-endian
    uint32 sizes, then the data in C order (LeCun et al., the MNIST file format)."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            raw = bytearray(f.read())    # bytearray: np.frombuffer gives a writable array
    except (OSError, EOFError, zlib.error) as err:   # BadGzipFile is an OSError
        raise BadData(f"{path} cannot be read ({type(err).__name__}: {err}); replace it with "
                      f"the original file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise BadData(f"{path} is not an IDX file (magic bytes {bytes(raw[:4])!r})")
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise BadData(f"{path} is truncated: it ends inside its header")
    dims = struct.unpack(f">{ndim}I", raw[4:offset])
    if len(raw) - offset < math.prod(dims) * dtype.itemsize:
        raise BadData(f"{path} is truncated: its header says {'x'.join(map(str, dims))} values "
                      f"({math.prod(dims) * dtype.itemsize} bytes), it holds {len(raw) - offset}; "
                      f"replace it with the original file")
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=offset)
    return data.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


# The only globals a data pickle may name: numpy's own functions for rebuilding an array, a dtype
# or a numpy scalar (numpy 2 renamed numpy.core to numpy._core; a file names its writer's), and
# _codecs.encode, which Python 3 uses for bytes under pickle protocols 0-2.
PICKLE_ALLOWED = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
})


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds builtin values and numpy arrays only: a global outside
    :data:`PICKLE_ALLOWED` (``os.system``, ``builtins.eval``, ...) raises
    :class:`pickle.UnpicklingError` instead of being imported, so loading a data file cannot run
    code it names."""

    def find_class(self, module: str, name: str):
        if (module, name) not in PICKLE_ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name} from a data pickle; the only globals "
                f"allowed rebuild numpy arrays: "
                + ", ".join(sorted(f"{m}.{n}" for m, n in PICKLE_ALLOWED)))
        if module.startswith("numpy.core."):     # numpy >= 2 warns on the old name
            try:
                return getattr(importlib.import_module("numpy._core." + module[11:]), name)
            except ImportError:                  # numpy 1.x: only the old name exists
                pass
        return getattr(importlib.import_module(module), name)


def read_pickle(path: str | Path, encoding: str = "ASCII"):
    """Load a data pickle (plain or ``.gz``) with :class:`ArrayUnpickler`; ``encoding`` decodes
    Python 2 strings ("bytes" keeps them as bytes)."""
    path = Path(path)
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        return ArrayUnpickler(f, encoding=encoding).load()


def _unpickle(path: Path) -> dict:
    """A CIFAR python-format pickle, with its keys as ``str`` whatever the pickling Python was."""
    obj = read_pickle(path, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_pickle(folder: str | Path, train: bool, fine: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10 (``data_batch_1..5``/``test_batch``) or CIFAR-100 (``train``/``test``; ``fine``
    picks the 100 fine or 20 coarse labels) into ``(uint8 [N,3,32,32], int64 [N])``."""
    folder = Path(folder)
    if (folder / "test_batch").is_file():
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        key = "labels"
    else:
        names = ["train" if train else "test"]
        key = "fine_labels" if fine else "coarse_labels"
    batches = [_unpickle(folder / n) for n in names]
    check_cifar_batches(folder, names, batches, key)
    x = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    y = np.concatenate([np.asarray(b[key], dtype=np.int64) for b in batches])
    return x.reshape(-1, 3, 32, 32), y


class _Arrays(NamedTuple):
    """The parsed files of one source family."""
    train_x: np.ndarray     # uint8 [N, C, H, W]
    train_y: np.ndarray     # int64 [N]
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]


def _cifar_names(folder: Path, meta: str, key: str, count: int) -> tuple[str, ...]:
    """Class names from the CIFAR meta pickle, else their indices."""
    if (folder / meta).is_file():
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(folder / meta)[key])
    return tuple(str(i) for i in range(count))


@lru_cache(maxsize=8)
def _load_folder(source: str, folder: str) -> _Arrays:
    """Parse one source's files (cached per process: OOD sets reuse the ID arrays)."""
    path = Path(folder)
    log.info("reading %s from %s", source, path)
    if source in ("cifar10", "cifar100"):
        fine = source == "cifar100"
        tr, te = read_cifar_pickle(path, True, fine), read_cifar_pickle(path, False, fine)
        names = (_cifar_names(path, "batches.meta", "label_names", 10) if not fine
                 else _cifar_names(path, "meta", "fine_label_names", 100))
        return _Arrays(tr[0], tr[1], te[0], te[1], names)
    files = [_has_file(path, f) for f in _IDX_FILES]
    arrays = [read_idx(f) for f in files]
    check_idx_splits(files, arrays)
    names = FASHION_CLASSES if source == "fashion_mnist" else tuple(str(i) for i in range(10))
    return _Arrays(arrays[0][:, None], arrays[1].astype(np.int64),
                   arrays[2][:, None], arrays[3].astype(np.int64), names)


def source_arrays(source: str, download: bool | None = None) -> _Arrays:
    """The train and test arrays of one file family (``fashion_mnist``, ``mnist``, ``cifar10`` ...)."""
    return _load_folder(source, str(find_source(source, download)))


def clear_cache() -> None:
    """Forget the parsed arrays (tests point the roots elsewhere between cases)."""
    _load_folder.cache_clear()


# --------------------------------------------------------------------------------------------------
# In-distribution sets
# --------------------------------------------------------------------------------------------------
@dataclass
class IDData:
    """An ID set in memory: uint8 images ``[N, C, H, W]``, int64 labels ``[N]``, and the per-channel
    mean/std of the training split in 0..1 units (what :class:`TensorLoader` normalises with)."""
    name: str
    num_classes: int
    class_names: tuple[str, ...]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    spec: IDSpec = field(repr=False)

    def __repr__(self) -> str:
        return (f"IDData({self.name!r}, train={len(self.train_y)}, val={len(self.val_y)}, "
                f"test={len(self.test_y)}, shape={self.image_shape}, mean={self.mean}, std={self.std})")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image of this set (and of its OOD sets)."""
        return tuple(self.train_x.shape[1:])


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images ``[N, C, H, W]``, in 0..1 units;
    accumulated in float64 chunks so CIFAR needs no 1 GB temporary."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in x.split(2048):
        f = chunk.to(torch.float64) / 255.0
        total += f.sum((0, 2, 3))
        squares += f.square().sum((0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _keep_classes(x: torch.Tensor, y: torch.Tensor, classes: tuple[int, ...]):
    """Images of ``classes`` only, labels remapped to ``0..len(classes)-1`` in the order given."""
    remap = torch.full((int(y.max()) + 1,), -1, dtype=torch.int64)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    keep = remap[y] >= 0
    return x[keep], remap[y[keep]]


def load_id(name: str, seed: int = 0, download: bool | None = None) -> IDData:
    """Load an ID set with its fixed train/validation split.

    The validation split is the last 1/12 of a permutation of the training file drawn from a fixed
    generator (seed 12345): Fashion-MNIST gives 55,000 train / 5,000 val, the same for every run seed
    (``seed`` is accepted for a uniform call signature and does not change the split). Class-subset
    sets (``spec.classes``) keep only those classes in every split, labels remapped to ``0..K-1``.
    """
    if name not in ID_SETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(ID_SETS)}")
    spec = ID_SETS[name]
    arrays = source_arrays(spec.source, download)
    expected = (spec.channels, spec.size, spec.size)   # what the model is built for
    for split in (arrays.train_x, arrays.test_x):       # before any model is built (design.md 8)
        if tuple(split.shape[1:]) != expected:
            check_image_shape(name, split.shape[1:], expected, find_source(spec.source, False))
    x, y = torch.from_numpy(arrays.train_x), torch.from_numpy(arrays.train_y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    n_val = len(y) // _VAL_FRACTION
    train_idx, val_idx = perm[:-n_val].sort().values, perm[-n_val:].sort().values
    splits = [(x[train_idx], y[train_idx]), (x[val_idx], y[val_idx]),
              (torch.from_numpy(arrays.test_x).clone(), torch.from_numpy(arrays.test_y).clone())]
    names = arrays.class_names
    if spec.classes is not None:
        splits = [_keep_classes(sx, sy, spec.classes) for sx, sy in splits]
        names = tuple(names[c] for c in spec.classes)
    mean, std = channel_stats(splits[0][0])
    (trx, try_), (vax, vay), (tex, tey) = splits
    return IDData(name, spec.num_classes, names, trx, try_, vax, vay, tex, tey, mean, std, spec)
