"""Sparse training and inference: the mask machinery (:mod:`.masks`: pure tensor functions, ERK,
drop and grow; :mod:`.masking`: :class:`~moon.sparse.masking.Masking`, which holds and updates the
masks by parameter name; :mod:`.schedules`: drop fraction, update steps), the CSR training
kernels (:mod:`.training`) and which layers use them under ``kernel="auto"``
(:mod:`.kernel_choice`, by timing), and sparse inference with the faster of a CSR and a dense kernel per
layer, chosen by measurement (:mod:`.inference`). Exporting a run's model for it is
:mod:`moon.deploy`.
"""

from moon.sparse.inference import (KINDS, MedianTimer, SparseConv2d, SparseLayer, SparseLinear,
                                   SparseModel, batch_bucket, choose, settle)

__all__ = ["KINDS", "MedianTimer", "SparseConv2d", "SparseLayer", "SparseLinear", "SparseModel",
           "batch_bucket", "choose", "settle"]
