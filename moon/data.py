"""Datasets: the registry of in-distribution (ID) and OOD sets, locating files, in-memory tensors.

Every image set is held in memory as a ``uint8`` tensor ``[N, C, H, W]`` in the ID set's pixel range
(0..255); normalisation with the ID training mean/std happens per batch in :class:`TensorLoader`.

Locating files tries, in order (design.md, section 4):
1. ``$MOON_DATA`` if set, else the repository's ``data/`` folder;
2. the system dataset folder ``/usr/share/datasets/<name>`` (Debian: ``apt-get install
   dataset-fashion-mnist`` gives Fashion-MNIST as IDX ``.gz`` files);
3. torchvision's download into the first folder, when a network exists.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import pickle
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

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


@dataclass(frozen=True)
class OODSpec:
    """An out-of-distribution set, tagged near or far, for the ID sets it applies to."""
    name: str
    kind: str                   # "near" | "far"
    offline: bool               # True: built from scikit-learn data or noise, no download needed
    id_sets: tuple[str, ...]    # ID datasets this set is evaluated against
    description: str


_FMNIST = ("fashion_mnist", "fashion_mnist_6")
_CIFAR = ("cifar10", "cifar100")

ID_SETS: dict[str, IDSpec] = {s.name: s for s in (
    IDSpec("fashion_mnist", 10, 1, 28, "fashion_mnist", "Fashion-MNIST, 10 classes (embedded default)"),
    IDSpec("fashion_mnist_6", 6, 1, 28, "fashion_mnist",
           "Fashion-MNIST open-set split: trains on classes 0-5, classes 6-9 are OOD",
           classes=FASHION_6_KNOWN),
    IDSpec("mnist", 10, 1, 28, "mnist", "MNIST handwritten digits"),
    IDSpec("cifar10", 10, 3, 32, "cifar10", "CIFAR-10"),
    IDSpec("cifar100", 100, 3, 32, "cifar100", "CIFAR-100"),
)}

OOD_SETS: dict[str, OODSpec] = {s.name: s for s in (
    # offline, for Fashion-MNIST
    OODSpec("digits", "near", True, _FMNIST,
            "scikit-learn load_digits, 8x8 upsampled to 28x28, intensity-matched"),
    OODSpec("heldout", "near", True, ("fashion_mnist_6",),
            "Fashion-MNIST test images of the 4 classes fashion_mnist_6 does not train on"),
    OODSpec("photos", "far", True, _FMNIST, "grey 28x28 crops of scikit-learn's sample photographs"),
    OODSpec("gaussian", "far", True, _FMNIST + _CIFAR + ("mnist",),
            "Gaussian noise with the ID pixel mean/std, clipped to the pixel range"),
    OODSpec("uniform", "far", True, _FMNIST + _CIFAR + ("mnist",),
            "uniform noise over the pixel range"),
    # need a download, for Fashion-MNIST
    OODSpec("mnist", "near", False, _FMNIST, "MNIST test set"),
    OODSpec("kmnist", "near", False, _FMNIST, "Kuzushiji-MNIST test set"),
    OODSpec("omniglot", "far", False, _FMNIST, "Omniglot evaluation characters, inverted, 28x28"),
    OODSpec("cifar10_gray", "far", False, _FMNIST, "CIFAR-10 test set in grey, resized to 28x28"),
    # need a download, for CIFAR in-distribution
    OODSpec("cifar100", "near", False, ("cifar10",), "CIFAR-100 test set"),
    OODSpec("cifar10", "near", False, ("cifar100",), "CIFAR-10 test set"),
    OODSpec("svhn", "far", False, _CIFAR, "SVHN test set"),
    OODSpec("textures", "far", False, _CIFAR, "Describable Textures (DTD), resized to 32x32"),
    OODSpec("places365", "far", False, _CIFAR, "Places365 validation images, 32x32"),
)}


def ood_sets_for(dataset: str, offline_only: bool = False) -> tuple[str, ...]:
    """Names of the OOD sets that apply to ``dataset`` (near ones first)."""
    specs = [s for s in OOD_SETS.values()
             if dataset in s.id_sets and (s.offline or not offline_only)]
    return tuple(s.name for s in sorted(specs, key=lambda s: s.kind != "near"))


def default_ood_sets(dataset: str) -> tuple[str, ...]:
    """The default evaluation sets: the offline ones where they exist, else all that apply."""
    return ood_sets_for(dataset, offline_only=True) if dataset in _FMNIST else ood_sets_for(dataset)


# --------------------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------------------
SYSTEM_DATA = Path("/usr/share/datasets")   # where Debian's dataset-* packages install
_SPLIT_SEED = 12345                         # fixed: the validation split never depends on the run seed
_VAL_FRACTION = 12                          # the last 1/12 of the permuted training file is validation

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
        try:
            import torchvision
            root.mkdir(parents=True, exist_ok=True)
            getattr(torchvision.datasets, _TORCHVISION_CLASS[source])(
                root=str(root), train=False, download=True)
        except Exception as exc:   # no network shows up as URLError, OSError, RuntimeError, ...
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
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        raw = bytearray(f.read())    # bytearray: np.frombuffer gives a writable array
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic bytes {bytes(raw[:4])!r})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=4 + 4 * ndim)
    return data.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def _unpickle(path: Path) -> dict:
    """A CIFAR python-format pickle, with its keys as ``str`` whatever the pickling Python was."""
    with open(path, "rb") as f:
        obj = pickle.load(f, encoding="bytes")
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
    arrays = [read_idx(_has_file(path, f)) for f in _IDX_FILES]
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


# --------------------------------------------------------------------------------------------------
# OOD sets: every builder returns uint8 [N, C, H, W] in the ID image shape
# --------------------------------------------------------------------------------------------------
def to_id_shape(x: torch.Tensor, shape: tuple[int, ...], chunk: int = 1024) -> torch.Tensor:
    """Convert uint8 images ``[N, c, h, w]`` to ``shape = (C, H, W)``: RGB to grey by ITU-R 601 luma
    (0.299 R + 0.587 G + 0.114 B) or grey repeated to RGB, then antialiased bilinear resizing."""
    channels, size = shape[0], tuple(shape[1:])
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    out = []
    for part in x.split(chunk):
        f = part.float()
        if f.shape[1] == 3 and channels == 1:
            f = (f * luma).sum(1, keepdim=True)
        elif f.shape[1] == 1 and channels == 3:
            f = f.expand(-1, 3, -1, -1)
        if tuple(f.shape[2:]) != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False, antialias=True)
        out.append(f.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out) if out else torch.empty((0, *shape), dtype=torch.uint8)


def _digits(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """scikit-learn's 1,797 8x8 digits (values 0..16), bilinearly upsampled to the ID size and scaled
    so that their mean pixel equals the ID training mean pixel."""
    from sklearn.datasets import load_digits
    x = torch.from_numpy(load_digits().images).float()[:, None]
    x = F.interpolate(x, size=d.image_shape[1:], mode="bilinear", align_corners=False)
    target = 255.0 * sum(d.mean) / len(d.mean)
    x = (x * (target / x.mean())).round().clamp(0, 255).to(torch.uint8)
    return x.expand(-1, d.image_shape[0], -1, -1).contiguous()


def _heldout(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """Test-file images of the source classes this ID set does not train on (open-set split)."""
    arrays = source_arrays(d.spec.source, download)
    held = [c for c in range(len(arrays.class_names)) if c not in (d.spec.classes or ())]
    return torch.from_numpy(arrays.test_x[np.isin(arrays.test_y, held)]).clone()


def _photos(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """``n`` grey square crops of scikit-learn's two sample photographs (side uniform in [28, 160]
    px, random position and photo), resized to the ID size with antialiasing."""
    from sklearn.datasets import load_sample_images
    luma = torch.tensor([0.299, 0.587, 0.114])
    photos = [torch.from_numpy(np.asarray(p, dtype=np.float32)) @ luma
              for p in load_sample_images().images]          # each [H, W] grey
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(len(photos), (n,), generator=g)
    side = torch.randint(28, 161, (n,), generator=g)
    u = torch.rand(n, 2, generator=g)
    out = torch.empty((n, *d.image_shape), dtype=torch.uint8)
    for s in side.unique().tolist():       # one interpolate call per crop size
        idx = (side == s).nonzero().flatten()
        crops = []
        for i in idx.tolist():
            p = photos[which[i]]
            top = int(u[i, 0] * (p.shape[0] - s + 1))
            left = int(u[i, 1] * (p.shape[1] - s + 1))
            crops.append(p[top:top + s, left:left + s])
        out[idx] = to_id_shape(torch.stack(crops)[:, None].round().to(torch.uint8), d.image_shape)
    return out


def _gaussian(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """Per-pixel N(ID mean, ID std) in pixel units, clipped to [0, 255]."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.tensor(d.mean).view(1, -1, 1, 1) * 255
    std = torch.tensor(d.std).view(1, -1, 1, 1) * 255
    x = torch.randn((n, *d.image_shape), generator=g) * std + mean
    return x.round().clamp(0, 255).to(torch.uint8)


def _uniform(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """Per-pixel uniform integers in [0, 255]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *d.image_shape), generator=g, dtype=torch.uint8)


def _test_split(source: str) -> Callable[..., torch.Tensor]:
    """Builder: the test split of a file family we read ourselves, converted to the ID shape."""
    def build(d: IDData, seed: int, n: int, download) -> torch.Tensor:
        """The test split of ``source`` in the ID image shape."""
        return to_id_shape(torch.from_numpy(source_arrays(source, download).test_x), d.image_shape)
    return build


def _torchvision_set(cls_name: str, download: bool | None, **kwargs):
    """A torchvision dataset found under one of :func:`data_roots`, else downloaded into the first."""
    import torchvision
    cls, roots = getattr(torchvision.datasets, cls_name), data_roots()
    for root in roots:
        try:
            return cls(root=str(root), download=False, **kwargs)
        except (RuntimeError, OSError):
            continue
    name = f"{cls_name} (torchvision's layout under a root)"
    if download is False:
        raise DatasetNotFoundError(name, roots)
    try:
        roots[0].mkdir(parents=True, exist_ok=True)
        return cls(root=str(roots[0]), download=True, **kwargs)
    except Exception as exc:   # no network shows up as URLError, OSError, RuntimeError, ...
        raise DatasetNotFoundError(name, roots, f"{type(exc).__name__}: {exc}") from exc


def _pil_set(cls_name: str, invert: bool = False, cap: bool = False, **kwargs):
    """Builder for a torchvision set of PIL images: centre square crop, ID channels and size;
    ``invert`` turns dark-on-white into bright-on-black; ``cap`` keeps a seeded random ``n``."""
    def build(d: IDData, seed: int, n: int, download) -> torch.Tensor:
        """The (seeded subset of the) torchvision set in the ID image shape."""
        ds = _torchvision_set(cls_name, download, **kwargs)
        idx = range(len(ds))
        if cap and n < len(ds):
            idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        mode, out = ("L" if d.image_shape[0] == 1 else "RGB"), []
        for i in idx:
            a = torch.from_numpy(np.asarray(ds[i][0].convert(mode), dtype=np.uint8).copy())
            a = a[None] if a.ndim == 2 else a.permute(2, 0, 1)
            s = min(a.shape[1:])
            top, left = (a.shape[1] - s) // 2, (a.shape[2] - s) // 2
            out.append(to_id_shape(a[None, :, top:top + s, left:left + s], d.image_shape))
        x = torch.cat(out)
        return 255 - x if invert else x
    return build


def _svhn(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """The SVHN test set (26,032 digits, RGB 32x32)."""
    ds = _torchvision_set("SVHN", download, split="test")
    return to_id_shape(torch.from_numpy(ds.data), d.image_shape)


_OOD_BUILDERS: dict[str, Callable[..., torch.Tensor]] = {
    "digits": _digits, "heldout": _heldout, "photos": _photos,
    "gaussian": _gaussian, "uniform": _uniform,
    "mnist": _test_split("mnist"), "kmnist": _test_split("kmnist"),
    "cifar10_gray": _test_split("cifar10"), "cifar10": _test_split("cifar10"),
    "cifar100": _test_split("cifar100"), "svhn": _svhn,
    "omniglot": _pil_set("Omniglot", invert=True, background=False),
    "textures": _pil_set("DTD", split="test"),
    # 36,500 256x256 JPEGs: decode a seeded random n of them, not all
    "places365": _pil_set("Places365", cap=True, split="val", small=True),
}


def load_ood(name: str, id_data: IDData, seed: int = 0, n: int = 2000,
             download: bool | None = None) -> torch.Tensor:
    """An OOD set for ``id_data`` as uint8 ``[N, C, H, W]`` in the ID image shape.

    ``n`` sizes the generated sets (photos, gaussian, uniform; a random subset of places365); the
    others are whole files. ``seed`` makes every random set reproducible.
    """
    valid = ood_sets_for(id_data.name)
    if name not in valid:
        raise ValueError(f"OOD set {name!r} does not apply to {id_data.name!r}; "
                         f"valid: {', '.join(valid)}")
    x = _OOD_BUILDERS[name](id_data, seed, n, download)
    if tuple(x.shape[1:]) != id_data.image_shape or x.dtype != torch.uint8:
        raise RuntimeError(f"OOD set {name!r} built {tuple(x.shape)} {x.dtype}, "
                           f"expected [N, {id_data.image_shape}] uint8")
    return x


# --------------------------------------------------------------------------------------------------
# Batches from memory
# --------------------------------------------------------------------------------------------------
class TensorLoader:
    """Mini-batches ``(x, y)`` from in-memory uint8 images, normalised on the device.

    ``x = (images / 255 - mean) / std`` per channel, float32. The uint8 set moves to ``device`` once;
    a batch is an ``index_select`` there. With ``shuffle`` a CPU generator seeded with ``seed`` draws a
    fresh permutation every epoch, so equal seeds give equal orders. ``augment`` applies, per image, a
    random crop of the 4-pixel zero-padded image and a horizontal flip with probability 1/2 (the
    standard CIFAR augmentation, He et al. 2016, section 4.2), vectorised over the batch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, batch_size: int,
                 shuffle: bool = False, seed: int = 0, augment: bool = False,
                 drop_last: bool = False, device: str | torch.device = "cpu"):
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"images must be uint8 [N, C, H, W] with N labels; got "
                             f"{images.dtype} {tuple(images.shape)} and {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        # (x/255 - mean)/std == x * scale + shift, shapes [1, C, 1, 1]
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std_t), -mean_t / std_t
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = (torch.randperm(n, generator=self.generator) if self.shuffle
                 else torch.arange(n)).to(self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = self.images.index_select(0, idx)
            if self.augment:
                x = self._crop_flip(x)
            yield x.float() * self.scale + self.shift, self.labels.index_select(0, idx)

    def _crop_flip(self, x: torch.Tensor, pad: int = 4) -> torch.Tensor:
        """Random ``H x W`` crop of the zero-padded batch and random horizontal flip, by gathering."""
        b, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=self.generator).to(self.device)
        flip = (torch.rand(b, generator=self.generator) < 0.5).to(self.device)
        cols = torch.arange(w, device=self.device)
        cols = torch.where(flip[:, None], w - 1 - cols, cols) + offsets[:, 1:]          # [B, W]
        rows = torch.arange(h, device=self.device) + offsets[:, :1]                      # [B, H]
        batch = torch.arange(b, device=self.device)[:, None, None]
        out = padded[batch, :, rows[:, :, None], cols[:, None, :]]                       # [B, H, W, C]
        return out.permute(0, 3, 1, 2).contiguous()


class Loaders(NamedTuple):
    """The three loaders of a run."""
    train: TensorLoader
    val: TensorLoader
    test: TensorLoader


def make_loaders(id_data: IDData, batch_size: int, seed: int, device: str | torch.device = "cpu",
                 max_train_samples: int = 0, eval_batch_size: int = 2048) -> Loaders:
    """Train (shuffled by ``seed``; augmented for CIFAR sources), validation and test loaders.
    ``max_train_samples > 0`` trains on a seeded random subset of that size."""
    x, y = id_data.train_x, id_data.train_y
    if 0 < max_train_samples < len(y):
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:max_train_samples]
        x, y = x[keep], y[keep]
    stats = (id_data.mean, id_data.std)
    augment = id_data.spec.source in ("cifar10", "cifar100")
    return Loaders(
        TensorLoader(x, y, *stats, batch_size, shuffle=True, seed=seed, augment=augment, device=device),
        TensorLoader(id_data.val_x, id_data.val_y, *stats, eval_batch_size, device=device),
        TensorLoader(id_data.test_x, id_data.test_y, *stats, eval_batch_size, device=device))


# --------------------------------------------------------------------------------------------------
# The embedded benchmark, summarised
# --------------------------------------------------------------------------------------------------
def benchmark_sets(dataset: str = "fashion_mnist", seed: int = 0
                   ) -> list[tuple[dict, torch.Tensor, torch.Tensor | None]]:
    """``(row, images, labels or None)`` for the ID splits of ``dataset`` and every offline OOD set
    of it and, for Fashion-MNIST sources, of ``fashion_mnist_6`` (so ``heldout`` is included)."""
    d = load_id(dataset, seed)
    shape = list(d.image_shape)
    out = [(dict(name=f"{dataset} {split}", role=f"id-{split}", kind="id", n=len(y), shape=shape,
                 id_set=dataset, source=d.spec.description, classes=list(d.class_names)), x, y)
           for split, x, y in (("train", d.train_x, d.train_y), ("val", d.val_x, d.val_y),
                               ("test", d.test_x, d.test_y))]
    id_sets = [d] + ([load_id("fashion_mnist_6", seed)]
                     if d.spec.source == "fashion_mnist" and dataset != "fashion_mnist_6" else [])
    seen: set[str] = set()
    for ids in id_sets:
        for name in ood_sets_for(ids.name, offline_only=True):
            if name in seen:
                continue
            seen.add(name)
            x, spec = load_ood(name, ids, seed), OOD_SETS[name]
            out.append((dict(name=name, role="ood", kind=spec.kind, n=len(x), shape=shape,
                             id_set=ids.name, source=spec.description), x, None))
    return out


def benchmark_summary(dataset: str = "fashion_mnist", seed: int = 0) -> list[dict]:
    """One row per ID split and offline OOD set: name, role (id-train/id-val/id-test/ood), kind
    (id/near/far), n, shape, id_set, source, and for the ID rows the class names."""
    return [row for row, _, _ in benchmark_sets(dataset, seed)]
