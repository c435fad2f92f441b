"""The theory illustrations: the 2-D toy, the unknown-logit threshold against autograd of the
package's loss (reference moon-released-code.md 1.4), and the DICE variance sweep."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from moon import theory
from moon.ood import scores
from moon.outputs import Outputs
from moon.recipe.losses import UnknownAwareLoss
from moon.sparse.masking import maskable_parameters

K = theory.TOY_CLASSES


# --------------------------------------------------------------------------------------------------
# The toy
# --------------------------------------------------------------------------------------------------
def test_toy_data_deterministic_and_balanced():
    x, y = theory.toy_data(n=300, seed=3)
    x2, y2 = theory.toy_data(n=300, seed=3)
    assert x.dtype == torch.float32 and y.dtype == torch.long and x.shape == (300, 2)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(theory.toy_data(n=300, seed=4)[0], x)
    assert torch.bincount(y, minlength=K).tolist() == [100, 100, 100]
    # each blob sits at radius 2 around the origin
    radii = torch.stack([x[y == c].mean(dim=0) for c in range(K)]).norm(dim=1)
    assert torch.allclose(radii, torch.full((K,), 2.0), atol=0.15)


def _train_accuracy(model, seed=0):
    x, y = theory.toy_data(seed=seed)
    with torch.no_grad():
        return float((model(x)[:, :K].argmax(dim=1) == y).float().mean())


def test_train_toy_dense_learns():
    model = theory.train_toy(unknown_class=False, epochs=15)
    assert model.head.out_features == K
    assert _train_accuracy(model) > 0.9


def test_train_toy_unknown_head_and_sparse_masks():
    model = theory.train_toy(unknown_class=True, density=0.1, epochs=6, seed=1)
    assert model.head.out_features == K + 1
    assert model(torch.zeros(5, 2)).shape == (5, K + 1)
    for name, p in maskable_parameters(model).items():    # static uniform masks survived training
        assert float((p != 0).float().mean()) == pytest.approx(0.1, abs=1.0 / p.numel()), name


def test_confidence_grid_shapes_and_probabilities():
    torch.manual_seed(0)
    plain, extra = theory.ToyNet(K), theory.ToyNet(K + 1)
    grid = theory.confidence_grid(plain, K, lim=3.0, steps=30)
    assert grid["xx"].shape == grid["yy"].shape == grid["msp"].shape == (30, 30)
    assert grid["unknown"] is None
    assert grid["xx"].min() == -3.0 and grid["yy"].max() == 3.0
    assert np.all(grid["msp"] >= 1.0 / K - 1e-6) and np.all(grid["msp"] <= 1.0)
    grid = theory.confidence_grid(extra, K, steps=30)
    assert grid["unknown"].shape == (30, 30)
    assert np.all((grid["unknown"] >= 0) & (grid["unknown"] <= 1))
    assert np.all((grid["msp"] >= 0) & (grid["msp"] + grid["unknown"] <= 1 + 1e-6))
    # the MSP of the package: max known probability of the softmax over all K+1 outputs
    point = torch.tensor([[grid["xx"][4, 7], grid["yy"][4, 7]]])
    with torch.no_grad():
        want = float(torch.softmax(extra(point), dim=1)[0, :K].max())
    assert grid["msp"][4, 7] == pytest.approx(want, rel=1e-5)


# --------------------------------------------------------------------------------------------------
# The unknown-logit threshold (reference 1.4) against autograd of UnknownAwareLoss
# --------------------------------------------------------------------------------------------------
def _wrong_sample_logits(h: float, u: float) -> torch.Tensor:
    """Logits (1, K+1) of a sample with label 0, ``-log p_0 = h``, ``p_unknown = u``, misclassified
    (the rest of the mass on classes 1 and 2, 0.9 : 0.1)."""
    p_y = math.exp(-h)
    rest = 1.0 - p_y - u
    assert rest > 0 and max(0.9 * rest, u) > p_y, "not a misclassified sample"
    probs = torch.tensor([[p_y, 0.9 * rest, 0.1 * rest, u]], dtype=torch.float64)
    return probs.log()


def _autograd_unknown_gradient(alpha: float, h: float, u: float) -> float:
    """dL/dz_unknown of the package's loss in the main phase, alpha fixed, batch of one."""
    loss_fn = UnknownAwareLoss(K, unknown_class=True, warmup_epochs=0, total_epochs=10,
                               alpha_final=alpha, alpha_auto=False)
    logits = _wrong_sample_logits(h, u).requires_grad_(True)
    loss_fn(logits, torch.tensor([0]), epoch=1).backward()
    assert loss_fn.alpha == alpha
    return float(logits.grad[0, -1])


@pytest.mark.parametrize("alpha,u", [(0.5, 0.01), (0.5, 0.2), (0.5, 0.5), (1.0, 0.01), (1.0, 0.2),
                                     (1.0, 0.5), (2.0, 0.2), (2.0, 0.5), (0.1, 0.05)])
def test_unknown_logit_rises_exactly_above_threshold(alpha, u):
    """Both sides of h* (alpha = 2 at small u is left out: there h* < log 2, below which no sample
    can be misclassified, so every wrong sample raises the unknown logit)."""
    h_star = float(theory.unknown_rise_threshold(alpha, u))
    for factor in (0.9, 1.1):
        h = factor * h_star
        grad = _autograd_unknown_gradient(alpha, h, u)
        assert grad == pytest.approx(float(theory.unknown_logit_gradient(alpha, u, h)),
                                     rel=1e-4, abs=1e-7)
        # descent raises z_unknown (negative gradient) iff h > h*
        assert (grad < 0) == (h > h_star), (alpha, u, h, grad)


@pytest.mark.parametrize("alpha,u", [(1.0, 0.05), (0.5, 0.3)])
def test_autograd_sign_change_is_at_the_threshold(alpha, u):
    """Bisect on h for the zero of the autograd gradient: it sits at h* (float32 loss)."""
    h_star = float(theory.unknown_rise_threshold(alpha, u))
    lo, hi = 0.5 * h_star, 1.5 * h_star
    assert _autograd_unknown_gradient(alpha, lo, u) > 0 > _autograd_unknown_gradient(alpha, hi, u)
    for _ in range(25):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _autograd_unknown_gradient(alpha, mid, u) > 0 else (lo, mid)
    assert 0.5 * (lo + hi) == pytest.approx(h_star, rel=1e-3)


def test_unknown_rise_threshold_reference_values():
    assert theory.unknown_rise_threshold(1.0, 0.0) == pytest.approx(2.0)
    assert theory.unknown_rise_threshold(0.5, 0.0) == pytest.approx(6.0)
    assert theory.unknown_rise_threshold(0.01, 0.0) == pytest.approx(1e4, rel=0.02)
    grid = theory.unknown_rise_threshold(np.array([[0.5], [1.0]]), np.array([0.0, 0.1, 0.5]))
    assert grid.shape == (2, 3) and np.all(np.diff(grid, axis=1) > 0)   # rises with u
    h_star = theory.unknown_rise_threshold(0.7, 0.3)
    assert np.allclose(theory.unknown_logit_gradient(0.7, 0.3, h_star), 0.0, atol=1e-12)
    with pytest.raises(ValueError):
        theory.unknown_rise_threshold(1.0, 1.0)


# --------------------------------------------------------------------------------------------------
# DICE variance sweep
# --------------------------------------------------------------------------------------------------
class _Head(nn.Module):
    def __init__(self, d=16, c=K + 1):
        super().__init__()
        self.head = nn.Linear(d, c)


def _outputs(model, n, shift, scale, g):
    features = torch.relu(shift + scale * torch.randn(n, model.head.in_features, generator=g))
    with torch.no_grad():
        return Outputs(model.head(features), features, None)


@pytest.fixture
def sweep_inputs():
    torch.manual_seed(0)
    model = _Head()
    g = torch.Generator().manual_seed(1)
    train = _outputs(model, 300, 0.5, 1.0, g)
    sets = {"id": _outputs(model, 200, 0.5, 1.0, g), "far": _outputs(model, 150, 0.0, 3.0, g),
            "near": _outputs(model, 150, 0.3, 1.2, g)}
    return model, train, sets


def test_dice_variance_sweep_rows_and_invariants(sweep_inputs):
    model, train, sets = sweep_inputs
    ps = (0, 30, 70, 90)
    frame = theory.dice_variance_sweep(model, train, sets, K, ps=ps)
    assert list(frame.columns) == ["p", "set", "kept_fraction", "logit_variance", "energy_mean",
                                   "energy_std", "auroc_vs_id"]
    assert len(frame) == len(ps) * len(sets)
    assert sorted(set(frame["set"])) == ["far", "id", "near"]
    kept = frame[frame["set"] == "id"].sort_values("p")["kept_fraction"].to_numpy()
    assert kept[0] == 1.0 and np.all(np.diff(kept) < 0)
    assert frame[frame["set"] == "id"]["auroc_vs_id"].isna().all()
    ood = frame[frame["set"] != "id"]["auroc_vs_id"]
    assert ood.notna().all() and ood.between(0, 1).all()
    # p = 0 is the plain energy of the full head's known logits
    for name, outputs in sets.items():
        row = frame[(frame["p"] == 0) & (frame["set"] == name)].iloc[0]
        energy = scores.energy(outputs.logits, K)
        assert row["energy_mean"] == pytest.approx(float(energy.mean()), rel=1e-5)
        assert row["energy_std"] == pytest.approx(float(energy.std(correction=0)), rel=1e-4)
        variance = outputs.logits[:, :K].var(dim=0, correction=0).mean()
        assert row["logit_variance"] == pytest.approx(float(variance), rel=1e-4)


def test_dice_variance_table_is_a_row_per_percentile(sweep_inputs):
    model, train, sets = sweep_inputs
    ps = (0, 30, 90)
    frame = theory.dice_variance_sweep(model, train, sets, K, ps=ps)
    table = theory.dice_variance_table(frame)
    assert list(table.index) == ["0", "30", "90"] and table.index.name == "p"
    order = list(dict.fromkeys(frame["set"]))
    assert list(table.columns) == [("weights kept", "share")] + [
        ("logit variance", s) for s in order] + [("AUROC vs ID (%)", s) for s in order if s != "id"]
    row = frame[(frame["p"] == 30) & (frame["set"] == "near")].iloc[0]
    assert table.loc["30", ("AUROC vs ID (%)", "near")] == f"{100 * row['auroc_vs_id']:.1f}"
    assert table.loc["30", ("logit variance", "near")] == f"{row['logit_variance']:.3g}"
    assert table.loc["0", ("weights kept", "share")] == "1.00"


def test_dice_variance_sweep_needs_id(sweep_inputs):
    model, train, sets = sweep_inputs
    with pytest.raises(ValueError, match="'id'"):
        theory.dice_variance_sweep(model, train, {"far": sets["far"]}, K)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------
def test_plots_return_figures_and_write_pngs(tmp_path, sweep_inputs):
    torch.manual_seed(0)
    models = {"dense": theory.ToyNet(K), "dense + unknown": theory.ToyNet(K + 1)}
    model, train, sets = sweep_inputs
    frame = theory.dice_variance_sweep(model, train, sets, K, ps=(0, 50, 90))
    figures = {"maps.png": theory.plot_confidence_maps(models, K, path=tmp_path / "maps.png"),
               "region.png": theory.plot_unknown_region(path=tmp_path / "region.png"),
               "dice.png": theory.plot_dice_variance(frame, path=tmp_path / "dice.png")}
    for name, fig in figures.items():
        assert isinstance(fig, matplotlib.figure.Figure)
        assert (tmp_path / name).stat().st_size > 10_000
    assert len(figures["maps.png"].axes) == 3           # two panels and the colour bar
    assert len(figures["dice.png"].axes) == 2


def test_unknown_mass_summary_splits_mass_by_correctness():
    class Fixed(nn.Module):               # logits chosen so the answer is known by hand
        def forward(self, x):
            return x
    x = torch.tensor([[5.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 1.0], [0.0, 0.0, 5.0, 2.0]])
    y = torch.tensor([0, 0, 2])            # the second point is misclassified
    summary = theory.unknown_mass_summary({"k+1": Fixed()}, (x, y), num_known=3)
    p = torch.softmax(x, dim=1)[:, 3]
    row = summary.loc["k+1"]
    assert row["misclassified"] == 1
    assert row["on misclassified (%)"] == pytest.approx(100 * float(p[1]))
    assert row["on correct (%)"] == pytest.approx(100 * float(p[[0, 2]].mean()))
    assert row["p(unknown), all (%)"] == pytest.approx(100 * float(p.mean()))
    assert "1 misclassified points" in theory.unknown_class_conclusion(summary)


def test_dice_variance_conclusion_reads_the_sweep():
    import pandas as pd

    sweep = pd.DataFrame({"p": [0, 0, 90, 90], "set": ["id", "far", "id", "far"],
                          "logit_variance": [4.0, 8.0, 2.0, 2.0],
                          "auroc_vs_id": [float("nan"), 0.80, float("nan"), 0.85]})
    text = theory.dice_variance_conclusion(sweep)
    assert "to 0.50 of its dense-head value on ID data and to 0.25-0.25" in text
    assert "it held for 1 of 1 sets" in text and "+5.0 to +5.0 points" in text
