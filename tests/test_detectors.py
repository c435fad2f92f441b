"""Scores and detectors: sign conventions, hand cases and equalities with direct computations."""

import pytest
import torch
from torch import nn

from moon.ood import scores
from moon.ood.detectors import DICE, KNN, NotFittedError, make_detector
from moon.train import Outputs

K = 4


class TinyNet(nn.Module):
    """features -> head, like the package's models."""

    def __init__(self, d_in=6, d=5, c=K + 1):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, d), nn.ReLU())
        self.head = nn.Linear(d, c)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def outputs_of(model, x, y=None):
    with torch.no_grad():
        f = model.features(x)
        return Outputs(model.head(f), f, y)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyNet()


def test_sharper_logits_give_higher_energy_and_msp():
    base = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    sharp = base * 3
    for fn in (scores.msp, scores.msp_renorm, scores.energy, scores.max_logit):
        assert fn(sharp, K) > fn(base, K)


def test_msp_of_a_k_plus_one_head_is_not_renormalised():
    z = torch.tensor([[2.0, 1.0, 0.0, 0.0, 3.0]])   # most mass on "unknown"
    p = torch.softmax(z, dim=1)
    assert scores.msp(z, K).item() == pytest.approx(p[0, :K].max().item())
    assert scores.msp_renorm(z, K).item() == pytest.approx(torch.softmax(z[:, :K], 1).max().item())
    assert scores.unknown(z, K).item() == pytest.approx(1 - p[0, -1].item())
    assert scores.energy(z, K).item() == pytest.approx(torch.logsumexp(z[0, :K], 0).item())
    with pytest.raises(ValueError, match="K\\+1"):
        scores.unknown(z[:, :K], K)


def test_dice_at_p0_equals_energy_and_keeps_the_right_share(net):
    x = torch.randn(64, 6)
    train, test = outputs_of(net, x), outputs_of(net, torch.randn(32, 6))
    dice0 = DICE(net.head, K, p=0).fit(train)
    torch.testing.assert_close(dice0.score(test), scores.energy(test.logits, K))
    dice = DICE(net.head, K, p=50).fit(train)
    assert dice.kept_fraction == pytest.approx(0.5, abs=0.1)
    assert not torch.allclose(dice.score(test), dice0.score(test))


def test_dice_percentile_over_active_weights_of_a_sparse_head(net):
    with torch.no_grad():
        net.head.weight[:, ::2] = 0.0          # half the head inactive
    train = outputs_of(net, torch.randn(64, 6))
    active = DICE(net.head, K, p=60, over="active").fit(train)
    every = DICE(net.head, K, p=60, over="all").fit(train)
    n_active = int((net.head.weight[:K] != 0).sum())
    kept_active = active.kept_fraction * K * 5
    assert kept_active == pytest.approx(0.4 * n_active, abs=1.0)
    contribution = train.features.mean(0)[None, :] * net.head.weight[:K].detach()
    tau = torch.quantile(contribution.flatten().double(), 0.6).float()   # zeros in the pool
    assert every.kept_fraction == pytest.approx(float((contribution > tau).float().mean()))


def test_unfitted_detectors_raise(net):
    test = outputs_of(net, torch.randn(8, 6))
    for name in ("dice", "react", "mahalanobis", "knn"):
        with pytest.raises(NotFittedError, match=name):
            make_detector(name, net, K).score(test)
    with pytest.raises(ValueError, match="unknown detector 'foo'.*msp"):
        make_detector("foo", net, K)


def test_react_at_the_100th_percentile_is_energy(net):
    train = outputs_of(net, torch.randn(64, 6))
    react = make_detector("react", net, K, p=100.0).fit(train)
    assert react.clip == pytest.approx(float(train.features.max()))
    torch.testing.assert_close(react.score(train), scores.energy(train.logits, K))  # nothing clipped
    clipped = make_detector("react", net, K, p=50.0).fit(train)
    assert clipped.clip < react.clip


def test_mahalanobis_matches_the_formula_and_ranks_far_points_low():
    torch.manual_seed(1)
    feats = torch.cat([torch.randn(200, 3) + 4, torch.randn(200, 3) - 4])
    labels = torch.cat([torch.zeros(200), torch.ones(200)]).long()
    model = type("M", (), {"head": nn.Linear(3, 2)})()
    det = make_detector("mahalanobis", model, 2).fit(Outputs(torch.zeros(400, 2), feats, labels))
    near, far = torch.tensor([[4.0, 4.0, 4.0]]), torch.tensor([[30.0, -30.0, 0.0]])
    s = det.score(Outputs(torch.zeros(2, 2), torch.cat([near, far]), None))
    assert s[0] > s[1]
    mu = feats[:200].double().mean(0)
    centred = torch.cat([feats[:200] - feats[:200].mean(0), feats[200:] - feats[200:].mean(0)])
    cov = (centred.T @ centred / 400).double()
    expected = -((near.double() - mu) @ torch.linalg.inv(cov) @ (near.double() - mu).T)
    assert s[0].item() == pytest.approx(expected.item(), rel=1e-4)


def test_knn_equals_brute_force_kth_neighbour_distance():
    torch.manual_seed(2)
    bank, queries = torch.randn(300, 8), torch.randn(40, 8)
    model = type("M", (), {"head": nn.Linear(8, 3)})()
    det = KNN(model.head, 3, k=5, chunk=7).fit(Outputs(torch.zeros(300, 3), bank, None))
    got = det.score(Outputs(torch.zeros(40, 3), queries, None))
    norm = nn.functional.normalize
    dist = torch.cdist(norm(queries, dim=1), norm(bank, dim=1))
    expected = -dist.sort(dim=1).values[:, 4]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_odin_without_perturbation_at_t1_is_renormalised_msp(net):
    x = torch.randn(10, 6)
    test = outputs_of(net, x)
    odin = make_detector("odin", net, K, temperature=1.0, epsilon=0.0)
    loader = [(x[:6], None), (x[6:], None)]
    torch.testing.assert_close(odin.score(test, loader), scores.msp_renorm(test.logits, K))
    perturbed = make_detector("odin", net, K, temperature=1.0, epsilon=0.05).score(test, loader)
    assert torch.all(perturbed >= scores.msp_renorm(test.logits, K) - 1e-6)  # the step raises MSP
    with pytest.raises(ValueError, match="loader"):
        odin.score(test)
