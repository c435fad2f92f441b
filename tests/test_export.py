"""Sparse export and inference (moon.sparse): the exported model computes the dense masked model's
logits with CSR and dense kernels, loads with weights_only, stays within its size bound, and the
kernel chooser keeps what it measured to be faster."""

import random
import re

import pytest
import torch

from moon.__main__ import main
from moon.config import RunConfig
from moon.configure import from_params
from moon.deploy import export, load_exported
from moon.errors import MoonError
from moon.models import model_for
from moon.runner import MODEL_FILE, load_model
from moon.sparse import KINDS, SparseLayer, SparseModel, batch_bucket, choose, settle
from moon.sparse.masking import Masking, maskable_parameters

TOL = 1e-4


def masked_run(folder, model="mlp", density=0.05, unknown_class=True, seed=0):
    """A run folder holding ``model.pt`` as the runner writes it: a masked (ERK) model, biases
    non-zero, without training."""
    method = "dense" if density == 1 else "static"
    cfg = RunConfig(model=model, method=method, density=density, unknown_class=unknown_class,
                    seed=seed, device="cpu")
    torch.manual_seed(seed)
    net = model_for(cfg)
    Masking.from_config(net, cfg)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.5, 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"config": cfg.to_dict(), "model": net.state_dict()}, folder / MODEL_FILE)
    return folder


def images(n, seed=1):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


class FakeTimer:
    """Seconds looked up by label (``"<layer>:<kind>"``, ``"model:plan"``, ``"model:dense"``); the
    function is still called once, so the forward it belongs to runs."""

    def __init__(self, seconds=None, default=1.0):
        self.seconds, self.default, self.calls = dict(seconds or {}), default, []

    def __call__(self, fn, label=""):
        fn()
        self.calls.append(label)
        return self.seconds.get(label, self.default)


# --- equivalence --------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["mlp", "lenet5"])
@pytest.mark.parametrize("unknown_class", [True, False])
@pytest.mark.parametrize("fmt, kernel", [("csr", "csr"), ("csr", "dense"), ("csr", "auto"),
                                         ("dense", "dense")])
def test_logits_equal_the_dense_masked_model(tmp_path, model, unknown_class, fmt, kernel):
    run = masked_run(tmp_path / "run", model, 0.05, unknown_class)
    reference, cfg = load_model(run)
    sparse = load_exported(export(run, fmt).path, kernel=kernel, timer=FakeTimer())
    for n in (1, 37):
        x = images(n)
        with torch.no_grad():
            want, want_features = reference(x), reference.features(x)
            got, got_features = sparse(x), sparse.features(x)
        assert got.shape == (n, 10 + unknown_class)
        assert (got - want).abs().max() <= TOL
        assert (got_features - want_features).abs().max() <= TOL
    if kernel == "csr":      # every layer really ran its CSR kernel
        assert all(layer.kind == "csr" for layer in sparse.layers.values())
    if fmt == "dense":
        assert all(layer.kinds == ("dense",) for layer in sparse.layers.values())


@pytest.mark.parametrize("model", ["mlp", "lenet5"])
@pytest.mark.parametrize("kernel", ["csr", "dense"])
def test_direct_calls_give_exactly_the_module_path(tmp_path, model, kernel):
    """The forward without nn.Module calls runs the same kernels: bit-identical logits and
    features; a hook on any module switches it off, so the hook runs."""
    run = masked_run(tmp_path / "run", model, 0.05, True)
    sparse = load_exported(export(run, "csr").path, kernel=kernel, timer=FakeTimer())
    x = images(9)
    with torch.no_grad():
        got, got_features = sparse(x), sparse.features(x)
        assert sparse._direct is not None and len(sparse._direct) == len(sparse.net.body) + 1
        torch.testing.assert_close(got, sparse.net(x), rtol=0, atol=0)
        torch.testing.assert_close(got_features, sparse.net.features(x), rtol=0, atol=0)
        seen = []
        handle = sparse.net.head.register_forward_hook(lambda m, i, o: seen.append(o.shape))
        hooked = sparse(x)
        handle.remove()
    assert seen == [hooked.shape] and torch.equal(hooked, got)


@pytest.mark.parametrize("model", ["mlp", "lenet5"])
def test_dense_model_exports_and_matches(tmp_path, model):
    run = masked_run(tmp_path / "run", model, density=1.0)
    reference, _ = load_model(run)
    done = export(run)
    sparse = load_exported(done.path, kernel="csr")
    with torch.no_grad():
        assert (sparse(images(8)) - reference(images(8))).abs().max() <= TOL
    assert done.density == 1.0 and done.bytes <= done.dense_bytes   # dense layers stay dense


def test_exported_nonzeros_are_the_mask(tmp_path):
    run = masked_run(tmp_path / "run", "lenet5", 0.05)
    reference, _ = load_model(run)
    sparse = load_exported(export(run).path, kernel="csr")
    weights = maskable_parameters(reference)
    for name, layer in sparse.layers.items():
        w = weights[f"{name}.weight"]
        assert layer.nnz == int(w.count_nonzero())
        assert torch.equal(layer.csr.to_dense().view(w.shape), w)


# --- file -----------------------------------------------------------------------------------------
def test_weights_only_round_trip_with_plain_tensors(tmp_path):
    run = masked_run(tmp_path / "run", "lenet5", 0.05)
    path = export(run).path
    state = torch.load(path, weights_only=True)
    assert state["format"] == "moon-sparse-model" and state["storage"] == "csr"
    assert all(t.layout == torch.strided for t in state["blobs"].values())
    assert {layer["storage"] for layer in state["layers"].values()} == {"csr"}
    assert {layer["index"] for layer in state["layers"].values()} <= {"int16", "int32"}
    assert from_params(state["config"]) == load_model(run)[1]
    first, second = load_exported(path, kernel="csr"), load_exported(path, kernel="csr")
    with torch.no_grad():
        assert torch.equal(first(images(5)), second(images(5)))


@pytest.mark.parametrize("model", ["mlp", "lenet5"])
@pytest.mark.parametrize("density", [0.1, 0.05, 0.02])
def test_file_size_bound(tmp_path, model, density):
    done = export(masked_run(tmp_path / "run", model, density))
    assert done.bytes <= 2.5 * density * done.dense_bytes
    assert done.dense_path.stat().st_size == done.dense_bytes


def test_file_that_does_not_match_its_config_is_refused(tmp_path):
    run = masked_run(tmp_path / "run", "mlp", 0.05, unknown_class=True)
    path = export(run).path
    state = torch.load(path, weights_only=True)
    state["config"]["unknown_class"] = False                     # a 10-way head for 11 rows
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(MoonError, match="head.weight has shape"):
        load_exported(tmp_path / "bad.pt")
    with pytest.raises(MoonError, match="not a moon sparse export"):
        load_exported(run / MODEL_FILE)


# --- the kernel chooser ---------------------------------------------------------------------------
def test_choose_keeps_the_fastest_and_ties_go_dense():
    assert choose({"dense": 2.0, "csr": 1.0}) == "csr"
    assert choose({"dense": 1.0, "csr": 2.0}) == "dense"
    assert choose({"csr": 1.0, "dense": 1.0}) == "dense"
    assert choose({"dense": 3.0}) == "dense"
    rng = random.Random(0)
    for _ in range(200):
        seconds = {k: rng.choice([rng.random(), 0.5]) for k in KINDS}
        assert seconds[choose(seconds)] == min(seconds.values())


def test_settle_falls_back_to_dense_unless_the_plan_is_faster():
    plan = {"a": "csr", "b": "dense"}
    assert settle(plan, 1.0, 2.0) == plan
    assert settle(plan, 2.0, 1.0) == {"a": "dense", "b": "dense"}
    assert settle(plan, 1.0, 1.0) == {"a": "dense", "b": "dense"}
    assert settle(plan, 0.97, 1.0, margin=0.05) == {"a": "dense", "b": "dense"}
    assert settle(plan, 0.9, 1.0, margin=0.05) == plan


def test_calibration_records_the_measured_faster_kernel(tmp_path):
    run = masked_run(tmp_path / "run", "lenet5", 0.05)
    names = ["body.0", "body.3", "body.7", "body.9", "head"]
    rng = random.Random(1)
    seconds = {f"{n}:{k}": rng.random() for n in names for k in KINDS}
    timer = FakeTimer({**seconds, "model:plan": 1.0, "model:dense": 2.0})
    sparse = load_exported(export(run).path, timer=timer)
    with torch.no_grad():
        sparse(images(50))
    key = (64, torch.get_num_threads())
    plan = sparse.choices[key]
    assert list(plan) == names
    for n in names:
        other = "dense" if plan[n] == "csr" else "csr"
        assert seconds[f"{n}:{plan[n]}"] <= seconds[f"{n}:{other}"]
        assert sparse.timings[key]["layers"][n] == {k: seconds[f"{n}:{k}"] for k in KINDS}
        assert (sparse.layers[n].dense is None) == (plan[n] == "csr")   # unused dense copy freed
    calls = len(timer.calls)
    with torch.no_grad():
        sparse(images(64))                      # same bucket: no new measurement
    assert len(timer.calls) == calls
    timer.seconds.update({"model:plan": 3.0, "model:dense": 2.0})
    with torch.no_grad():
        sparse(images(3))                       # new bucket; the mixed plan is slower as a whole
    assert sparse.choices[(4, torch.get_num_threads())] == {n: "dense" for n in names}


def test_batch_buckets():
    assert [batch_bucket(b) for b in (1, 2, 3, 64, 65, 512)] == [1, 2, 4, 64, 128, 512]


def test_unsupported_convolution_runs_dense_only():
    from moon.sparse import SparseConv2d
    from moon.sparse.inference import to_csr

    conv = torch.nn.Conv2d(2, 4, 3, groups=2)
    layer = SparseConv2d("c", conv, to_csr(conv.weight.detach().flatten(1)), None, None)
    assert isinstance(layer, SparseLayer) and layer.kinds == ("dense",)
    with pytest.raises(ValueError, match="kernel="):
        SparseModel(torch.nn.Identity(), kernel="fast")


# --- command line ---------------------------------------------------------------------------------
def test_cli_exports_a_smoke_run(tiny_fashion, tmp_path, capsys):
    from moon import run

    cfg = dict(epochs=1, batch_size=64, device="cpu", detectors="msp", eval_batch_size=256,
               model="mlp", method="static", density=0.2, ood_sets="gaussian")
    run(from_params(cfg), tmp_path, progress=False)
    capsys.readouterr()
    assert main(["export", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model.csr.pt" in out and "model.pt" in out
    reference, _ = load_model(tmp_path)
    sparse = load_exported(tmp_path / "model.csr.pt")
    x = tiny_fashion.test_x[:64].float() / 255
    with torch.no_grad():
        assert (sparse(x) - reference(x)).abs().max() <= TOL
    assert main(["export", str(tmp_path), "--format", "dense", "--out", str(tmp_path / "d.pt")]) == 0
    assert (tmp_path / "d.pt").is_file()


def test_cli_names_a_folder_without_a_model(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(tmp_path / MODEL_FILE) in err and "python -m moon run" in err


def test_cli_replaces_an_earlier_export_only_with_force(tmp_path, capsys):
    run = masked_run(tmp_path / "run")
    model = (run / MODEL_FILE).read_bytes()
    assert main(["export", str(run)]) == 0
    first = (run / "model.csr.pt").read_bytes()
    assert main(["export", str(run), "--format", "dense", "--out", str(run / "model.csr.pt")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (run / "model.csr.pt").read_bytes() == first
    assert main(["export", str(run), "--format", "dense", "--out", str(run / "model.csr.pt"),
                 "--force"]) == 0
    assert load_exported(run / "model.csr.pt").layers and (run / MODEL_FILE).read_bytes() == model


def test_export_never_replaces_the_model_it_reads(tmp_path):
    run = masked_run(tmp_path / "run")
    before = (run / MODEL_FILE).read_bytes()
    with pytest.raises(MoonError, match="is the run's own model.pt"):
        export(run, out=run / MODEL_FILE, force=True)
    assert (run / MODEL_FILE).read_bytes() == before


def _first_csr(state):
    return next(k for k, layer in state["layers"].items() if layer["storage"] == "csr")


def _break_indices(state):
    dtype = state["layers"][_first_csr(state)]["index"]
    blob = state["blobs"][dtype]
    blob[len(blob) // 2] = torch.iinfo(blob.dtype).max


MALFORMED = {   # edit of a good export -> fragment of the one-line refusal
    "another architecture": (lambda s: s["config"].update(model="lenet5"),
                             "is no weight of the architecture its config describes"),
    "no version": (lambda s: s.pop("version"), "has no export version"),
    "broken csr indices": (_break_indices, "is not a well-formed moon sparse export"),
    "nan weight": (lambda s: s["blobs"]["float32"].__setitem__(0, float("nan")), "non-finite"),
    "inf weight": (lambda s: s["blobs"]["float32"].__setitem__(-1, float("inf")), "non-finite"),
    "layers a list": (lambda s: s.__setitem__("layers", [1, 2]), "layers is list"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_export_is_refused_in_one_line(case, tmp_path):
    from moon.errors import MoonError

    state = torch.load(export(masked_run(tmp_path / "run", "mlp", 0.05)).path, weights_only=True)
    edit, fragment = MALFORMED[case]
    edit(state)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(MoonError, match=re.escape(fragment)) as refused:
        load_exported(tmp_path / "bad.pt")
    assert str(tmp_path / "bad.pt") in str(refused.value) and "\n" not in str(refused.value)
