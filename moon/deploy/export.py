"""Export a run's evaluated model with its masked weights stored sparse, and load it for inference.

The file (``torch.save``; plain tensors, ints, strings and lists only, so it loads with
``weights_only=True``) holds:

* ``config``: the run's RunConfig dict (the architecture is rebuilt from it);
* ``layers``: per maskable weight ``{"kind": "linear" | "conv2d", "shape", "storage": "csr" |
  "dense", "nnz"[, "index": "int16" | "int32"]}``; a convolution's CSR matrix is its weight lowered
  for im2col, ``[out, C kh kw]``;
* ``state``: ``[key, dtype, shape]`` of every other tensor of the state dict (biases, dense-stored
  weights, buffers);
* ``blobs``: one flat tensor per dtype holding, in order, each CSR layer's values, col_indices and
  crow_indices, then the ``state`` tensors. One blob per dtype, because each tensor of a torch.save
  zip costs about 250 bytes of headers: a tenth of a LeNet-5 file at 2% density.

Sizes (per layer of ``n`` weights and ``r`` rows): CSR costs ``4 nnz`` (float32 values) plus
``s nnz + s (r + 1)`` index bytes, where ``s`` is 2 when every index of the layer fits in int16 and 4
(int32) otherwise; indices are widened to int32 on loading. A layer is stored dense when that is not
smaller than its ``4 n`` dense bytes (densities above about 2/3, or 1/2 with int32 indices). Which
kernel runs is decided at run time, by measurement (:mod:`moon.sparse.inference`), not by storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moon.errors import CorruptFile, MoonError
from moon.sparse.inference import (SparseConv2d, SparseLinear, SparseModel, Timer, csr_tensor,
                                   to_csr)

FORMAT, VERSION = "moon-sparse-model", 1
FORMATS = ("csr", "dense")
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16, "int16": torch.int16, "int32": torch.int32,
           "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool}


@dataclass(frozen=True)
class Exported:
    """What :func:`export` wrote: its path and size beside the dense checkpoint's."""

    path: Path
    format: str
    bytes: int
    dense_path: Path
    dense_bytes: int
    nnz: int
    weights: int

    @property
    def size_ratio(self) -> float:
        return self.bytes / self.dense_bytes

    @property
    def density(self) -> float:
        return self.nnz / self.weights

    def summary(self) -> str:
        return (f"wrote {self.path}: {_kb(self.bytes)} ({self.format}), {self.size_ratio:.3f} x "
                f"{self.dense_path.name}'s {_kb(self.dense_bytes)}; {self.nnz:,} of {self.weights:,} "
                f"maskable weights non-zero (density {self.density:.4f})")


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} kB"


def export(run_dir: str | Path, fmt: str = "csr", out: str | Path | None = None,
           force: bool = False) -> Exported:
    """Write ``run_dir``'s evaluated model (``model.pt``) with its weights in ``fmt`` (csr: sparse
    where smaller; dense: every weight dense, the masked reference) to ``out`` (default
    ``run_dir/model.<fmt>.pt``). Checked before any work (:func:`moon.rundir.check_output_file`):
    ``out`` is never one of a run's records, and an existing file is replaced only with ``force``."""
    from moon.files import atomic_torch_save
    from moon.rundir import check_output_file
    from moon.runner import MODEL_FILE, load_model

    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is not known; choose one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    source = run_dir / MODEL_FILE
    if not source.is_file():
        raise MoonError(f"{source} does not exist: export reads the evaluated model that a complete "
                        f"run writes; pass a finished run folder, or run it first "
                        f"(python -m moon run --out {run_dir} ...)")
    path = check_output_file(out if out is not None else run_dir / f"model.{fmt}.pt", force)
    model, cfg = load_model(run_dir)
    state = pack_model(model, cfg.to_dict(), fmt)
    atomic_torch_save(state, path)
    nnz = sum(layer["nnz"] for layer in state["layers"].values())
    weights = sum(math.prod(layer["shape"]) for layer in state["layers"].values())
    return Exported(path, fmt, path.stat().st_size, source, source.stat().st_size, nnz, weights)


@torch.no_grad()
def pack_model(model: nn.Module, config: dict[str, Any], fmt: str = "csr") -> dict[str, Any]:
    """The exported file's contents for ``model`` (its state as evaluated: masked weights).

    Blob order: each CSR layer's values (float32), col_indices and crow_indices (its ``index``
    dtype), in layer order; then the other tensors in ``state`` order (``[key, dtype, shape]``)."""
    from moon.sparse.masking import maskable_parameters

    maskable = maskable_parameters(model)
    modules = dict(model.named_modules())
    blobs, layers = _Blobs(), {}
    for key, weight in maskable.items():
        module = modules[key.rpartition(".")[0]]
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            raise MoonError(f"{key}: only Linear and Conv2d weights can be exported sparse, "
                            f"not {type(module).__name__}")
        w = weight.detach().cpu().float()
        nnz = int(w.count_nonzero())
        index = _index_dtype(w, nnz)
        csr = fmt == "csr" and _csr_bytes(w, nnz, index) < 4 * w.numel()
        layers[key] = {"kind": "conv2d" if isinstance(module, nn.Conv2d) else "linear",
                       "shape": list(w.shape), "storage": "csr" if csr else "dense", "nnz": nnz}
        if csr:
            matrix = to_csr(w.flatten(1))
            layers[key]["index"] = str(index).removeprefix("torch.")
            blobs.put(matrix.values())
            blobs.put(matrix.col_indices().to(index))
            blobs.put(matrix.crow_indices().to(index))
    state = []
    for key, value in model.state_dict().items():
        if key in layers and layers[key]["storage"] == "csr":
            continue
        t = value.detach().cpu().float() if key in layers else value.detach().cpu()
        state.append([key, blobs.put(t), list(t.shape)])
    return {"format": FORMAT, "version": VERSION, "storage": fmt, "config": config,
            "layers": layers, "state": state, "blobs": blobs.tensors()}


def _index_dtype(w: torch.Tensor, nnz: int) -> torch.dtype:
    """int16 when every column index and row pointer fits (lossless), else int32."""
    return torch.int16 if max(w.flatten(1).shape[1], nnz) < 2 ** 15 else torch.int32


def _csr_bytes(w: torch.Tensor, nnz: int, index: torch.dtype) -> int:
    s = torch.tensor([], dtype=index).element_size()
    return 4 * nnz + s * nnz + s * (w.shape[0] + 1)


class _Blobs:
    """Tensors kept as one flat tensor per dtype: ``put`` appends (writing), ``take`` reads the
    next ``shape`` of a dtype back in the same order (loading)."""

    def __init__(self, blobs: dict[str, torch.Tensor] | None = None):
        self.parts: dict[str, list[torch.Tensor]] = {}
        self.blobs, self.cursor = blobs or {}, {}

    def put(self, t: torch.Tensor) -> str:
        name = str(t.dtype).removeprefix("torch.")
        if name not in _DTYPES:
            raise MoonError(f"tensors of dtype {name} cannot be exported")
        self.parts.setdefault(name, []).append(t.reshape(-1))
        return name

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: torch.cat(parts) for name, parts in self.parts.items()}

    def take(self, dtype: str, shape: list[int], path: Path) -> torch.Tensor:
        n, start = math.prod(shape), self.cursor.get(dtype, 0)
        blob = self.blobs.get(dtype)
        if blob is None or blob.dtype != _DTYPES[dtype] or blob.numel() < start + n:
            raise MoonError(f"{path} is truncated or inconsistent ({dtype} data runs short); "
                            f"export the run again")
        self.cursor[dtype] = start + n
        return blob[start:start + n].view(shape)

    def check_read(self, path: Path) -> None:
        left = {d: b.numel() - self.cursor.get(d, 0) for d, b in self.blobs.items()}
        if any(left.values()):
            raise MoonError(f"{path} holds data no layer reads ({left}); export the run again")


def load_exported(path: str | Path, kernel: str = "auto", device: str | torch.device = "cpu",
                  timer: Timer | None = None) -> SparseModel:
    """Rebuild the inference module of an exported file (``weights_only=True``, strict keys and
    shapes): the run's architecture with each maskable layer replaced by a sparse one."""
    from moon.files import load_checkpoint

    path = Path(path)
    state = load_checkpoint(path)
    _check_header(state, path)
    try:
        net = _rebuild(state, path)
    except MoonError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as err:
        # a layer of another architecture, broken CSR indices, a wrong type: one line, not torch's
        raise CorruptFile(f"{path} is not a well-formed moon sparse export ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); export the run "
                          f"again") from None
    net = net.to(device).eval().requires_grad_(False)
    return SparseModel(net, kernel=kernel, timer=timer).eval()


def _check_header(state: Any, path: Path) -> None:
    """The fields every export has, of the right types, and finite weights (a trained model has
    no NaN or infinity; one would silently turn every score it touches into NaN)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MoonError(f"{path} is not a moon sparse export (python -m moon export RUN_DIR writes one)")
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CorruptFile(f"{path} has no export version (found {version!r}); export the run again")
    if version > VERSION:
        raise MoonError(f"{path} has export version {version}; this code reads up to "
                        f"{VERSION}: update moon")
    for key, kind in (("config", dict), ("layers", dict), ("blobs", dict), ("state", list)):
        if not isinstance(state.get(key), kind):
            raise CorruptFile(f"{path}: {key} is {type(state.get(key)).__name__}, an export "
                              f"writes a {kind.__name__}; export the run again")
    for name, blob in state["blobs"].items():
        if isinstance(blob, torch.Tensor) and blob.is_floating_point():
            bad = int((~torch.isfinite(blob)).sum())
            if bad:
                raise CorruptFile(f"{path} holds {bad} non-finite {name} value(s) (NaN or "
                                  f"infinity); a trained model has none: export the run again")


def _rebuild(state: dict, path: Path) -> nn.Module:
    """The run's architecture with each maskable layer replaced by a sparse one, strict keys and
    shapes."""
    from moon.configure import from_params
    from moon.models import model_for

    net = model_for(from_params(state["config"]))
    blobs = _Blobs(state["blobs"])
    csr = {}
    for key, layer in state["layers"].items():
        if layer["storage"] == "csr":
            nnz, rows = layer["nnz"], layer["shape"][0]
            csr[key] = (blobs.take("float32", [nnz], path), blobs.take(layer["index"], [nnz], path),
                        blobs.take(layer["index"], [rows + 1], path))
    rest = {key: blobs.take(dtype, shape, path) for key, dtype, shape in state["state"]}
    blobs.check_read(path)
    for key, layer in state["layers"].items():
        _replace(net, key, layer, csr.get(key), rest.pop(key, None), path,
                 with_csr=state["storage"] == "csr")
    net.load_state_dict(rest, strict=True)
    return net


def _replace(net: nn.Module, key: str, layer: dict[str, Any],
             parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
             dense: torch.Tensor | None, path: Path, with_csr: bool) -> None:
    """Swap the module owning weight ``key`` for a sparse layer built from its stored CSR ``parts``
    (values, col_indices, crow_indices) or ``dense`` weight. A csr export's dense-stored layer
    (stored so because that was smaller) may still run its CSR kernel; a dense export runs dense
    kernels only."""
    owner = key.rpartition(".")[0]
    module = net.get_submodule(owner)
    if not isinstance(getattr(module, "weight", None), torch.Tensor):
        raise CorruptFile(f"{path}: {key} is no weight of the architecture its config describes "
                          f"({type(net).__name__}); the file does not match its config")
    shape = tuple(layer["shape"])
    if tuple(module.weight.shape) != shape or (dense is not None and tuple(dense.shape) != shape):
        raise MoonError(f"{path}: {key} has shape {shape}, the architecture "
                        f"{tuple(module.weight.shape)}; the file does not match its config")
    if parts is not None:
        values, cols, crow = parts
        csr = csr_tensor(crow, cols, values, (shape[0], math.prod(shape[1:])))
    elif dense is not None:
        csr = to_csr(dense.flatten(1)) if with_csr else None
    else:
        raise MoonError(f"{path} lacks the weight of {key}; export the run again")
    bias = torch.zeros(shape[0]) if module.bias is not None else None
    if isinstance(module, nn.Conv2d):
        sparse = SparseConv2d(owner, module, csr, dense, bias)
    else:
        sparse = SparseLinear(owner, shape, csr, dense, bias)
    parent, _, child = owner.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, child, sparse)
