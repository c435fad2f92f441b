"""Weight averaging: the mean of snapshots, when snapshots are taken, BN refresh, the sparsity check
and checkpointing (reference/moon-released-code.md section 3, 8.1 item 5)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from moon.recipe.averaging import WeightAverager


def tiny(bn: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(3, 5)] + ([nn.BatchNorm1d(5)] if bn else []) + [nn.ReLU(), nn.Linear(5, 2)]
    return nn.Sequential(*layers)


def perturb(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g))


def loader(n_batches: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, generator=g) * 3 + 1, torch.zeros(8, dtype=torch.long))
            for _ in range(n_batches)]


def test_average_of_snapshots_is_their_mean():
    model = tiny()
    avg = WeightAverager(model, total_epochs=3, average_epochs=1, steps_per_epoch=1,
                         snapshots_per_epoch=1)
    snaps = []
    avg.on_epoch_end(model, 1)                 # not start_epoch (2): nothing
    assert avg.n_averaged == 0
    for seed, call in ((1, "end"), (2, "step"), (3, "step")):
        perturb(model, seed)
        snaps.append(copy.deepcopy(model.state_dict()))
        if call == "end":
            avg.on_epoch_end(model, 2)
        else:
            assert avg.on_step(model, 3, 0)
    assert avg.n_averaged == 3
    for name, p in avg.averaged_model.named_parameters():
        mean = torch.stack([s[name] for s in snaps]).mean(0)
        torch.testing.assert_close(p.detach(), mean, rtol=1e-6, atol=1e-6)


def taken_steps(avg: WeightAverager, model: nn.Module, epoch: int, steps: int) -> list[int]:
    return [s for s in range(steps) if avg.on_step(model, epoch, s)]


def test_evenly_spaced_snapshot_steps():
    model = tiny()
    avg = WeightAverager(model, total_epochs=5, average_epochs=2, steps_per_epoch=20)
    assert avg.start_epoch == 3
    assert taken_steps(avg, model, 3, 20) == []            # before the window: nothing
    avg.on_epoch_end(model, 3)
    assert avg.n_averaged == 1
    assert taken_steps(avg, model, 4, 20) == list(range(1, 20, 2))
    assert avg.snapshot_steps == tuple(range(1, 20, 2))
    assert taken_steps(avg, model, 5, 20) == list(range(1, 20, 2))
    assert avg.n_averaged == 1 + 2 * 10


def test_as_released_burst_takes_the_first_steps():
    model = tiny()
    avg = WeightAverager(model, total_epochs=5, average_epochs=2, steps_per_epoch=20,
                         as_released=True)
    assert avg.ave_num == 2 and avg.snapshot_steps == (0, 1)
    avg.on_epoch_end(model, 3)
    assert taken_steps(avg, model, 4, 20) == [0, 1]
    assert taken_steps(avg, model, 5, 20) == [0, 1]
    assert avg.n_averaged == 5
    # CIFAR's 391 steps: a burst of 39 per epoch (reference section 3)
    cifar = WeightAverager(model, total_epochs=100, average_epochs=20, steps_per_epoch=391,
                           as_released=True)
    assert cifar.snapshot_steps == tuple(range(39))


def test_start_epoch_zero_takes_the_initial_copy_at_the_first_step():
    model = tiny()
    avg = WeightAverager(model, total_epochs=2, average_epochs=2, steps_per_epoch=4,
                         snapshots_per_epoch=2)
    assert avg.start_epoch == 0
    assert avg.on_step(model, 1, 0) and avg.n_averaged == 1     # initial copy only (stride 2)
    assert avg.on_step(model, 1, 1) and avg.n_averaged == 2
    assert not avg.on_step(model, 1, 2)


def test_finalize_recomputes_batchnorm_statistics():
    model = tiny(bn=True)
    data = loader()
    avg = WeightAverager(model, total_epochs=2, average_epochs=1, steps_per_epoch=1,
                         snapshots_per_epoch=1)
    avg.on_epoch_end(model, 1)
    perturb(model, 5)
    avg.on_step(model, 2, 0)
    snapshot_bn = avg.averaged_model[1].running_mean.clone()
    expected = copy.deepcopy(avg.averaged_model)
    update_bn(data, expected)
    final = avg.finalize(data, "cpu")
    bn = final[1]
    assert not torch.equal(bn.running_mean, snapshot_bn)
    torch.testing.assert_close(bn.running_mean, expected[1].running_mean)
    torch.testing.assert_close(bn.running_var, expected[1].running_var)
    # an exact cumulative average of the per-batch statistics
    with torch.no_grad():
        feats = [final[0](x) for x, _ in data]
    torch.testing.assert_close(bn.running_mean, torch.stack([f.mean(0) for f in feats]).mean(0))
    assert bn.momentum == 0.1 and final.training


def test_finalize_without_batchnorm_skips_the_data_pass():
    model = tiny()
    avg = WeightAverager(model, total_epochs=1, average_epochs=1, steps_per_epoch=1)

    class Exploding:
        def __iter__(self):
            raise AssertionError("loader should not be read for a model without BatchNorm")

    with pytest.raises(RuntimeError, match="no snapshot"):
        avg.finalize(Exploding(), None)
    avg.on_step(model, 1, 0)
    assert avg.finalize(Exploding(), None) is avg.averaged_model


def test_mask_check():
    model = tiny()
    mask = (torch.rand(5, 3, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    with torch.no_grad():
        model[0].weight.mul_(mask)
    avg = WeightAverager(model, total_epochs=2, average_epochs=1, steps_per_epoch=1,
                         snapshots_per_epoch=1)
    avg.on_epoch_end(model, 1)
    perturb(model, 3)
    with torch.no_grad():
        model[0].weight.mul_(mask)
    avg.on_step(model, 2, 0)
    avg.finalize(loader(), None, masks={"0.weight": mask})          # passes: zeros stay zero
    with torch.no_grad():
        model[0].weight.add_(1.0)                                  # a masked weight leaks
    avg.on_step(model, 2, 0)
    with pytest.raises(RuntimeError, match="0.weight"):
        avg.finalize(loader(), None, masks={"0.weight": mask})
    with pytest.raises(KeyError, match="nope"):
        avg.finalize(loader(), None, masks={"nope": mask})


def run_epochs(avg: WeightAverager, model: nn.Module, epochs: range, steps: int) -> None:
    for epoch in epochs:
        for s in range(steps):
            perturb(model, 100 * epoch + s)
            avg.on_step(model, epoch, s)
        avg.on_epoch_end(model, epoch)


def test_state_dict_round_trip_continues_identically():
    kw = dict(total_epochs=4, average_epochs=2, steps_per_epoch=4, snapshots_per_epoch=2)
    model = tiny(bn=True)
    a = WeightAverager(model, **kw)
    run_epochs(a, model, range(1, 4), 4)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    model_b = copy.deepcopy(model)
    b = WeightAverager(tiny(bn=True, seed=1), **kw)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert b.n_averaged == a.n_averaged == 3
    run_epochs(a, model, range(4, 5), 4)
    run_epochs(b, model_b, range(4, 5), 4)
    assert b.n_averaged == a.n_averaged == 5
    for (name, pa), (_, pb) in zip(a.averaged_model.state_dict().items(),
                                   b.averaged_model.state_dict().items()):
        assert torch.equal(pa, pb), name


def test_load_state_dict_is_strict():
    kw = dict(total_epochs=4, average_epochs=2, steps_per_epoch=4)
    state = WeightAverager(tiny(), **kw).state_dict()
    with pytest.raises(KeyError, match="steps_per_epoch"):
        WeightAverager(tiny(), **kw).load_state_dict(
            {k: v for k, v in state.items() if k != "steps_per_epoch"})
    with pytest.raises(ValueError, match="steps_per_epoch"):
        WeightAverager(tiny(), **{**kw, "steps_per_epoch": 8}).load_state_dict(state)
    with pytest.raises(RuntimeError, match="size mismatch|Missing|Unexpected"):
        WeightAverager(tiny(bn=True), **kw).load_state_dict(state)


def test_bad_arguments():
    with pytest.raises(ValueError, match="average_epochs"):
        WeightAverager(tiny(), total_epochs=3, average_epochs=4, steps_per_epoch=1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        WeightAverager(tiny(), total_epochs=3, average_epochs=1, steps_per_epoch=0)


def test_loaded_snapshots_are_not_retaken_as_the_initial_copy():
    kw = dict(total_epochs=2, average_epochs=2, steps_per_epoch=4, snapshots_per_epoch=1)
    a = WeightAverager(tiny(), **kw)
    model = tiny()
    assert a.on_step(model, 1, 0) and a.n_averaged == 1          # the start_epoch == 0 copy
    b = WeightAverager(tiny(), **kw)
    b.load_state_dict(a.state_dict())
    assert not b.on_step(model, 1, 1) and b.n_averaged == 1
