"""SIGKILL soak: streamed runs killed at random times and resumed until done, each compared
bit for bit with the same run left alone.

For every configuration (MALA with warmup, underdamped BAOAB with warmup, SVGD; each on one
device and sharded over two host devices), a child process runs ``sf.sample(...,
store=path, resume=True)``; the parent SIGKILLs it after a random delay drawn uniformly over
the time an uninterrupted run takes (imports excluded: the child says when it calls
``sf.sample``, so kills land in compilation, warmup and sampling), starts it again, and
repeats until a child finishes; then again on a fresh store until ``--kills`` kills
have landed. The finished
store's draws, every stat, the divergence counts and the adapted values must equal, bit for
bit, those of a store written by one uninterrupted child.

Run: ``python benchmarks/sigkill_soak.py`` (``--kills 9`` per configuration by default: 54
kills of a running sampler over the six; ``--seed`` picks the kill times). Prints one line per configuration and
the total; exits 1 if any resume differs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

CONFIGS = ("mala-warmup", "baoab-warmup", "svgd")
DEVICES = (1, 2)


def child(config: str, devices: int, store: str) -> None:
    """Run ``config`` into ``store`` (resuming it), printing ``sampling`` once the run starts."""
    import jax
    import jax.numpy as jnp

    import stochflow as sf

    scales = jnp.array([1.0, 2.0, 0.5, 1.5, 1.0, 3.0])
    target = sf.Target(lambda x: -0.5 * jnp.sum(x**2 / scales), dim=6, name="gaussian-6d")
    sampler, settings = {
        "mala-warmup": (sf.mala(0.5), dict(num_particles=8, num_steps=6_000, warmup=600, chunk_size=250)),
        "baoab-warmup": (sf.underdamped(0.3), dict(num_particles=8, num_steps=6_000, warmup=600, chunk_size=250)),
        "svgd": (sf.svgd(0.05), dict(num_particles=16, num_steps=1_500, chunk_size=60)),
    }[config]
    print("sampling", flush=True)
    sf.sample(sampler, target, jax.random.key(11), store=store, resume=True, progress=False, checks=False,
              devices="all" if devices > 1 else None, **settings)
    print("done", flush=True)


def spawn(config: str, devices: int, store: pathlib.Path) -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, __file__, "--child", config, str(devices), str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run_to_end(config: str, devices: int, store: pathlib.Path) -> float:
    """One uninterrupted child; the seconds it spent sampling."""
    proc = spawn(config, devices, store)
    assert proc.stdout.readline().strip() == "sampling", proc.stderr.read()
    start = time.perf_counter()
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{config} on {devices} device(s) failed:\n{err}")
    return time.perf_counter() - start


def soak_round(config: str, devices: int, store: pathlib.Path, run_seconds: float,
               rng: np.random.Generator, max_kills: int) -> int:
    """Start the run into a fresh ``store``, SIGKILL it after a random delay (uniform over
    ``run_seconds``), start it again (it resumes), ..., until a child finishes on its own or
    ``max_kills`` kills have landed (then one last child finishes it); the kills that hit a
    running sampler."""
    hits = 0
    while hits < max_kills:
        proc = spawn(config, devices, store)
        assert proc.stdout.readline().strip() == "sampling", proc.stderr.read()
        time.sleep(rng.uniform(0.0, run_seconds))
        if proc.poll() is not None:  # it finished on its own
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{config} on {devices} device(s) failed:\n{err}")
            return hits
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        hits += 1
    run_to_end(config, devices, store)
    return hits


def same_run(a: pathlib.Path, b: pathlib.Path) -> list[str]:
    """The fields in which two stored runs differ (empty: bit-identical)."""
    import stochflow as sf

    ta, tb = sf.load(a), sf.load(b)
    diffs = []
    if not np.array_equal(np.asarray(ta.positions), np.asarray(tb.positions)):
        diffs.append("positions")
    diffs += [f"stats[{name}]" for name in ta.stats if not np.array_equal(np.asarray(ta.stats[name]),
                                                                           np.asarray(tb.stats[name]))]
    diffs += [name for name in ("num_divergent", "num_divergent_warmup") if getattr(ta, name) != getattr(tb, name)]
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=9, help="SIGKILLs per configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return 0
    rng = np.random.default_rng(args.seed)
    total_hits, failures = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for config in CONFIGS:
            for devices in DEVICES:
                reference = pathlib.Path(tmp, f"{config}-{devices}-reference.zarr")
                seconds = run_to_end(config, devices, reference)
                hits, rounds, differ = 0, 0, []
                while hits < args.kills:  # rounds on fresh stores until enough kills have landed
                    soaked = pathlib.Path(tmp, f"{config}-{devices}-soaked-{rounds}.zarr")
                    hits += soak_round(config, devices, soaked, seconds, rng, args.kills - hits)
                    rounds += 1
                    differ += same_run(reference, soaked)
                total_hits += hits
                failures += bool(differ)
                print(f"{config:13s} {devices} device(s): {hits} SIGKILLs of a running sampler over {rounds} "
                      f"run(s) (an uninterrupted run samples for {seconds:.1f} s); every resumed run "
                      f"{'bit-identical' if not differ else 'DIFFERS in ' + ', '.join(sorted(set(differ)))}",
                      flush=True)
    print(f"total: {total_hits} SIGKILLs of running samplers, {failures} resumed run(s) not bit-identical")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
