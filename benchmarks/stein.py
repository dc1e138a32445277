"""Stein samplers: SVGD speed and memory against BlackJAX, and the sparse-Dirichlet experiment of
Shi, Liu & Mackey (ICLR 2022).

    python benchmarks/stein.py speed      # seconds per SVGD iteration, stochflow vs blackjax.svgd
    python benchmarks/stein.py memory     # largest n whose step runs under an address-space cap
    python benchmarks/stein.py dirichlet  # MSVGD / SVMD energy distance vs iterations (D = 20)
    python benchmarks/stein.py all

Speed: both samplers take the same SVGD step (RBF kernel, median-heuristic bandwidth recomputed
every step, the same optax optimiser) on a 50-d anisotropic Gaussian with a diagonal precision
(the cheapest gradient, which favours BlackJAX's n^2 gradient calls). Each is timed as a jitted
``lax.scan`` over ``reps`` steps after a compile run; the best of 3 timings is reported.

Memory: each (method, n) runs one step in a fresh subprocess whose address space is capped with
RLIMIT_AS (default 6 GiB, well below the shared 24 GiB machine); "fits" means it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

DIM = 50
MEMORY_CAP_GIB = 6.0


# ----------------------------------------------------------------------------- SVGD steps


def _gaussian(dim: int):
    import jax.numpy as jnp

    scales = jnp.linspace(0.5, 2.0, dim)

    def logdensity(x):
        return -0.5 * jnp.sum((x / scales) ** 2)

    return logdensity


def _stochflow_run(n: int, reps: int, dim: int = DIM):
    """A jitted function running ``reps`` stochflow SVGD steps from a fixed state."""
    import jax

    import stochflow as sf

    logdensity = _gaussian(dim)
    target = sf.Target(logdensity, dim=dim)
    sampler = sf.svgd(1e-2)
    init = jax.random.normal(jax.random.key(0), (n, dim))
    state = sampler.init(target, init, jax.random.key(1))

    @jax.jit
    def run(state):
        def body(state, i):
            state, _ = sampler.step(target, state, jax.random.key(0))
            return state, None

        return jax.lax.scan(body, state, None, length=reps)[0].position

    return run, state


def _blackjax_run(n: int, reps: int, dim: int = DIM):
    """The same for ``blackjax.svgd`` (its default RBF kernel and median-heuristic update)."""
    import blackjax
    import jax
    import optax

    from stochflow.samplers.stein import adagrad_momentum

    logdensity = _gaussian(dim)
    optimizer = optax.chain(adagrad_momentum(0.9, 1e-6), optax.scale(-1e-2))
    algorithm = blackjax.svgd(jax.grad(logdensity), optimizer)
    init = jax.random.normal(jax.random.key(0), (n, dim))
    state = algorithm.init(init, {"length_scale": 1.0})
    state = blackjax.vi.svgd.update_median_heuristic(state)

    @jax.jit
    def run(state):
        def body(state, i):
            return algorithm.step(state), None

        return jax.lax.scan(body, state, None, length=reps)[0].particles

    return run, state


RUNNERS = {"stochflow": _stochflow_run, "blackjax": _blackjax_run}


def time_per_step(method: str, n: int, reps: int) -> float:
    run, state = RUNNERS[method](n, reps)
    run(state).block_until_ready()  # compile
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        run(state).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return best / reps


def speed(sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        reps = max(2, min(50, 200_000 // (n * n // 100 + 1)))
        row = {"n": n, "d": DIM, "reps": reps}
        for method in RUNNERS:
            row[method] = time_per_step(method, n, reps)
        row["speedup"] = row["blackjax"] / row["stochflow"]
        print(f"n={n:6d} d={DIM}  stochflow {row['stochflow']:.4g} s/it  blackjax {row['blackjax']:.4g} s/it  "
              f"speed-up x{row['speedup']:.1f}", flush=True)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- memory probes


def _probe_child(method: str, n: int) -> None:
    """Run in a subprocess: one step at size n, print JSON (seconds with compile, peak RSS)."""
    run, state = RUNNERS[method](n, 1)
    start = time.perf_counter()
    out = run(state)
    out.block_until_ready()
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(json.dumps({"ok": bool(np.all(np.isfinite(np.asarray(out)))), "seconds_with_compile": elapsed, "peak_rss_gib": peak}))


def probe(method: str, n: int, cap_gib: float, timeout: float) -> dict:
    cap = int(cap_gib * 2**30)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        done = subprocess.run(
            [sys.executable, __file__, "_probe", method, str(n)],
            capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        return {"method": method, "n": n, "fits": None, "note": f"timed out after {timeout:.0f} s"}
    if done.returncode == 0:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return {"method": method, "n": n, "fits": result["ok"], **result}
    reason = "out of memory" if "RESOURCE_EXHAUSTED" in done.stderr or "MemoryError" in done.stderr else done.stderr.strip()[-200:]
    return {"method": method, "n": n, "fits": False, "note": reason}


def memory(cap_gib: float, timeout: float, methods: list[str]) -> list[dict]:
    plans = {"blackjax": [1000, 2000, 3000, 4000, 5000], "stochflow": [5000, 20000, 50000]}
    rows = []
    for method in methods:
        sizes = plans[method]
        for n in sizes:
            row = probe(method, n, cap_gib, timeout)
            print(json.dumps(row), flush=True)
            rows.append(row)
            if not row["fits"]:
                break  # larger n will not fit (or finish) either
    return rows


# ----------------------------------------------------------------------------- sparse Dirichlet


def _paper_energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """The paper code's energy distance (utils.energy_dist): V-statistics, 2 E|X-Y| - E|X-X'| - E|Y-Y'|."""

    def mean_distance(a, b):
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0)).mean()

    return float(2 * mean_distance(x, y) - mean_distance(x, x) - mean_distance(y, y))


def dirichlet(iterations: int = 500, every: int = 20, seeds: int = 3) -> dict:
    """Shi, Liu & Mackey's dirichlet.ipynb: D = 20, alpha = 0.1 + (90, 5, 5, 0, ...), 50 particles from
    Dir(5 * 1), RMSProp lr 0.1, IMQ kernel, SVMD eigen threshold 0.998, energy distance (reduced
    coordinates) to 1,000 exact draws every 20 iterations."""
    import jax
    import jax.numpy as jnp

    import stochflow as sf
    from stochflow.geometry import entropic_simplex

    alpha = np.r_[90.1, 5.1, 5.1, np.full(17, 0.1)]
    alpha_j = jnp.asarray(alpha, jnp.float32)

    def logdensity(x):
        return jnp.sum((alpha_j[:-1] - 1) * jnp.log(x)) + (alpha_j[-1] - 1) * jnp.log1p(-jnp.sum(x))

    target = sf.Target(logdensity, dim=19, mirror=entropic_simplex(), name="sparse-dirichlet-20")
    methods = {"msvgd": sf.msvgd(0.1), "svmd": sf.svmd(0.1, eigen_threshold=0.998)}
    curves = {name: [] for name in methods}
    seconds = {name: [] for name in methods}
    for seed in range(seeds):
        rng = np.random.default_rng(123 + seed)
        truth = rng.dirichlet(alpha, size=1000)[:, :-1]
        init = jnp.asarray(rng.dirichlet(np.full(20, 5.0), size=50)[:, :-1], jnp.float32)
        for name, sampler in methods.items():
            start = time.perf_counter()
            trace = sf.sample(sampler, target, jax.random.key(seed), init=init, num_steps=iterations,
                              thin=every, progress=False)
            seconds[name].append(time.perf_counter() - start)
            positions = np.concatenate([np.asarray(init)[:, None], trace.positions], axis=1)
            inside = bool(np.all(positions > 0) and np.all(positions.sum(-1) < 1))
            eds = [_paper_energy_distance(positions[:, t].astype(float), truth) for t in range(positions.shape[1])]
            curves[name].append(eds)
            print(f"seed {seed} {name}: ED at T = 0, 100, 200, 300, 400, 500: "
                  f"{np.round([eds[t // every] for t in range(0, iterations + 1, 100)], 4).tolist()}  "
                  f"all inside: {inside}  {seconds[name][-1]:.1f} s", flush=True)
    # The floor: ED between 50 exact draws and the 1,000 reference draws.
    rng = np.random.default_rng(999)
    truth = rng.dirichlet(alpha, size=1000)[:, :-1]
    floor = [_paper_energy_distance(rng.dirichlet(alpha, size=50)[:, :-1], truth) for _ in range(20)]
    print(f"50 exact draws vs the reference: ED mean {np.mean(floor):.4f} (sd {np.std(floor):.4f})")
    return {
        "iterations": list(range(0, iterations + 1, every)),
        "curves": {k: np.mean(v, 0).tolist() for k, v in curves.items()},
        "seconds": {k: float(np.mean(v)) for k, v in seconds.items()},
        "exact_50_draws": float(np.mean(floor)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["speed", "memory", "dirichlet", "all", "_probe"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--cap-gib", type=float, default=MEMORY_CAP_GIB)
    parser.add_argument("--timeout", type=float, default=400.0)
    parser.add_argument("--methods", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    options = parser.parse_args()
    if options.what == "_probe":
        _probe_child(options.args[0], int(options.args[1]))
        return
    results = {}
    if options.what in ("speed", "all"):
        results["speed"] = speed(options.sizes)
    if options.what in ("memory", "all"):
        results["memory"] = memory(options.cap_gib, options.timeout, options.methods)
    if options.what in ("dirichlet", "all"):
        results["dirichlet"] = dirichlet()
    if options.out:
        with open(options.out, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    main()
