"""The ``stochflow`` command line: ``stochflow bench [--quick] ...``."""

from __future__ import annotations

import argparse
import pathlib
import platform
import sys
import time
from typing import Optional, Sequence

from .. import models
from .harness import check_names, run_grid
from .report import markdown_report, write_csv
from .specs import SAMPLERS

QUICK_TARGETS = ["gaussian-aniso", "llp-gmm5"]
QUICK_BUDGETS = [20_000]
FULL_BUDGETS = [5_000, 20_000, 100_000]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stochflow", description="stochflow command line")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run samplers on benchmark targets at equal gradient budgets")
    bench.add_argument("--quick", action="store_true", help="a small grid that runs in about a minute")
    bench.add_argument("--samplers", nargs="+", help=f"default: all ({', '.join(SAMPLERS)})")
    bench.add_argument("--targets", nargs="+", help=f"default: all ({', '.join(models.names())})")
    bench.add_argument("--budget", nargs="+", type=int, help="gradient evaluations per chain")
    bench.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 1 quick, 3 full)")
    bench.add_argument("--chains", type=int, default=4, help="chains per run")
    bench.add_argument("--out", default="bench-out", help="directory for report.md and results.csv")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def bench(args: argparse.Namespace) -> int:
    samplers = check_names(args.samplers, SAMPLERS, "sampler")
    targets = check_names(args.targets or (QUICK_TARGETS if args.quick else None), models.names(), "target")
    budgets = args.budget or (QUICK_BUDGETS if args.quick else FULL_BUDGETS)
    if any(b < 10 for b in budgets):
        raise ValueError("--budget must be at least 10 gradient evaluations per chain.")
    seeds = range(args.seeds or (1 if args.quick else 3))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    rows = run_grid(samplers, targets, budgets, seeds, progress=not args.no_progress, num_chains=args.chains)
    elapsed = time.perf_counter() - start
    command = "stochflow " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("stochflow") else "stochflow bench"
    header = (
        f"# stochflow benchmark\n\n`{command}` on {platform.machine()} "
        f"({platform.python_version()}, {len(list(seeds))} seed(s)), {elapsed:.0f} s in all.\n"
        "Errors use the targets' exact moments; bold marks the best value of a column.\n\n"
    )
    report = header + markdown_report(rows)
    write_csv(rows, out / "results.csv")
    (out / "report.md").write_text(report)
    print(report)
    print(f"wrote {out / 'report.md'} and {out / 'results.csv'}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return bench(args)
    except ValueError as err:
        print(f"stochflow {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
