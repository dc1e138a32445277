"""Traces on disk written by one Python/ArviZ/zarr line and read by the other (tests/test_cross_line.py).

``python tests/cross_line_child.py write FOLDER`` runs small fixed traces with this
interpreter's libraries and writes, into FOLDER: ``mala.nc``, ``mala.zarr``,
``mala.csv`` (+ ``mala.json``), ``numpyro.nc`` and ``numpyro.zarr`` (exports) and
``store.zarr`` (a run store streamed by ``sf.sample(store=...)``), plus
``expected.npz`` and ``expected.json``: the in-memory traces' arrays and metadata,
which ``sf.load`` must give back exactly.

``python tests/cross_line_child.py check FOLDER`` loads every file there with this
interpreter and exits non-zero on the first difference (what the other line runs).

The committed fixtures under tests/data/cross_line/ were written this way, one
folder per line.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

FILES = {"mala": ("mala.nc", "mala.zarr", "mala.csv", "store.zarr"), "numpyro": ("numpyro.nc", "numpyro.zarr")}


def tiny_model():
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("n", 2):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.deterministic("theta", mu + sigma * z)


def flatten(trace) -> dict[str, np.ndarray]:
    out = {"positions": np.asarray(trace.positions)}
    out.update({f"stats/{name}": np.asarray(values) for name, values in trace.stats.items()})
    named = trace.constrain(np.asarray(trace.positions)) if trace.constrain is not None else trace.constrained
    out.update({f"constrained/{name}": np.asarray(values) for name, values in (named or {}).items()})
    return out


def write(folder: pathlib.Path) -> None:
    import jax
    import jax.numpy as jnp

    import stochflow as sf

    folder.mkdir(parents=True, exist_ok=True)
    gauss = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=2, name="gauss-2d")
    run = dict(num_particles=2, num_steps=6, warmup=2, progress=False)
    traces = {
        "mala": sf.sample(sf.mala(0.5), gauss, jax.random.key(0), **run),
        "numpyro": sf.sample(sf.ula(0.1), sf.from_numpyro(tiny_model), jax.random.key(0), **run),
    }
    traces["mala"].to_netcdf(folder / "mala.nc")
    traces["mala"].to_zarr(folder / "mala.zarr")
    traces["mala"].to_csv(folder / "mala.csv")
    traces["numpyro"].to_netcdf(folder / "numpyro.nc")
    traces["numpyro"].to_zarr(folder / "numpyro.zarr")
    stored = sf.sample(sf.mala(0.5), gauss, jax.random.key(0), store=folder / "store.zarr", chunk_size=3, **run)
    for name in ("positions", "stats/logdensity"):  # the streamed run is the in-memory run
        assert np.array_equal(flatten(stored)[name], flatten(traces["mala"])[name]), name
    arrays = {f"{trace_name}/{key}": value for trace_name, trace in traces.items()
              for key, value in flatten(trace).items()}
    np.savez(folder / "expected.npz", **arrays)
    (folder / "expected.json").write_text(json.dumps({
        name: {"metadata": trace.metadata, "num_divergent": trace.num_divergent,
               "num_divergent_warmup": trace.num_divergent_warmup}
        for name, trace in dict(traces, store=stored).items()
    }, indent=1, sort_keys=True) + "\n")


def differences(folder: pathlib.Path) -> list[str]:
    """Every file of ``folder`` loaded with this interpreter against the writer's expectation."""
    import stochflow as sf
    from stochflow.diagnostics import arviz_bridge

    with np.load(folder / "expected.npz") as archive:
        expected = dict(archive)
    info = json.loads((folder / "expected.json").read_text())
    found = []
    for trace_name, files in FILES.items():
        want = {key[len(trace_name) + 1:]: value for key, value in expected.items()
                if key.startswith(trace_name + "/")}
        for file in files:
            path = folder / file
            for lazy in (False, True) if path.suffix == ".zarr" else (False,):
                trace = sf.load(path, lazy=lazy)
                got = flatten(trace)
                where = f"{file}{' (lazy)' if lazy else ''}"
                if sorted(got) != sorted(want):
                    found.append(f"{where}: variables {sorted(got)} != {sorted(want)}")
                    continue
                for key, value in want.items():
                    if got[key].dtype != value.dtype or not np.array_equal(got[key], value):
                        found.append(f"{where}: {key} differs ({got[key].dtype} vs {value.dtype})")
                record = info["store" if file == "store.zarr" else trace_name]  # the streamed run's own
                if trace.metadata != record["metadata"]:
                    found.append(f"{where}: metadata differs")
                if (trace.num_divergent, trace.num_divergent_warmup) != (
                        record["num_divergent"], record["num_divergent_warmup"]):
                    found.append(f"{where}: divergence counts differ")
            if path.suffix in (".nc", ".zarr"):
                groups = arviz_bridge.group_names(arviz_bridge.open_inference_data(path))
                wanted_groups = {"posterior", "sample_stats"} | (
                    {"unconstrained_posterior"} if trace_name == "numpyro" else set())
                if set(groups) != wanted_groups:
                    found.append(f"{file}: ArviZ groups {groups}")
    return found


if __name__ == "__main__":
    mode, target_folder = sys.argv[1], pathlib.Path(sys.argv[2])
    if mode == "write":
        write(target_folder)
    else:
        problems = differences(target_folder)
        print("\n".join(problems) or "all files read back exactly")
        sys.exit(1 if problems else 0)
