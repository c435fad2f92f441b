"""One configuration for every run: :class:`RunConfig` and its validation.

A run is fully described by a frozen dataclass of flat scalar fields. Every field has a default and a
one-line help (``option(default, doc)``, kept in the field's metadata: :func:`field_docs`);
``__post_init__`` rejects bad values with a ``ValueError`` that names the field, the value and what
is allowed. Presets, ``key=value`` overrides and notebook parameters become a RunConfig in
:mod:`moon.configure` (``from_params({"density": 0.1}, "quick")`` is "the quick preset, at density
0.1"). Notebooks' papermill ``parameters`` cells assign exactly these field names (plus ``preset``
and ``out_dir``).

Defaults describe the study's main configuration: MOON (unknown class, auto-tuned alpha, weight
averaging) on RigL at density 0.05, LeNet-5 on the embedded Fashion-MNIST benchmark, sized to run in a
few minutes on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from moon.architectures import ARCHITECTURES
from moon.data import ID_SETS
from moon.ood.registry import DETECTORS as DETECTOR_SPECS
from moon.ood.sets import default_ood_sets, ood_sets_for
from moon.sparse.masking import METHODS_WITH_UPDATES
from moon.sparse.training import KERNELS

MODELS = tuple(ARCHITECTURES)                           # declared in moon.architectures
METHODS = ("dense", "static", *METHODS_WITH_UPDATES)    # the last ones update their topology
SPARSE_INITS = ("erk", "uniform")
# Scores and detectors, declared once in moon.ood.registry; some need the K+1 head ("unknown").
DETECTORS = tuple(DETECTOR_SPECS)
UNKNOWN_ONLY_DETECTORS = tuple(n for n, spec in DETECTOR_SPECS.items() if spec.needs_unknown_class)
AUTO = "auto"
MIN_EVAL_SAMPLES = 100                  # smallest max_eval_samples cap that gives a usable metric


def option(default: Any, doc: str) -> Any:
    """A RunConfig field with its one-line help (``doc``), kept in the field's metadata: the
    notebooks' parameters cells and :func:`field_docs` read it from there."""
    return dataclasses.field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training-and-evaluation run (see design.md, section 3)."""

    # --- what is trained -------------------------------------------------------------------------
    dataset: str = option("fashion_mnist", "in-distribution set, a key of moon.data.ID_SETS")
    model: str = option("lenet5", "mlp (LeNet-300-100) | lenet5 | resnet18 (CIFAR stem) | wrn")
    width: int = option(0, "MLP hidden widths: 0 is LeNet-300-100 (300, 100); w > 0 gives two "
                           "hidden layers of w (the capacity axis)")
    method: str = option("rigl", "dense | static | set | rigl | cigl")
    density: float = option(0.05, "fraction of maskable weights kept, in (0, 1]; dense needs 1")
    sparse_init: str = option("erk", "per-layer densities: erk (Erdos-Renyi-kernel) | uniform")
    dpnum: int = option(100, "CigL random mask: each active weight dropped w.p. 1/dpnum")
    rescale_init: bool = option(True, "initial sparse weights x 1/sqrt(layer density), so "
                                      "activations keep their dense-init scale (Evci et al. 2022)")

    # --- MOON -------------------------------------------------------------------------------------
    unknown_class: bool = option(True, "K+1 head with the unknown-aware loss re-weighting errors")
    alpha_final: float = option(1.0, "alpha reached in the last epoch (the paper's w_out: 1.0)")
    alpha_init_factor: float = option(64.0, "alpha0 is EWMA(mean (1-u)*CE) / this (w_out2: 64)")
    alpha_auto: bool = option(True, "False: alpha_final right after warm-up (ablation)")
    warmup_epochs: int | None = option(None, "epochs before alpha is set (plain CE); None: 5%"
                                             ", at least 1")
    averaging: bool = option(True, "weight averaging (\"voting\") over the last epochs; cigl always")
    average_epochs: int | None = option(None, "epochs averaged, at constant LR; None: 20% of "
                                              "epochs, at least 1")
    as_released: bool = option(False, "reproduce the released code's result-changing quirks")

    # --- optimisation -------------------------------------------------------------------------------
    epochs: int = option(20, "training epochs")
    batch_size: int = option(128, "training mini-batch")
    lr: float = option(0.05, "initial learning rate (SGD, Nesterov); at 0.1 LeNet-5, which has no"
                             " normalisation, diverged on some seeds")
    lr_final: float = option(0.005, "LR at the end of the cosine, kept through the averaging "
                                    "window")
    lr_hold_epochs: int | None = option(None, "last epochs held at lr_final (the cosine ends "
                                              "before them); None: the averaging window (0 "
                                              "without averaging)")
    lr_warmup_epochs: float = option(1.0, "linear LR warm-up from 0 over these epochs (0: none); "
                                          "without it LeNet-5 at 5% density diverged in epoch 1 "
                                          "on a seed")
    momentum: float = option(0.9, "SGD momentum, in [0, 1)")
    weight_decay: float = option(5e-4, "L2 on all parameters, as in the released MOON code")

    # --- sparse-topology updates (SET, RigL, CigL) ---------------------------------------------------
    update_interval: int | None = option(None, "steps between drop-and-grow updates; None: the "
                                               "released frequency (80 of 391 steps) scaled to "
                                               "the steps per epoch")
    drop_fraction: float = option(0.3, "initial drop fraction, cosine-decayed to 0 at update_end")
    update_end: float = option(0.75, "fraction of training after which the topology is frozen "
                                     "(and never later than the start of the averaging window)")

    # --- data and evaluation ----------------------------------------------------------------------
    max_train_samples: int = option(0, "use only this many training images (0: all)")
    subset_seed: int | None = option(None, "seed of that subset; None: the run's seed. A fixed "
                                           "value gives every seed the same images, nested across"
                                           " sizes")
    max_eval_samples: int = option(0, "cap on test and each OOD set's images (0: all)")
    ood_sets: str = option(AUTO, "comma-separated OOD set names; auto: the dataset's offline sets")
    detectors: str = option(AUTO, "comma-separated detector names; auto: all that apply")
    eval_batch_size: int = option(512, "batch size for evaluation passes (CPU-friendly)")
    fit_samples: int = option(10000, "ID training images detectors are fitted on (0: all)")
    dice_p: float = option(90.0, "DICE: percentile of the head's active contributions dropped")
    react_p: float = option(90.0, "ReAct: features clipped at this percentile of ID activations")
    knn_k: int = option(50, "KNN: distance to the k-th nearest ID training feature")
    ash_p: float = option(90.0, "ASH-S: per-sample percentile of features pruned (rest rescaled)")
    scale_p: float = option(85.0, "SCALE: percentile above which features set the scale factor")

    # --- execution ----------------------------------------------------------------------------------
    seed: int = option(0, "seeds weights, masks, data order and OOD set sampling")
    device: str = option(AUTO, "auto (CUDA when present, else CPU) | cpu | cuda | cuda:N")
    kernel: str = option("masked", "training kernel of sparse linear layers: masked | csr | auto; "
                                   "masked: dense x mask (the reference); csr: CSR kernels; auto:"
                                   " per layer, by a one-off timing. Convolutions stay masked. "
                                   "Same masks; metrics equal within float noise")
    resume: bool = option(False, "continue from the checkpoint in the output folder, if any")
    overwrite: bool = option(False, "replace a complete result of another configuration in the "
                                    "output folder (otherwise the run refuses)")

    def __post_init__(self) -> None:
        for name, value in _normalised_lists(self).items():
            object.__setattr__(self, name, value)
        for check in _CHECKS:
            check(self)

    # --- derived values -------------------------------------------------------------------------------
    @property
    def is_sparse(self) -> bool:
        return self.method != "dense"

    @property
    def uses_averaging(self) -> bool:
        """CigL's method includes weight averaging, so it is on for cigl whatever ``averaging`` says."""
        return self.averaging or self.method == "cigl"

    @property
    def warmup(self) -> int:
        """Warm-up epochs: the field, or 5% of training (5 of 100 in the paper), at least 1."""
        if self.warmup_epochs is not None:
            return self.warmup_epochs
        return max(1, round(0.05 * self.epochs))

    @property
    def averaged_epochs(self) -> int:
        """Averaging window in epochs: the field, or 20% of training (20 of 100 in the paper), >= 1."""
        if not self.uses_averaging:
            return 0
        if self.average_epochs is not None:
            return self.average_epochs
        return max(1, round(0.2 * self.epochs))

    @property
    def lr_hold(self) -> int:
        """Epochs held at ``lr_final`` at the end: the field, or the averaging window (so the
        averaged snapshots share one LR), 0 without averaging (the cosine spans the run)."""
        return self.averaged_epochs if self.lr_hold_epochs is None else self.lr_hold_epochs

    @property
    def train_subset_seed(self) -> int:
        """The seed that picks the ``max_train_samples`` subset: ``subset_seed``, else ``seed``."""
        return self.seed if self.subset_seed is None else self.subset_seed

    @property
    def update_stop(self) -> float:
        """Fraction of training where topology updates stop: ``update_end`` (0.7 with
        ``as_released``), but never inside the averaging window, so every averaged snapshot shares
        one mask and the average keeps it."""
        end = 0.7 if self.as_released else self.update_end
        if not self.uses_averaging:
            return end
        return min(end, 1.0 - self.averaged_epochs / self.epochs)

    @property
    def ood_set_list(self) -> tuple[str, ...]:
        if self.ood_sets == AUTO:
            return default_ood_sets(self.dataset)
        return tuple(s for s in self.ood_sets.split(",") if s)

    @property
    def detector_list(self) -> tuple[str, ...]:
        if self.detectors == AUTO:
            return tuple(d for d in DETECTORS
                         if self.unknown_class or d not in UNKNOWN_ONLY_DETECTORS)
        return tuple(d for d in self.detectors.split(",") if d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(RunConfig))


def field_docs() -> dict[str, str]:
    """Each RunConfig field's one-line help, in field order (from :func:`option`)."""
    return {f.name: f.metadata["doc"] for f in dataclasses.fields(RunConfig)}


# Fields that say how to run, not what is run: two runs that differ only in them are the same run.
# ``kernel`` is one: masks are the semantics, kernels an execution choice (design.md, section 10),
# so a checkpoint resumes on either kernel and a study's complete cells are reused whatever ran them.
EXECUTION_FIELDS = ("resume", "overwrite", "kernel")


def differing_fields(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``"field (saved -> now)"`` for every field of ``now`` whose value in ``saved`` differs,
    ignoring :data:`EXECUTION_FIELDS`. A field ``saved`` lacks (written before the field existed)
    counts as its default, so older results of the same run still match."""
    defaults = RunConfig().to_dict()
    keys = sorted((set(saved) | set(now)) - set(EXECUTION_FIELDS))
    return [f"{k} ({saved.get(k, defaults.get(k))!r} -> {now.get(k, defaults.get(k))!r})"
            for k in keys if saved.get(k, defaults.get(k)) != now.get(k, defaults.get(k))]


# --------------------------------------------------------------------------------------------------
# Validation: one small function per rule, each raising ValueError(field, value, allowed).
# --------------------------------------------------------------------------------------------------
def _bad(field: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{field}={value!r} is not allowed: {allowed}")


def check_knn_k(cfg: RunConfig, fitted: int) -> None:
    """KNN's rule, in one place: its k is at most the ``fitted`` training images the detectors are
    fitted on (the config checks the cap fit_samples / max_train_samples sets; the run's preflight
    the number its data really gives)."""
    if "knn" in cfg.detector_list and cfg.knn_k > fitted:
        raise _bad("knn_k", cfg.knn_k, f"at most the {fitted} training images the detectors are "
                                       f"fitted on; lower knn_k or raise fit_samples "
                                       f"(max_train_samples also caps them)")


def _normalised_lists(cfg: RunConfig) -> dict[str, str]:
    """Lists and tuples given for ood_sets/detectors become one canonical comma-separated string."""
    out = {}
    for name in ("ood_sets", "detectors"):
        value = getattr(cfg, name)
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str):
            raise _bad(name, value, "a comma-separated string of names, a list of names, or 'auto'")
        out[name] = ",".join(p.strip() for p in value.split(",") if p.strip()) or AUTO
    return out


def _check_choices(cfg: RunConfig) -> None:
    for name, options in (("dataset", tuple(ID_SETS)), ("model", MODELS), ("method", METHODS),
                          ("sparse_init", SPARSE_INITS)):
        value = getattr(cfg, name)
        if value not in options:
            raise _bad(name, value, f"choose one of {', '.join(options)}")


def _check_types(cfg: RunConfig) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        type_name = str(f.type)
        if value is None and "None" in type_name:
            continue
        if type_name.startswith("bool"):
            ok = isinstance(value, bool)
        elif type_name.startswith("int"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif type_name.startswith("float"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise _bad(f.name, value, f"expected a finite {type_name}")


def _check_width(cfg: RunConfig) -> None:
    if cfg.width < 0:
        raise _bad("width", cfg.width, "0 (LeNet-300-100) or a hidden width >= 1")
    if cfg.width and cfg.model != "mlp":
        raise _bad("width", cfg.width, f"only model=mlp has a width; model={cfg.model} needs 0")


def _check_sparsity(cfg: RunConfig) -> None:
    if not 0.0 < cfg.density <= 1.0:
        raise _bad("density", cfg.density, "a fraction in (0, 1]")
    if cfg.method == "dense" and cfg.density != 1.0:
        raise _bad("density", cfg.density, "method=dense needs density=1 (use a sparse method)")
    if cfg.method != "dense" and cfg.density == 1.0:
        raise _bad("density", cfg.density,
                   f"method={cfg.method} needs density < 1 (use method=dense for a dense model)")
    if cfg.dpnum < 2:
        raise _bad("dpnum", cfg.dpnum, "an integer >= 2 (CigL drops each weight w.p. 1/dpnum)")
    if cfg.update_interval is not None and cfg.update_interval < 1:
        raise _bad("update_interval", cfg.update_interval, "an integer >= 1 (steps)")
    if not 0.0 <= cfg.drop_fraction < 1.0:
        raise _bad("drop_fraction", cfg.drop_fraction, "a fraction in [0, 1)")
    if not 0.0 < cfg.update_end <= 1.0:
        raise _bad("update_end", cfg.update_end, "a fraction of training in (0, 1]")


def _check_moon(cfg: RunConfig) -> None:
    if cfg.alpha_final <= 0:
        raise _bad("alpha_final", cfg.alpha_final, "a number > 0")
    if cfg.alpha_init_factor <= 0:
        raise _bad("alpha_init_factor", cfg.alpha_init_factor, "a number > 0")
    if cfg.warmup_epochs is not None and not 0 <= cfg.warmup_epochs < cfg.epochs:
        raise _bad("warmup_epochs", cfg.warmup_epochs,
                   f"None or an integer in [0, epochs) = [0, {cfg.epochs})")
    if cfg.average_epochs is not None and not 1 <= cfg.average_epochs <= cfg.epochs:
        raise _bad("average_epochs", cfg.average_epochs,
                   f"None or an integer in [1, epochs] = [1, {cfg.epochs}]")


def _check_optimisation(cfg: RunConfig) -> None:
    if cfg.epochs < 1:
        raise _bad("epochs", cfg.epochs, "an integer >= 1")
    if cfg.batch_size < 1:
        raise _bad("batch_size", cfg.batch_size, "an integer >= 1")
    if cfg.eval_batch_size < 1:
        raise _bad("eval_batch_size", cfg.eval_batch_size, "an integer >= 1")
    if cfg.lr <= 0:
        raise _bad("lr", cfg.lr, "a number > 0")
    if not 0 < cfg.lr_final <= cfg.lr:
        raise _bad("lr_final", cfg.lr_final, f"a number in (0, lr] = (0, {cfg.lr}]")
    if cfg.lr_hold_epochs is not None and not 0 <= cfg.lr_hold_epochs < cfg.epochs:
        raise _bad("lr_hold_epochs", cfg.lr_hold_epochs,
                   f"None or an integer in [0, epochs) = [0, {cfg.epochs})")
    if cfg.lr_hold < cfg.averaged_epochs:
        raise _bad("lr_hold_epochs", cfg.lr_hold_epochs,
                   f"at least the {cfg.averaged_epochs} averaged epochs (averaged snapshots share "
                   f"one LR), or None")
    if not 0.0 <= cfg.lr_warmup_epochs <= cfg.epochs:
        raise _bad("lr_warmup_epochs", cfg.lr_warmup_epochs,
                   f"a number of epochs in [0, epochs] = [0, {cfg.epochs}]")
    if not 0.0 <= cfg.momentum < 1.0:
        raise _bad("momentum", cfg.momentum, "a number in [0, 1)")
    if cfg.weight_decay < 0:
        raise _bad("weight_decay", cfg.weight_decay, "a number >= 0")


def _check_kernel(cfg: RunConfig) -> None:
    if cfg.kernel not in KERNELS:
        raise _bad("kernel", cfg.kernel, f"choose one of {', '.join(KERNELS)}")
    if cfg.kernel == "csr" and cfg.method == "dense":
        raise _bad("kernel", cfg.kernel, "method=dense has no mask to run sparse; use masked or auto")
    if cfg.kernel != "masked" and cfg.as_released:
        raise _bad("kernel", cfg.kernel, "as_released=true needs kernel=masked (the released "
                                         "DropConnect stashes dense weights every step)")


def _check_execution(cfg: RunConfig) -> None:
    if cfg.seed < 0:
        raise _bad("seed", cfg.seed, "an integer >= 0")
    if cfg.subset_seed is not None and cfg.subset_seed < 0:
        raise _bad("subset_seed", cfg.subset_seed, "None (the run's seed) or an integer >= 0")
    if cfg.max_train_samples < 0:
        raise _bad("max_train_samples", cfg.max_train_samples, "an integer >= 0 (0: all)")
    if cfg.fit_samples < 0:
        raise _bad("fit_samples", cfg.fit_samples, "an integer >= 0 (0: all)")
    if cfg.max_eval_samples < 0 or 0 < cfg.max_eval_samples < MIN_EVAL_SAMPLES:
        raise _bad("max_eval_samples", cfg.max_eval_samples,
                   f"0 (all) or at least {MIN_EVAL_SAMPLES}: an AUROC or ECE on fewer images "
                   f"says little")
    if not 0.0 <= cfg.dice_p < 100.0:
        raise _bad("dice_p", cfg.dice_p, "a percentile in [0, 100); 0 is the energy score")
    if not 0.0 < cfg.react_p <= 100.0:
        raise _bad("react_p", cfg.react_p, "a percentile in (0, 100]")
    if cfg.knn_k < 1:
        raise _bad("knn_k", cfg.knn_k, "an integer >= 1")
    fit = min((v for v in (cfg.fit_samples, cfg.max_train_samples) if v > 0), default=0)
    if fit:
        check_knn_k(cfg, fit)
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise _bad("device", cfg.device, "auto, cpu, mps, cuda or cuda:N")


def _check_evaluation(cfg: RunConfig) -> None:
    known = ood_sets_for(cfg.dataset)
    for name in cfg.ood_set_list:
        if name not in known:
            raise _bad("ood_sets", cfg.ood_sets,
                       f"OOD sets for dataset={cfg.dataset} are {', '.join(known)} (or auto)")
    for name in cfg.detector_list:
        if name not in DETECTORS:
            raise _bad("detectors", cfg.detectors, f"choose from {', '.join(DETECTORS)} (or auto)")
        if name in UNKNOWN_ONLY_DETECTORS and not cfg.unknown_class:
            raise _bad("detectors", cfg.detectors,
                       f"detector {name!r} scores the unknown class: it needs unknown_class=true")
    for name in ("ash_p", "scale_p"):
        if not 0.0 <= getattr(cfg, name) < 100.0:
            raise _bad(name, getattr(cfg, name), "a percentile in [0, 100)")


# Order matters: types first, so later rules can compare numbers safely.
_CHECKS = (_check_types, _check_choices, _check_width, _check_optimisation, _check_sparsity, _check_moon,
           _check_kernel, _check_execution, _check_evaluation)
