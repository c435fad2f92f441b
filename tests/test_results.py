"""Result files: round trip, JSON sanitising, atomic writes, loading and filtering, flat rows."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from moon import files
from moon.config import RunConfig
from moon.files import atomic_torch_save, atomic_write_bytes
from moon.locks import now_iso
from moon.metrics import calibration, ood_metrics
from moon.results import RunResult, flatten, load_result, load_results, provenance, save_result


def make_result(status: str = "complete", **config) -> RunResult:
    cfg = RunConfig(**config)
    cal = calibration(torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.5]]), torch.tensor([0, 1]),
                      num_known=2)
    ood = ood_metrics(np.array([1.0, 2.0, 3.0]), np.array([0.5, 2.5]))
    return RunResult(
        config=cfg.to_dict(), status=status,
        history=[{"epoch": e, "train_loss": 1.0 / (e + 1), "train_acc": 0.5, "val_acc": 0.4,
                  "alpha": 0.0, "drop_fraction": 0.3, "density": 0.05, "seconds": 1.5}
                 for e in range(3)],
        masks={"density": 0.05, "layers": {"conv1.weight": 0.5, "fc.weight": 0.01}},
        id=dataclasses.asdict(cal),
        ood={"mnist": {"energy": dataclasses.asdict(ood), "msp": dataclasses.asdict(ood)}},
        timing={"train_seconds": 4.5, "eval_seconds": 1.0, "train_images_per_second": 1e4},
        provenance={"git_sha": "abc", "versions": {"torch": torch.__version__}, "device": "cpu",
                    "started": now_iso(), "finished": now_iso()},
        extra={"alpha0": 0.25})


def test_round_trip_preserves_everything(tmp_path):
    res = make_result()
    path = save_result(res, tmp_path / "run")                 # a folder -> run/result.json
    assert path == tmp_path / "run" / "result.json"
    back = load_result(tmp_path / "run")
    assert back == res
    assert back.to_dict() == res.to_dict()
    assert load_result(path) == res
    assert back.config_obj == RunConfig()
    assert list(json.loads(path.read_text())) == [
        "config", "status", "error", "history", "masks", "id", "ood", "timing", "provenance", "extra"]


def test_explicit_json_path_and_unknown_keys_go_to_extra(tmp_path):
    data = make_result().to_dict()
    data["notes"] = "hello"
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(data))
    back = load_result(path)
    assert back.extra == {"alpha0": 0.25, "notes": "hello"}
    assert save_result(back, tmp_path / "out.json") == tmp_path / "out.json"


def test_non_finite_and_array_scalars_are_sanitised(tmp_path):
    res = make_result()
    res.id.update(ece=float("nan"), nll=np.float32(np.inf), brier=np.float64(0.25), n=np.int64(7),
                  flag=np.bool_(True), acc=torch.tensor(0.5), vec=np.array([1.0, np.nan]))
    path = save_result(res, tmp_path)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = load_result(tmp_path)
    assert back.id["ece"] is None and back.id["nll"] is None
    assert back.id["brier"] == 0.25 and back.id["n"] == 7 and back.id["flag"] is True
    assert back.id["acc"] == 0.5 and back.id["vec"] == [1.0, None]
    assert json.loads(text)["id"]["ece"] is None
    assert not math.isnan(back.history[0]["train_loss"])


def test_unstorable_value_names_where(tmp_path):
    res = make_result()
    res.extra["model"] = object()
    with pytest.raises(TypeError, match="extra.model"):
        save_result(res, tmp_path)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_is_atomic(tmp_path, monkeypatch):
    first = make_result(status="running")
    path = save_result(first, tmp_path)
    old_text = path.read_text()

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    from moon.errors import NotWritable
    with pytest.raises(NotWritable, match="result.json: disk on fire; nothing complete was touched"):
        save_result(make_result(status="complete"), tmp_path)
    assert path.read_text() == old_text
    assert leftovers(tmp_path) == ["result.json"]
    monkeypatch.undo()
    save_result(make_result(status="complete"), tmp_path)
    assert load_result(tmp_path).status == "complete"
    assert leftovers(tmp_path) == ["result.json"]


def test_atomic_bytes_and_torch_save(tmp_path):
    target = tmp_path / "sub" / "ckpt.pt"
    atomic_torch_save({"w": torch.arange(3.0)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.arange(3.0))
    before = target.read_bytes()
    with pytest.raises(Exception):
        atomic_torch_save({"f": lambda x: x}, target)        # cannot pickle: fails mid-write
    assert target.read_bytes() == before
    assert leftovers(target.parent) == ["ckpt.pt"]
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_load_results_filters_by_status(tmp_path):
    for name, status in (("b", "failed"), ("a", "complete"), ("c/deep", "running")):
        save_result(make_result(status=status), tmp_path / name)
    assert [r.status for r in load_results(tmp_path)] == ["complete"]
    assert [r.status for r in load_results(tmp_path, status=None)] == ["complete", "failed", "running"]
    assert [r.status for r in load_results(tmp_path, status="failed")] == ["failed"]
    with pytest.raises(ValueError, match="status"):
        load_results(tmp_path, status="done")


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_result(tmp_path / "nowhere")
    bad = tmp_path / "bad" / "result.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="result.json"):
        load_result(bad.parent)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json"):
        load_result(tmp_path / "list.json")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_results(tmp_path / "missing")


def test_status_is_validated():
    with pytest.raises(ValueError, match="status"):
        RunResult(config={}, status="done")


def test_provenance_keys():
    prov = provenance("cpu")
    assert {"git_sha", "git_dirty", "versions", "device", "num_threads", "hostname",
            "platform"} <= set(prov)
    assert {"python", "torch", "torchvision", "numpy", "sklearn", "moon"} <= set(prov["versions"])
    assert prov["device"] == "cpu" and prov["num_threads"] == torch.get_num_threads()
    assert prov["git_sha"] is None or len(prov["git_sha"]) == 40
    json.dumps(prov)                                           # JSON-ready as is


def test_now_iso_is_utc_seconds():
    stamp = now_iso()
    assert stamp.endswith("+00:00") and len(stamp) == len("2025-01-01T00:00:00+00:00")


def test_flatten_keys():
    res = make_result()
    row = flatten(res)
    assert row["density"] == res.config["density"] and row["method"] == "rigl"
    assert row["status"] == "complete" and row["error"] is None
    assert row["id.accuracy"] == res.id["accuracy"]
    assert row["ood.mnist.energy.auroc"] == res.ood["mnist"]["energy"]["auroc"]
    assert {"ood.mnist.msp.fpr95", "ood.mnist.energy.aupr_out", "timing.train_seconds",
            "masks.density", "extra.alpha0"} <= set(row)
    assert not any(k.startswith(("history", "provenance", "masks.layers")) for k in row)
    assert flatten(res.to_dict()) == row
    assert set(RunConfig().to_dict()) <= set(row)
