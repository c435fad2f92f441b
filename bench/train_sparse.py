"""Sparse training on CSR kernels against the masked trainer, in one run (issue 22).

For MLPs 784-300-100-11, 784-1024-1024-11 and 784-2048-2048-11 (MOON's K+1 head) trained with
RigL + MOON (unknown class, averaging) at densities 0.1, 0.05, 0.02, batch 128, on one and two
threads, it measures training images per second of the trainer's step (``Trainer._train_step``:
forward, loss, backward, optimizer step or topology update, LR step, averaging hook) with

  (m) kernel=masked: dense tensors times masks (the reference),
  (c) kernel=csr: every masked linear layer on CSR kernels,
  (a) kernel=auto: each layer on the kernel a one-off timing chose, kept only if whole training
      steps ran faster with that plan than all masked (``moon.sparse.kernel_choice.check_plan``; the
      decision and its times are in each row's ``check_auto``),

in ``--rounds`` interleaved rounds of ``--steps`` steps each (topology updates every 100 steps, about
the study's rate, so their cost is in the numbers). Ratios c/m and a/m are taken within a round
(neighbouring measurements share the machine's state); each line gives their median and range.

Targets: c/m >= 2 at density 0.05 and >= 4 at 0.02 for widths >= 1,024; a/m >= 1 within noise.
It also measures the peak memory (``VmHWM`` of a child process over its baseline after building the
data and a few steps of a small model, which load the kernels' code) of training the 2048-wide model at density 0.02 with each kernel and of
the dense model. Output: a JSON file the book can read (``--out``), with ``--label`` saying what the
machine was doing (e.g. "loaded machine": numbers taken while other jobs ran).

    python bench/train_sparse.py [--steps 20] [--rounds 3] [--out book/results/train_sparse/train_sparse.json]
    python bench/train_sparse.py --widths 0 1024 --densities 0.05 0.02 --threads 1 --no-memory \
        --label "loaded machine" --out book/results/train_sparse/auto_check.json     # auto only
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from moon.configure import from_params
from moon.data import IDData
from moon.locks import now_iso
from moon.train import Trainer
# the same synthetic images as the masked-trainer benchmark beside this file (bench/ is on the
# path when a benchmark runs as a script, its memory child included)
from train_overhead import synthetic_fashion

KERNELS = ("masked", "csr", "auto")
WIDTHS = (0, 1024, 2048)                 # 0: LeNet-300-100
DENSITIES = (0.1, 0.05, 0.02)


def trainer_for(width: int, density: float, kernel: str, data: IDData, method: str = "rigl"):
    cfg = from_params({"model": "mlp", "width": width, "method": method, "density": density,
                       "kernel": kernel, "epochs": 10, "batch_size": 128, "update_interval": 100,
                       "device": "cpu"})
    trainer = Trainer(cfg, data, torch.device("cpu"), progress=False)
    return trainer, list(trainer.loaders.train)


class Stepper:
    """Runs a trainer's steps on its batches, cycling; remembers the global step."""

    def __init__(self, trainer: Trainer, batches: list):
        self.trainer, self.batches, self.step = trainer, batches, 0

    def run(self, steps: int) -> float:
        """Images per second over ``steps`` steps."""
        start, images = time.perf_counter(), 0
        for _ in range(steps):
            x, y = self.batches[self.step % len(self.batches)]
            self.trainer._train_step(x, y, 1, self.step)
            self.step, images = self.step + 1, images + len(y)
        return images / (time.perf_counter() - start)


def measure(width: int, density: float, threads: int, data: IDData, args) -> dict:
    torch.set_num_threads(threads)
    steppers = {k: Stepper(*trainer_for(width, density, k, data)) for k in KERNELS}
    for s in steppers.values():
        s.run(3)                                   # warm-up; auto times its layers here
    rates: dict[str, list[float]] = {k: [] for k in KERNELS}
    for r in range(args.rounds):
        order = KERNELS if r % 2 == 0 else KERNELS[::-1]
        for k in order:
            rates[k].append(steppers[k].run(args.steps))
    row = {"width": width or "300-100", "density": density, "threads": threads,
           "images_per_second": {k: statistics.median(v) for k, v in rates.items()},
           "plan_auto": steppers["auto"].trainer.kernel_plan,
           "check_auto": steppers["auto"].trainer.kernel_check}
    for k in ("csr", "auto"):
        ratios = [c / m for c, m in zip(rates[k], rates["masked"])]
        row[f"{k}/masked"] = {"median": statistics.median(ratios), "min": min(ratios),
                              "max": max(ratios), "rounds": ratios}
    return row


def auto_decision(row: dict) -> str:
    """kernel=auto's choice in words: layers on CSR, and the whole-model check's times."""
    check = (row["check_auto"] or {}).get("model")
    on_csr = sum(kind == "csr" for kind in row["plan_auto"].values())
    if check is None:
        return f"auto: {on_csr} layers on CSR (no layer chose CSR, nothing to check)"
    s = check["seconds"]
    return (f"auto: {on_csr} layers on CSR (check: plan {1e3 * s['plan']:.1f} ms, masked "
            f"{1e3 * s['masked']:.1f} ms per step: {'kept' if check['kept'] else 'all masked'})")


def memory_child(kernel: str, method: str, density: float, steps: int) -> None:
    """In a child process: peak resident memory of ``steps`` training steps over the baseline."""
    torch.set_num_threads(1)
    data = synthetic_fashion(128 * 8)
    small, batches = trainer_for(64, density, kernel, data, method)   # loads the kernels' code
    Stepper(small, batches).run(3)
    del small, batches
    base = vm_hwm()
    trainer, batches = trainer_for(2048, density, kernel, data, method)
    Stepper(trainer, batches).run(steps)
    print(json.dumps({"peak_bytes": vm_hwm() - base}))


def vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def memory(steps: int) -> dict:
    out = {}
    for name, kernel, method, density in (("dense model", "masked", "dense", 1.0),
                                          ("masked, d=0.02", "masked", "rigl", 0.02),
                                          ("csr, d=0.02", "csr", "rigl", 0.02)):
        proc = subprocess.run([sys.executable, __file__, "--memory-child", kernel, method,
                               str(density), str(steps)], capture_output=True, text=True, check=True)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="steps per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    p.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    p.add_argument("--label", default="", help='what the machine was doing, e.g. "loaded machine"')
    p.add_argument("--out", type=Path, default=Path("book/results/train_sparse/train_sparse.json"))
    p.add_argument("--repeats", type=int, default=1,
                   help="measure each setting this often, each time with new trainers (so a new "
                        "kernel=auto decision): how often auto's one-off choice goes wrong")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        kernel, method, density, steps = args.memory_child
        return memory_child(kernel, method, float(density), int(steps))

    data = synthetic_fashion(128 * 16)
    started, load_before = now_iso(), os.getloadavg()
    rows = []
    print(f"{'width':>8} {'density':>7} {'thr':>3} {'masked img/s':>12} {'csr img/s':>10} "
          f"{'csr/masked (range)':>22} {'auto/masked (range)':>22}")
    for width, density, threads, repeat in itertools.product(args.widths, args.densities,
                                                             args.threads, range(args.repeats)):
        row = {**measure(width, density, threads, data, args), "repeat": repeat}
        rows.append(row)
        ips, c, a = row["images_per_second"], row["csr/masked"], row["auto/masked"]
        print(f"{row['width']:>8} {density:>7} {threads:>3} {ips['masked']:>12.0f} "
              f"{ips['csr']:>10.0f} {c['median']:>7.2f}x ({c['min']:.2f}-{c['max']:.2f})"
              f" {a['median']:>9.2f}x ({a['min']:.2f}-{a['max']:.2f}) {auto_decision(row)}",
              flush=True)
    peak = {} if args.no_memory else memory(args.steps)
    for name, value in peak.items():
        print(f"peak memory, 2048-wide MLP, {name}: {value / 2**20:.0f} MiB")
    result = {"label": args.label, "started": started, "finished": now_iso(),
              "load_average": {"before": load_before, "after": os.getloadavg()},
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "torch": torch.__version__},
              "setup": {"method": "rigl + MOON", "batch_size": 128, "steps": args.steps,
                        "rounds": args.rounds, "repeats": args.repeats, "update_interval": 100},
              "rows": rows, "peak_memory_bytes_2048_d002": peak}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
