"""Command line: ``python -m moon {run,data,benchmark} ...``.

* ``python -m moon run [--preset NAME] [--out DIR] key=value ...``: train and evaluate one RunConfig,
  writing ``DIR/result.json``. Ctrl-C stops it with one line (exit status 130) giving the command
  that continues from its last epoch (``resume=true``).
* ``python -m moon data NAME [--download | --no-download]``: locate (or fetch) a dataset.
* ``python -m moon benchmark --out DIR [--force]``: the benchmark page's table and image grid, from
  the data (files of an earlier ``moon benchmark`` there are replaced; anything else needs --force).
* ``python -m moon sweep STUDY [--preset NAME] [--out DIR] [key=value ...]``: every cell of
  ``studies/STUDY.yaml`` not yet complete, written under ``DIR/<cell>/result.json``.
* ``python -m moon reproduce DIR [--cells N] [--tolerance T]``: train N of the runs in ``DIR``
  again and compare their metrics with the committed ones.
* ``python -m moon export RUN_DIR [--format csr|dense] [--out PATH] [--force]``: write a run's
  evaluated model with its masked weights in sparse CSR (default ``RUN_DIR/model.csr.pt``) for
  ``moon.sparse.load_exported``, and print its size beside ``model.pt``'s. An existing file is
  replaced only with ``--force``; a run's result, model or checkpoint never.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from moon.data import DatasetNotFoundError
from moon.errors import MoonError

log = logging.getLogger("moon")


def _cmd_run(args: argparse.Namespace) -> int:
    from moon.configure import from_params, parse_overrides
    from moon.runner import run

    from moon.rundir import run_folder_name

    cfg = from_params(parse_overrides(args.overrides), preset=args.preset)
    out = args.out or str(Path("runs") / run_folder_name(cfg, args.preset))
    args.resolved_out = out               # named by the resume hint if the run is interrupted
    result = run(cfg, out_dir=out, raise_on_failure=False)
    print(f"{result.status}: {out}/result.json")
    if result.status != "complete":
        print(f"error: {result.error}", file=sys.stderr)
        return 2 if result.extra.get("stage") == "preflight" else 1   # 2: bad input, no compute
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from moon.data import ID_SETS, DatasetNotFoundError, find_source, load_id

    if args.name not in ID_SETS:
        raise ValueError(f"unknown dataset {args.name!r}; choose one of {', '.join(ID_SETS)}")
    download = True if args.download else (False if args.no_download else None)
    try:
        folder = find_source(ID_SETS[args.name].source, download=download)
        data = load_id(args.name, download=False)
    except DatasetNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{args.name}: {len(data.train_x)} train / {len(data.val_x)} val / {len(data.test_x)} "
          f"test images, found in {folder}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from moon.report.benchmark import write_benchmark

    _check_benchmark_out(Path(args.out), args.force)
    write_benchmark(args.out, dataset=args.dataset, seed=args.seed)
    print(f"wrote {args.out}/benchmark.json and {args.out}/benchmark_grid.png")
    return 0


BENCHMARK_FILES = ("benchmark.json", "benchmark_grid.png")


def _check_benchmark_out(out: Path, force: bool) -> None:
    """Refuse, before any work, a folder whose benchmark file names hold files another program
    wrote. The files of an earlier ``moon benchmark`` are its own to redraw (``make benchmark`` does
    that on every build), so only foreign files need ``--force``."""
    from moon.errors import NotWritable
    from moon.rundir import check_output_file

    if out.exists() and not out.is_dir():
        raise NotWritable(f"{out} exists and is not a folder; choose another output folder")
    if force or _earlier_benchmark(out / BENCHMARK_FILES[0]):
        return
    for name in BENCHMARK_FILES:
        check_output_file(out / name)


def _earlier_benchmark(path: Path) -> bool:
    """Whether ``path`` is a ``benchmark.json`` that ``moon benchmark`` wrote (its keys)."""
    import json

    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and {"dataset", "seed", "generated_at", "rows"} <= set(saved)


def _cmd_sweep(args: argparse.Namespace) -> int:
    import yaml

    from moon.configure import parse_overrides
    from moon.study import load_study, run_study

    study = load_study(args.study)
    out = args.out or f"runs/{study.name}" + (f"-{args.preset}" if args.preset else "")
    only = {}
    for item in args.only:
        axis, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--only {item!r}: expected AXIS=V1,V2 (e.g. --only seed=0,1)")
        if axis in only:
            raise ValueError(f"--only {axis} is given twice; list its values once: {axis}=V1,V2")
        only[axis] = [yaml.safe_load(v) for v in values.split(",")]
    statuses = run_study(study, out, preset=args.preset, workers=args.workers, engine=args.engine,
                         via=args.via, only=only, **parse_overrides(args.overrides))
    failed = sorted(name for name, status in statuses.items() if status == "failed")
    busy = sorted(name for name, status in statuses.items() if status == "busy")
    done = sum(status == "complete" for status in statuses.values())
    print(f"{done} of {len(statuses)} cells complete in {out}")
    for name in busy:
        print(f"busy: {name} (being run by another process)", file=sys.stderr)
    for name in failed:
        print(f"failed: {name} (see {out}/{name}/result.json)", file=sys.stderr)
    return 1 if failed else 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from moon.study.reproduce import reproduce

    checks = reproduce(args.folder, cells=args.cells, tolerance=args.tolerance)
    for c in checks:
        verdict = "same" if c.same else "DIFFERENT"
        moved = ", ".join(f"{name} {diff:.3g}" for name, diff in c.headline.items())
        print(f"{verdict}: {Path(c.run).name}: {c.metrics} metrics, max |diff| "
              f"{c.max_abs_diff:.3g}" + (f" ({c.worst})" if c.max_abs_diff else "")
              + (f"; |diff| of {moved}" if moved else ""))
    same = sum(c.same for c in checks)
    print(f"{same} of {len(checks)} reruns reproduce {args.folder} "
          f"(tolerance {args.tolerance:g})")
    return 0 if same == len(checks) else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from moon.deploy import export

    print(export(args.run_dir, fmt=args.format, out=args.out, force=args.force).summary())
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m moon", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of its one-line message")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate one configuration")
    run.add_argument("--preset", default=None,
                     help="a preset of moon.configure.PRESETS (an unknown one is refused with the list)")
    run.add_argument("--out", default=None,
                     help="output folder (result.json, checkpoint); default runs/<configuration>")
    run.add_argument("overrides", nargs="*", help="RunConfig fields as key=value")
    run.set_defaults(func=_cmd_run)

    data = sub.add_parser("data", help="locate or download a dataset")
    data.add_argument("name", help="an ID dataset name, e.g. fashion_mnist")
    group = data.add_mutually_exclusive_group()
    group.add_argument("--download", action="store_true", help="download with torchvision if missing")
    group.add_argument("--no-download", action="store_true", help="never try the network")
    data.set_defaults(func=_cmd_data)

    bench = sub.add_parser("benchmark", help="write the benchmark table and image grid")
    bench.add_argument("--out", default="book/results/benchmark")
    bench.add_argument("--dataset", default="fashion_mnist")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--force", action="store_true",
                       help="replace benchmark.json / benchmark_grid.png that another program wrote")
    bench.set_defaults(func=_cmd_benchmark)

    sweep = sub.add_parser("sweep", help="run a study's grid (resumable)")
    sweep.add_argument("study", help="a name in studies/ (sweep, ablation, ...) or a YAML path")
    sweep.add_argument("overrides", nargs="*", help="RunConfig fields for every cell, key=value")
    sweep.add_argument("--preset", default=None, help="RunConfig preset; also restricts the grid")
    sweep.add_argument("--out", default=None, help="output folder (default runs/STUDY[-PRESET])")
    sweep.add_argument("--workers", type=_positive, default=1, help="local worker processes")
    sweep.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local processes, or Ray tasks (RAY_ADDRESS or a local instance)")
    sweep.add_argument("--via", choices=("notebook", "run"), default="notebook",
                       help="execute ood_eval.ipynb per cell (default) or call moon.run directly")
    sweep.add_argument("--only", action="append", default=[], metavar="AXIS=V1,V2",
                       help="run only these values of an axis (repeatable), e.g. seed=0")
    sweep.set_defaults(func=_cmd_sweep)

    repro = sub.add_parser("reproduce", help="rerun committed runs and compare their metrics")
    repro.add_argument("folder", help="a study's result folder, e.g. book/results/full-cpu")
    repro.add_argument("--cells", type=_positive, default=4, help="runs to repeat, spread over the grid")
    repro.add_argument("--tolerance", type=float, default=0.0,
                       help="largest absolute metric difference counted as the same (default 0)")
    repro.set_defaults(func=_cmd_reproduce)

    exp = sub.add_parser("export", help="write a run's model with its weights stored sparse")
    exp.add_argument("run_dir", help="a finished run folder (holding model.pt)")
    exp.add_argument("--format", choices=("csr", "dense"), default="csr",
                     help="csr: sparse where smaller (default); dense: the masked dense reference")
    exp.add_argument("--out", default=None, help="file to write (default RUN_DIR/model.FORMAT.pt)")
    exp.add_argument("--force", action="store_true",
                     help="replace an existing file at --out (never a run's result, model or checkpoint)")
    exp.set_defaults(func=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    # key=value overrides may also follow the options (argparse stops positionals at the first
    # option), so they are collected from what it did not recognise
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    if args.debug:
        return args.func(args)
    try:
        return args.func(args)
    except KeyboardInterrupt:        # Ctrl-C: what was finished is kept; say how to go on
        print(f"interrupted: {_resume_hint(args)}", file=sys.stderr)
        return 130
    except (MoonError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
    except OSError as err:           # FileNotFoundError, PermissionError, FileExistsError, ...
        print(f"error: {_os_message(err)}", file=sys.stderr)
    return 2


def _resume_hint(args: argparse.Namespace) -> str:
    """How to continue an interrupted command. A run keeps the checkpoint of every finished epoch
    (and writes no result), so the same command with ``resume=true`` continues from the last one;
    a study keeps its finished cells, so the same command runs the others."""
    import shlex

    if args.command == "run" and getattr(args, "resolved_out", None):
        kept = [o for o in args.overrides if o.partition("=")[0].strip() != "resume"]
        command = ["python", "-m", "moon", "run"] + (["--preset", args.preset] if args.preset else [])
        command += ["--out", args.resolved_out, *kept, "resume=true"]
        return (f"{args.resolved_out} keeps the checkpoint of its last finished epoch; continue "
                f"with: {shlex.join(command)}")
    if args.command == "sweep":
        return "finished cells are kept; the same command runs the others"
    return "it stopped before it finished; run the same command again"


def _os_message(err: OSError) -> str:
    """One line for an ``OSError``: what happened, to which path, and what to do."""
    if err.filename is None or isinstance(err, DatasetNotFoundError):
        return str(err)
    hints = {PermissionError: "choose a path you may write, or fix its permissions",
             FileExistsError: "it exists already: remove it or choose another path",
             FileNotFoundError: "check the path",
             IsADirectoryError: "a file was expected there",
             NotADirectoryError: "a folder was expected there"}
    hint = next((h for cls, h in hints.items() if isinstance(err, cls)), "check the path")
    return f"{err.strerror or type(err).__name__}: {err.filename}; {hint}"


if __name__ == "__main__":
    sys.exit(main())
