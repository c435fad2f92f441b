"""OOD sets: each is a uint8 tensor ``[N, C, H, W]`` in the shape and pixel range of its ID set.

Offline sets (the embedded Fashion-MNIST benchmark) are built from scikit-learn's bundled data and
from noise, deterministically by seed; the others come from torchvision datasets (a network is
needed the first time). The registry (names, near/far) is :data:`moon.data.OOD_SETS`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from moon.data import (
    OOD_SETS,
    DatasetNotFoundError,
    IDData,
    data_roots,
    load_id,
    ood_sets_for,
    source_arrays,
)


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
