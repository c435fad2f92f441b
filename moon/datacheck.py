"""Checks of dataset arrays at load, before any compute (design.md, section 8).

A dataset file that disagrees with itself trains without a word or fails deep inside torch: an
image file with more images than its label file has labels pairs the wrong images with the labels
(the run ends "at chance" and blames the learning rate), a label outside the classes fails in the
loss after the first batch, 14x14 images fail in a matmul ("mat1 and mat2 shapes cannot be
multiplied"), and an OOD set whose files are the ID set itself gives an AUROC of 0.5 that reads as
a finding. Each check here raises :class:`~moon.errors.BadData` with one line naming the file (or
set) and what is allowed.
"""

from __future__ import annotations

import numpy as np
import torch

from moon.errors import BadData

# An OOD set sharing more than this share of its images with the ID test set is the ID data.
MAX_SHARED_WITH_ID = 0.05


def check_pair(images: np.ndarray, labels: np.ndarray, image_file, label_file,
               num_classes: int) -> None:
    """One split's image and label arrays agree: ``[N, ...]`` images and ``[N]`` labels, every
    label in ``0..num_classes-1``."""
    if labels.ndim != 1:
        raise BadData(f"{label_file} holds an array of shape {labels.shape}; a label file holds "
                      f"one label per image [N]")
    if len(images) != len(labels):
        raise BadData(f"{image_file} holds {len(images)} images but {label_file} holds "
                      f"{len(labels)} labels; the two files of a split must agree (one is "
                      f"truncated or from another dataset): replace them with the originals")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise BadData(f"{label_file} holds label {int(bad[0])} ({len(bad)} of {len(labels)} "
                      f"labels are outside 0..{num_classes - 1}); this dataset has "
                      f"{num_classes} classes: replace the file with the original")


def check_idx_splits(files: list, arrays: list[np.ndarray]) -> None:
    """The four IDX arrays (train images, labels, test images, labels) of a 10-class set."""
    for images, labels in ((0, 1), (2, 3)):
        if arrays[images].ndim != 3:
            raise BadData(f"{files[images]} holds an array of shape {arrays[images].shape}; an "
                          f"IDX image file holds [N, height, width]")
        check_pair(arrays[images], arrays[labels], files[images], files[labels], 10)


CIFAR_CLASSES = {"labels": 10, "fine_labels": 100, "coarse_labels": 20}


def check_cifar_batches(folder, names: list[str], batches: list[dict], key: str) -> None:
    """CIFAR python batches: rows of 3x32x32 values, one label (``key``) per row, in range."""
    for name, batch in zip(names, batches):
        data = np.asarray(batch.get("data"))
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise BadData(f"{folder / name} holds data of shape {data.shape}; CIFAR rows are "
                          f"3x32x32 = 3072 values: replace it with the original file")
        check_pair(data, np.asarray(batch.get(key, [])), folder / name,
                   f"{folder / name} ({key})", CIFAR_CLASSES[key])


def check_image_shape(name: str, shape: tuple[int, ...], expected: tuple[int, ...],
                      where) -> None:
    """The ID images are the shape the model for ``name`` is built for (``(C, H, W)``)."""
    if tuple(shape) != tuple(expected):
        got = "x".join(map(str, shape))
        raise BadData(f"the {name} files in {where} hold {got} images, but dataset={name} (and "
                      f"the model built for it) expects {'x'.join(map(str, expected))} "
                      f"(channels x height x width): replace the files with the original ones")


def shared_with(images: torch.Tensor, reference: torch.Tensor) -> int:
    """How many of ``images`` (uint8 ``[N, C, H, W]``) are byte for byte an image of
    ``reference`` (same shape)."""
    if images.shape[1:] != reference.shape[1:] or not len(images) or not len(reference):
        return 0
    seen = {row.tobytes() for row in reference.reshape(len(reference), -1).numpy()}
    return sum(row.tobytes() in seen for row in images.reshape(len(images), -1).numpy())


def check_not_id(name: str, images: torch.Tensor, id_name: str, id_test: torch.Tensor,
                 source: str = "") -> None:
    """An OOD set is not the ID data: at most :data:`MAX_SHARED_WITH_ID` of its images may be ID
    test images (a few blank images may coincide; a whole set may not)."""
    shared = shared_with(images, id_test)
    if shared > MAX_SHARED_WITH_ID * len(images):
        raise BadData(f"OOD set {name!r} shares {shared} of its {len(images)} images with the ID "
                      f"test set of {id_name}: its files are the ID data, not OOD"
                      + (f" (its images come from {source})" if source else "")
                      + "; replace them, or leave the set out (ood_sets=...)")
