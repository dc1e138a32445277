"""Throughput of sharded ``sf.sample`` over 1, 2, 4, 8 host devices.

Each device count runs in its own subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=K`` (the flag must be set
before jax is imported) and ``sf.sample(..., devices="all")``; one device means
``devices=None``, today's unsharded driver. Three workloads, 256 particles each:

* ``ula / logistic``: ULA on a 100-d Bayesian logistic regression with 2,000
  observations (a gradient-heavy model, independent chains);
* ``mala / gaussian``: MALA on a 100-d Gaussian (cheap gradients: per-step
  overhead and the per-chunk gather of the draws weigh more);
* ``svgd / gaussian``: SVGD on the 100-d Gaussian (interacting particles: the
  pairwise sums need the particles of every shard, an all-gather per step).

Reported: gradient evaluations per second (best of ``--repeats`` after a
compiling run, recording every ``--thin``-th step) and the efficiency
``throughput(K) / (K * throughput(1))`` relative to perfect scaling.

Run: ``python benchmarks/scaling.py`` (``--steps 400 --repeats 3``); ``--reproducible``
runs every workload with ``sample(..., reproducible=True)`` (one particle at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

DEVICE_COUNTS = (1, 2, 4, 8)
PARTICLES, DIM = 256, 100


def child(steps: int, repeats: int, thin: int, reproducible: bool) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import stochflow as sf

    rng = np.random.RandomState(0)
    features = jnp.asarray(rng.randn(2000, DIM).astype(np.float32) / np.sqrt(DIM))
    labels = jnp.asarray((rng.rand(2000) < 0.5).astype(np.float32))

    def logistic(x):
        logits = features @ x
        return jnp.sum(labels * logits - jnp.logaddexp(0.0, logits)) - 0.5 * x @ x

    scales = jnp.linspace(0.1, 1.0, DIM)
    targets = {
        "logistic": sf.Target(logistic, dim=DIM, name="logistic"),
        "gaussian": sf.Target(lambda x: -0.5 * jnp.sum((x / scales) ** 2), dim=DIM, name="gaussian"),
    }
    workloads = {
        "ula / logistic": (sf.ula(1e-3), "logistic"),
        "mala / gaussian": (sf.mala(0.01), "gaussian"),
        "svgd / gaussian": (sf.svgd(0.01), "gaussian"),
    }
    devices = None if len(jax.devices()) == 1 else "all"
    results = {}
    for name, (sampler, target_name) in workloads.items():
        def run():
            trace = sf.sample(sampler, targets[target_name], jax.random.key(0), PARTICLES, steps, thin=thin,
                              chunk_size=steps // 4, progress=False, devices=devices, reproducible=reproducible)
            return int(np.asarray(trace.stats["n_grad"]).sum())

        run()  # compile
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            n_grad = run()
            best = min(best, time.perf_counter() - start)
        results[name] = n_grad / best
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--thin", type=int, default=10)
    parser.add_argument("--reproducible", action="store_true", help="sample(..., reproducible=True)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.steps, args.repeats, args.thin, args.reproducible)))
        return
    table: dict[int, dict[str, float]] = {}
    for count in DEVICE_COUNTS:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}", JAX_PLATFORMS="cpu")
        flags = ["--reproducible"] if args.reproducible else []
        output = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps), "--repeats",
                                 str(args.repeats), "--thin", str(args.thin), *flags],
                                env=env, check=True, capture_output=True, text=True).stdout
        table[count] = json.loads(output.strip().splitlines()[-1])
    import jax

    mode = ", reproducible=True" if args.reproducible else ""
    print(f"\n# scaling: {PARTICLES} particles, d={DIM}, {args.steps} steps (thin {args.thin}), best of "
          f"{args.repeats}{mode}; jax {jax.__version__}, {platform.machine()}, {os.cpu_count()} cores\n")
    print("| workload | devices | gradient evals / s | speed-up | efficiency |")
    print("|---|---|---|---|---|")
    for name in table[1]:
        for count in DEVICE_COUNTS:
            speedup = table[count][name] / table[1][name]
            print(f"| {name} | {count} | {table[count][name]:,.0f} | {speedup:.2f} | {speedup / count:.2f} |")


if __name__ == "__main__":
    main()
