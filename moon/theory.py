"""Small, exact illustrations of the two mechanisms the study leans on (the theory notebooks).

1. **The unknown class of MOON** (``notebooks/theory_unknown_class.ipynb``). A 2-D toy with K = 3
   Gaussian blobs, trained with the package's own :class:`~moon.recipe.losses.UnknownAwareLoss`
   and, when sparse, a static :class:`~moon.sparse.masking.Masking`; :func:`confidence_grid` and
   :func:`plot_confidence_maps` show where the (K+1)-softmax MSP is high. The analytic part follows
   reference ``moon-released-code.md`` section 1.4: for a misclassified sample with
   ``h = -log p_y``, ``u = p_unknown`` and ``w = 1 + alpha / (1 + alpha u)``::

       dL/dz_unknown = u [ w - h alpha^2 (1 - u) / (1 + alpha u)^2 ]

   so gradient descent raises the unknown logit iff ``h > h*(alpha, u)`` with
   ``h* = w (1 + alpha u)^2 / (alpha^2 (1 - u))`` (:func:`unknown_rise_threshold`).

2. **DICE's variance mechanism** (``notebooks/theory_dice_variance.ipynb``). Sun & Li (2022) argue
   that keeping only the head weights with large contribution ``m_j W_cj`` lowers the variance of
   the logits over inputs, more for OOD than for ID inputs, which separates the energy scores.
   :func:`dice_variance_sweep` measures that variance, the energy and the AUROC for a range of
   pruning percentiles ``p`` using :class:`moon.ood.detectors.DICE` (reference ``cigl-and-dice.md``
   Part B).

Everything here is CPU-sized: the toy trains in about a second.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from moon.metrics import ood_metrics
from moon.architectures import Classifier
from moon.ood.detectors import DICE
from moon.ood.scores import msp
from moon.outputs import Outputs
from moon.recipe.losses import UnknownAwareLoss
from moon.report.plotting import new_figure, save
from moon.sparse.masking import Masking

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

TOY_CLASSES = 3           # K of the toy
TOY_BATCH = 64            # mini-batch size of train_toy
H_REFERENCE = 2.0         # h = -log p_y with p_y = exp(-2) = 0.135: the alpha = 1, u = 0 threshold


# --------------------------------------------------------------------------------------------------
# 1. The 2-D toy
# --------------------------------------------------------------------------------------------------
def toy_data(n: int = 600, seed: int = 0, std: float = 0.5,
             radius: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of K = 3 isotropic Gaussian blobs, balanced (labels ``i % 3``, shuffled).

    Class ``c`` has centre ``radius * (cos(2 pi c / 3 + pi / 2), sin(2 pi c / 3 + pi / 2))`` and
    standard deviation ``std``; with the defaults the blobs are about 7 std apart. Deterministic in
    ``seed``. Returns ``x`` float32 ``[n, 2]`` and ``y`` long ``[n]``.
    """
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % TOY_CLASSES)[torch.randperm(n, generator=g)]
    angle = 2 * math.pi * y.double() / TOY_CLASSES + math.pi / 2
    centres = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    x = centres + std * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x.float(), y.long()


class ToyNet(Classifier):
    """2 -> 64 -> 64 -> C MLP with ReLU; ``features`` is the 64-d input of ``head`` (C = K, K+1)."""

    def __init__(self, num_outputs: int, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                  nn.ReLU())
        self.head = nn.Linear(hidden, num_outputs)


def train_toy(unknown_class: bool, density: float = 1.0, epochs: int = 60,
              alpha_final: float = 1.0, seed: int = 0, alpha_auto: bool = True,
              sparse_init: str = "uniform", std: float = 0.5) -> ToyNet:
    """Train a :class:`ToyNet` on :func:`toy_data` (``seed``) with the package's components.

    SGD (lr 0.1, momentum 0.9), mini-batches of 64, ``UnknownAwareLoss`` with a warm-up of 5% of the
    epochs (at least 1) and alpha ramped to ``alpha_final`` (reference section 1.3; ``alpha_auto``
    False fixes alpha). With ``density < 1`` a static ``Masking`` (uniform per-layer density,
    sparsity-aware rescaled init) keeps every linear weight sparse after each step (section 4.4).
    """
    torch.manual_seed(seed)
    x, y = toy_data(seed=seed, std=std)
    model = ToyNet(TOY_CLASSES + int(unknown_class))
    masking = (Masking(model, density, method="static", sparse_init=sparse_init, seed=seed,
                       rescale_init=True) if density < 1.0 else None)
    loss_fn = UnknownAwareLoss(TOY_CLASSES, unknown_class, max(1, round(0.05 * epochs)), epochs,
                               alpha_final=alpha_final, alpha_auto=alpha_auto)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(1, epochs + 1):
        for idx in torch.randperm(len(x), generator=g).split(TOY_BATCH):
            if masking is not None:
                masking.before_forward()
            loss = loss_fn(model(x[idx]), y[idx], epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if masking is not None:
                masking.step(optimizer)
            else:
                optimizer.step()
    model.eval()
    log.info("toy: unknown_class=%s density=%g epochs=%d final loss %.4f alpha=%s",
             unknown_class, density, epochs, float(loss.detach()), loss_fn.alpha)
    return model


@torch.no_grad()
def confidence_grid(model: nn.Module, num_known: int = TOY_CLASSES, lim: float = 5.0,
                    steps: int = 200) -> dict[str, np.ndarray | None]:
    """The model's confidence on a ``steps x steps`` grid over ``[-lim, lim]^2``.

    Returns ``xx``, ``yy`` (``meshgrid``, indexing "xy"), ``msp`` = max over the K known classes
    of the softmax over *all* outputs (:func:`moon.ood.scores.msp`, design section 3) and ``unknown`` =
    ``p(unknown)``, the last softmax output, for a K+1 head (None for a K head). All ``[steps,
    steps]`` float arrays.
    """
    axis = torch.linspace(-lim, lim, steps)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    model.eval()
    logits = model(torch.stack([xx.flatten(), yy.flatten()], dim=1)).float()
    shape = (steps, steps)
    has_unknown = logits.shape[1] == num_known + 1
    unknown = torch.softmax(logits, dim=1)[:, -1].reshape(shape).numpy() if has_unknown else None
    return {"xx": xx.numpy(), "yy": yy.numpy(),
            "msp": msp(logits, num_known).reshape(shape).numpy(), "unknown": unknown}


def plot_confidence_maps(models: dict[str, nn.Module], num_known: int = TOY_CLASSES,
                         path: str | Path | None = None, lim: float = 5.0,
                         data: tuple[torch.Tensor, torch.Tensor] | None = None):
    """One panel per model: MSP (filled contours, shared colour bar) with the training points
    (``data``, default :func:`toy_data`) on top; for K+1 heads a dashed white contour where
    ``p(unknown) = 0.5`` when it reaches 0.5. Returns the figure."""
    import seaborn as sns

    x, y = toy_data() if data is None else data
    levels = np.linspace(0.0, 1.0, 21)
    with sns.axes_style("white"):
        fig = new_figure(3.3 * len(models) + 0.8, 3.5)
        axes = np.atleast_1d(fig.subplots(1, len(models), sharex=True, sharey=True))
    palette = sns.color_palette("dark", num_known)
    for ax, (name, model) in zip(axes, models.items()):
        grid = confidence_grid(model, num_known, lim=lim)
        filled = ax.contourf(grid["xx"], grid["yy"], grid["msp"], levels=levels, cmap="viridis")
        if grid["unknown"] is not None and grid["unknown"].max() > 0.5:
            ax.contour(grid["xx"], grid["yy"], grid["unknown"], levels=[0.5], colors="white",
                       linestyles="--", linewidths=1.2)
        for c in range(num_known):
            ax.scatter(*x[y == c].T.numpy(), s=5, color=palette[c], edgecolors="white",
                       linewidths=0.2)
        ax.set(title=name, aspect="equal", xlabel="$x_1$", xlim=(-lim, lim), ylim=(-lim, lim))
    axes[0].set_ylabel("$x_2$")
    fig.colorbar(filled, ax=list(axes), label="MSP (max known prob. of the full softmax)",
                 ticks=np.linspace(0, 1, 6))
    return save(fig, path)


# --------------------------------------------------------------------------------------------------
# 1b. When does the unknown logit rise? (reference section 1.4)
# --------------------------------------------------------------------------------------------------
def unknown_logit_gradient(alpha, u, h) -> np.ndarray:
    """Per-sample ``dL/dz_unknown = u [w - h alpha^2 (1-u) / (1+alpha u)^2]``, ``w = 1 +
    alpha/(1+alpha u)``, for a misclassified sample (reference 1.4; before the 1/B of the mean).
    Negative means gradient descent raises the unknown logit. Vectorised (numpy broadcasting)."""
    alpha, u, h = (np.asarray(v, dtype=np.float64) for v in (alpha, u, h))
    w = 1.0 + alpha / (1.0 + alpha * u)
    return u * (w - h * alpha**2 * (1.0 - u) / (1.0 + alpha * u) ** 2)


def unknown_rise_threshold(alpha, u) -> np.ndarray:
    """``h*(alpha, u) = w (1 + alpha u)^2 / (alpha^2 (1 - u))``, ``w = 1 + alpha/(1 + alpha u)``:
    a misclassified sample raises the unknown logit iff ``h = -log p_y > h*`` (reference 1.4).

    At ``u = 0`` this is ``(1 + alpha)/alpha^2``: 2 at alpha = 1, 6 at 0.5, about 1e4 at 0.01.
    Vectorised (numpy broadcasting); ``u`` in ``[0, 1)``, ``alpha > 0``.
    """
    alpha, u = np.asarray(alpha, dtype=np.float64), np.asarray(u, dtype=np.float64)
    if np.any(alpha <= 0) or np.any((u < 0) | (u >= 1)):
        raise ValueError("unknown_rise_threshold needs alpha > 0 and u in [0, 1)")
    w = 1.0 + alpha / (1.0 + alpha * u)
    return w * (1.0 + alpha * u) ** 2 / (alpha**2 * (1.0 - u))


def plot_unknown_region(alphas=(0.05, 0.1, 0.25, 0.5, 1, 2), path: str | Path | None = None):
    """``h*`` against ``u`` in [0, 0.95] for each alpha (log y). Above a curve, a misclassified
    sample raises the unknown logit; below it the logit is pushed down. The dotted line marks
    ``h = 2`` (``p_y = e^-2 = 0.135``), the alpha = 1 threshold at ``u = 0``. Returns the figure."""
    import seaborn as sns

    u = np.linspace(0.0, 0.95, 200)
    with sns.axes_style("whitegrid"):
        fig = new_figure(7.6, 4.2)
        ax = fig.subplots()
    colors = sns.color_palette("viridis", len(alphas))
    for alpha, color in zip(alphas, colors):
        h_star = unknown_rise_threshold(alpha, u)
        ax.plot(u, h_star, color=color, lw=2, label=rf"$\alpha$ = {alpha:g}")
        ax.fill_between(u, h_star, 1e6, color=color, alpha=0.06, linewidth=0)
    ax.axhline(H_REFERENCE, color="black", ls=":", lw=1.2,
               label=r"$h = 2$ ($p_y = 0.135$)")
    ax.plot(u, -np.log1p(-u), color="grey", ls="--", lw=1,
            label=r"$h = -\log(1-u)$ (smallest $h$ possible)")
    ax.set_yscale("log")
    ax.set(xlim=(0, 0.95), ylim=(0.1, 1e4), xlabel=r"$u = p_{\mathrm{unknown}}$",
           ylabel=r"$h^* $ (threshold on $h = -\log p_y$)",
           title="Misclassified sample: the unknown logit rises above the curve")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="rises where h > h*", title_fontsize=7)
    return save(fig, path)


# --------------------------------------------------------------------------------------------------
# 2. DICE's variance mechanism
# --------------------------------------------------------------------------------------------------
DICE_PS = (0, 10, 30, 50, 70, 90, 95, 99)


def _dice_rows(dice: DICE, p: float, sets: dict[str, Outputs], num_known: int) -> list[dict]:
    """One row per set for a fitted DICE: masked-logit variance, energy moments, AUROC vs "id"."""
    bias = dice.bias[:num_known]
    id_scores = dice.score(sets["id"])
    rows = []
    for name, outputs in sets.items():
        logits = outputs.features.float() @ dice.masked_weight.T + bias          # [N, K]
        energy = dice.score(outputs)                                               # [N]
        auroc = math.nan if name == "id" else ood_metrics(id_scores, energy).auroc
        rows.append({"p": float(p), "set": name, "kept_fraction": dice.kept_fraction,
                     "logit_variance": float(logits.var(dim=0, correction=0).mean()),
                     "energy_mean": float(energy.mean()),
                     "energy_std": float(energy.std(correction=0)), "auroc_vs_id": auroc})
    return rows


def dice_variance_sweep(model: nn.Module, train: Outputs, sets: dict[str, Outputs],
                        num_known: int, ps=DICE_PS, **dice_options) -> pd.DataFrame:
    """DICE at each pruning percentile ``p``: how the masked logits and the energy change.

    For each ``p`` a :class:`moon.ood.detectors.DICE` on ``model.head`` is fitted on ``train`` (mean
    training feature ``m``, keep ``m_j W_cj > tau_p``; ``dice_options`` such as ``rows``/``over``
    are passed on) and, for every set (``sets`` must hold the ID test outputs under "id"):

    * ``logit_variance`` = ``(1/K) sum_c Var_x[f~_c(x)]``, ``f~_c(x) = h(x) . (W * M)_c + b_c``,
      the (population) variance over the set's inputs, averaged over the K known classes: the
      quantity DICE's analysis (Sun & Li 2022, section 4) says sparsification reduces, more for
      OOD than for ID inputs;
    * ``energy_mean``, ``energy_std`` of the DICE score ``logsumexp_c f~_c(x)`` (reference B.4);
    * ``auroc_vs_id``: AUROC of that score, "id" positive, against the set (NaN for "id");
    * ``kept_fraction`` of the known rows' entries (``p = 0`` keeps them all: plain energy).

    Returns a frame with columns (p, set, kept_fraction, logit_variance, energy_mean, energy_std,
    auroc_vs_id), one row per (p, set).
    """
    import pandas as pd

    if "id" not in sets:
        raise ValueError(f"sets must contain the ID test outputs under 'id'; got {sorted(sets)}")
    rows = []
    for p in ps:
        dice = DICE(model.head, num_known, p=float(p), **dice_options).fit(train)
        rows.extend(_dice_rows(dice, p, sets, num_known))
        log.info("DICE p=%g: kept %.3f of the known rows", p, dice.kept_fraction)
    return pd.DataFrame(rows, columns=["p", "set", "kept_fraction", "logit_variance",
                                       "energy_mean", "energy_std", "auroc_vs_id"])


def dice_variance_table(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`dice_variance_sweep` for a page: a row per ``p`` with the share of the known rows'
    weights kept, the mean known-logit variance of each set (3 significant digits) and the AUROC
    (%, one decimal) of DICE's score, ID against each OOD set."""
    import pandas as pd

    order = list(dict.fromkeys(frame["set"]))
    variance = frame.pivot(index="p", columns="set", values="logit_variance")[order]
    ood = frame[frame["set"] != "id"]
    auroc = (100 * ood.pivot(index="p", columns="set", values="auroc_vs_id"))[
        [s for s in order if s != "id"]]
    kept = frame.groupby("p")["kept_fraction"].first()
    table = pd.concat({"weights kept": kept.map("{:.2f}".format).to_frame("share"),
                       "logit variance": variance.map("{:.3g}".format),
                       "AUROC vs ID (%)": auroc.map("{:.1f}".format)}, axis=1)
    table.index = [f"{p:g}" for p in table.index]
    table.index.name = "p"
    return table


def plot_dice_variance(frame: pd.DataFrame, path: str | Path | None = None):
    """Two panels from :func:`dice_variance_sweep`: the mean known-logit variance against ``p``
    (one line per set, ID bold and black; log y when positive) and the AUROC (ID vs each OOD set,
    %) against ``p``. Returns the figure."""
    import seaborn as sns

    ood = [s for s in dict.fromkeys(frame["set"]) if s != "id"]
    palette = dict(zip(ood, sns.color_palette(n_colors=max(len(ood), 1))))
    with sns.axes_style("whitegrid"):
        fig = new_figure(10.0, 3.8)
        ax_var, ax_auc = fig.subplots(1, 2)
    for name in ["id", *ood]:
        cells = frame[frame["set"] == name].sort_values("p")
        style = ({"color": "black", "lw": 3, "zorder": 5} if name == "id"
                 else {"color": palette[name], "lw": 1.5})
        ax_var.plot(cells["p"], cells["logit_variance"], marker="o", label=name, **style)
        if name != "id":
            ax_auc.plot(cells["p"], 100 * cells["auroc_vs_id"], marker="o", label=name, **style)
    ax_auc.axhline(50.0, color="grey", ls=":", lw=1)          # chance
    if (frame["logit_variance"] > 0).all():
        ax_var.set_yscale("log")
    ax_var.set(xlabel="p (% of head weights removed)", ylabel="mean Var$_x$ of masked known logits",
               title="Logit variance under DICE")
    ax_auc.set(xlabel="p (% of head weights removed)", ylabel="AUROC, ID vs set (%)",
               title="DICE energy score (p = 0: plain energy)")
    ax_var.legend(fontsize=7, title="set", title_fontsize=7)
    if ood:
        ax_auc.legend(fontsize=7, title="OOD set", title_fontsize=7)
    return save(fig, path)


def toy_models(density: float = 0.05, alpha_final: float = 1.0, seed: int = 0, epochs: int = 60,
               std: float = 1.0) -> dict[str, ToyNet]:
    """The theory chapter's panels on overlapping blobs (``std`` 1, so training errors exist):
    dense and ERK-sparse MLPs without and with the unknown class (auto-tuned alpha ramped to
    ``alpha_final``), and a dense one with a fixed, large alpha (5) that shows where the unknown
    class takes mass once alpha is large enough (reference section 1.4)."""
    common = dict(epochs=epochs, seed=seed, std=std, sparse_init="erk")
    return {
        "dense": train_toy(False, 1.0, **common),
        "dense + unknown": train_toy(True, 1.0, alpha_final=alpha_final, **common),
        f"sparse {density:g}": train_toy(False, density, **common),
        f"sparse {density:g} + unknown": train_toy(True, density, alpha_final=alpha_final, **common),
        "dense + unknown, fixed alpha 5": train_toy(True, 1.0, alpha_final=5.0, alpha_auto=False,
                                                    **common),
    }


@torch.no_grad()
def unknown_mass_summary(models: dict[str, nn.Module], data: tuple[torch.Tensor, torch.Tensor],
                         num_known: int = TOY_CLASSES) -> "pd.DataFrame":
    """Per toy model with an unknown class: its mean p(unknown) on the training points, on the
    points it misclassifies and on the correct ones (the mass should sit on the wrong ones)."""
    import pandas as pd

    x, y = data
    rows = []
    for name, model in models.items():
        logits = model(x.float())
        if logits.shape[1] <= num_known:
            continue
        probs = torch.softmax(logits, dim=1)
        wrong = probs[:, :num_known].argmax(dim=1) != y
        unknown = probs[:, num_known]
        rows.append({"model": name, "p(unknown), all (%)": 100 * float(unknown.mean()),
                     "on misclassified (%)": 100 * float(unknown[wrong].mean()) if wrong.any()
                     else float("nan"),
                     "on correct (%)": 100 * float(unknown[~wrong].mean()),
                     "misclassified": int(wrong.sum())})
    return pd.DataFrame(rows).set_index("model")


def unknown_class_conclusion(summary: "pd.DataFrame") -> str:
    """The toy chapter's close, from :func:`unknown_mass_summary`."""
    parts = [f"{name}: p(unknown) {row['on misclassified (%)']:.2f}% on its "
             f"{int(row['misclassified'])} misclassified points against {row['on correct (%)']:.2f}% "
             "on correct ones" for name, row in summary.iterrows()]
    return "**What this shows.** " + "; ".join(parts) + "."


def dice_variance_conclusion(sweep: "pd.DataFrame", p: float = 90.0) -> str:
    """The DICE chapter's close, from :func:`dice_variance_sweep`: how much sparsifying at ``p``
    shrank the logit variance of ID and of each OOD set, and how AUROC moved against energy."""
    from moon.report.tables import signed

    base, at = sweep[sweep["p"] == 0].set_index("set"), sweep[sweep["p"] == p].set_index("set")
    if base.empty or at.empty:
        return f"**What this shows.** The sweep has no p = 0 or p = {p:g} rows."
    shrink = (at["logit_variance"] / base["logit_variance"]).dropna()
    ood = shrink.drop("id", errors="ignore")
    gains = (100 * (at["auroc_vs_id"] - base["auroc_vs_id"])).dropna()
    more = int((ood < shrink.get("id", float("nan"))).sum())
    return (f"**What this shows.** At p = {p:g}, the variance of the known-class logits fell to "
            f"{shrink.get('id', float('nan')):.2f} of its dense-head value on ID data and to "
            f"{ood.min():.2f}-{ood.max():.2f} on the OOD sets (DICE's argument expects a larger "
            f"fall on OOD data: it held for {more} of {len(ood)} sets); DICE's AUROC against "
            f"energy changed by {signed(gains.min(), 1)} to {signed(gains.max(), 1)} points "
            "across the sets.")
