"""Tables and figures from result files and datasets (what the book calls).

Every function returns its figure (closed in pyplot, so nothing global keeps it alive) and saves it
when given a path; a notebook displays the returned figure. seaborn supplies the style.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import pandas as pd

from moon.results import atomic_write_bytes, now_iso

log = logging.getLogger(__name__)

DPI = 120


def _new_figure(width: float, height: float):
    """A new figure, closed in pyplot at once: no figure manager keeps it alive, and a notebook
    displays it only where it is returned (importing pyplot in a kernel registers the PNG
    formatter that makes a returned figure show as an image)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(fig)
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
               "generated_at": now_iso(),
               "rows": [row for row, _, _ in sets]}
    atomic_write_bytes(out / "benchmark.json", (json.dumps(summary, indent=2) + "\n").encode())
    _save(_benchmark_figure(sets, 8, seed), out / "benchmark_grid.png")
    return summary


def benchmark_table(path: str | Path = "results/benchmark/benchmark.json"):
    """The benchmark page's table, read from :func:`write_benchmark`'s JSON: one row per ID split
    and OOD set with its role, kind (id/near/far), image count, shape and source."""
    import pandas as pd

    rows = json.loads(Path(path).read_text())["rows"]
    table = pd.DataFrame([{"set": r["name"], "kind": r["kind"], "images": r["n"],
                           "shape": "x".join(str(v) for v in r["shape"]),
                           "evaluated with": r["id_set"], "source": r["source"]} for r in rows])
    return table.set_index("set")


# --------------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------------
ID_METRICS = ("accuracy", "nll", "brier", "ece", "mce", "adaptive_ece")
PERCENT_METRICS = ("accuracy", "ece", "mce", "adaptive_ece")


def id_table(result) -> "pd.DataFrame":
    """ID test metrics of a run (over the K known classes), accuracy and calibration errors in %."""
    import pandas as pd

    rows = [{"metric": k, "value": result.id[k] * (100 if k in PERCENT_METRICS else 1),
             "unit": "%" if k in PERCENT_METRICS else ""} for k in ID_METRICS if k in result.id]
    return pd.DataFrame(rows).set_index("metric")


def plot_history(result, path: str | Path | None = None):
    """Per-epoch training curves of one run: loss, train/validation accuracy, alpha and the drop
    fraction of the last topology update."""
    import pandas as pd
    import seaborn as sns

    hist = pd.DataFrame(result.history)
    fig = _new_figure(12, 3.2)
    axes = fig.subplots(1, 3)
    sns.lineplot(data=hist, x="epoch", y="train_loss", ax=axes[0], marker="o")
    acc = hist.melt(id_vars="epoch", value_vars=["train_acc", "val_acc"], var_name="split",
                    value_name="accuracy")
    sns.lineplot(data=acc, x="epoch", y="accuracy", hue="split", ax=axes[1], marker="o")
    sched = hist.melt(id_vars="epoch", value_vars=["alpha", "drop_fraction"], var_name="schedule")
    sns.lineplot(data=sched.dropna(), x="epoch", y="value", hue="schedule", ax=axes[2], marker="o")
    cfg = result.config
    fig.suptitle(f"{cfg['model']} {cfg['method']} density {cfg['density']} "
                 f"(unknown class {cfg['unknown_class']}, averaging {cfg['averaging']})")
    return _save(fig, path)
