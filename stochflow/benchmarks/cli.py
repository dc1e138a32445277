"""The ``stochflow`` command line: ``stochflow bench [--quick] ...``."""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import sys
import time
from typing import Optional, Sequence

import jax

from .. import __version__, models
from .harness import check_names, run_grid
from .posteriordb import SAMPLERS as POSTERIORDB_SAMPLERS
from .posteriordb import markdown_table, protocol, run_suite
from .report import FLOOR, markdown_report, plot_curves, plot_samples, write_csv
from .specs import MISSING, SAMPLERS, describe

# --quick covers every sampler: the smooth ones on the 40-mode GMM and the 10-d mixture,
# MYULA/MYMALA on a nonsmooth target, MLA on the simplex, BMUMLA/BMMLA on a nonsmooth
# target on the simplex.
QUICK_TARGETS = ["gmm40", "mixture-10d", "laplace-gmm2", "dirichlet", "dirichlet-tilted"]
QUICK_BUDGETS = [1_000]
QUICK_PARTICLES = 128
# The default (full) grid: the quick targets at two budgets plus the many-well and the funnel;
# about 15 minutes on 2 cores. Any other target: --targets (all: stochflow.models.names()).
FULL_TARGETS = ["gmm40", "mixture-10d", "many-well", "funnel", "laplace-gmm2", "dirichlet", "dirichlet-tilted"]
FULL_BUDGETS = [1_000, 4_000]
FULL_PARTICLES = 128


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stochflow", description="stochflow command line")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="run samplers on benchmark targets at equal gradient budgets")
    bench.add_argument("--quick", action="store_true",
                       help=f"a small grid (targets {', '.join(QUICK_TARGETS)}; budget {QUICK_BUDGETS[0]}) in < 3 min")
    bench.add_argument("--suite", choices=("grid", "posteriordb"), default="grid",
                       help="'grid' (default): samplers x benchmark targets x budgets; 'posteriordb': the chain "
                            "samplers on posteriordb reference posteriors beside NumPyro NUTS (--targets picks "
                            "posteriors, --samplers among " + ", ".join(POSTERIORDB_SAMPLERS) + ")")
    bench.add_argument("--samplers", nargs="+", help=f"default: all ({', '.join(SAMPLERS)})")
    bench.add_argument("--targets", nargs="+", help=f"default: {', '.join(FULL_TARGETS)}; all: {', '.join(models.names())}")
    bench.add_argument("--budget", nargs="+", type=int, help="gradient evaluations per particle (several allowed)")
    bench.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 1)")
    bench.add_argument("--particles", type=int, default=None,
                       help=f"particles / chains per run (default {QUICK_PARTICLES} quick, {FULL_PARTICLES} full)")
    bench.add_argument("--out", default="bench-out", help="directory for report.md, results.csv, plots and the cache")
    bench.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                       help="worker processes (default: 2, or 1 on a 1-core machine)")
    bench.add_argument("--no-cache", action="store_true", help="rerun every cell even if cached")
    bench.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    bench.add_argument("--devices", choices=("one", "all"), default="one",
                       help="'all': shard each run's particles over every JAX device (sf.sample(devices='all'); "
                            "--particles must be a multiple of the device count); default: one device")
    return parser


def _header(args, command: str, elapsed: float, targets, budgets, seeds, particles, cached: int, total: int) -> str:
    machine = f"{platform.machine()}, {os.cpu_count()} CPU core(s), Python {platform.python_version()}"
    lines = [
        "# stochflow benchmark",
        "",
        f"`{command}` — stochflow {__version__}, {machine}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {elapsed:.0f} s with "
        f"{args.jobs} worker(s) ({total - cached} runs, {cached} reused from the cache).",
        "",
        f"Each run: N = {particles} particles, the budget is gradient evaluations per particle "
        f"({', '.join(map(str, budgets))}), {len(seeds)} seed(s). The sample judged is the N particles' final "
        "positions; W2 (exact OT), energy distance, MMD (RBF, median bandwidth) and KSD (IMQ) compare it with N "
        "exact samples; moment errors use the exact moments; mode TV / EMC / modes hit use the exact mode "
        "weights; ESS is over each chain's recorded trajectory. The *exact (floor)* row is N fresh exact "
        "samples: a perfect sampler's score at this N. Bold: best in its column (lower is better except "
        "modes hit and ESS). mean ± sd over seeds.",
        "",
        "| sampler | applies to | hyperparameters (see `stochflow/benchmarks/specs.py`) |",
        "|---|---|---|",
        *[f"| {name} | {applies} | {rule} |" for name, applies, rule in describe()],
        "",
    ]
    if MISSING:
        lines += [f"Samplers with a row in the table but not in this version: {', '.join(MISSING)}.", ""]
    return "\n".join(lines)


def bench_posteriordb(args: argparse.Namespace) -> int:
    from ..models import posteriordb as pdb

    posteriors = check_names(args.targets, pdb.names(), "posterior") if args.targets else pdb.names()
    samplers = check_names(args.samplers, POSTERIORDB_SAMPLERS, "sampler") if args.samplers else None
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.seeds is not None and args.seeds < 0:
        raise ValueError(f"--seeds is the suite's seed for --suite posteriordb, a number >= 0; got {args.seeds}.")
    rows = run_suite(posteriors, samplers, seed=args.seeds or 0,
                     progress=(lambda line: None) if args.no_progress else print)
    elapsed = time.perf_counter() - start
    machine = f"{platform.machine()}, {os.cpu_count()} CPU core(s), Python {platform.python_version()}"
    report = (f"# stochflow posteriordb suite\n\n`stochflow bench --suite posteriordb` — stochflow {__version__}, "
              f"{machine}, jax {jax.__version__}, {elapsed:.0f} s.\n\n" + protocol() + "\n\n"
              + markdown_table(rows) + "\n")
    (out / "posteriordb.md").write_text(report)
    write_csv(rows, out / "posteriordb.csv")
    print(report)
    print(f"wrote {out / 'posteriordb.md'} and {out / 'posteriordb.csv'}")
    return 0


def bench(args: argparse.Namespace) -> int:
    if args.suite == "posteriordb":
        return bench_posteriordb(args)
    samplers = check_names(args.samplers, SAMPLERS, "sampler")
    targets = check_names(args.targets or (QUICK_TARGETS if args.quick else FULL_TARGETS), models.names(), "target")
    budgets = args.budget or (QUICK_BUDGETS if args.quick else FULL_BUDGETS)
    if any(b < 10 for b in budgets):
        raise ValueError("--budget must be at least 10 gradient evaluations per particle.")
    seeds = list(range(1 if args.seeds is None else args.seeds))
    particles = (QUICK_PARTICLES if args.quick else FULL_PARTICLES) if args.particles is None else args.particles
    if not seeds:
        raise ValueError(f"--seeds must be at least 1 (the number of seeds per cell), got {args.seeds}.")
    if args.jobs < 1:
        raise ValueError("--jobs must be at least 1.")
    if particles < 8:
        raise ValueError(f"--particles must be at least 8, got {particles}.")
    devices = "all" if args.devices == "all" else None
    if devices is not None and particles % jax.device_count():
        raise ValueError(f"--devices all: --particles {particles} is not a multiple of the "
                         f"{jax.device_count()} devices.")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    rows, finals, skipped = run_grid(samplers, targets, budgets, seeds, progress=not args.no_progress,
                                     num_particles=particles, cache=None if args.no_cache else out / "cache",
                                     jobs=args.jobs, devices=devices)
    elapsed = time.perf_counter() - start
    cached = sum(bool(r.pop("cached", False)) for r in rows)
    command = "stochflow " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("stochflow") else "stochflow bench"
    report = _header(args, command, elapsed, targets, budgets, seeds, particles, cached, len(rows))
    report += "\n" + markdown_report(rows, skipped)
    write_csv(rows, out / "results.csv")
    if not args.no_plots:
        plots = _plots(rows, finals, targets, out, max(budgets))
        report += "\n## Plots\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    (out / "report.md").write_text(report)
    print(report)
    print(f"wrote {out / 'report.md'}, {out / 'results.csv'} and plots in {out}")
    return 0


def _plots(rows, finals, targets, out: pathlib.Path, budget: int) -> list[pathlib.Path]:
    written = []
    for target_name in targets:
        target = models.get(target_name)
        if target.dim == 2:
            panels = {FLOOR: finals[(target_name, FLOOR)]}
            panels.update({s: x for (t, s), x in finals.items() if t == target_name and s != FLOOR})
            path = out / f"samples-{target_name}.png"
            plot_samples(target, panels, path, f"{target_name}: final particles at budget {budget} (seed 0)")
            written.append(path)
        path = out / f"curves-{target_name}.png"
        plot_curves(rows, target_name, path)
        if path.exists():
            written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return bench(args)
    except ValueError as err:
        print(f"stochflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        out = pathlib.Path(args.out)
        if err.filename is not None and (pathlib.Path(err.filename) == out.parent or
                                         pathlib.Path(err.filename).is_relative_to(out)):
            print(f"stochflow {args.command}: error: cannot write the report to --out {args.out} "
                  f"({err.filename}: {err.strerror or err}); pass --out a directory you can write to.", file=sys.stderr)
        else:
            print(f"stochflow {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
