"""Peak memory, time and disk of a run streamed to a zarr store (sf.sample(..., store=path)).

    python benchmarks/streaming.py                     # 4 chains x 10^6 draws x 100 dims
    python benchmarks/streaming.py --draws 100000      # a quicker look
    python benchmarks/streaming.py --draws 100000 --in-memory   # the same run without a store

ULA on a standard normal target (the sampler does not matter here: the point
is the host memory of the driver and the store). The peak resident set size is
the process's ``ru_maxrss``, taken after a small warm-up run (imports, the JAX
runtime, zarr) and after the big run; the draws are float32 (JAX's default).
The store goes to a temporary directory under ``--dir`` and is deleted at the
end unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import stochflow as sf


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def disk_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--dir", default="/tmp", help="where the temporary store goes")
    parser.add_argument("--keep", action="store_true", help="keep the store")
    parser.add_argument("--in-memory", action="store_true", help="no store: the whole trace in memory, to compare")
    args = parser.parse_args()

    target = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=args.dim, name=f"std-normal-{args.dim}")
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="stochflow-streaming-", dir=args.dir))
    try:
        settings = dict(num_particles=args.chains, progress=False)
        sf.sample(sf.ula(0.1), target, jax.random.key(0), num_steps=1_000, store=workdir / "warmup.zarr", **settings)
        baseline = peak_rss_mib()

        store = workdir / "run.zarr"
        start = time.perf_counter()
        trace = sf.sample(sf.ula(0.1), target, jax.random.key(1), num_steps=args.draws,
                          store=None if args.in_memory else store, **settings)
        seconds = time.perf_counter() - start
        peak = peak_rss_mib()

        # Reading back: the last draw of every chain without loading the run.
        last = trace.positions[:, -1]
        assert last.shape == (args.chains, args.dim) and np.all(np.isfinite(last))
        raw_mib = args.chains * args.draws * args.dim * trace.positions.dtype.itemsize / 2**20
        result = {
            "chains": args.chains,
            "draws": args.draws,
            "dim": args.dim,
            "dtype": str(trace.positions.dtype),
            "positions_MiB": round(raw_mib, 1),
            "store": not args.in_memory,
            "disk_MiB": round(disk_bytes(store) / 2**20, 1) if store.exists() else 0.0,
            "seconds": round(seconds, 1),
            "draws_per_second": round(args.draws / seconds),
            "baseline_peak_rss_MiB": round(baseline, 1),
            "peak_rss_MiB": round(peak, 1),
        }
        print(json.dumps(result))
        print(
            f"| {'in memory' if args.in_memory else 'store'} "
            f"| {args.chains} x {args.draws:,} x {args.dim} ({result['dtype']}) | {result['positions_MiB']:,} MiB "
            f"| {result['disk_MiB']:,} MiB | {result['seconds']} s | {result['baseline_peak_rss_MiB']} MiB "
            f"| **{result['peak_rss_MiB']} MiB** |"
        )
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
