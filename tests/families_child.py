"""Child process for tests/test_sharded_families.py (XLA_FLAGS sets 2 host devices before jax loads).

``python tests/families_child.py OUT MODES NAME...`` runs the named sampler families with the
same key on one device and on 2 (``devices=jax.devices()[:2]``), in the given modes
(``default``, or ``both``: default and ``reproducible=True``, the latter for shard-local samplers),
and writes the positions and the per-draw stats to the ``.npz`` file OUT.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

import stochflow as sf
from families import FAMILIES, KEY


def run(name: str, devices, reproducible: bool) -> dict[str, np.ndarray]:
    sampler, target, steps, warmup = FAMILIES[name]
    trace = sf.sample(sampler, target, KEY, 4, steps, warmup=warmup, progress=False, devices=devices,
                      reproducible=reproducible)
    out = {"positions": np.asarray(trace.positions)}
    out.update({f"stats/{stat}": np.asarray(value) for stat, value in trace.stats.items()})
    return out


out_path, wanted_modes, names = sys.argv[1], sys.argv[2], sys.argv[3:]
both = {"default": False, "both": True}[wanted_modes]
results: dict[str, np.ndarray] = {}
for name in names:
    sampler = FAMILIES[name][0]
    for reproducible in (False, True) if both and sampler.shard_local else (False,):
        for layout, devices in (("one", None), ("two", jax.devices()[:2])):
            mode = "reproducible" if reproducible else "default"
            for field, value in run(name, devices, reproducible).items():
                results[f"{name}/{mode}/{layout}/{field}"] = value
    results[f"{name}/shard_local"] = np.array(sampler.shard_local)
np.savez(out_path, **results)
