"""Sweep throughput with 1 and 2 local workers (issue: sweeps at scale).

Runs one fixed small grid (LeNet-5, static sparse training, 4 seeds, 2 epochs on 10k images, MSP
only) twice into fresh temporary folders, with ``--workers 1`` and ``--workers 2``, and prints cells
per hour for each and the ratio (2 workers / 1 worker). On a 2-core CPU the ideal ratio is at most
2; each worker gets ``cores // workers`` torch threads.

    python bench/sweep_scaling.py [--cells 4] [--via run|notebook]

Needs the real Fashion-MNIST (``make data``).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from moon.study import Study, run_study

SETTINGS = dict(model="lenet5", method="static", density=0.1, epochs=2, max_train_samples=10000,
                max_eval_samples=2000, detectors="msp", device="cpu")


def cells_per_hour(workers: int, cells: int, via: str) -> float:
    study = Study(name=f"scaling-{workers}", base=SETTINGS, grid=[{"seed": list(range(cells))}])
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        statuses = run_study(study, out, workers=workers, via=via, progress=False)
        seconds = time.perf_counter() - start
    if set(statuses.values()) != {"complete"}:
        raise RuntimeError(f"cells failed: {statuses}")
    return 3600.0 * cells / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--via", default="run", choices=("run", "notebook"))
    args = parser.parse_args()
    one = cells_per_hour(1, args.cells, args.via)
    two = cells_per_hour(2, args.cells, args.via)
    print(f"{args.cells} cells via {args.via}: 1 worker {one:.0f} cells/h, 2 workers {two:.0f} "
          f"cells/h, ratio (2 workers / 1 worker) {two / one:.2f}")


if __name__ == "__main__":
    main()
