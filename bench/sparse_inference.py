"""Sparse inference against dense, in one run (issue: sparse models that run sparse).

For the MLP (LeNet-300-100) and LeNet-5 on 28x28 inputs at densities 1, 0.1, 0.05, 0.02 (ERK masks
drawn by the project's ``Masking``, as training draws them; random weights: speed does not depend on
their values), it measures the forward pass of

  (d) the dense masked model (``moon.runner.load_model``: what evaluation runs today),
  (s) its export loaded with ``moon.sparse.load_exported`` (each layer's kernel chosen by timing),
  (c) the same export with the CSR kernel forced everywhere (what sparse kernels alone would give),

at batch 1, 64 and 512 with 1 and 2 threads, and prints d/s and d/c (speed-ups, > 1 = faster than
dense). Each number is the median over ``--rounds`` interleaved rounds of about ``--round-seconds``.
It also prints the stored sizes (``model.pt`` against the CSR export, bound 2.5 x density) and the
peak memory of inference (a child process per model, ``VmHWM`` over the imported-torch baseline).

Targets (one thread, batch >= 64, MLP): >= 1.5x at density 0.05, >= 3x at 0.02; never below 1.0x.

    python bench/sparse_inference.py [--out book/results/sparse_inference/inference.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from moon.config import RunConfig
from moon.deploy import export, load_exported
from moon.locks import now_iso
from moon.models import model_for
from moon.results import provenance as run_provenance
from moon.runner import MODEL_FILE, load_model
from moon.sparse.masking import Masking

TARGETS = {0.05: 1.5, 0.02: 3.0}     # MLP, one thread, batch >= 64


def masked_run(folder: Path, model: str, density: float, seed: int = 0) -> Path:
    """A run folder with ``model.pt`` as the runner writes it, for a masked untrained model."""
    cfg = RunConfig(model=model, method="dense" if density == 1 else "static", density=density,
                    seed=seed, device="cpu")
    torch.manual_seed(seed)
    net = model_for(cfg)
    Masking.from_config(net, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"config": cfg.to_dict(), "model": net.state_dict()}, folder / MODEL_FILE)
    return folder


def per_call(fn, seconds: float) -> tuple[int, float]:
    """Calls per round for a round of about ``seconds``, from a rough first timing."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(seconds / once)), once


def interleaved(fns: dict[str, callable], rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    """Median seconds per call of each function, wall-clock and CPU (``time.process_time``: all
    of this process's threads; less sensitive to other processes on a loaded machine), rounds
    interleaved in rotating order so a load change hits every variant alike."""
    number = {k: per_call(f, seconds)[0] for k, f in fns.items()}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(number[k]):
                fns[k]()
            wall[k].append((time.perf_counter() - start) / number[k])
            cpu[k].append((time.process_time() - start_cpu) / number[k])
    return {"wall": {k: statistics.median(v) for k, v in wall.items()},
            "cpu": {k: statistics.median(v) for k, v in cpu.items()}}


def speed_rows(run: Path, path: Path, model: str, density: float, args) -> list[dict]:
    dense, _ = load_model(run)
    auto, csr = load_exported(path), load_exported(path, kernel="csr")
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batches:
            x = torch.randn(batch, 1, 28, 28)
            with torch.inference_mode():
                start = time.perf_counter()
                auto(x)                                     # decides this (batch, threads) plan
                calibration = time.perf_counter() - start
                t = interleaved({"dense": lambda: dense(x), "auto": lambda: auto(x),
                                 "csr": lambda: csr(x)}, args.rounds, args.round_seconds)
            plan = auto.choices[auto.key(batch, threads)]
            wall, cpu = t["wall"], t["cpu"]
            rows.append({"model": model, "density": density, "batch": batch, "threads": threads,
                         "seconds": wall, "cpu_seconds": cpu, "speedup": wall["dense"] / wall["auto"],
                         "speedup_csr_only": wall["dense"] / wall["csr"],
                         "speedup_cpu": cpu["dense"] / max(cpu["auto"], 1e-12), "plan": plan,
                         "calibration_seconds": calibration})
    return rows


def memory(run: Path, path: Path, variant: str, batch: int) -> dict:
    """Peak RSS increments of loading + the first forward, and of steady inference (after a reset
    of the peak), measured in a child process with one thread."""
    code = ("import sys, json; from bench.sparse_inference import _child; "
            "print(json.dumps(_child(*sys.argv[1:])))")
    out = subprocess.run([sys.executable, "-c", code, str(run), str(path), variant, str(batch)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1],
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _child(run: str, path: str, variant: str, batch: str) -> dict:
    torch.set_num_threads(1)
    x = torch.randn(int(batch), 1, 28, 28)
    base = _status("VmRSS")
    with torch.inference_mode():
        net = load_model(run)[0] if variant == "dense" else load_exported(path)
        net(x)
        load_peak = _status("VmHWM") - base
        Path("/proc/self/clear_refs").write_text("5")          # reset the peak (Linux >= 4.0)
        for _ in range(20):
            net(x)
    tensors = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    for layer in getattr(net, "layers", {}).values():
        if layer.csr is not None:
            c = layer.csr
            tensors += sum(t.numel() * t.element_size()
                           for t in (c.values(), c.col_indices(), c.crow_indices()))
        if layer.dense is not None:
            tensors += layer.dense.numel() * layer.dense.element_size()
    return {"tensor_bytes": tensors, "load_peak_bytes": load_peak,
            "inference_peak_bytes": _status("VmHWM") - base}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def provenance(args) -> dict:
    info = run_provenance("cpu")
    info.update({"cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
                 "torch": torch.__version__, "mkl": torch.backends.mkl.is_available(),
                 "loadavg_start": os.getloadavg(), "started": now_iso()})
    return info


def print_tables(result: dict) -> None:
    threads = result["provenance"]["threads"]
    head = " | ".join(f"{t} thread{'s' * (t > 1)}: auto   csr  (cpu)  csr-layers" for t in threads)
    print(f"\nspeed-up over the dense masked model, wall clock (median of rounds; >1 = faster);\n"
          f"auto: kernels chosen by timing; csr: CSR forced; (cpu): auto by CPU time\n"
          f"{'model':7s} {'density':>7s} {'batch':>5s} | {head}")
    by = {(r["model"], r["density"], r["batch"], r["threads"]): r for r in result["rows"]}
    for model, density, batch in dict.fromkeys((r["model"], r["density"], r["batch"])
                                               for r in result["rows"]):
        cells = []
        for t in threads:
            r = by[(model, density, batch, t)]
            n_csr = sum(k == "csr" for k in r["plan"].values())
            cells.append(f"{r['speedup']:13.2f}x {r['speedup_csr_only']:5.2f}x "
                         f"({r['speedup_cpu']:4.2f}x) {n_csr}/{len(r['plan'])}{'':7s}")
        print(f"{model:7s} {density:7g} {batch:5d} | " + " | ".join(cells))
    print(f"\nstored size (model.pt vs CSR export; bound 2.5 x density)\n"
          f"{'model':7s} {'density':>7s} {'nnz':>8s} {'model.pt':>10s} {'export':>10s} "
          f"{'ratio':>6s} {'bound':>6s}")
    for s in result["sizes"]:
        print(f"{s['model']:7s} {s['density']:7g} {s['nnz']:8d} {s['dense_bytes'] / 1e3:8.1f}kB "
              f"{s['exported_bytes'] / 1e3:8.1f}kB {s['ratio']:6.3f} {s['bound']:6.3f}"
              f"{'' if s['within_bound'] else '  OVER'}")
    if result["memory"]:
        print(f"\npeak memory, batch {result['settings']['memory_batch']}, 1 thread (MB over the "
              f"imported-torch baseline)\n{'model':7s} {'density':>7s} {'variant':>7s} "
              f"{'tensors':>8s} {'load+1st':>9s} {'steady':>7s}")
        for m in result["memory"]:
            print(f"{m['model']:7s} {m['density']:7g} {m['variant']:>7s} "
                  f"{m['tensor_bytes'] / 1e6:8.3f} {m['load_peak_bytes'] / 1e6:9.1f} "
                  f"{m['inference_peak_bytes'] / 1e6:7.1f}")
    for line in result["verdict"]:
        print(line)


def verdict(result: dict) -> list[str]:
    lines = []
    for r in result["rows"]:
        target = TARGETS.get(r["density"]) if r["model"] == "mlp" else None
        if target and r["threads"] == 1 and r["batch"] >= 64:
            ok = "met" if r["speedup"] >= target else "MISSED"
            lines.append(f"target mlp d={r['density']:g} batch {r['batch']} 1 thread: "
                         f"{r['speedup']:.2f}x vs >= {target}x: {ok}")
    rows = result["rows"]
    csr_layers = {id(r): sum(k == "csr" for k in r["plan"].values()) for r in rows}
    same = [r for r in rows if csr_layers[id(r)] == 0]
    slow = [r for r in rows if r["speedup"] < 1.0 and csr_layers[id(r)] > 0]
    if same:   # the dense fallback runs the dense model's kernels without module dispatch
        lines.append(f"dense fallback (every layer dense: the dense model's kernels, called "
                     f"directly): {len(same)} of {len(rows)} cells, ratios "
                     f"{min(r['speedup'] for r in same):.2f}x-{max(r['speedup'] for r in same):.2f}x "
                     "(above 1: the dispatch saved; below 1: timing noise, the same kernels)")
    lines.append(f"cells with a sparse kernel below 1.0x: {len(slow)} of {len(rows) - len(same)}"
                 + "".join(f"\n  {r['model']} d={r['density']:g} batch {r['batch']} "
                           f"{r['threads']}t: {r['speedup']:.2f}x ({csr_layers[id(r)]} csr layers)"
                           for r in slow))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,lenet5")
    parser.add_argument("--densities", default="1,0.1,0.05,0.02")
    parser.add_argument("--batches", default="1,64,512")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--round-seconds", type=float, default=0.05)
    parser.add_argument("--memory-batch", type=int, default=512)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    parser.add_argument("--out", default=None, help="JSON file to write (e.g. "
                        "book/results/sparse_inference/inference.json)")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    result = {"provenance": provenance(args), "rows": [], "sizes": [], "memory": [],
              "settings": {"rounds": args.rounds, "round_seconds": args.round_seconds,
                           "batches": args.batches, "memory_batch": args.memory_batch,
                           "sparse_init": "erk", "weights": "random (masked by Masking)"}}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for density in (float(d) for d in args.densities.split(",")):
                run = masked_run(Path(tmp) / f"{model}-{density:g}", model, density)
                done = export(run)
                result["sizes"].append({
                    "model": model, "density": density, "nnz": done.nnz, "weights": done.weights,
                    "dense_bytes": done.dense_bytes, "exported_bytes": done.bytes,
                    "ratio": done.size_ratio, "bound": 2.5 * density,
                    "within_bound": done.size_ratio <= 2.5 * density})
                result["rows"] += speed_rows(run, done.path, model, density, args)
                print(f"{model} density {density:g}: done", file=sys.stderr)
                if not args.no_memory:
                    for variant in ("dense", "sparse"):
                        result["memory"].append({"model": model, "density": density,
                                                 "variant": variant,
                                                 **memory(run, done.path, variant, args.memory_batch)})
    result["provenance"].update({"loadavg_end": os.getloadavg(), "finished": now_iso()})
    result["verdict"] = verdict(result)
    print_tables(result)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_suffix(".json.tmp")
        tmp_out.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp_out, out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
