"""The benchmark page's files: ``benchmark.json`` (every ID split and OOD set with its kind, size,
shape and source) and ``benchmark_grid.png`` (sample images), written by ``python -m moon
benchmark`` and read by :func:`moon.report.tables.benchmark_table`."""

from __future__ import annotations

import json
from pathlib import Path

from moon.files import atomic_write_bytes
from moon.locks import now_iso


def write_benchmark(out_dir: str | Path, dataset: str = "fashion_mnist", seed: int = 0) -> dict:
    """Write ``out_dir/benchmark.json`` (the :func:`moon.ood.sets.benchmark_sets` rows with the
    dataset, seed and time of writing) and ``out_dir/benchmark_grid.png``; returns the JSON
    content."""
    from moon.data import ID_SETS
    from moon.ood.sets import benchmark_sets
    from moon.report.plotting import save
    from moon.report.run_figures import benchmark_figure

    if dataset not in ID_SETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(ID_SETS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sets = benchmark_sets(dataset, seed)
    summary = {"dataset": dataset, "seed": seed, "generated_at": now_iso(),
               "rows": [row for row, _, _ in sets]}
    atomic_write_bytes(out / "benchmark.json", (json.dumps(summary, indent=2) + "\n").encode())
    save(benchmark_figure(sets, 8, seed), out / "benchmark_grid.png")
    return summary
