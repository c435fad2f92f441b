"""Deploying a finished run: export its masked model with the weights stored sparse (CSR where
smaller) and load it for inference on the measured-faster kernel per layer (:mod:`.export`; the
kernels are :mod:`moon.sparse.inference`). ``python -m moon export RUN`` calls :func:`export`."""

from moon.deploy.export import FORMATS, Exported, export, load_exported, pack_model

__all__ = ["FORMATS", "Exported", "export", "load_exported", "pack_model"]
