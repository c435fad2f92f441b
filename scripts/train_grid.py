"""Train the development grid of the training issue: dense, SET and RigL at densities 1/0.1/0.05/0.02,
each without and with MOON (unknown class + auto-tuned alpha + weight averaging), one short setting.

    python scripts/train_grid.py --out book/results/dev/train-grid [--preset quick] [key=value ...]

Finished cells are skipped (``resume``), so the script can be re-run after an interruption.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import moon
from moon.config import from_params, parse_overrides

GRID = [("dense", 1.0)] + [(m, d) for m in ("set", "rigl") for d in (0.1, 0.05, 0.02)]
MOON = {"baseline": dict(unknown_class=False, averaging=False),
        "moon": dict(unknown_class=True, averaging=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="book/results/dev/train-grid")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    extra = parse_overrides(args.overrides)
    for method, density in GRID:
        for variant, parts in MOON.items():
            cfg = from_params({"method": method, "density": density, "resume": True, **parts,
                               **extra}, preset=args.preset)
            out = Path(args.out) / f"{method}-d{density}-{variant}"
            result = moon.run(cfg, out, raise_on_failure=False, progress=False)
            print(f"{out.name:24s} {result.status:8s} acc={result.id.get('accuracy')} "
                  f"ece={result.id.get('ece')}", flush=True)


if __name__ == "__main__":
    main()
