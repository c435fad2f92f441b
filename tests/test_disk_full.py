"""A full disk (or another failed write) ends with one line saying what was being written and that
nothing complete was touched; never torch's "enforce fail at inline_container.cc" (design.md 8)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections import namedtuple

import pytest
import torch

from moon import __main__ as cli
from moon.errors import NotWritable
from moon.files import atomic_torch_save
from moon.results import RunResult, save_result

TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
Usage = namedtuple("Usage", "total used free")


def _first_result(folder):
    save_result(RunResult(config={}, status="complete", id={"accuracy": 0.9}), folder)
    return (folder / "result.json").read_bytes()


def _only(folder, before):
    assert sorted(p.name for p in folder.iterdir()) == ["result.json"]     # no temporaries left
    assert (folder / "result.json").read_bytes() == before


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    folder = tmp_path / "full"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_tmpfs_gives_one_line_and_keeps_the_result(small_disk):
    run = small_disk / "run"
    before = _first_result(run)
    with pytest.raises(NotWritable) as refused:
        atomic_torch_save({"w": torch.randn(100_000)}, run / "model.pt")
    message = str(refused.value)
    assert "model.pt: the disk is full" in message and "nothing complete was touched" in message
    assert "inline_container" not in message and "\n" not in message
    with pytest.raises(NotWritable, match="result.json: the disk is full.*as it was"):
        save_result(RunResult(config={}, status="complete", extra={"big": list(range(50_000))}), run)
    _only(run, before)


def test_enospc_from_the_os_is_one_line(tmp_path, monkeypatch):
    before = _first_result(tmp_path)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("moon.files.os.fsync", full)
    with pytest.raises(NotWritable, match="cannot write .*result.json: the disk is full"):
        save_result(RunResult(config={}, status="failed"), tmp_path)
    _only(tmp_path, before)


def test_torchs_write_error_is_one_line(tmp_path, monkeypatch):
    before = _first_result(tmp_path)

    def torch_full(obj, f):
        f.write(b"PK partial")
        raise RuntimeError(TORCH_FULL)
    monkeypatch.setattr(torch, "save", torch_full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1 << 30, 1 << 30, 0))
    with pytest.raises(NotWritable, match="checkpoint.pt: the disk is full.*no checkpoint.pt"):
        atomic_torch_save({}, tmp_path / "checkpoint.pt")
    _only(tmp_path, before)
    monkeypatch.setattr(torch, "save", lambda obj, f: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="^other$"):      # not a write failure: left as it is
        atomic_torch_save({}, tmp_path / "checkpoint.pt")


def test_a_run_on_a_full_disk_ends_with_one_line(tiny_fashion, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch, "save", lambda obj, f: (_ for _ in ()).throw(RuntimeError(TORCH_FULL)))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1 << 30, 1 << 30, 0))
    code = cli.main(["run", "--preset", "smoke", "--out", str(tmp_path / "r"), "device=cpu"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1, err        # 1: the run itself failed (2: bad input)
    assert "checkpoint.pt: the disk is full" in lines[0] and "nothing complete was touched" in lines[0]
    assert "inline_container" not in err and "Traceback" not in err
