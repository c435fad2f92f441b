"""Training on CSR kernels (kernel=csr/auto) against the masked trainer, the reference.

Tolerance: the CSR path runs the same arithmetic per weight (same SGD, same masks) but sums the
products of each matmul in another order (MKL sparse BLAS against dense GEMM), so float32 results
differ by a few ulp (about 1e-7 relative) per product. Over the few dozen SGD steps of these runs
that stays near 1e-6 (measured: <= 2e-7 on logits); we allow 1e-4 absolute on logits and weights
of order 1 and 1e-5 relative on losses: two orders above the noise, far below anything a changed
mask, a missed update or a wrong gradient gives (those move logits by 1e-2 and more). Masks are
compared exactly: they come from top-k of magnitudes, which such noise does not reorder here.
"""

import functools
import json

import pytest
import torch
import torch.nn.functional as F
from tqdm import tqdm

from moon.config import RunConfig, differing_fields
from moon.configure import from_params
from moon.files import atomic_torch_save, load_checkpoint
from moon.rundir import inspect_folder
from moon.sparse.kernel_choice import check_plan, choose_plan
from moon.sparse.training import CsrLinear, CsrTraining
from moon.train import Trainer

from conftest import learnable_id_data

LOGIT_ATOL = 1e-4
LOSS_RTOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these tiny runs gain nothing from two, and a busy machine makes each
    thread-pool hand-off of a microsecond op cost milliseconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return learnable_id_data(n_train=192, n_eval=100)


def cfg_of(**kw) -> RunConfig:
    base = dict(model="mlp", width=64, method="rigl", density=0.1, epochs=3, batch_size=32,
                update_interval=3, device="cpu", detectors="msp", lr_warmup_epochs=0.0)
    return from_params({**base, **kw})


def train(cfg: RunConfig, data, epochs=None, state=None):
    """Train ``cfg`` (optionally from ``state``, for ``epochs`` epochs); returns the trainer, the
    masks after every topology update and the final model's logits on the validation images."""
    trainer = Trainer(cfg, data, torch.device("cpu"), progress=False)
    if state is not None:
        trainer.load_state_dict(state)
    updates = []
    original = trainer.masking.update

    def recorded(*args, **kwargs):
        swaps = original(*args, **kwargs)
        updates.append({n: m.clone() for n, m in trainer.masking.masks.items()})
        return swaps

    trainer.masking.update = recorded
    if epochs is None:
        model = trainer.fit()
    else:
        bar = tqdm(disable=True)
        for epoch in range(trainer.epochs_done + 1, epochs + 1):
            trainer._train_epoch(epoch, bar)
        model = trainer.model
    with torch.inference_mode():
        model.eval()
        logits = torch.cat([model(x) for x, _ in trainer.loaders.val])
    return trainer, updates, logits


def assert_same_run(a, b):
    (ta, ua, la), (tb, ub, lb) = a, b
    assert len(ua) == len(ub) and all(
        torch.equal(x[n], y[n]) for x, y in zip(ua, ub) for n in x)
    assert {n: m for n, m in ta.masking.masks.items()}.keys() == tb.masking.masks.keys()
    assert all(torch.equal(ta.masking.masks[n], tb.masking.masks[n]) for n in ta.masking.masks)
    torch.testing.assert_close(lb, la, atol=LOGIT_ATOL, rtol=0)
    for ra, rb in zip(ta.history, tb.history):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=LOSS_RTOL)
        assert rb["val_nll"] == pytest.approx(ra["val_nll"], rel=LOSS_RTOL)
        # accuracy: discrete; float noise may at most flip one image at an exact tie
        assert abs(rb["val_acc"] - ra["val_acc"]) <= 1.0 / 100
        assert rb["density"] == ra["density"] and rb["topology_updates"] == ra["topology_updates"]


def assert_zero_outside(trainer):
    params = dict(trainer.model.named_parameters())
    for name, mask in trainer.masking.masks.items():
        assert torch.all(params[name].detach()[~mask] == 0), name
        buf = trainer.optimizer.state.get(params[name], {}).get("momentum_buffer")
        assert buf is None or torch.all(buf[~mask] == 0), name


# --- the layer -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dense_grad", [False, True])
def test_csr_layer_gradients_equal_the_masked_layers(dense_grad):
    """Forward, input, weight (at the active positions only) and bias gradients of a CSR layer
    equal those of the masked dense layer; on update steps it also forms the dense gradient."""
    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(40, 24)
    mask = torch.rand(24, 40, generator=g) < 0.2
    with torch.no_grad():
        linear.weight.mul_(mask)
    x = torch.randn(16, 40, generator=g)
    up = torch.randn(16, 24, generator=g)

    xd = x.clone().requires_grad_(True)
    (F.linear(xd, linear.weight, linear.bias) * up).sum().backward()
    weight_grad, bias_grad = linear.weight.grad, linear.bias.grad
    linear.zero_grad(set_to_none=True)
    layer = CsrLinear("w", linear, mask)
    layer.want_dense_grad = dense_grad
    xc = x.clone().requires_grad_(True)
    y = layer(xc)
    (y * up).sum().backward()

    torch.testing.assert_close(y, F.linear(x, linear.weight, linear.bias), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xc.grad, xd.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.values.grad, weight_grad[mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(linear.bias.grad, bias_grad, atol=1e-5, rtol=1e-5)
    assert linear.weight.grad is None           # the weight gradient went to the values only
    if dense_grad:
        torch.testing.assert_close(layer.dense_grad, up.t() @ x, atol=1e-5, rtol=1e-5)


# --- whole runs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["static", "set", "rigl", "cigl"])
def test_csr_run_has_the_masked_runs_masks_and_metrics(data, method):
    """Same seed: the masks after every update are the masked run's exactly, logits and metrics
    agree within float noise, and weights outside the mask stay exactly 0 (with zero momentum)."""
    masked = train(cfg_of(method=method), data)
    csr = train(cfg_of(method=method, kernel="csr"), data)
    assert len(masked[1]) == (0 if method == "static" else masked[0].topology_updates)
    assert_same_run(masked, csr)
    assert_zero_outside(csr[0])
    assert csr[0].kernel_plan == {n: "csr" for n in csr[0].masking.masks}
    assert type(csr[0].model.body[1]) is torch.nn.Linear      # plain layers back after fit


@pytest.mark.parametrize("method", ["rigl", "cigl"])
def test_lenet_convolutions_stay_masked_and_the_run_agrees(data, method):
    """A model with convolutions: they stay masked-dense (same random stream for CigL's D)."""
    kw = dict(model="lenet5", width=0, method=method, epochs=2, max_train_samples=128)
    masked, csr = train(cfg_of(**kw), data), train(cfg_of(**kw, kernel="csr"), data)
    assert set(csr[0].kernel_plan) == {"body.7.weight", "body.9.weight", "head.weight"}
    assert_same_run(masked, csr)
    assert_zero_outside(csr[0])


@pytest.mark.parametrize("first, second", [("masked", "csr"), ("csr", "masked")])
def test_a_checkpoint_resumes_on_the_other_kernel(data, tmp_path, first, second):
    """Two epochs on one kernel, a checkpoint on disk, two more on the other: the uninterrupted
    masked run's masks and logits, within float noise (checkpoints use the masked layout)."""
    cfg = cfg_of(epochs=4)
    full = train(cfg, data)
    part, _, _ = train(cfg.replace(kernel=first), data, epochs=2)
    atomic_torch_save(part.state_dict(), tmp_path / "checkpoint.pt")
    resumed = train(cfg.replace(kernel=second), data,
                    state=load_checkpoint(tmp_path / "checkpoint.pt"))
    assert resumed[0].epochs_done == 4
    masks_full, masks_resumed = full[0].masking.masks, resumed[0].masking.masks
    assert all(torch.equal(masks_full[n], masks_resumed[n]) for n in masks_full)
    torch.testing.assert_close(resumed[2], full[2], atol=LOGIT_ATOL, rtol=0)
    assert_zero_outside(resumed[0])


# --- kernel="auto" ---------------------------------------------------------------------------------
class FakeTimer:
    """Seconds by label: CSR twice as fast on the first layer, a tie on the others."""
    def __call__(self, fn, label):
        fn()
        return 0.5 if label == "body.1.weight:csr" else 1.0


def test_auto_takes_csr_only_where_it_is_faster_beyond_the_margin(data):
    trainer = Trainer(cfg_of(kernel="auto"), data, torch.device("cpu"), progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    rng = torch.get_rng_state()
    plan = choose_plan(trainer.csr, timer=FakeTimer(), rounds=1)
    assert plan == {"body.1.weight": "csr", "body.3.weight": "masked", "head.weight": "masked"}
    # timed on copies: the model and the global random stream are untouched
    assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    assert torch.equal(rng, torch.get_rng_state())


class ModelTimer(FakeTimer):
    """:class:`FakeTimer` for the layers; whole steps take ``seconds[kind]`` (``plan``/``masked``)."""
    def __init__(self, plan: float, masked: float = 1.0):
        self.seconds = {"model:plan": plan, "model:masked": masked}

    def __call__(self, fn, label):
        if label not in self.seconds:
            return super().__call__(fn, label)
        fn()
        return self.seconds[label]


def loss_of(trainer, epoch=1):
    """The loss as the trainer hands it over (a partial: the check steps a copy of it)."""
    return functools.partial(trainer.criterion, epoch=epoch)


@pytest.mark.parametrize("plan_seconds, kept", [(0.5, True), (0.97, False), (1.5, False)])
def test_the_whole_model_check_keeps_the_plan_only_when_faster_beyond_the_margin(
        data, plan_seconds, kept):
    """Whole steps timed (faked): the per-layer plan stays only when it beats all-masked by more
    than the 5% margin; on copies, so the model, optimizer, loss state, masks' and global random
    streams (CigL draws its D from them) are untouched."""
    trainer = Trainer(cfg_of(method="cigl"), data, torch.device("cpu"), progress=False)
    batch = next(iter(trainer.loaders.train))
    trainer._train_step(*batch, 1, 0)    # momentum in the optimizer: the copies must carry it
    trainer.csr = CsrTraining(trainer.model, trainer.masking, trainer.optimizer, "auto", 32)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    momentum = {n: trainer.optimizer.state[p]["momentum_buffer"].clone()
                for n, p in trainer.model.named_parameters()}
    rng, mask_rng = torch.get_rng_state(), trainer.masking.generator.get_state()
    loss_state = trainer.criterion.state_dict()
    plan = {"body.1.weight": "csr", "body.3.weight": "masked", "head.weight": "masked"}
    settled = check_plan(trainer.csr, plan, batch, loss_of(trainer), timer=ModelTimer(plan_seconds))
    assert settled == (plan if kept else {n: "masked" for n in plan})
    assert trainer.csr.check == {"plan": plan, "seconds": {"plan": plan_seconds, "masked": 1.0},
                                 "kept": kept, "margin": 0.05, "rounds": 5}
    assert all(torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    assert all(torch.equal(momentum[n], trainer.optimizer.state[p]["momentum_buffer"])
               for n, p in trainer.model.named_parameters())
    assert torch.equal(rng, torch.get_rng_state())
    assert torch.equal(mask_rng, trainer.masking.generator.get_state())
    assert trainer.criterion.state_dict() == loss_state        # MOON's EWMA: not fed by the check
    assert type(trainer.model.body[1]) is torch.nn.Linear     # the copies had the CSR layers


def test_the_whole_model_check_steps_both_plans_for_real(data):
    """With the real timer both steps run (the CSR copy trains) and their times are recorded."""
    trainer = Trainer(cfg_of(kernel="auto"), data, torch.device("cpu"), progress=False)
    batch = next(iter(trainer.loaders.train))
    from moon.sparse.inference import MedianTimer
    plan = {n: "csr" for n in trainer.csr.candidates}
    check_plan(trainer.csr, plan, batch, loss_of(trainer), timer=MedianTimer(1, 1e-4), rounds=1)
    assert set(trainer.csr.check["seconds"]) == {"plan", "masked"}
    assert all(s > 0 for s in trainer.csr.check["seconds"].values())


@pytest.mark.parametrize("method", ["rigl", "cigl"])
def test_auto_falling_back_to_masked_is_the_masked_run_bit_for_bit(data, monkeypatch, method):
    """The first layer chose CSR, the whole step was not faster: every layer masked, and the run
    is kernel=masked's exactly (it takes the masked trainer's own step); the check is reported."""
    monkeypatch.setattr("moon.sparse.kernel_choice.MedianTimer", lambda **kw: ModelTimer(0.99))
    masked, auto = train(cfg_of(method=method), data), train(cfg_of(method=method, kernel="auto"), data)
    assert auto[0].kernel_plan == {n: "masked" for n in auto[0].masking.masks}
    check = auto[0].kernel_check
    assert check["model"]["kept"] is False and check["model"]["plan"]["body.1.weight"] == "csr"
    assert check["layers"]["body.1.weight"] == {"masked": 1.0, "csr": 0.5}
    assert torch.equal(masked[2], auto[2])
    assert all(torch.equal(p, q) for p, q in zip(masked[0].model.parameters(),
                                                 auto[0].model.parameters()))
    assert [h["train_loss"] for h in masked[0].history] == [h["train_loss"] for h in auto[0].history]


def test_auto_keeping_the_plan_trains_on_csr(data, monkeypatch):
    monkeypatch.setattr("moon.sparse.kernel_choice.MedianTimer", lambda **kw: ModelTimer(0.5))
    masked, auto = train(cfg_of(), data), train(cfg_of(kernel="auto"), data)
    assert auto[0].kernel_plan == {"body.1.weight": "csr", "body.3.weight": "masked",
                                   "head.weight": "masked"}
    assert auto[0].kernel_check["model"]["kept"] is True
    assert_same_run(masked, auto)


def test_auto_run_has_the_masked_runs_masks(data):
    masked = train(cfg_of(), data)
    auto = train(cfg_of(kernel="auto"), data)
    assert set(auto[0].kernel_plan.values()) <= {"csr", "masked"}
    assert_same_run(masked, auto)


# --- configs ---------------------------------------------------------------------------------------
def test_kernel_values_are_checked():
    with pytest.raises(ValueError, match="kernel='sparse'.*masked, csr, auto"):
        RunConfig(kernel="sparse")
    with pytest.raises(ValueError, match="method=dense has no mask"):
        RunConfig(method="dense", density=1.0, kernel="csr")
    with pytest.raises(ValueError, match="as_released=true needs kernel=masked"):
        RunConfig(as_released=True, kernel="csr")
    with pytest.raises(ValueError, match="csr or auto"):
        CsrTraining(None, None, None, kernel="masked")


def test_old_configs_without_kernel_are_the_masked_runs(tmp_path):
    """Result files of committed studies have no ``kernel`` key: it counts as ``masked``, so
    the study reuses them and does not see another configuration."""
    path = next(p for p in sorted(
        __import__("pathlib").Path(__file__).parent.parent.glob("book/results/*/*/result.json")))
    committed = json.loads(path.read_text())["config"]
    assert "kernel" not in committed
    assert from_params(committed).kernel == "masked"
    assert differing_fields(committed, from_params(committed).to_dict()) == []

    # a committed result itself (complete metrics, no kernel key) in a run folder
    (tmp_path / "result.json").write_bytes(path.read_bytes())
    cfg = from_params(committed)
    assert inspect_folder(tmp_path, cfg.to_dict(), resume=True).kind == "reusable"
    assert inspect_folder(tmp_path, cfg.replace(lr=cfg.lr / 2).to_dict(), resume=True).kind == "other"
    # the kernel is how a run is executed, not what it is (design.md, section 10)
    assert inspect_folder(tmp_path, cfg.replace(kernel="auto").to_dict(), resume=True).kind == "reusable"


def test_reports_pair_runs_across_kernels():
    """An old result (no ``kernel`` column value) pairs with a new one of the same cell."""
    import pandas as pd

    from moon.report.stats import config_keys

    frame = pd.DataFrame([{**cfg_of().to_dict(), "kernel": None}, cfg_of(kernel="csr").to_dict()])
    assert "kernel" not in config_keys(frame, free=("seed",))


def test_auto_with_every_layer_masked_is_the_masked_run_bit_for_bit(data, monkeypatch):
    monkeypatch.setattr("moon.sparse.kernel_choice.choose_plan",
                        lambda training: {n: "masked" for n in training.candidates})
    masked, auto = train(cfg_of(), data), train(cfg_of(kernel="auto"), data)
    assert torch.equal(masked[2], auto[2])
    assert all(torch.equal(p, q) for p, q in zip(masked[0].model.parameters(),
                                                 auto[0].model.parameters()))
