"""The unknown-aware (K+1) loss: CE in warm-up, the EWMA, the alpha schedule, the weights, the
gradient through u, and checkpointing (reference/moon-released-code.md 1.3-1.4, 8.1 items 2-3)."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from moon.config import RunConfig
from moon.recipe.losses import U_CLAMP, UnknownAwareLoss

K = 4


def batch(seed: int, n: int = 16, k: int = K, extra: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k + extra, generator=g) * 2, torch.randint(0, k, (n,), generator=g)


def stat(logits: torch.Tensor, target: torch.Tensor, clamp: bool = False) -> float:
    """a_t = mean((1 - u) * h) by hand, in float64."""
    p = F.softmax(logits.double(), dim=1)
    u = p[:, -1].clamp(max=U_CLAMP) if clamp else p[:, -1]
    h = -p[torch.arange(len(target)), target].log()
    return float(((1 - u) * h).mean())


def make(**kw) -> UnknownAwareLoss:
    args = dict(num_known=K, unknown_class=True, warmup_epochs=2, total_epochs=10)
    args.update(kw)
    return UnknownAwareLoss(**args)


def test_warmup_is_cross_entropy_over_k_plus_one():
    loss = make()
    for epoch in (1, 2):
        z, y = batch(epoch)
        torch.testing.assert_close(loss(z, y, epoch), F.cross_entropy(z, y))
    assert loss.alpha is None


def test_no_unknown_class_is_plain_cross_entropy_over_k():
    loss = make(unknown_class=False)
    for epoch in (1, 5, 10):
        z, y = batch(epoch, extra=0)
        torch.testing.assert_close(loss(z, y, epoch), F.cross_entropy(z, y))
    assert loss.alpha is None and loss.ewma is None
    with pytest.raises(ValueError, match="expected"):
        loss(*batch(0), epoch=1)           # K+1 columns given to a K head


def test_bf16_logits_are_computed_in_float32():
    z, y = batch(0)
    out = make()(z.bfloat16(), y, 1)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.cross_entropy(z.bfloat16().float(), y))


def test_ewma_matches_a_hand_computation():
    loss = make(warmup_epochs=5)
    expected = None
    for i in range(4):
        z, y = batch(i)
        loss(z, y, epoch=1)
        a = stat(z, y)
        expected = a if expected is None else 0.05 * a + 0.95 * expected
    assert loss.ewma == pytest.approx(expected, rel=1e-5)


def test_alpha0_is_ewma_over_factor_including_the_first_main_batch():
    loss = make(warmup_epochs=2, alpha_init_factor=8.0)
    batches = [batch(i) for i in range(3)]
    for (z, y), epoch in zip(batches, (1, 2, 3)):
        loss(z, y, epoch)
    e = stat(*batches[0])
    e = 0.05 * stat(*batches[1]) + 0.95 * e
    e = 0.05 * stat(*batches[2], clamp=True) + 0.95 * e
    assert loss.alpha_set_epoch == 3
    assert loss.alpha0 == pytest.approx(e / 8.0, rel=1e-5)
    assert loss.alpha == loss.alpha0
    assert loss.delta == pytest.approx((1.0 - loss.alpha0) / (10 - 3))


def test_alpha_ramps_linearly_to_alpha_final_in_the_last_epoch():
    loss = make(warmup_epochs=2, total_epochs=10, alpha_final=0.5)
    alphas = []
    for epoch in range(1, 11):
        loss(*batch(epoch), epoch=epoch)
        alphas.append(loss.alpha)
    assert alphas[:2] == [None, None]
    a0, step = loss.alpha0, (0.5 - loss.alpha0) / 7
    for epoch, alpha in zip(range(3, 11), alphas[2:]):
        assert alpha == pytest.approx(a0 + (epoch - 3) * step, rel=1e-12)
    assert alphas[-1] == 0.5
    # several calls within an epoch keep alpha; a skipped epoch lands on the same line
    loss2 = make(warmup_epochs=2, total_epochs=10, alpha_final=0.5)
    for epoch in (1, 2, 3, 3, 3, 6):
        loss2(*batch(epoch), epoch=epoch)
    assert loss2.alpha == pytest.approx(loss2.alpha0 + 3 * (0.5 - loss2.alpha0) / 7, rel=1e-12)


def test_first_main_epoch_being_the_last_gives_alpha_final():
    loss = make(warmup_epochs=2, total_epochs=3)
    for epoch in (1, 2, 3):
        loss(*batch(epoch), epoch=epoch)
    assert loss.alpha == 1.0 and loss.alpha0 is not None and loss.delta == 0.0


def test_zero_warmup_sets_alpha_on_the_first_call():
    loss = make(warmup_epochs=0)
    z, y = batch(0)
    loss(z, y, 1)
    assert loss.ewma == pytest.approx(stat(z, y, clamp=True), rel=1e-6)
    assert loss.alpha0 == pytest.approx(loss.ewma / 64.0)


def test_fixed_alpha_ablation_uses_alpha_final_right_after_warmup():
    loss = make(alpha_auto=False, alpha_final=0.7)
    for epoch in (1, 2, 3):
        loss(*batch(epoch), epoch=epoch)
    assert loss.alpha == 0.7 and loss.ewma is not None


def test_weighted_loss_on_a_constructed_batch():
    alpha = 0.5
    loss = make(warmup_epochs=0, alpha_auto=False, alpha_final=alpha, total_epochs=1)
    z = torch.tensor([[3.0, 0.0, 0.0, 0.0, 1.0],      # y=0, correct
                      [0.0, 2.0, 0.0, 0.0, 0.5]])     # y=0, wrong (predicts 1)
    y = torch.tensor([0, 0])
    p = F.softmax(z.double(), 1)
    h, u = -p[:, 0].log(), p[:, -1]
    w = torch.stack([torch.tensor(1.0, dtype=torch.float64), 1 + alpha / (1 + alpha * u[1])])
    expected = float((h * w).mean())
    assert float(loss(z, y, 1)) == pytest.approx(expected, rel=1e-6)


def test_predicting_unknown_counts_as_wrong():
    alpha = 1.0
    loss = make(warmup_epochs=0, alpha_auto=False, alpha_final=alpha, total_epochs=1)
    z = torch.tensor([[2.0, 0.0, 0.0, 0.0, 3.0]])     # y=0 is the top known class, unknown wins
    y = torch.tensor([0])
    p = F.softmax(z.double(), 1)
    h, u = -p[0, 0].log(), p[0, -1]
    assert float(loss(z, y, 1)) == pytest.approx(float(h * (1 + alpha / (1 + alpha * u))), rel=1e-6)
    assert float(loss(z, y, 1)) > float(F.cross_entropy(z, y)) * 1.1


def test_gradient_flows_through_u():
    alpha = 1.0
    loss = make(warmup_epochs=0, alpha_auto=False, alpha_final=alpha, total_epochs=1)
    z = torch.tensor([[0.0, 3.0, 0.0, 0.0, 1.0]], requires_grad=True)   # y=0, wrong, p_y small
    y = torch.tensor([0])
    loss(z, y, 1).backward()
    # the same loss with u detached inside w
    z2 = z.detach().clone().requires_grad_(True)
    log_p = F.log_softmax(z2, 1)
    u_det = log_p[:, -1].exp().detach()
    (-log_p[0, 0] * (1 + alpha / (1 + alpha * u_det))).sum().backward()
    assert not torch.allclose(z.grad[0, -1], z2.grad[0, -1])
    # and the analytic gradient of reference 1.4: u * [w - h alpha^2 (1-u) / (1 + alpha u)^2]
    p = F.softmax(z.detach().double(), 1)
    h, u = -p[0, 0].log(), p[0, -1]
    w = 1 + alpha / (1 + alpha * u)
    analytic = u * (w - h * alpha ** 2 * (1 - u) / (1 + alpha * u) ** 2)
    assert float(z.grad[0, -1]) == pytest.approx(float(analytic), rel=1e-5)


def test_target_k_raises_and_logit_width_is_checked():
    loss = make()
    _, y = batch(0)
    loss.check_targets(y)
    y[3] = K
    with pytest.raises(ValueError, match="never a target"):
        loss.check_targets(y)
    with pytest.raises(ValueError, match="K\\+1"):
        loss(*batch(0, extra=0), epoch=1)
    assert loss.ewma is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    a, b = make(), make()
    for epoch in (1, 2, 3, 4):
        z, y = batch(epoch)
        torch.testing.assert_close(a(z, y, epoch).cpu(), b(z.cuda(), y.cuda(), epoch).cpu())
    assert a.alpha0 == pytest.approx(b.alpha0, rel=1e-5)
    assert b.state_dict()["ewma"] == pytest.approx(a.ewma, rel=1e-5)


def test_update_state_false_leaves_state_unchanged():
    loss = make()
    for epoch in (1, 2, 3):
        loss(*batch(epoch), epoch=epoch)
    before = loss.state_dict()
    z, y = batch(99)
    out = loss(z, y, 7, update_state=False)
    assert loss.state_dict() == before
    trained = make()
    trained.load_state_dict(before)
    assert float(out) == pytest.approx(float(trained(z, y, 7)), rel=1e-6)
    # evaluation in warm-up and before alpha exists: plain CE, no state
    fresh = make()
    torch.testing.assert_close(fresh(z, y, 1, update_state=False), F.cross_entropy(z, y))
    torch.testing.assert_close(fresh(z, y, 5, update_state=False), F.cross_entropy(z, y))
    assert fresh.state_dict() == make().state_dict()


def test_state_dict_round_trip_gives_identical_losses():
    a = make()
    for epoch in (1, 2, 3, 4):
        a(*batch(epoch), epoch=epoch)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = make()
    b.load_state_dict(torch.load(buf, weights_only=True))
    for epoch in (4, 5, 6, 10):
        z, y = batch(100 + epoch)
        assert torch.equal(a(z, y, epoch), b(z, y, epoch))
    assert a.state_dict() == b.state_dict()
    assert all(v is None or type(v) in (int, float) for v in a.state_dict().values())


def test_load_state_dict_is_strict():
    loss = make()
    state = loss.state_dict()
    with pytest.raises(KeyError, match="ewma"):
        loss.load_state_dict({k: v for k, v in state.items() if k != "ewma"})
    with pytest.raises(KeyError, match="surprise"):
        loss.load_state_dict({**state, "surprise": 1})


def test_from_config():
    cfg = RunConfig(epochs=20, alpha_final=0.8, alpha_init_factor=32.0)
    loss = UnknownAwareLoss.from_config(cfg)
    assert (loss.num_known, loss.warmup_epochs, loss.total_epochs) == (10, 1, 20)
    assert (loss.alpha_final, loss.alpha_init_factor, loss.alpha_auto) == (0.8, 32.0, True)
    assert loss.unknown_class is True
