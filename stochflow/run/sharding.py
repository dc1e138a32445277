"""Particles sharded across devices and hosts: the layout ``sample(..., devices=...)`` uses.

The particle axis (axis 0 of every per-particle leaf of a sampler state, axis
1 of the recorded draws ``(chunk, particles, ...)``) is split over one axis of
a :class:`jax.sharding.Mesh` with a :class:`~jax.sharding.NamedSharding`;
every other leaf (a step counter, an optimiser's scalar) is replicated. The
driver's chunk programs are ordinary ``jax.jit`` programs, so XLA's SPMD
partitioner (GSPMD) splits the vmapped per-chain work into local pieces and
inserts the collectives an interacting method needs (SVGD's pairwise sums,
its median heuristic): the program means the same whatever the layout.

Samplers that declare ``Sampler.shard_local`` (every independent-chain
sampler, and SVGD) run each chunk under :func:`jax.shard_map` instead
(:func:`shard_local`): each device runs the one-device program on its own
particles, and the only communication is what the method asks for
(:func:`~stochflow.kernels.particles.all_particles`, an all-gather). Per-particle keys are this shard's
slice of ``jax.random.split(key, n)`` (:func:`~stochflow.kernels.particles.particle_keys`, told the mesh axis
through the step's ``ParticleAxis``), so each device
computes what one device computes for its particles, up to how XLA compiles a
vectorised program at another batch size: the chain methods' draws are the
one-device draws to float32 rounding (often bit for bit, but which runs are depends on
the jax version and the CPU; README "Scale out", tests/test_sharding.py). SVGD computes its own particles' rows of the pairwise sums against the
gathered set, the same sums in the same order, but XLA:CPU's matrix kernels
do not promise the same rounding in two programs: its draws agree to float32
rounding. Samplers without the flag are partitioned by XLA (GSPMD), which is
correct but may round differently.

``sample(..., reproducible=True)`` traces the chunk programs under
``ParticleAxis(loop=True)``: per-particle work (:func:`~stochflow.kernels.particles.map_particles`,
:func:`~stochflow.kernels.particles.map_rows`) becomes a loop whose body is compiled for one particle, the
same code whatever the number of particles on a device, and the draws of the
chain methods and SVGD are then the one-device draws bit for bit (tested under
jax 0.10 and 0.12; on 0.12 it needs ``Target.logdensity_and_grad``'s optimisation
barrier, without which XLA recompiled the position update inside the density
differently in different programs).

Several processes (``jax.distributed.initialize``): ``devices="all"`` means
``jax.devices()``, every device of every process. Each process builds the
same starting state (it is a function of the key) and keeps the shards of its
own devices (:func:`shard_tree`); gathering them back onto every process is
:func:`stochflow.run.distributed.to_host`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence, Union

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .distributed import is_key

__all__ = ["PARTICLE_AXIS", "Devices", "resolve_mesh", "particle_axis", "num_shards", "check_divisible",
           "shard_tree", "constrain_tree", "pinning", "shard_local"]

PARTICLE_AXIS = "particles"

Devices = Union[None, str, Sequence[Any], Mesh]


def resolve_mesh(devices: Devices) -> Optional[Mesh]:
    """The 1-D particle mesh ``devices`` asks for, or ``None`` (one device, today's behaviour).

    ``"all"``: every device of every process (``jax.devices()``); a list or
    tuple of ``jax.Device``: those, in that order; a ``Mesh``: a 1-D mesh (any
    axis name), or a mesh with an axis named ``"particles"`` (particles are
    split over that axis and replicated over the others)."""
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        if len(devices.axis_names) != 1 and PARTICLE_AXIS not in devices.axis_names:
            raise ValueError(
                f"devices=Mesh with axes {devices.axis_names}: give a 1-D mesh, or name the axis to "
                f"split particles over {PARTICLE_AXIS!r}."
            )
        return devices
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices={devices!r} is not understood; use None, 'all', a list of jax devices "
                             "or a jax.sharding.Mesh.")
        return Mesh(np.asarray(jax.devices()), (PARTICLE_AXIS,))
    if isinstance(devices, (list, tuple)):
        if not devices:
            raise ValueError("devices=[] lists no device; use None for one device or 'all'.")
        bad = [d for d in devices if not isinstance(d, jax.Device)]
        if bad:
            raise TypeError(f"devices must hold jax.Device objects (from jax.devices()), got {bad[0]!r}.")
        if len(set(devices)) != len(devices):
            raise ValueError("devices lists a device twice; each device may hold one shard.")
        return Mesh(np.asarray(devices), (PARTICLE_AXIS,))
    raise TypeError(f"devices must be None, 'all', a list of jax devices or a jax.sharding.Mesh, "
                    f"got {type(devices).__name__}.")


def particle_axis(mesh: Mesh) -> str:
    """The mesh axis particles are split over."""
    return PARTICLE_AXIS if PARTICLE_AXIS in mesh.axis_names else mesh.axis_names[0]


def num_shards(mesh: Mesh) -> int:
    return int(mesh.shape[particle_axis(mesh)])


def check_divisible(num_particles: int, mesh: Mesh) -> None:
    """A ValueError unless the particles split evenly over the mesh (there is no padding)."""
    shards = num_shards(mesh)
    if num_particles % shards:
        lower = num_particles - num_particles % shards
        options = ", ".join(str(n) for n in (lower, lower + shards) if n > 0)
        raise ValueError(
            f"num_particles={num_particles} does not split evenly over {shards} devices; use a multiple "
            f"of {shards} (e.g. {options}), or fewer devices (a divisor of {num_particles})."
        )


def _partition_spec(leaf: Any, mesh: Mesh, num_particles: int, axis: int) -> PartitionSpec:
    """Split ``axis`` if the leaf has ``num_particles`` entries there, else replicate."""
    if np.ndim(leaf) > axis and np.shape(leaf)[axis] == num_particles:
        parts = [None] * np.ndim(leaf)
        parts[axis] = particle_axis(mesh)
        return PartitionSpec(*parts)
    return PartitionSpec()


def _sharding_of(leaf: Any, mesh: Mesh, num_particles: int, axis: int) -> NamedSharding:
    return NamedSharding(mesh, _partition_spec(leaf, mesh, num_particles, axis))


def _global_array(values: np.ndarray, sharding: NamedSharding) -> jax.Array:
    return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])


def shard_tree(tree: Any, mesh: Mesh, num_particles: int) -> Any:
    """``tree`` (the same on every process) as global arrays laid out on ``mesh``.

    A leaf whose axis 0 has ``num_particles`` entries is split along it; the
    others are replicated. Each process only places its own shards. The
    values are copied exactly (PRNG keys through their raw key data)."""

    def place(leaf: Any) -> Any:
        sharding = _sharding_of(leaf, mesh, num_particles, 0)
        if is_key(leaf):
            impl = jax.random.key_impl(leaf)
            data = _global_array(np.asarray(jax.random.key_data(leaf)), sharding)
            return jax.random.wrap_key_data(data, impl=impl)
        return _global_array(np.asarray(leaf), sharding)

    return jax.tree_util.tree_map(place, tree)


def constrain_tree(tree: Any, mesh: Mesh, num_particles: int, axis: int = 0) -> Any:
    """Inside a jitted program: pin the particle layout of ``tree`` (split ``axis``
    where it has ``num_particles`` entries, replicate the rest), so the state
    leaves every chunk as it came in and the next chunk reuses the program."""

    def pin(leaf: Any) -> Any:
        return jax.lax.with_sharding_constraint(leaf, _sharding_of(leaf, mesh, num_particles, axis))

    return jax.tree_util.tree_map(pin, tree)


@functools.lru_cache(maxsize=16)
def pinning(mesh: Mesh, num_particles: int) -> Callable[[Any], Any]:
    """A jitted :func:`constrain_tree` on ``mesh``: gives a state computed eagerly (a
    sampler's ``end_warmup``) the layout the chunk programs take."""
    return jax.jit(lambda tree: constrain_tree(tree, mesh, num_particles))


def shard_local(run: Callable, mesh: Mesh, num_particles: int, num_outputs: int) -> Callable:
    """``run(state, *replicated) -> (state, *per_particle)`` as a :func:`jax.shard_map`
    program: each device runs ``run`` on its own ``num_particles / shards``
    particles (axis 0 of ``state``, axis 1 of every leaf of each of the
    ``num_outputs`` per-particle outputs, e.g. recorded draws ``(chunk, particles, ...)``).

    ``run`` must pass the mesh axis name (:func:`particle_axis`) to what it calls
    (a sampler's ``step`` takes it in its ``ParticleAxis``). Leaves of ``state``
    without a particle axis (a step counter) are replicated: ``run`` must compute
    the same value for them on every device."""
    axis = particle_axis(mesh)

    def call(state: Any, *replicated: Any) -> Any:
        state_specs = jax.tree_util.tree_map(lambda leaf: _partition_spec(leaf, mesh, num_particles, 0), state)
        in_specs = (state_specs,) + (PartitionSpec(),) * len(replicated)
        out_specs = (state_specs,) + (PartitionSpec(None, axis),) * num_outputs
        # check_vma=False: the driver's scans start their per-particle counters from zeros
        # that are the same on every device; JAX's varying-axis typing would need each cast.
        mapped = jax.shard_map(run, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
        return mapped(state, *replicated)

    return call

