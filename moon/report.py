"""Tables and figures from result files and datasets (what the book calls).

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly, not through
``pyplot``: nothing global changes, no figure is kept alive by a figure manager, and a notebook still
displays the returned figure. seaborn supplies the style.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DPI = 120


def _new_figure(width: float, height: float):
    """A figure on the Agg canvas (importing matplotlib here keeps ``import moon.report`` cheap)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _show(ax, image: torch.Tensor) -> None:
    """Draw one uint8 ``[C, H, W]`` image on ``ax`` without ticks or frame."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _id_examples(images: torch.Tensor, labels: torch.Tensor, count: int) -> list[int]:
    """Indices of ``count`` training images cycling through the classes: 0, 1, 2, ..., 0, 1, ..."""
    classes = labels.unique().tolist()
    firsts = {c: (labels == c).nonzero().flatten().tolist() for c in classes}
    return [firsts[classes[i % len(classes)]][i // len(classes)] for i in range(count)]


def _benchmark_figure(sets: list, n_per_row: int, seed: int):
    """Grid with one row per benchmark set; ``sets`` as returned by ``moon.data.benchmark_sets``."""
    import seaborn as sns

    rows = [s for s in sets if s[0]["role"] in ("id-train", "ood")]
    class_names = rows[0][0]["classes"]
    ncols = max(n_per_row, len(class_names)) if len(class_names) <= 12 else n_per_row
    with sns.axes_style("white"):
        fig = _new_figure(1.0 * ncols + 1.6, 1.15 * len(rows) + 0.4)
        axes = fig.subplots(len(rows), ncols, squeeze=False)
    g = torch.Generator().manual_seed(seed)
    for r, (row, images, labels) in enumerate(rows):
        if labels is not None:
            picks = _id_examples(images, labels, ncols)
        else:
            picks = torch.randperm(len(images), generator=g)[:ncols].tolist()
        for c in range(ncols):
            ax = axes[r, c]
            if c < len(picks):
                _show(ax, images[picks[c]])
                if labels is not None:
                    ax.set_title(class_names[int(labels[picks[c]])], fontsize=7)
            else:
                ax.axis("off")
        label = f"{row['name']}\n{row['kind']} · {row['n']:,}"
        if row["id_set"] != rows[0][0]["id_set"]:
            label += f"\n(OOD for {row['id_set']})"
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"Benchmark: {rows[0][0]['id_set']} in-distribution and its offline OOD sets",
                 fontsize=10)
    return fig


def plot_benchmark_grid(dataset: str = "fashion_mnist", n_per_row: int = 8, seed: int = 0,
                        path: str | Path | None = None):
    """Sample images of the embedded benchmark: ID training images titled with their class, then a
    row per offline OOD set labelled with its name, near/far and image count. Saved as PNG to
    ``path`` when given; returns the matplotlib Figure."""
    from moon.data import ID_SETS
    from moon.ood import benchmark_sets

    if dataset not in ID_SETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(ID_SETS)}")
    sets = benchmark_sets(dataset, seed)
    return _save(_benchmark_figure(sets, n_per_row, seed), path)


def _save(fig, path: str | Path | None):
    """Write ``fig`` to ``path`` (PNG) when a path is given; return the figure."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        log.info("wrote %s", path)
    return fig


def write_benchmark(out_dir: str | Path, dataset: str = "fashion_mnist", seed: int = 0) -> dict:
    """Write ``out_dir/benchmark.json`` (the :func:`moon.data.benchmark_summary` rows with the dataset,
    seed and time of writing) and ``out_dir/benchmark_grid.png``; returns the JSON content."""
    from moon.data import ID_SETS
    from moon.ood import benchmark_sets

    if dataset not in ID_SETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(ID_SETS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sets = benchmark_sets(dataset, seed)
    summary = {"dataset": dataset, "seed": seed,
               "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "rows": [row for row, _, _ in sets]}
    tmp = out / "benchmark.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(out / "benchmark.json")
    _save(_benchmark_figure(sets, 8, seed), out / "benchmark_grid.png")
    return summary
