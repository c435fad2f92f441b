"""What every figure shares: a figure that nothing global keeps alive, saving, the book's palette
(one colour per method, baseline solid and MOON dashed in the same hue), the density axis and
panel grids. Figures are drawn with matplotlib and seaborn's styles."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from moon.report.frame import BASELINE, MOON

log = logging.getLogger(__name__)

DPI = 120
# One colour per method, everywhere in the book (seaborn's colour-blind palette).
METHOD_COLORS = {"dense": "#404040", "static": "#949494", "set": "#0173B2", "rigl": "#DE8F05",
                 "cigl": "#029E73"}
STUDY_COLORS = ("#0173B2", "#DE8F05", "#029E73", "#CC78BC")
LINESTYLES = {BASELINE: "-", MOON: "--"}      # another variant of MOON's parts: dotted
MARKERS = {BASELINE: "o", MOON: "s"}


def method_color(method: str) -> str:
    return METHOD_COLORS.get(method, "#CC78BC")


def new_figure(width: float, height: float):
    """A new figure, closed in pyplot at once: no figure manager keeps it alive, and a notebook
    displays it only where it is returned (importing pyplot in a kernel registers the PNG
    formatter that makes a returned figure show as an image)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(fig)
    return fig


def save(fig, path: str | Path | None):
    """Write ``fig`` to ``path`` (PNG) when a path is given; return the figure."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        log.info("wrote %s", path)
    return fig


def density_axis(ax, densities) -> None:
    """Log-scaled x axis with the run densities as its only ticks ("1 (dense)" for 1.0)."""
    ticks = sorted(set(float(d) for d in densities))
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(ticks, [("1 (dense)" if d == 1.0 else f"{d:g}") for d in ticks])
    ax.set_xlabel("density (share of weights kept, log scale)")


def panel_grid(n: int, width: float, height: float, ncols: int | None = None, **kwargs):
    """A figure with ``n`` panels of ``width`` x ``height`` inches (2 columns for 2 or 4 panels,
    else up to 3 unless ``ncols``), extra axes removed; returns the figure and its ``n`` axes."""
    import seaborn as sns

    ncols = ncols or (2 if n in (2, 4) else min(n, 3))
    nrows = math.ceil(n / ncols)
    with sns.axes_style("whitegrid"):
        fig = new_figure(width * ncols, height * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]
