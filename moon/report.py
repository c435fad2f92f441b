"""Tables from result files (what the book calls), and the benchmark summary files.

Result files hold fractions; tables show accuracy, calibration errors and OOD metrics in %. The
figures live in :mod:`moon.figures`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from moon.results import atomic_write_bytes, now_iso

log = logging.getLogger(__name__)

def write_benchmark(out_dir: str | Path, dataset: str = "fashion_mnist", seed: int = 0) -> dict:
    """Write ``out_dir/benchmark.json`` (the :func:`moon.ood.sets.benchmark_summary` rows with the
    dataset, seed and time of writing) and ``out_dir/benchmark_grid.png``; returns the JSON
    content."""
    from moon.data import ID_SETS
    from moon.ood.sets import benchmark_sets

    if dataset not in ID_SETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join(ID_SETS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sets = benchmark_sets(dataset, seed)
    summary = {"dataset": dataset, "seed": seed,
               "generated_at": now_iso(),
               "rows": [row for row, _, _ in sets]}
    atomic_write_bytes(out / "benchmark.json", (json.dumps(summary, indent=2) + "\n").encode())
    from moon.figures import benchmark_figure, save

    save(benchmark_figure(sets, 8, seed), out / "benchmark_grid.png")
    return summary


def benchmark_table(path: str | Path = "results/benchmark/benchmark.json"):
    """The benchmark page's table, read from :func:`write_benchmark`'s JSON: one row per ID split
    and OOD set with its kind (id, near, far or noise), image count, shape, source and, for OOD
    sets, where the images were loaded from."""
    import pandas as pd

    rows = json.loads(Path(path).read_text())["rows"]
    table = pd.DataFrame([{"set": r["name"], "kind": r["kind"], "images": r["n"],
                           "shape": "x".join(str(v) for v in r["shape"]),
                           "evaluated with": r["id_set"], "source": r["source"],
                           "loaded from": r.get("loaded_from", "")} for r in rows])
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


# --------------------------------------------------------------------------------------------------
# Many runs: one flat frame, then tables over seeds
# --------------------------------------------------------------------------------------------------
OOD_METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")
PERCENT_COLUMNS = PERCENT_METRICS + OOD_METRICS
SUMMARY_METRICS = ("id.accuracy", "id.ece", "id.nll", "ood.near.msp.auroc", "ood.far.msp.auroc")


def moon_label(config: dict) -> str:
    """Which MOON parts a run used: "MOON" (unknown class and averaging), "unknown class",
    "averaging" or "baseline" (from the config fields ``unknown_class`` and ``averaging``)."""
    unknown, averaging = bool(config.get("unknown_class")), bool(config.get("averaging"))
    if unknown and averaging:
        return "MOON"
    return "unknown class" if unknown else ("averaging" if averaging else "baseline")


def variant_label(config: dict) -> str:
    """``method`` for a baseline run, ``method+MOON`` for a full MOON run, ``method+<part>`` when
    only one MOON part (unknown class or averaging) is on."""
    label = moon_label(config)
    return config["method"] if label == "baseline" else f"{config['method']}+{label}"


def is_percent(column: str) -> bool:
    """Whether a metric column is shown x100 (accuracy, calibration errors, AUROC, AUPR, FPR@95)."""
    return column.rsplit(".", 1)[-1].removeprefix("ts_") in PERCENT_COLUMNS


def ood_kind(name: str, fallback: dict | None = None) -> str | None:
    """The group of an OOD set (near, far or noise; :data:`moon.ood.sets.GROUPS`): from the current
    registry ``moon.ood.sets.OOD_SETS`` (so older result files, which filed noise under far, are
    read with today's groups), else ``fallback`` (a result's ``extra["curves"]["ood_kind"]``), else
    None."""
    from moon.ood.sets import OOD_SETS

    if name in OOD_SETS:
        return OOD_SETS[name].kind
    return (fallback or {}).get(name)


def _as_results(results_or_root) -> list:
    """RunResults from a results folder, one result file, a RunResult or a list of either."""
    from moon.results import RunResult, load_result, load_results

    if isinstance(results_or_root, (str, Path)):
        path = Path(results_or_root)
        return load_results(path, status=None) if path.is_dir() else [load_result(path)]
    if isinstance(results_or_root, RunResult):
        return [results_or_root]
    return [r if isinstance(r, RunResult) else load_result(r) for r in results_or_root]


def _with_kind_means(frame: "pd.DataFrame") -> "pd.DataFrame":
    """Add ``ood.<group>.<detector>.<metric>`` for each group (near, far, noise): the unweighted
    mean over a row's OOD sets of that group (sets a row lacks, or with a missing value, are left
    out of its mean)."""
    import pandas as pd

    groups: dict[str, list[str]] = {}
    for column in frame.columns:
        parts = column.split(".")
        if len(parts) == 4 and parts[0] == "ood" and ood_kind(parts[1]) is not None:
            groups.setdefault(f"ood.{ood_kind(parts[1])}.{parts[2]}.{parts[3]}", []).append(column)
    means = {name: frame[cols].apply(pd.to_numeric, errors="coerce").mean(axis=1)
             for name, cols in sorted(groups.items())}
    return pd.concat([frame, pd.DataFrame(means, index=frame.index)], axis=1)


def results_frame(results_or_root) -> "pd.DataFrame":
    """One row per complete run (:func:`moon.results.flatten`), read from a results folder, a list of
    RunResults or a list of result paths. Adds ``moon`` (:func:`moon_label`), ``variant``
    (:func:`variant_label`) and the group means ``ood.{near,far,noise}.<detector>.<metric>``; the
    curve data in ``extra.curves`` is left out (it is not a table column)."""
    import pandas as pd

    from moon.results import flatten

    results = [r for r in _as_results(results_or_root) if r.status == "complete"]
    if not results:
        raise ValueError(f"no complete results in {results_or_root!r}")
    rows = []
    for result in results:
        row = {k: v for k, v in flatten(result).items() if not k.startswith("extra.curves.")}
        row["moon"], row["variant"] = moon_label(result.config), variant_label(result.config)
        rows.append(row)
    return _with_kind_means(pd.DataFrame(rows))


def require_columns(frame: "pd.DataFrame", columns) -> None:
    """Raise ValueError naming the columns ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame has no column(s) {', '.join(missing)}; "
                         f"it has {', '.join(map(str, frame.columns))}")


def mean_std(values, scale: float, decimals: int) -> str:
    """"mean ± std" of ``values`` x ``scale`` (std over seeds, ddof 1; only the mean for one value)."""
    values = values.dropna()
    if values.empty:
        return ""
    text = f"{values.mean() * scale:.{decimals}f}"
    return text if len(values) < 2 else f"{text} ± {values.std() * scale:.{decimals}f}"


def summary_table(frame: "pd.DataFrame", metrics=None,
                  by=("method", "density", "moon")) -> "pd.DataFrame":
    """Mean ± std over the runs (seeds) of each ``by`` group, as strings such as "90.1 ± 0.3":
    percent metrics (:func:`is_percent`) x100 with 1 decimal, others (NLL, Brier) with 3 decimals.
    Column ``n`` counts the runs in the group; the index is ``by``. ``metrics=None`` takes those of
    ``SUMMARY_METRICS`` the frame has; named metrics must all be columns."""
    import pandas as pd

    if metrics is None:
        metrics = [m for m in SUMMARY_METRICS if m in frame.columns]
    metrics, by = list(metrics), list(by)
    require_columns(frame, metrics + by)
    numeric = frame[metrics].apply(pd.to_numeric, errors="coerce")
    groups = pd.concat([frame[by], numeric], axis=1).groupby(by, dropna=False, sort=True)
    table = groups.size().to_frame("n")
    for metric in metrics:
        scale, decimals = (100.0, 1) if is_percent(metric) else (1.0, 3)
        table[metric] = groups[metric].agg(lambda v, s=scale, d=decimals: mean_std(v, s, d))
    return table


def ood_table(result, metric: str = "auroc") -> "pd.DataFrame":
    """One run's OOD ``metric`` (x100, 1 decimal): detectors as rows, OOD sets as columns by group
    (near, far, noise), then ``near mean``, ``far mean`` and ``noise mean`` (unweighted over the
    sets of that group present)."""
    import pandas as pd

    from moon.ood.sets import GROUPS

    if metric not in OOD_METRICS:
        raise ValueError(f"metric={metric!r} is not an OOD metric; use one of {OOD_METRICS}")
    fallback = result.extra.get("curves", {}).get("ood_kind", {})
    order = {kind: i for i, kind in enumerate(GROUPS)}
    sets = sorted(result.ood, key=lambda s: order.get(ood_kind(s, fallback), len(GROUPS)))
    table = pd.DataFrame({s: {d: m.get(metric) for d, m in result.ood[s].items()} for s in sets},
                         dtype=float)
    for kind in GROUPS:
        of_kind = [s for s in sets if ood_kind(s, fallback) == kind]
        if of_kind:
            table[f"{kind} mean"] = table[of_kind].mean(axis=1)
    table.index.name, table.columns.name = "detector", metric
    return (table * 100).round(1)


def density_summary(frame: "pd.DataFrame", metric: str = "id.accuracy",
                    hue: str = "variant", confidence: float = 0.95) -> "pd.DataFrame":
    """Per (``hue``, density) cell: runs ``n``, ``mean``, ``std`` (ddof 1) and the t-interval
    ``low``/``high`` = mean ∓ t((1+confidence)/2, n-1) · std / sqrt(n), in the frame's units (NaN
    for one run). ``dense`` is True where every run of the cell has method "dense"."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    require_columns(frame, [metric, hue, "density", "method"])
    data = pd.DataFrame({hue: frame[hue], "density": frame["density"].astype(float),
                         "value": pd.to_numeric(frame[metric], errors="coerce"),
                         "is_dense": frame["method"] == "dense"}).dropna(subset=["value"])
    summary = data.groupby([hue, "density"], sort=True).agg(
        n=("value", "size"), mean=("value", "mean"), std=("value", "std"),
        dense=("is_dense", "all")).reset_index()
    dof = (summary["n"] - 1).where(summary["n"] > 1)
    half = stats.t.ppf((1 + confidence) / 2, dof) * summary["std"] / np.sqrt(summary["n"])
    summary["low"], summary["high"] = summary["mean"] - half, summary["mean"] + half
    return summary


def runs_table(folders) -> "pd.DataFrame":
    """Every result file under ``folders``: where it ran (device, threads, host), when, how long
    training and evaluation took, with which code (git SHA) and status; for the reproducibility
    page."""
    import pandas as pd

    from moon.results import load_results

    rows = []
    for folder in folders:
        if not Path(folder).exists():
            continue
        for result in load_results(folder, status=None):
            prov, timing, cfg = result.provenance, result.timing, result.config
            sha = (prov.get("git_sha") or "")[:10]
            rows.append({"folder": Path(folder).name, "model": cfg["model"], "method": cfg["method"],
                         "density": cfg["density"], "seed": cfg["seed"], "epochs": cfg["epochs"],
                         "status": result.status, "device": prov.get("device"),
                         "threads": prov.get("num_threads"), "host": prov.get("hostname"),
                         "train s": timing.get("train_seconds"), "eval s": timing.get("eval_seconds"),
                         "git": sha + ("+dirty" if sha and prov.get("git_dirty") else ""),
                         "started": prov.get("started")})
    return pd.DataFrame(rows)
