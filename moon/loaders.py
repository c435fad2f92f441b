"""Mini-batches from in-memory tensors: no per-sample PIL work, no worker processes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F

from moon.data import IDData


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
                 max_train_samples: int = 0, eval_batch_size: int = 2048,
                 subset_seed: int | None = None) -> Loaders:
    """Train (shuffled by ``seed``; augmented for CIFAR sources), validation and test loaders.
    ``max_train_samples > 0`` trains on a random subset of that size, drawn with ``subset_seed``
    (default ``seed``): the first images of one permutation, so subsets of one seed are nested."""
    x, y = id_data.train_x, id_data.train_y
    if 0 < max_train_samples < len(y):
        gen = torch.Generator().manual_seed(seed if subset_seed is None else subset_seed)
        keep = torch.randperm(len(y), generator=gen)[:max_train_samples]
        x, y = x[keep], y[keep]
    stats = (id_data.mean, id_data.std)
    augment = id_data.spec.source in ("cifar10", "cifar100")
    return Loaders(
        TensorLoader(x, y, *stats, batch_size, shuffle=True, seed=seed, augment=augment, device=device),
        TensorLoader(id_data.val_x, id_data.val_y, *stats, eval_batch_size, device=device),
        TensorLoader(id_data.test_x, id_data.test_y, *stats, eval_batch_size, device=device))
