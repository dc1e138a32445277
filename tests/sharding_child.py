"""Child process for tests/test_sharding.py (XLA_FLAGS must be set before jax is imported).

``python tests/sharding_child.py MODE OUT [PROCESS_ID PORT STORE]`` writes its
results to the ``.npz`` file OUT (``OUT.pid`` for process PROCESS_ID):

* ``layouts``: ULA, MALA (warmup adaptation), underdamped BAOAB, OBABO and UBU, SVGD, each
  run with ``devices=None``, ``devices=<2 devices>`` and ``devices="all"`` (8), each
  also with ``reproducible=True`` on one device and on 8, ULA, MALA and the underdamped
  schemes once more with another key (a wrong run, for the rounding bounds), plus
  a sharded run streamed to a store, and the refusals of bad ``devices``;
* ``distributed``: one of two processes joined by ``jax.distributed.initialize``
  on 127.0.0.1:PORT (gloo CPU collectives), 2 devices each; runs MALA (with
  warmup) over all 4 devices in memory, then streamed to ``STORE.distributed``, then resumes the
  two stores the ``single`` run left half done (``STORE.crashed-<k>``);
* ``single``: the same MALA runs with one process and one device, the reference;
  it also leaves two stores of the run crashed after commit 2 (in warmup) and 5
  (in sampling), for the distributed processes to resume.
"""

from __future__ import annotations

import sys

import numpy as np

MODE, OUT = sys.argv[1], sys.argv[2]

if MODE == "distributed":
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    process_id, port = int(sys.argv[3]), int(sys.argv[4])
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=60)
else:
    import jax

import jax.numpy as jnp

import stochflow as sf

SCALES = jnp.array([1.0, 2.0, 0.5])
TARGET = sf.Target(lambda x: -0.5 * jnp.sum((x / SCALES) ** 2), dim=3, name="gauss-3d")
KEY = jax.random.key(20261127)


def fields(prefix: str, trace) -> dict[str, np.ndarray]:
    out = {f"{prefix}/positions": np.asarray(trace.positions)}
    out.update({f"{prefix}/stats/{name}": np.asarray(value) for name, value in trace.stats.items()})
    out[f"{prefix}/counts"] = np.array([trace.num_divergent, trace.num_divergent_warmup,
                                        trace.metadata["n_grad_warmup"]])
    return out


# reproducible=True: the promise of the same bits on any device count (default mode: float32 rounding).
MALA_RUN = dict(num_particles=8, num_steps=30, warmup=20, chunk_size=7, progress=False, reproducible=True)
CRASH_AFTER = (2, 5)  # commits: 7, 14 warmup steps | 20 (warmup done), 7, 14 draws, ...


class Crash(Exception):
    pass


def crashed_store(path: str, after: int) -> None:
    """Leave at ``path`` a store of the MALA run stopped right after commit ``after``."""
    from stochflow.store import RunStore

    commit, calls = RunStore.commit, []

    def crashing(self, progress, state):
        commit(self, progress, state)
        calls.append(1)
        if len(calls) == after:
            raise Crash

    RunStore.commit = crashing
    try:
        sf.sample(sf.mala(0.5), TARGET, KEY, store=path, **MALA_RUN)
    except Crash:
        pass
    finally:
        RunStore.commit = commit


def mala_runs(devices, store, resume: bool = False) -> dict[str, np.ndarray]:
    sampler = sf.mala(0.5)
    out = fields("mala", sf.sample(sampler, TARGET, KEY, devices=devices, **MALA_RUN))
    whole = f"{store}.{'distributed' if resume else 'single'}"
    out.update(fields("mala_store", sf.sample(sampler, TARGET, KEY, devices=devices, store=whole, **MALA_RUN)))
    for after in CRASH_AFTER:
        if resume:
            resumed = sf.sample(sampler, TARGET, KEY, devices=devices, store=f"{store}.crashed-{after}",
                                resume=True, **MALA_RUN)
            out.update(fields(f"mala_resumed_{after}", resumed))
        else:
            crashed_store(f"{store}.crashed-{after}", after)
    return out


def layouts(store: str) -> dict[str, np.ndarray]:
    samplers = {
        "ula": (sf.ula(0.1), 0),
        "mala": (sf.mala(0.5), 25),
        "underdamped_baoab": (sf.underdamped(0.2, 1.0), 0),
        "underdamped_obabo": (sf.underdamped(0.2, 1.0, scheme="obabo"), 0),
        "underdamped_ubu": (sf.underdamped(0.2, 1.0, scheme="ubu"), 0),
        "svgd": (sf.svgd(0.05), 0),
    }
    from jax.sharding import Mesh

    grid = np.asarray(jax.devices()).reshape(4, 2)
    layouts = {"one": None, "two": jax.devices()[:2], "all": "all",
               "mesh_1d": Mesh(np.asarray(jax.devices()), ("batch",)),  # any name for a 1-D mesh
               "mesh_2d": Mesh(grid, ("particles", "model"))}  # split over 4, replicated over 2
    out: dict[str, np.ndarray] = {}
    for name, (sampler, warmup) in samplers.items():
        for layout, devices in layouts.items():
            # The other layouts once each (compiling costs seconds): ULA and SVGD (collectives).
            if layout not in ("one", "all") and name not in ("ula", "svgd"):
                continue
            trace = sf.sample(sampler, TARGET, KEY, 16, 40, warmup=warmup, chunk_size=15,
                              progress=False, devices=devices)
            out.update(fields(f"{name}/{layout}", trace))
    # Another key on one device: what a wrong run looks like, against the rounding bounds.
    for name in ("ula", "mala", "underdamped_baoab", "underdamped_obabo", "underdamped_ubu"):
        sampler, warmup = samplers[name]
        trace = sf.sample(sampler, TARGET, jax.random.key(1), 16, 40, warmup=warmup, chunk_size=15,
                          progress=False)
        out.update(fields(f"{name}/other_key", trace))
    # reproducible=True: each particle's step compiled on its own, on one device and on 8.
    for name, (sampler, warmup) in samplers.items():
        for layout in ("one", "all"):
            trace = sf.sample(sampler, TARGET, KEY, 16, 40, warmup=warmup, chunk_size=15, progress=False,
                              devices=layouts[layout], reproducible=True)
            out.update(fields(f"reproducible/{name}/{layout}", trace))
    trace = sf.sample(samplers["svgd"][0], TARGET, KEY, 16, 40, chunk_size=15, progress=False,
                      devices=layouts["mesh_2d"], reproducible=True)
    out.update(fields("reproducible/svgd/mesh_2d", trace))
    streamed = sf.sample(sf.mala(0.5), TARGET, KEY, 16, 40, warmup=25, chunk_size=15, progress=False,
                         devices="all", store=store)
    out.update(fields("mala/all_store", streamed))
    # The sharded programs: no recompilation from chunk to chunk (one per phase).
    # A new target for each run, so each compiles its own start check and programs.
    traced = []
    for devices in (None, "all"):
        counting = sf.Target(lambda x: traced.append(1) or -0.5 * jnp.sum(x ** 2), dim=3, name="counting")
        before = len(traced)
        sf.sample(sf.ula(0.1), counting, KEY, 16, 40, chunk_size=5, progress=False, devices=devices)
        out[f"traces_per_run/{devices}"] = np.array(len(traced) - before)
    # Bad input, refused before anything compiles (the counting target is not traced again).
    before = len(traced)
    errors = []
    for devices, num_particles in (("all", 12), (jax.devices()[:3], 16), ("gpu", 16), ([0, 1], 16), ([], 16),
                                   (jax.devices()[:1] * 2, 16), (7, 16), (Mesh(grid, ("a", "b")), 16)):
        try:
            sf.sample(sf.ula(0.1), counting, KEY, num_particles, 10, progress=False, devices=devices)
            errors.append("no error")
        except (TypeError, ValueError) as error:
            errors.append(f"{type(error).__name__}: {error}")
    out["errors"] = np.array(errors)
    out["traced_by_refusals"] = np.array(len(traced) - before)
    return out


if MODE == "layouts":
    results = layouts(sys.argv[3])
elif MODE == "single":
    results = mala_runs(None, sys.argv[3])
else:
    results = mala_runs("all", sys.argv[5], resume=True)
    results["num_devices"] = np.array(len(jax.devices()))
    OUT = f"{OUT}.{jax.process_index()}"
np.savez(OUT, **results)
