"""Execute the notebook templates through papermill into the book's chapters.

    python scripts/run_chapters.py                                      # what the committed book shows
    python scripts/run_chapters.py --preset smoke --results /tmp/smoke  # CI: every template, quickly
    python scripts/run_chapters.py --only ood_eval                       # one chapter

Each template ``notebooks/NAME.ipynb`` becomes ``book/chapters/NAME.ipynb`` (executed, with
outputs). Without ``--preset`` every template runs with its own default preset (the study chapters:
``cpu``; the single run and the theory: none). Runs go under ``RESULTS/<folder>[-<preset>]/``
(chapters reading one study share its runs), and finished runs are reused. The chapters are executed with the repository as working
directory, so the result paths they print are relative to it.

Progress goes to the terminal, not into the chapters: each kernel sends the package's log lines (an
epoch's loss and accuracies, each OOD set evaluated) to the stderr of this script
(:func:`moon.notebook.log_to_terminal`, run at the kernel's start), led by the chapter's name.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import papermill as pm

ROOT = Path(__file__).resolve().parent.parent
# template -> (the folder name of the runs it reads: a study or a single run, its default preset)
RUNS = {"ood_eval": ("ood_eval", None), "sparsity_sweep": ("paper", "paper"),
        "regime": ("paper", "paper"), "cost": ("paper", "paper"), "ablation": ("ablation", "cpu"),
        "calibration": ("paper", "paper"), "posthoc": ("paper", "paper"),
        "theory_unknown_class": ("theory", None), "theory_dice_variance": ("ood_eval", None)}
# The studies run for hours (`make study`, `make study-cpu`): their chapters show the finished
# cells as they ran and never train the missing ones (with --preset, e.g. smoke in CI, every chapter runs what it needs).
SHOW_ONLY = {"paper", "ablation"}
# The regime chapter sets the short-schedule study beside the paper-length one.
# The regime study (studies/regime.yaml) and its pilot are always read from the committed folders:
# they run for hours (`make study-regime`) and are shown as they ran, with any preset.
EXTRA = {"regime": lambda results, preset: {
    "short_dir": out_dir_for("full", results, preset or "cpu"),
    "short_preset": preset or "cpu",
    "regime_dir": "book/results/regime", "pilot_dir": "book/results/regime-pilot"}}


def out_dir(template: str, results: Path, preset: str | None) -> str:
    return out_dir_for(RUNS[template][0], results, preset)


def out_dir_for(folder: str, results: Path, preset: str | None) -> str:
    name = folder + (f"-{preset}" if preset and preset != folder else "")   # paper study: paper/
    path = results / name
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None,
                        help="a preset of moon.configure.PRESETS for every template (default: each "
                             "one's own)")
    parser.add_argument("--results", default=str(ROOT / "book" / "results"))
    parser.add_argument("--chapters", default=str(ROOT / "book" / "chapters"))
    parser.add_argument("--only", nargs="*", default=None, help="template names (default: all)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="extra papermill parameter for every template")
    args = parser.parse_args()
    chapters, results = Path(args.chapters), Path(args.results).resolve()
    chapters.mkdir(parents=True, exist_ok=True)
    names = args.only or list(RUNS)
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown templates {unknown}; choose from {', '.join(RUNS)}")
    for name in names:
        start = time.perf_counter()
        preset = args.preset or RUNS[name][1]
        params = {"preset": preset, "out_dir": out_dir(name, results, preset),
                  **(EXTRA[name](results, args.preset) if name in EXTRA else {}),
                  **({"run_missing": False} if RUNS[name][0] in SHOW_ONLY and not args.preset
                     else {}),
                  **{k: _value(v) for k, v in args.parameter}}
        print(f"{name}: running notebooks/{name}.ipynb (preset {preset})", flush=True)
        pm.execute_notebook(ROOT / "notebooks" / f"{name}.ipynb", chapters / f"{name}.ipynb",
                            parameters=params, cwd=str(ROOT), progress_bar=False,
                            report_mode=False, kernel_name="python3",
                            extra_arguments=kernel_arguments(name))
        _hide_parameters(chapters / f"{name}.ipynb")
        print(f"{name}: {time.perf_counter() - start:.0f} s -> {chapters / name}.ipynb", flush=True)
    return 0


def kernel_arguments(name: str) -> list[str]:
    """Arguments for the chapter's kernel: at its start, log the package's progress to the
    terminal (this script's stderr), each line led by ``name``; nothing of it enters the chapter."""
    setup = f"from moon.notebook import log_to_terminal; log_to_terminal({name + ': '!r})"
    return [f"--IPKernelApp.exec_lines={setup}"]


def _hide_parameters(path: Path) -> None:
    """In the book, leave out the template's "**Default.**" paragraph (how to run it: the
    template's users read it, the book's readers need the results' own description), the template's default parameters (a reader would take them for the
    run's: ``epochs = 20`` where the chapter ran 100) and collapse the parameters papermill
    injected, the values the chapter ran with (one click away); drop the kernel's start-up
    warnings from the outputs."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first is not None:               # how to run the template: for its users, not the reader
        first.source = "\n\n".join(p for p in first.source.split("\n\n")
                                    if not p.lstrip().startswith("**Default.**"))
    injected = any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    for cell in nb.cells:
        cell["outputs"] = [o for o in cell.get("outputs", []) if not (
            o.get("name") == "stderr" and "[IPKernelApp]" in o.get("text", ""))]
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags and injected:
            extra = "remove-cell"        # the defaults, overridden by the injected cell
        elif {"parameters", "injected-parameters"} & set(tags):
            extra = "hide-input"
        else:
            continue
        if extra not in tags:
            tags.append(extra)
    nbformat.write(nb, path)


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    sys.exit(main())
