"""Bad and unusual inputs, as a table: each gives one clear line and exit status 2, before any
compute. Adding a case is one line: ``(argv, expected fragment of the message)``.

Placeholders in argv: ``{tmp}`` is the test's folder, ``{file}`` an existing plain file there,
``{other}`` a folder holding a complete result of another configuration, ``{ckpt_zero}`` /
``{ckpt_trunc}`` / ``{ckpt_random}`` / ``{ckpt_other}`` folders whose checkpoint is empty, truncated,
random bytes or another configuration's, ``{corrupt}`` a folder whose result.json is not JSON,
``{badstudy}`` / ``{badvariant}`` study files with an unknown axis or an undefined variant value,
``{run}`` a finished run folder (result.json, model.pt and an earlier export model.csr.pt),
``{link}`` a symbolic link to ``{run}/result.json``, ``{tampered}`` a complete result of the smoke
configuration whose accuracy was edited to NaN, ``{repro_threads}`` / ``{repro_config}`` study
folders whose one result records -3 torch threads / an unknown config key, ``{notbench}`` a folder holding a
benchmark.json that ``moon benchmark`` did not write, ``{study_KEY}`` the study file
:data:`BAD_STUDIES` holds under ``KEY``.
"""

from __future__ import annotations

import json
import os

import pytest

from moon import __main__ as cli
from moon.config import RunConfig
from moon.results import RunResult, save_result

SMOKE = ["--preset", "smoke"]
SMOKE_CONFIG = {"epochs": 1, "max_train_samples": 256, "max_eval_samples": 100, "device": "cpu"}
GRID = "grid:\n  - {seed: [0]}\n"
# Study files that are refused when loaded: (text, expected fragment of the message).
BAD_STUDIES = {
    "bsae": ("bsae: {model: mlp}\n" + GRID, "unknown key 'bsae' (did you mean base?)"),
    "empty": ("", "is empty"),
    "list": ("- {seed: [0]}\n", "must be a mapping of keys"),
    "nogrid": ("name: x\nbase: {model: mlp}\n", "has no grid"),
    "gridmap": ("grid: {seed: [0]}\n", "grid must be a list of blocks"),
    "blocklist": ("grid:\n  - [seed, 0]\n", "grid block 1 must be a mapping"),
    "scalaraxis": ("grid:\n  - {seed: 0}\n", "grid block 1: seed must be a list of values"),
    "emptyaxis": ("grid:\n  - {seed: []}\n", "grid block 1: seed lists no values"),
    "base": ("base: [model, mlp]\n" + GRID, "base must be a mapping"),
    "basekey": ("base: {densty: 0.1}\n" + GRID, "base: unknown config key 'densty' (did you mean density?)"),
    "variants": ("variants: {moon: [on, off]}\ngrid:\n  - {moon: [on]}\n",
                 "variants.moon must be a mapping"),
    "bundle": ("variants: {moon: {'on': 3}}\ngrid:\n  - {moon: ['on']}\n",
               "variants.moon.on must be a mapping"),
    "presets": ("presets: {smoke: [seed]}\n" + GRID, "presets.smoke must be a mapping"),
    "orderby": ("order_by: seed\n" + GRID, "order_by must be a list"),
    "endpoints": ("endpoints: {primray: {}}\n" + GRID, "endpoints: unknown key 'primray' (did you mean primary?)"),
    "tag": ("grid: !!python/object/apply:os.getcwd []\n", "YAML tag"),
    "syntax": ("grid: [\n", "is not valid YAML"),
    "escape": ("variants:\n  v: {'x/../../../escaped': {seed: 1}}\ngrid:\n  - {v: ['x/../../../escaped']}\n",
               "'x/../../../escaped' cannot be part of a folder name"),
    "axisvalue": ("grid:\n  - {ood_sets: ['../../up']}\n", "'../../up' cannot be part of a folder name"),
    "group": ("variants:\n  'a/b': {'on': {seed: 1}}\ngrid:\n  - {'a/b': ['on']}\n",
              "'a/b' cannot be part of a folder name"),
    "name": ("name: ../../elsewhere\n" + GRID, "name '../../elsewhere' cannot be a folder name"),
    "absname": ("name: /tmp/elsewhere\n" + GRID, "name '/tmp/elsewhere' cannot be a folder name"),
    "dotname": ("name: '..'\n" + GRID, "name '..' cannot be a folder name"),
}
CASES = [
    # --- configuration values ---------------------------------------------------------------------
    (["run", "density=2"], "density=2.0 is not allowed"),
    (["run", "method=dense", "density=0.05"], "method=dense needs density=1"),
    (["run", "method=rigl", "density=1"], "needs density < 1"),
    (["run", "densty=0.1"], "did you mean density"),
    (["run", "density=0.1", "density=0.2"], "density is given twice"),
    (["run", "lr=-1"], "lr=-1.0 is not allowed"),
    (["run", "lr=abc"], "is not a valid float"),
    (["run", "lr=nan"], "expected a finite float"),
    (["run", "lr_final=1"], "lr_final=1.0 is not allowed"),
    (["run", "epochs=0"], "epochs=0 is not allowed"),
    (["run", "epochs=1.5"], "is not a valid int"),
    (["run", "model=vgg"], "choose one of mlp"),
    (["run", "method=prune"], "choose one of dense"),
    (["run", "dataset=imagenet"], "dataset='imagenet' is not allowed"),
    (["run", "sparse_init=random"], "choose one of erk"),
    (["run", "ood_sets=kmnist2"], "OOD sets for dataset=fashion_mnist"),
    (["run", "ood_sets=heldout"], "OOD sets for dataset=fashion_mnist"),
    (["run", "detectors=magic"], "detectors='magic' is not allowed"),
    (["run", "detectors=unknown", "unknown_class=false"], "needs unknown_class=true"),
    (["run", "max_eval_samples=1"], "at least 100"),
    (["run", "max_eval_samples=-5"], "max_eval_samples=-5 is not allowed"),
    (["run", "knn_k=500", "fit_samples=100"], "at most the 100 training images"),
    (["run", "knn_k=0"], "knn_k=0 is not allowed"),
    (["run", "device=tpu"], "auto, cpu, mps, cuda or cuda:N"),
    (["run", "warmup_epochs=30", "epochs=20"], "warmup_epochs=30 is not allowed"),
    (["run", "average_epochs=0"], "average_epochs=0 is not allowed"),
    (["run", "dpnum=1"], "dpnum=1 is not allowed"),
    (["run", "momentum=1"], "momentum=1.0 is not allowed"),
    (["run", "update_end=0"], "update_end=0.0 is not allowed"),
    (["run", "drop_fraction=1"], "drop_fraction=1.0 is not allowed"),
    (["run", "alpha_final=0"], "alpha_final=0.0 is not allowed"),
    (["run", "resume=maybe"], "is not a valid bool"),
    (["run", "seed=-1"], "seed=-1 is not allowed"),
    (["run", "dice_p=100"], "dice_p=100.0 is not allowed"),
    (["run", "--preset", "nope"], "preset='nope' is not known"),
    (["run", "notakeyvalue"], "expected key=value, got 'notakeyvalue'"),
    # --- output folders -------------------------------------------------------------------------
    (["run", *SMOKE, "--out", "{file}"], "exists and is not a folder"),
    (["run", *SMOKE, "--out", "{file}/sub"], "cannot write to"),
    (["run", *SMOKE, "--out", "/sys/moon-cannot-write"], "cannot write to /sys/moon-cannot-write"),
    (["run", *SMOKE, "--out", "{other}"], "holds a complete result of another configuration"),
    (["run", *SMOKE, "--out", "{other}", "resume=true"], "holds a complete result of another"),
    (["run", *SMOKE, "--out", "{ckpt_other}", "resume=true"], "belongs to another configuration"),
    (["run", *SMOKE, "--out", "{ckpt_zero}", "resume=true"], "checkpoint.pt is an empty file"),
    (["run", *SMOKE, "--out", "{ckpt_trunc}", "resume=true"], "is not a readable checkpoint"),
    (["run", *SMOKE, "--out", "{ckpt_random}", "resume=true"], "is not a readable checkpoint"),
    (["run", *SMOKE, "--out", "{corrupt}"], "is not valid JSON"),
    (["run", *SMOKE, "--out", "{tampered}", "resume=true"], "id.accuracy is nan; a run writes"),
    # --- data needed by the run, located before training ----------------------------------------
    (["run", *SMOKE, "--out", "{tmp}/k", "ood_sets=kmnist"], "dataset 'kmnist' not found"),
    # --- studies --------------------------------------------------------------------------------
    (["sweep", "nope"], "no study 'nope'"),
    (["sweep", "{badstudy}"], "unknown axis ['colour']"),
    (["sweep", "{badvariant}"], "value(s) ['maybe'] are not defined under variants.moon"),
    (["sweep", "ablation", "--only", "bogus=1"], "'bogus' is not an axis of study ablation"),
    (["sweep", "ablation", "--only", "seed=99"], "matches no cell of study ablation"),
    (["sweep", "ablation", "--only", "seed"], "expected AXIS=V1,V2"),
    (["sweep", "ablation", "--only", "seed=0", "--only", "seed=1"], "--only seed is given twice"),
    (["sweep", "ablation", "lr=0.1", "lr=0.2"], "lr is given twice"),
    (["sweep", "ablation", "--out", "{file}"], "exists and is not a folder"),
    *[(["sweep", "{study_%s}" % key], fragment) for key, (_, fragment) in BAD_STUDIES.items()],
    (["reproduce", "{tmp}/missing"], "does not exist"),
    (["reproduce", "{repro_threads}"], "provenance.num_threads is -3; a run records a positive"),
    (["reproduce", "{repro_config}"], "config: unknown config key(s) ['densty']"),
    # --- output files: never a run's own files, never an existing file without --force ----------
    (["export", "{run}", "--out", "{run}/result.json"], "is the run's own result.json"),
    (["export", "{run}", "--out", "{run}/model.pt", "--force"], "is the run's own model.pt"),
    (["export", "{run}", "--out", "{run}/checkpoint.pt"], "is the run's own checkpoint.pt"),
    (["export", "{run}", "--out", "{other}/result.json", "--force"], "is the run's own result.json"),
    (["export", "{run}", "--out", "{link}", "--force"], "is the run's own result.json"),
    (["export", "{run}"], "model.csr.pt exists; pass --force"),
    (["export", "{run}", "--out", "{file}"], "plain.txt exists; pass --force"),
    (["export", "{run}", "--out", "{tmp}"], "is a folder"),
    (["benchmark", "--out", "{file}"], "exists and is not a folder"),
    (["benchmark", "--out", "{notbench}"], "benchmark.json exists"),
    (["data", "imagenet"], "unknown dataset 'imagenet'"),
]
# Broken dataset files, found when loaded, before any compute: (what the fake Fashion-MNIST folder
# gets, extra argv, expected fragment). See :func:`_broken_fashion`.
BAD_DATA = {
    "fewer labels": ({"cut_labels": 20}, [], "holds 120 images but"),
    "label range": ({"bad_label": 12}, [], "holds label 12 (1 of 120 labels are outside 0..9)"),
    "14x14 images": ({"size": 14}, [], "hold 1x14x14 images, but dataset=fashion_mnist (and the model"),
    "truncated idx": ({"truncate": True}, [], "train-images-idx3-ubyte.gz is truncated"),
    "broken gzip": ({"garbage": True}, [], "t10k-labels-idx1-ubyte.gz cannot be read (BadGzipFile"),
    "ood is id": ({"mnist_is_fashion": True}, ["ood_sets=mnist"],
                  "OOD set 'mnist' shares 40 of its 40 images with the ID test set"),
}
# argparse's own refusals (exit 2, usage line)
USAGE_CASES = [
    (["sweep", "ablation", "--workers", "0"], "0 is below 1"),
    (["reproduce", "x", "--cells", "0"], "0 is below 1"),
    (["run", "--epochs", "3"], "unrecognized arguments"),
]


def _other_result(folder, **config) -> None:
    cfg = RunConfig(**config)
    save_result(RunResult(config=cfg.to_dict(), status="complete", id={"accuracy": 0.9}), folder)


def _finished_run(folder) -> None:
    """A run folder as a finished run leaves it (without training): result, model, an export."""
    import torch

    from moon.models import model_for

    cfg = RunConfig(model="mlp", method="static", density=0.2, device="cpu")
    save_result(RunResult(config=cfg.to_dict(), status="complete", id={"accuracy": 0.9}), folder)
    torch.save({"config": cfg.to_dict(), "model": model_for(cfg).state_dict()}, folder / "model.pt")
    (folder / "model.csr.pt").write_bytes(b"an earlier export\n")


def _tampered_result(folder) -> None:
    """A complete result of the smoke preset's configuration whose accuracy was edited to NaN
    (Python's JSON reader accepts it): never reused."""
    from moon.configure import from_params

    cfg = from_params({}, preset="smoke")
    save_result(RunResult(config=cfg.to_dict(), status="complete", masks={"density": 1.0},
                          id={k: 0.5 for k in ("accuracy", "nll", "brier", "ece", "mce",
                                               "adaptive_ece")},
                          ood={s: {"msp": {"auroc": 0.9, "aupr_in": 0.9, "aupr_out": 0.9,
                                           "fpr95": 0.5}} for s in cfg.ood_set_list}), folder)
    text = (folder / "result.json").read_text().replace('"accuracy": 0.5', '"accuracy": NaN')
    (folder / "result.json").write_text(text)


def _edited_study_folder(folder, edit) -> None:
    """A study folder holding one complete run whose result file was then edited by ``edit``."""
    from moon.configure import from_params

    cfg = from_params({}, preset="smoke")
    result = RunResult(config=cfg.to_dict(), status="complete", masks={"density": 1.0},
                       id={k: 0.5 for k in ("accuracy", "nll", "brier", "ece", "mce", "adaptive_ece")},
                       ood={s: {"msp": {"auroc": 0.9, "aupr_in": 0.9, "aupr_out": 0.9, "fpr95": 0.5}}
                            for s in cfg.ood_set_list}, provenance={"num_threads": 1}).to_dict()
    edit(result)
    (folder / "seed=0").mkdir(parents=True)
    (folder / "seed=0" / "result.json").write_text(json.dumps(result))


@pytest.fixture
def places(tmp_path, fake_data):
    import torch

    (tmp_path / "plain.txt").write_text("a file, not a folder\n")
    _other_result(tmp_path / "other", lr=0.04)
    for name, payload in (("ckpt_zero", b""), ("ckpt_random", os.urandom(4096))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "checkpoint.pt").write_bytes(payload)
    (tmp_path / "ckpt_other").mkdir()
    torch.save({"config": RunConfig(lr=0.01).to_dict()}, tmp_path / "ckpt_other" / "checkpoint.pt")
    (tmp_path / "ckpt_trunc").mkdir()
    whole = (tmp_path / "ckpt_other" / "checkpoint.pt").read_bytes()
    (tmp_path / "ckpt_trunc" / "checkpoint.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "result.json").write_text('{"config": {')
    (tmp_path / "bad.yaml").write_text("grid:\n  - {colour: [red]}\n")
    (tmp_path / "badvariant.yaml").write_text(
        "variants:\n  moon: {'on': {unknown_class: true}}\ngrid:\n  - {moon: ['on', maybe]}\n")
    _finished_run(tmp_path / "run")
    _tampered_result(tmp_path / "tampered")
    for name, edit in (("repro_threads", lambda d: d["provenance"].update(num_threads=-3)),
                       ("repro_config", lambda d: d["config"].update(densty=0.1))):
        _edited_study_folder(tmp_path / name, edit)
    (tmp_path / "link").symlink_to(tmp_path / "run" / "result.json")
    (tmp_path / "notbench").mkdir()
    (tmp_path / "notbench" / "benchmark.json").write_text('{"mine": "not a moon benchmark"}\n')
    studies = {}
    for key, (text, _) in BAD_STUDIES.items():
        studies[f"study_{key}"] = str(tmp_path / f"study-{key}.yaml")
        (tmp_path / f"study-{key}.yaml").write_text(text)
    return {**studies, "run": str(tmp_path / "run"), "link": str(tmp_path / "link"),
            "notbench": str(tmp_path / "notbench"), "tampered": str(tmp_path / "tampered"),
            "repro_threads": str(tmp_path / "repro_threads"),
            "repro_config": str(tmp_path / "repro_config"), "tmp": str(tmp_path), "file": str(tmp_path / "plain.txt"),
            "other": str(tmp_path / "other"), "corrupt": str(tmp_path / "corrupt"),
            "badstudy": str(tmp_path / "bad.yaml"), "badvariant": str(tmp_path / "badvariant.yaml"),
            **{k: str(tmp_path / k) for k in ("ckpt_zero", "ckpt_trunc", "ckpt_random", "ckpt_other")}}


@pytest.fixture
def no_compute(monkeypatch):
    """Any training or study cell started would fail the test."""
    from moon.study import engines
    from moon.train import Trainer

    def refuse(*args, **kwargs):
        raise AssertionError("compute started for an input that should have been refused")

    monkeypatch.setattr(Trainer, "fit", refuse)
    monkeypatch.setattr(engines, "_run_cell", refuse)


@pytest.mark.parametrize("argv, fragment", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_clear_line_before_compute(argv, fragment, places, no_compute, capsys,
                                                    monkeypatch):
    monkeypatch.chdir(places["tmp"])      # default output folders (runs/...) stay in the test's
    before = {p: p.read_bytes() for p in _files(places["tmp"])}
    code = cli.main([a.format(**places) for a in argv])
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err and "weights_only" not in err
    after = {p: p.read_bytes() for p in _files(places["tmp"]) if p in before}
    assert after == before, "a refused input changed a file that was there"


@pytest.mark.parametrize("argv, fragment", USAGE_CASES, ids=[" ".join(a) for a, _ in USAGE_CASES])
def test_usage_errors_exit_2(argv, fragment, capsys, no_compute):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2 and fragment in capsys.readouterr().err


def test_debug_shows_the_traceback(places):
    with pytest.raises(Exception, match="another configuration"):
        cli.main(["--debug", "run", *SMOKE, "--out", places["other"]])


def _files(root):
    from pathlib import Path

    return sorted(p for p in Path(root).rglob("*") if p.is_file() and ".moon.lock" not in p.name
                  and not p.name.startswith(".study-"))


def test_every_message_names_the_folder_and_the_way_out(places, capsys, no_compute):
    cli.main(["run", *SMOKE, "--out", places["other"]])
    err = capsys.readouterr().err
    assert places["other"] in err and "lr (0.04 -> 0.05)" in err
    assert "--out DIR" in err and "overwrite=true" in err
    kept = json.loads(open(os.path.join(places["other"], "result.json")).read())
    assert kept["status"] == "complete" and kept["config"]["lr"] == 0.04


def test_benchmark_redraws_its_own_files_and_others_need_force(tmp_path):
    from moon.errors import OutputExists

    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "benchmark.json").write_text(json.dumps(
        {"dataset": "fashion_mnist", "seed": 0, "generated_at": "t", "rows": []}))
    (ours / "benchmark_grid.png").write_bytes(b"png")
    cli._check_benchmark_out(ours, force=False)                 # make benchmark, every build
    cli._check_benchmark_out(tmp_path / "new", force=False)     # nothing there yet
    (tmp_path / "png").mkdir()
    (tmp_path / "png" / "benchmark_grid.png").write_bytes(b"someone's figure")
    with pytest.raises(OutputExists, match="benchmark_grid.png exists; pass --force"):
        cli._check_benchmark_out(tmp_path / "png", force=False)
    cli._check_benchmark_out(tmp_path / "png", force=True)


@pytest.mark.parametrize("key", sorted(BAD_STUDIES))
def test_a_bad_study_file_is_named_in_one_line(key, tmp_path):
    from moon.study import load_study

    path = tmp_path / f"{key}.yaml"
    path.write_text(BAD_STUDIES[key][0])
    with pytest.raises(ValueError) as refused:
        load_study(path)
    message = str(refused.value)
    assert str(path) in message and "\n" not in message and BAD_STUDIES[key][1] in message


def test_cells_of_a_study_built_in_python_cannot_leave_the_folder(tmp_path, no_compute):
    from moon.study import Study, run_study

    escape = "x/../../../escaped"           # tmp_path/s/v=x/../../../escaped is beside tmp_path
    study = Study(name="s", base=dict(SMOKE_CONFIG), grid=[{"v": [escape]}],
                  variants={"v": {escape: {"seed": 1}}})
    with pytest.raises(ValueError, match="cannot be part of a folder name"):
        run_study(study, tmp_path / "s", via="run", progress=False)
    assert not (tmp_path.parent / "escaped").exists()


@pytest.fixture
def ctrl_c(monkeypatch):
    """Training is interrupted as by Ctrl-C (SIGINT raises KeyboardInterrupt in the main thread)."""
    from moon.train import Trainer

    def interrupted(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "fit", interrupted)


def test_ctrl_c_during_a_run_says_how_to_resume(places, ctrl_c, capsys):
    out = os.path.join(places["tmp"], "my run")
    code = cli.main(["run", *SMOKE, "--out", out, "lr=0.04", "resume=false"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 130, err
    assert len(lines) == 1 and lines[0].startswith("interrupted:"), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert (f"python -m moon run --preset smoke --out '{out}' lr=0.04 resume=true" in lines[0]
            and "resume=false" not in lines[0])
    assert not os.path.exists(os.path.join(out, "result.json"))


def test_ctrl_c_with_debug_shows_the_traceback(places, ctrl_c):
    with pytest.raises(KeyboardInterrupt):
        cli.main(["--debug", "run", *SMOKE, "--out", os.path.join(places["tmp"], "r")])


def _broken_fashion(root, cut_labels=0, bad_label=None, size=28, truncate=False, garbage=False,
                    mnist_is_fashion=False) -> None:
    """A Fashion-MNIST folder under ``root`` (IDX .gz, 120 train and 40 test images) with one
    defect."""
    import gzip
    import shutil

    from conftest import balanced_labels, synthetic_images, write_idx

    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    for prefix, n, seed in (("train", 120, 1), ("t10k", 40, 2)):
        y = balanced_labels(n, 10, seed)
        x = synthetic_images(n, (size, size), y, seed)
        if prefix == "train" and bad_label is not None:
            y[3] = bad_label
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz",
                  y[:n - cut_labels] if prefix == "train" else y)
    if truncate:
        path = folder / "train-images-idx3-ubyte.gz"
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    if garbage:
        (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\xcc\xd0 not gzip" * 20)
    if mnist_is_fashion:
        shutil.copytree(folder, root / "mnist")


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_one_clear_line_before_compute(case, tmp_path, monkeypatch, no_compute, capsys):
    from moon import data

    defect, argv, fragment = BAD_DATA[case]
    _broken_fashion(tmp_path / "data", **defect)
    (tmp_path / "system").mkdir()
    monkeypatch.setenv("MOON_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MOON_SYSTEM_DATA", str(tmp_path / "system"))
    data.clear_cache()
    try:
        code = cli.main(["run", *SMOKE, "--out", str(tmp_path / "out"), *argv])
    finally:
        data.clear_cache()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err


def test_knn_k_rule_is_the_configs_at_preflight_too():
    """The config caps k by fit_samples; a data set with fewer training images than that is caught
    by the run's preflight with the config's own message (one rule, moon.config.check_knn_k)."""
    from conftest import learnable_id_data

    from moon.runner import preflight

    data = learnable_id_data(n_train=60)
    cfg = RunConfig(knn_k=80, fit_samples=1000, ood_sets="gaussian", detectors="msp,knn")
    with pytest.raises(ValueError, match="knn_k=80 is not allowed: at most the 60 training images"):
        preflight(cfg, data)
    preflight(RunConfig(knn_k=80, fit_samples=1000, ood_sets="gaussian", detectors="msp"), data)
    # the config's side of the rule: k only matters where KNN is among the detectors
    RunConfig(knn_k=80, fit_samples=50, detectors="msp")
    with pytest.raises(ValueError, match="knn_k=80 is not allowed: at most the 50 training images"):
        RunConfig(knn_k=80, fit_samples=50, detectors="msp,knn")
