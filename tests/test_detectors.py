"""Scores and detectors: sign conventions, hand cases and equalities with direct computations."""

import math

import pytest
import torch
from torch import nn

from moon.ood import scores
from moon.ood.detectors import DICE, KNN, NotFittedError
from moon.ood.feature_detectors import ASH, FDBD, SCALE, ViM
from moon.ood.registry import DETECTORS, make_detector
from moon.outputs import Outputs

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
    for name in [n for n, spec in DETECTORS.items() if spec.needs_fit]:
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


def test_odin_leaves_the_model_trainable_and_its_weights_without_gradients(net):
    """ODIN needs only the input's gradient: it switches weight gradients off while it scores and
    restores each parameter's flag afterwards, even when scoring fails."""
    net.head.bias.requires_grad_(False)
    x = torch.randn(8, 6)
    test = outputs_of(net, x)
    before = make_detector("odin", net, K, epsilon=0.05)
    before.score(test, [(x, None)])
    assert [p.requires_grad for p in net.parameters()][-1] is False
    assert all(p.requires_grad for p in list(net.parameters())[:-1])
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(RuntimeError):
        before.score(test, [(torch.randn(8, 5), None)])   # wrong width: fails mid-pass
    assert all(p.requires_grad for p in list(net.parameters())[:-1])


def test_dice_at_another_p_equals_a_detector_fitted_at_that_p(net):
    train, test = outputs_of(net, torch.randn(64, 6)), outputs_of(net, torch.randn(32, 6))
    fitted = DICE(net.head, K, p=90).fit(train)
    for p in (0.0, 50.0, 99.0):
        moved, fresh = fitted.at(p), DICE(net.head, K, p=p).fit(train)
        torch.testing.assert_close(moved.masked_weight, fresh.masked_weight)
        torch.testing.assert_close(moved.score(test), fresh.score(test))
    assert fitted.p == 90 and fitted.at(0.0).kept_fraction == 1.0
    with pytest.raises(NotFittedError):
        DICE(net.head, K).at(50.0)


def test_entropy_and_gen_by_hand():
    z = torch.tensor([[2.0, 0.0, -1.0, 0.5, 9.0], [0.0, 0.0, 0.0, 0.0, -3.0]])   # last: unknown
    p = torch.softmax(z[:, :K].double(), dim=1)
    torch.testing.assert_close(scores.entropy(z, K), (p * p.log()).sum(1))
    assert scores.entropy(z, K)[1].item() == pytest.approx(-math.log(K))    # uniform: most OOD
    gen = -(p ** 0.1 * (1 - p) ** 0.1).mean(1)                  # M = min(K, 100) = K
    torch.testing.assert_close(scores.gen(z, K), gen)
    assert scores.gen(z, K)[0] > scores.gen(z, K)[1]            # peaked beats uniform
    top2 = -(p.sort(1, descending=True).values[:, :2] ** 0.1
             * (1 - p.sort(1, descending=True).values[:, :2]) ** 0.1).mean(1)
    torch.testing.assert_close(scores.gen(z, K, top=2), top2)


def test_temperature_scaled_msp(net):
    test = outputs_of(net, torch.randn(16, 6))
    at1 = make_detector("msp_ts", net, K, temperature=1.0).score(test)
    torch.testing.assert_close(at1.float(), scores.msp_renorm(test.logits, K))
    hot = make_detector("msp_ts", net, K, temperature=4.0).score(test)
    assert torch.all(hot <= at1) and torch.all(hot >= 1.0 / K)
    with pytest.raises(ValueError, match="validation split"):
        make_detector("msp_ts", net, K)


def linear_head(weight, bias):
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head


def test_ash_and_scale_by_hand():
    w, b = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]]), torch.tensor([0.5, -0.5])
    head = linear_head(w, b)
    h = torch.tensor([[4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    out = Outputs(torch.zeros(2, 2), h, None)
    # ASH-S at p = 50 keeps the top 2 of 4 (4 and 3); s1 = 10, s2 = 7 -> x exp(10/7)
    shaped = torch.tensor([4.0, 3.0, 0.0, 0.0]) * math.exp(10 / 7)
    expected = torch.logsumexp(shaped @ w.T + b, 0)
    ash = ASH(head, 2, p=50.0).score(out)
    assert ash[0].item() == pytest.approx(expected.item(), rel=1e-5)
    # SCALE at p = 50: the same factor on all four features, nothing pruned
    scaled = h[0] * math.exp(10 / 7)
    assert SCALE(head, 2, p=50.0).score(out)[0].item() == pytest.approx(
        torch.logsumexp(scaled @ w.T + b, 0).item(), rel=1e-5)
    for det in (ASH(head, 2), SCALE(head, 2)):   # all-zero features: the bias's energy, not NaN
        assert det.score(out)[1].item() == pytest.approx(torch.logsumexp(b, 0).item())


def test_fdbd_by_hand_for_two_classes():
    w, b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]), torch.tensor([0.0, 0.0, 0.0])
    head = linear_head(w, b)
    train = Outputs(torch.zeros(2, 3), torch.tensor([[1.0, 1.0], [3.0, 1.0]]), None)   # mean (2, 1)
    det = FDBD(head, 2).fit(train)   # K = 2: the third (unknown) row is not a boundary
    h = torch.tensor([[4.0, 1.0]])
    expected = abs(4.0 - 1.0) / math.sqrt(2.0) / 2.0   # |f0 - f1| / ||w0 - w1|| / ||h - mean||
    assert det.score(Outputs(torch.zeros(1, 3), h, None)).item() == pytest.approx(expected, rel=1e-5)


def test_vim_lowers_the_score_by_alpha_times_the_residual():
    torch.manual_seed(4)
    k = 3
    train_h = torch.cat([torch.randn(500, 3) * 2 + 3, 0.01 * torch.randn(500, 3)], dim=1)
    w = torch.cat([torch.randn(k + 1, 3), torch.zeros(k + 1, 3)], dim=1)   # blind to dims 3-5
    head = linear_head(w, torch.zeros(k + 1))                                # origin -W+b = 0
    labels = (train_h[:, :3] @ w[:k, :3].T).argmax(1)
    det = ViM(head, k, dim=3).fit(Outputs(torch.zeros(500, k + 1), train_h, labels))
    q = torch.tensor([[3.0, 3.0, 3.0, 0.0, 0.0, 0.0]])
    off = q + torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 2.0]])   # off the training subspace
    s = det.score(Outputs(torch.zeros(2, k + 1), torch.cat([q, off]), None))
    assert s[0] - s[1] == pytest.approx(det._vim.alpha * 2.0, rel=1e-3)
    assert s[0] > s[1]


def test_rmds_is_finite_on_rank_deficient_features_and_matches_its_formula():
    torch.manual_seed(5)
    y = torch.arange(400) % 2
    h = torch.relu(torch.randn(400, 5) + 2 * y[:, None])
    h[:, 0] = 0.0                 # a dead unit
    h[:, 1] = 2 * h[:, 2]         # collinear units
    model = type("M", (), {"head": nn.Linear(5, 3)})()
    det = make_detector("rmds", model, 2).fit(Outputs(torch.zeros(400, 3), h, y))
    q = torch.relu(torch.randn(20, 5))
    q[:, 0], q[:, 1] = 0.0, 2 * q[:, 2]
    s = det.score(Outputs(torch.zeros(20, 3), q, None))
    assert torch.isfinite(s).all()
    maha = make_detector("mahalanobis", model, 2).fit(Outputs(torch.zeros(400, 3), h, y))
    hd, qd = h.double(), q.double()
    centred = hd - hd.mean(0)
    d0 = ((qd - hd.mean(0)) @ torch.linalg.pinv(centred.T @ centred / 400) * (qd - hd.mean(0))).sum(1)
    d = maha._distances(qd)
    torch.testing.assert_close(s.double(), -(d - d0).min(0).values, atol=1e-4, rtol=1e-4)
