"""Masks and the mask holder: exact densities, drop/grow counts, zeros that survive steps."""

import math

import pytest
import torch
from torch import nn

from moon.architectures import build_model
from moon.sparse import masks as M
from moon.sparse import schedules
from moon.sparse.masking import Masking, maskable_parameters


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _counts(masking):
    return {n: int(m.sum()) for n, m in masking.masks.items()}


# --- per-layer densities ---------------------------------------------------------------------------
def test_erk_matches_the_reference_table_for_resnet18():
    """Reference section 4.3: ERK densities of ResNet18_32x32 with K+1 = 11 outputs."""
    model = build_model("resnet18", 11, 3, 32)
    shapes = {n: tuple(p.shape) for n, p in maskable_parameters(model).items()}
    d = M.erk_densities(shapes, 0.1)
    assert d["body.0.weight"] == 1.0                          # first conv (64,3,3,3)
    assert d["head.weight"] == 1.0                            # fc (11,512)
    assert d["body.3.0.conv1.weight"] == pytest.approx(0.479, abs=1e-3)   # layer1 3x3
    assert d["body.6.1.conv2.weight"] == pytest.approx(0.058, abs=1e-3)   # layer4 other 3x3
    assert d["body.6.0.downsample.0.weight"] == pytest.approx(0.775, abs=1e-3)
    d05 = M.erk_densities(shapes, 0.05)
    assert d05["body.5.0.downsample.0.weight"] == pytest.approx(0.754, abs=1e-3)
    total = sum(math.prod(s) for s in shapes.values())
    assert sum(d05[n] * math.prod(s) for n, s in shapes.items()) == pytest.approx(0.05 * total)


@pytest.mark.parametrize("init", ["erk", "uniform"])
@pytest.mark.parametrize("density", [0.02, 0.05, 0.3])
def test_initial_masks_have_exact_counts(init, density):
    model = build_model("lenet5", 11, 1, 28)
    masking = Masking(model, density, "rigl", init, seed=3)
    total = sum(m.numel() for m in masking.masks.values())
    assert abs(masking.density() * total - density * total) <= len(masking.masks)
    for name, m in masking.masks.items():
        assert int(m.sum()) == M.layer_counts({name: masking.target[name]},
                                              {name: m.shape})[name]
    for name, p in masking.params.items():   # the weights are masked by value
        assert torch.all(p[~masking.masks[name]] == 0)


def test_rescaled_init_keeps_the_dense_output_scale():
    torch.manual_seed(0)
    dense = build_model("mlp", 10, 1, 28)
    sparse = build_model("mlp", 10, 1, 28)
    sparse.load_state_dict(dense.state_dict())
    Masking(sparse, 0.05, "static", "uniform", seed=0, rescale_init=True)
    plain = build_model("mlp", 10, 1, 28)
    plain.load_state_dict(dense.state_dict())
    Masking(plain, 0.05, "static", "uniform", seed=0, rescale_init=False)
    x = torch.randn(512, 784)
    with torch.no_grad():
        scale = dense.body[1](x).std()
        assert float(sparse.body[1](x).std() / scale) == pytest.approx(1.0, abs=0.05)
        assert float(plain.body[1](x).std() / scale) < 0.3


def test_biases_and_norms_are_dense():
    model = build_model("resnet18", 11, 3, 32)
    names = set(maskable_parameters(model))
    assert all(n.endswith("weight") for n in names)
    assert not any("bn" in n or "bias" in n for n in names)
    norm_weights = {f"{mn}.weight" for mn, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert not (names & norm_weights)


# --- drop and grow ---------------------------------------------------------------------------------
def test_drop_removes_the_smallest_active_magnitudes():
    w = torch.tensor([[0.5, -0.1, 0.0, 2.0], [-0.3, 0.2, 0.0, 0.05]])
    mask = torch.tensor([[1, 1, 0, 1], [1, 1, 0, 0]], dtype=torch.bool)
    kept = M.drop_magnitude(w, mask, 2)
    assert kept.tolist() == [[True, False, False, True], [True, False, False, False]]


def test_rigl_grows_at_the_largest_gradients_among_inactive():
    mask = torch.tensor([True, False, False, False, True, False])
    grad = torch.tensor([9.0, 0.1, -5.0, 0.3, 8.0, 4.0])   # 9 and 8 are active: never chosen
    new, grown = M.grow_gradient(grad, mask, 2)
    assert grown.tolist() == [False, False, True, False, False, True]
    assert int(new.sum()) == 4


def test_random_growth_picks_only_inactive_and_exact_count():
    mask = torch.zeros(1000, dtype=torch.bool)
    mask[:300] = True
    new, grown = M.grow_random(mask, 50, _gen())
    assert int(grown.sum()) == 50 and not torch.any(grown[:300]) and int(new.sum()) == 350


def test_swap_count_never_touches_dense_layers():
    assert M.swap_count(0.3, 100, 100) == 0
    assert M.swap_count(0.3, 95, 100) == 5
    assert M.swap_count(0.3, 10, 100) == 3


def _model_with_grads(method, density=0.1, seed=0):
    torch.manual_seed(seed)
    model = build_model("lenet5", 11, 1, 28)
    masking = Masking(model, density, method, "erk", seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for _ in range(3):
        masking.before_forward()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        masking.step(opt)
    masking.before_forward()
    nn.functional.cross_entropy(model(x), y).backward()
    return model, masking, opt


@pytest.mark.parametrize("method", ["set", "rigl", "cigl"])
def test_update_preserves_counts_and_zeroes_new_weights_and_momentum(method):
    model, masking, opt = _model_with_grads(method)
    before = _counts(masking)
    old_masks = {n: m.clone() for n, m in masking.masks.items()}
    swaps = masking.update(0.3, opt)
    assert _counts(masking) == before                      # exact per-layer counts
    for name, p in masking.params.items():
        new, old = masking.masks[name], old_masks[name]
        grown = new & ~old
        assert int(grown.sum()) == int((old & ~new).sum()) <= swaps[name]
        assert torch.all(p[grown] == 0)                     # grown weights start at 0 ...
        assert torch.all(opt.state[p]["momentum_buffer"][grown] == 0)   # ... with zero momentum
        assert torch.all(p[~new] == 0)
        numel = masking.masks[name].numel()
        assert swaps[name] == min(math.ceil(0.3 * before[name]), numel - before[name])


@pytest.mark.parametrize("method", ["static", "set", "rigl", "cigl"])
def test_zeros_and_momentum_survive_optimizer_steps(method):
    model, masking, opt = _model_with_grads(method)
    masking.step(opt)
    for name, p in masking.params.items():
        assert torch.all(p[~masking.masks[name]] == 0)
        assert torch.all(opt.state[p]["momentum_buffer"][~masking.masks[name]] == 0)
    assert masking.density() == pytest.approx(0.1, abs=len(masking.masks) / 61706)


@pytest.mark.parametrize("method", ["static", "rigl"])
def test_masked_gradient_step_equals_step_then_mask_bit_for_bit(method):
    """The fast path (grad *= M, then step) gives exactly the weights and momentum of the reference
    order (step, then W *= M and momentum *= M; reference 4.4), over several steps."""
    import copy

    torch.manual_seed(0)
    model = build_model("mlp", 11, 1, 28)
    masking = Masking(model, 0.05, method, "erk", seed=0)
    twin = copy.deepcopy(model)
    twin_masks = {n: m.clone() for n, m in masking.masks.items()}
    kw = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    opt, twin_opt = torch.optim.SGD(model.parameters(), **kw), torch.optim.SGD(twin.parameters(), **kw)
    twin_params = dict(twin.named_parameters())
    for step in range(4):
        x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
        for net, o in ((model, opt), (twin, twin_opt)):
            o.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
        masking.step(opt)
        twin_opt.step()
        with torch.no_grad():
            for name, m in twin_masks.items():
                twin_params[name].mul_(m)
                twin_opt.state[twin_params[name]]["momentum_buffer"].mul_(m)
    for name, p in model.named_parameters():
        assert torch.equal(p, twin_params[name]), name
        assert torch.equal(opt.state[p]["momentum_buffer"],
                           twin_opt.state[twin_params[name]]["momentum_buffer"]), name


def test_cigl_forward_is_scaled_and_dropped_entries_do_not_move():
    torch.manual_seed(0)
    model = build_model("mlp", 10, 1, 28)
    masking = Masking(model, 0.2, "cigl", "erk", seed=1, dpnum=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    theta = {n: p.detach().clone() for n, p in masking.params.items()}
    masking.before_forward()
    for name, p in masking.params.items():
        keep, m = masking.keep[name], masking.masks[name]
        torch.testing.assert_close(p.detach(), theta[name] * (keep & m) * 10 / 9)
    kept = sum(int((masking.keep[n] & masking.masks[n]).sum()) for n in theta)
    assert kept / sum(int(m.sum()) for m in masking.masks.values()) == pytest.approx(0.9, abs=0.02)
    nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,))).backward()
    keep = {n: k.clone() for n, k in masking.keep.items()}
    masking.step(opt)
    for name, p in masking.params.items():
        dropped = ~keep[name] & masking.masks[name]
        moved = keep[name] & masking.masks[name]
        assert torch.equal(p[dropped], theta[name][dropped])       # theta unchanged where D = 0
        assert not torch.equal(p[moved], theta[name][moved])       # and updated where D * M = 1


def test_state_dict_round_trip_into_a_fresh_object():
    model, masking, opt = _model_with_grads("rigl")
    masking.update(0.3, opt)
    fresh = Masking(model, 0.1, "rigl", "erk", seed=99)
    fresh.load_state_dict(masking.state_dict())
    for name in masking.masks:
        assert torch.equal(fresh.masks[name], masking.masks[name])
    assert torch.equal(torch.rand(3, generator=fresh.generator),
                       torch.rand(3, generator=masking.generator))
    bad = masking.state_dict()
    bad["masks"].pop("head.weight")
    with pytest.raises(KeyError, match="head.weight"):
        fresh.load_state_dict(bad)
    bad = masking.state_dict()
    bad["masks"]["head.weight"] = torch.ones(3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="shape"):
        fresh.load_state_dict(bad)


# --- schedules -------------------------------------------------------------------------------------
def test_drop_fraction_cosine_endpoints():
    assert schedules.drop_fraction(0, 1000, 0.3, 0.75) == pytest.approx(0.3)
    assert schedules.drop_fraction(375, 1000, 0.3, 0.75) == pytest.approx(0.15)
    assert schedules.drop_fraction(749, 1000, 0.3, 0.75) == pytest.approx(0.0, abs=1e-5)
    assert schedules.drop_fraction(750, 1000, 0.3, 0.75) == 0.0


def test_update_steps_stop_at_update_end():
    steps = [s for s in range(1000) if schedules.is_update_step(s, 100, 1000, 0.75)]
    assert steps == [99, 199, 299, 399, 499, 599, 699]


def test_learning_rate_cosine_then_constant_in_averaging_window():
    lr = [schedules.learning_rate(s, 10, 10, 2, 0.1, 0.005) for s in range(100)]
    assert lr[0] == pytest.approx(0.1)
    assert lr[40] == pytest.approx(0.0525)
    assert all(v == 0.005 for v in lr[80:])
    assert lr[79] > 0.005
    no_avg = [schedules.learning_rate(s, 10, 10, 0, 0.1, 0.005) for s in (0, 50, 99)]
    assert no_avg[0] == pytest.approx(0.1) and no_avg[1] == pytest.approx(0.0525)
    warm = [schedules.learning_rate(s, 10, 10, 2, 0.1, 0.005, warmup_epochs=1) for s in range(12)]
    assert warm[0] == pytest.approx(lr[0] / 10)      # step 1 of a 10-step warm-up
    assert warm[4] == pytest.approx(lr[4] * 0.5) and warm[10:] == lr[10:12]


# --- as_released quirks ----------------------------------------------------------------------------
@pytest.mark.parametrize("epochs", [10, 100])
def test_released_drop_fraction_is_frozen_at_every_update_whatever_the_length(epochs):
    """Reference 4.5: T_max = 70 (end_when, meant as epochs) read as *steps* at any run length,
    so every update of the released positions uses 1.5104e-4 (it was 0.0114 at 10 epochs when
    T_max followed the epoch count)."""
    n = 430                                             # steps per epoch: 55,000 images, batch 128
    interval = schedules.default_update_interval(n)
    updates = [s for s in range(epochs * n)
               if schedules.is_released_update_step(s, n, epochs, interval)]
    assert len(updates) == round(0.7 * epochs) * (n // interval)
    assert updates[-1] < round(0.7 * epochs) * n        # frozen after 70% of the epochs
    rates = {schedules.released_drop_fraction(s, 0.3) for s in updates}
    assert len(rates) == 1 and rates.pop() == pytest.approx(1.5104e-4, rel=1e-3)
    assert schedules.drop_fraction(updates[0], epochs * n, 0.3, 0.7) > 0.29   # ours decays from 0.3


def test_default_update_interval_follows_the_steps_per_epoch():
    """80 of 391 steps in the released code: about 5 updates an epoch at any training-set size."""
    assert schedules.default_update_interval(391) == 80
    assert schedules.default_update_interval(430) == 88
    assert schedules.default_update_interval(118) == 24
    assert schedules.default_update_interval(3) == 1


def test_released_init_is_bernoulli_and_counts_are_not_exact():
    """Reference 4.3: the released init draws each entry; our default draws exact counts."""
    model = build_model("lenet5", 11, 1, 28)
    released = Masking(model, 0.05, "rigl", "erk", seed=0, as_released=True)
    exact = Masking(build_model("lenet5", 11, 1, 28), 0.05, "rigl", "erk", seed=0)
    expected = M.layer_counts(exact.target, {n: m.shape for n, m in exact.masks.items()})
    assert _counts(exact) == expected
    assert _counts(released) != expected
    total = sum(m.numel() for m in released.masks.values())
    assert released.density() == pytest.approx(0.05, abs=5 / total ** 0.5)


def test_released_dropconnect_stashes_and_restores():
    """Reference 4.8: each step ~1% of active weights are zeroed before the step (no rescale),
    take one update from 0, and get their stashed value back at the next step."""
    torch.manual_seed(0)
    model = build_model("mlp", 10, 1, 28)
    masking = Masking(model, 0.3, "rigl", "erk", seed=0, as_released=True, dpnum=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))

    def one_step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        masking.step(opt)

    before = {n: p.detach().clone() for n, p in masking.params.items()}
    one_step()
    name = "body.1.weight"
    dropped = ~masking.keep[name] & masking.masks[name]
    assert dropped.float().sum() / masking.masks[name].sum() == pytest.approx(0.1, abs=0.02)
    p = masking.params[name].detach()
    # dropped weights hold one SGD step from 0 (tiny), not their old values
    assert p[dropped].abs().max() < before[name][dropped].abs().max()
    assert torch.allclose(masking.stash[name][dropped], before[name][dropped] * 0.9)
    one_step()
    restored = dropped & masking.keep[name]   # active again at the next step: value restored
    stepped = masking.params[name].detach()[restored]
    grad_step = 0.1 * masking.params[name].grad[restored]
    torch.testing.assert_close(stepped, before[name][restored] - grad_step)


@pytest.mark.parametrize("case", ["continuous", "ties", "drop", "grow", "nan", "huge_k"])
def test_topk_mask_is_exactly_torch_topk_set(case):
    """The prefiltered top-k (masks.topk_indices) selects the very set torch.topk selects on the
    whole tensor, ties, infinities and NaN included (a RigL update must not change)."""
    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        n = 235_200 if trial % 2 else 70_000
        x = torch.randn(n, generator=g)
        if case == "ties":
            x = x.round(decimals=1)
        elif case == "drop":            # inactive at -inf, as drop_magnitude scores them
            x = -x.abs().masked_fill(torch.rand(n, generator=g) < 0.95, float("inf"))
        elif case == "grow":            # active at -1, as grow_gradient scores them
            x = x.abs().masked_fill(torch.rand(n, generator=g) < 0.05, -1.0)
        elif case == "nan":
            x[torch.randint(0, n, (5,), generator=g)] = float("nan")
        k = int(torch.randint(1, n // (2 if case == "huge_k" else 40), (1,), generator=g))
        want = torch.zeros(n, dtype=torch.bool)
        want[torch.topk(x, k, sorted=False).indices] = True
        assert torch.equal(M.topk_mask(x, k), want), (case, trial, k)
