"""Sparse models that run sparse: export a run's masked model in CSR (:mod:`moon.sparse.export`) and
run it with the faster of a CSR and a dense kernel per layer, chosen by measurement
(:mod:`moon.sparse.inference`).

The mask machinery (``moon.masks``, ``moon.masking``) belongs here too (design.md, section 2) and
moves when an issue next touches it.
"""

from moon.sparse.export import FORMATS, Exported, export, load_exported, pack_model
from moon.sparse.inference import (KINDS, MedianTimer, SparseConv2d, SparseLayer, SparseLinear,
                                   SparseModel, batch_bucket, choose, settle)

__all__ = ["FORMATS", "KINDS", "Exported", "MedianTimer", "SparseConv2d", "SparseLayer",
           "SparseLinear", "SparseModel", "batch_bucket", "choose", "export", "load_exported",
           "pack_model", "settle"]
