"""``sample()``: the driver shared by every sampler.

The run has two phases. ``warmup`` steps run first (with the sampler's
``warmup_step`` if it adapts) and are not recorded; then ``num_steps`` steps
run, of which every ``thin``-th is recorded, giving
``num_draws = num_steps // thin`` draws per particle.

Work is done in chunks: one jitted ``lax.scan`` runs ``chunk_size`` steps,
the host receives the recorded draws, updates the progress bar and goes on.
Each step's key is ``fold_in(phase_key, global_step_index)``, so the draws do
not depend on the chunk size: the same key gives the same trace, bit for bit.
All chunks of a phase share one compiled program (the last, shorter chunk
skips its spare iterations with a ``lax.cond`` rather than recompiling).

A recorded draw carries the info of the step that produced it, except
``n_grad`` (summed over the ``thin`` steps since the previous draw, so the
stats' total is the run's cost) and ``diverging`` (true if any of those steps
diverged). Every diverging step is also counted: ``trace.num_divergent``.

Where the draws go is a *sink* with ``append`` (a chunk of draws), ``commit``
(a point a run may resume from) and ``finish`` (the Trace): in memory by
default, or a :class:`~stochflow.store.RunStore` on disk with ``store=path``,
which commits after every chunk (warmup chunks too) so that
``resume=True`` continues a killed run from its last committed chunk. Since
each step's key depends only on its global index, the resumed run's draws,
stats and counts are those of an uninterrupted run, bit for bit.

With ``devices=`` the particle axis of the state and of each chunk's draws is
split over a mesh (:mod:`stochflow.sharding`) and every chunk runs as one SPMD
program (shard-local under ``shard_map`` for samplers that declare
``shard_local``, partitioned by XLA otherwise); the host gathers each chunk's draws as before. Under
``jax.distributed`` every process runs the same driver: the gathers are
collectives, the draws reach every process, and with a store process 0 alone
writes it (the others only join the gathers, and open the store at the end).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from . import sharding
from .kernels.checks import check_int, check_key, check_positions
from .kernels.particles import ParticleAxis
from .samplers.base import Sampler
from .store import Progress, RunStore
from .target import Target, default_dtype
from .trace import Trace, run_metadata

Array = jax.Array

__all__ = ["sample", "default_init"]

# Upper bound on the bytes one chunk's recorded draws may take on the host.
_CHUNK_BYTES = 64 * 2**20
# Number of chunks a run is cut into by default, so the progress bar moves.
_DEFAULT_CHUNKS = 20


def default_init(target: Target, key: Array, num_particles: int) -> Array:
    """Default starting positions: independent Uniform(-2, 2)^dim draws.

    This is NumPyro's ``init_to_uniform`` radius; it suits targets written on
    an unconstrained scale of order one. A target that brings its own
    ``target.init`` (NumPyro models: their init strategy) uses that. For a
    target with a mirror map the draws are taken in the dual space and mapped
    into the domain by ``mirror.grad_conj``, so every start lies strictly
    inside the domain. Targets with a far-away mass should be given ``init``
    explicitly.
    """
    if target.init is not None:
        return jnp.asarray(target.init(key, num_particles), default_dtype())
    draws = jax.random.uniform(
        key, (num_particles, target.dim), default_dtype(), minval=-2.0, maxval=2.0
    )
    if target.mirror is not None:
        return jax.vmap(target.mirror.grad_conj)(draws)
    return draws


def _resolve_num_steps(sampler: Sampler, num_steps: Optional[int]) -> int:
    if sampler.num_steps is not None:
        if num_steps is not None and num_steps != sampler.num_steps:
            raise ValueError(
                f"{sampler.name} carries a schedule of {sampler.num_steps} steps; "
                f"num_steps={num_steps} contradicts it. Leave num_steps out."
            )
        return sampler.num_steps
    if num_steps is None:
        raise ValueError(f"num_steps is required for {sampler.name}.")
    return check_int("num_steps", num_steps, 1)


def _check_start(target: Target, positions: Array) -> np.ndarray:
    """The log-density at the starting positions; refuses starts outside the target."""
    # Evaluated eagerly: compiling a program for one evaluation costs more than running it
    # (16 ms against 0.6 ms for a 100-d Gaussian, 88 ms against 2 ms for a logistic regression).
    logdensity = jax.vmap(target.logdensity)(positions)
    bad = np.flatnonzero(~np.isfinite(np.asarray(logdensity)))
    if bad.size:
        raise ValueError(
            f"the log-density is not finite at {bad.size} starting position(s) "
            f"(particles {bad[:10].tolist()}{'...' if bad.size > 10 else ''}); "
            "start inside the support, e.g. pass init= explicitly."
        )
    checks = [("support", target.support)]
    if target.mirror is not None:
        checks.append(("mirror map's domain", target.mirror.in_domain))
    for what, contains in checks:
        if contains is None:
            continue
        outside = np.flatnonzero(~np.asarray(jax.vmap(contains)(positions)))
        if outside.size:
            raise ValueError(
                f"{outside.size} starting position(s) lie outside the target's {what} "
                f"(particles {outside[:10].tolist()}); pass init= strictly inside it."
            )
    return np.asarray(logdensity)


def _strongly_typed(state: Any) -> Any:
    """``state`` with no weakly typed leaves, the form a state restored from disk has:
    a fresh and a resumed run then run the same compiled program (a weak type in
    the input signature would compile a second one, and could change promotion)."""

    def strong(leaf: Any) -> Any:
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return leaf
        return jnp.asarray(leaf, dtype=leaf.dtype)

    return jax.tree_util.tree_map(strong, state)


def _draw_stats(step_info: Any, n_grad: Array, diverging: Array) -> dict[str, Array]:
    stats = dict(step_info._asdict())
    stats["n_grad"] = n_grad
    stats["diverging"] = diverging
    return stats


@functools.lru_cache(maxsize=64)
def _make_phase(
    step_fn: Callable,
    target: Target,
    thin: int,
    chunk_draws: int,
    record: bool,
    mesh: Optional[jax.sharding.Mesh] = None,
    num_particles: int = 0,
    shard_local: bool = False,
    one_at_a_time: bool = False,
) -> Callable:
    """A jitted function running up to ``chunk_draws`` draws of ``thin`` steps each.

    Cached on its arguments (the step function and the target by identity), so
    repeated ``sample`` calls with the same sampler and target reuse the
    compiled program. With a ``mesh``, the state's particle axis stays split
    over it from chunk to chunk, and so are the outputs' particle axes; a
    ``shard_local`` sampler's chunk runs under ``shard_map`` (each device runs
    the one-device program on its particles), any other is partitioned by XLA.
    The sampler's step is given its :class:`~stochflow.kernels.particles.ParticleAxis`:
    the mesh axis name under ``shard_map``, and ``loop=one_at_a_time``
    (``reproducible=True``: per-particle work compiled for one particle).

    ``run(state, phase_key, first_draw, num_valid)`` runs draws
    ``first_draw .. first_draw + num_valid - 1`` and returns the new state, the
    per-particle counts ``[diverging steps, gradient evaluations]``, and
    (if ``record``) the stacked draws.
    """

    axis = ParticleAxis(sharding.particle_axis(mesh) if mesh is not None and shard_local else None, one_at_a_time)

    def one_step(carry, step_index):
        state, key, n_grad, diverging = carry
        state, info = step_fn(target, state, jax.random.fold_in(key, step_index), axis)
        return (state, key, n_grad + info.n_grad, diverging | info.diverging), info

    def one_draw(state, key, draw_index):
        n_particles = jax.tree_util.tree_leaves(state)[0].shape[0]
        zeros = jnp.zeros((n_particles,), jnp.int32)
        steps = draw_index * thin + jnp.arange(thin)
        init = (state, key, zeros, jnp.zeros((n_particles,), bool))
        (state, _, n_grad, diverging), infos = jax.lax.scan(one_step, init, steps)
        last_info = jax.tree_util.tree_map(lambda leaf: leaf[-1], infos)
        # Per-particle counts (summed on the host in Python ints: no int32 overflow).
        counts = jnp.stack([jnp.sum(infos.diverging.astype(jnp.int32), axis=0), n_grad])
        out = (state.position, _draw_stats(last_info, n_grad, diverging)) if record else None
        return state, counts, out

    def pin(tree, axis):
        if mesh is None or shard_local:
            return tree
        return sharding.constrain_tree(tree, mesh, num_particles, axis)

    def run(state, key, first_draw, num_valid):
        state = pin(state, 0)
        _, out_counts, out_shapes = jax.eval_shape(one_draw, state, key, first_draw)

        def idle(state, key, draw_index):
            zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), out_shapes)
            return state, jnp.zeros_like(out_counts), zeros

        def body(carry, offset):
            state, counts = carry
            state, draw_counts, out = jax.lax.cond(
                offset < num_valid, one_draw, idle, state, key, first_draw + offset
            )
            return (state, counts + draw_counts), out

        (state, counts), outs = jax.lax.scan(
            body, (state, jnp.zeros_like(out_counts)), jnp.arange(chunk_draws)
        )
        return pin(state, 0), pin(counts, 1), pin(outs, 1)

    if mesh is not None and shard_local:
        return jax.jit(sharding.shard_local(run, mesh, num_particles, num_outputs=2))
    return jax.jit(run)


def _default_chunk_draws(num_draws: int, bytes_per_draw: int) -> int:
    by_memory = max(1, _CHUNK_BYTES // max(bytes_per_draw, 1))
    by_progress = max(1, math.ceil(num_draws / _DEFAULT_CHUNKS))
    return max(1, min(num_draws, by_memory, by_progress))


class _MemorySink:
    """Keeps the draws in host memory; ``finish`` stacks them into a Trace."""

    progress = Progress()

    def __init__(self, metadata: dict, constrain: Optional[Callable]):
        self._metadata = metadata
        self._constrain = constrain
        self._positions: list[np.ndarray] = []
        self._stats: list[dict[str, np.ndarray]] = []

    def append(self, positions: np.ndarray, stats: dict[str, np.ndarray], first_draw: int) -> None:
        self._positions.append(positions)
        self._stats.append(stats)

    def commit(self, progress: Progress, state: Any) -> None:
        """Nothing to keep: a run in memory cannot be resumed."""

    def finish(self, progress: Progress) -> Trace:
        stats = {name: np.concatenate([c[name] for c in self._stats], axis=1) for name in self._stats[0]}
        return Trace(
            positions=np.concatenate(self._positions, axis=1),
            stats=stats,
            metadata=dict(self._metadata, n_grad_warmup=progress.n_grad_warmup),
            num_divergent=progress.num_divergent,
            num_divergent_warmup=progress.num_divergent_warmup,
            constrain=self._constrain,
        )

    def close(self) -> None:
        """Nothing to release."""


class _FollowerSink:
    """What a process other than 0 of a multi-process run with a store holds: nothing.
    Process 0 writes the store; this process only takes part in the collectives
    (gathers), then opens the finished store, which must be on a shared filesystem."""

    progress = Progress()

    def __init__(self, path: Union[str, os.PathLike]):
        self._path = path

    def restore_state(self, fresh_state: Any) -> Any:
        return fresh_state  # process 0's state arrives by broadcast

    def prepare(self) -> None:
        """Process 0 prepares the store."""

    def append(self, positions: np.ndarray, stats: dict[str, np.ndarray], first_draw: int) -> None:
        """Process 0 writes the draws."""

    def commit(self, progress: Progress, state: Any) -> None:
        """Process 0 commits."""

    def finish(self, constrain: Optional[Callable] = None) -> Trace:
        from .store import load

        _barrier("stochflow-store-finished")  # process 0 has finished writing
        if not os.path.exists(self._path):
            raise FileNotFoundError(
                f"store={str(self._path)!r} was written by process 0 but is not visible to process "
                f"{jax.process_index()}: give a store path on a filesystem all processes share."
            )
        trace = load(self._path, lazy=True)
        trace.constrain = constrain
        return trace

    def close(self) -> None:
        """Nothing to release."""


def sample(
    sampler: Sampler,
    target: Target,
    key: Array,
    num_particles: Optional[int] = None,
    num_steps: Optional[int] = None,
    *,
    warmup: int = 0,
    thin: int = 1,
    init: Optional[Any] = None,
    progress: bool = True,
    chunk_size: Optional[int] = None,
    store: Optional[Union[str, os.PathLike]] = None,
    resume: bool = False,
    devices: sharding.Devices = None,
    reproducible: bool = False,
) -> Trace:
    """Run ``sampler`` on ``target`` and return the recorded :class:`Trace`.

    Parameters
    ----------
    sampler
        A :class:`~stochflow.samplers.base.Sampler` from a factory (``sf.mala(0.1)``).
    target
        The :class:`~stochflow.Target`.
    key
        A JAX PRNG key; all randomness comes from it.
    num_particles
        Number of particles (independent chains for chain samplers). Default:
        ``init.shape[0]`` if ``init`` is given, else 4.
    num_steps
        Steps after warmup. Required unless the sampler carries a schedule.
    warmup
        Steps run first and not recorded; adaptation (if any) runs only here.
    thin
        Record every ``thin``-th step; ``num_draws = num_steps // thin``.
    init
        Starting positions ``(num_particles, dim)``. Default: ``default_init``
        (independent Uniform(-2, 2) coordinates).
    progress
        Show a progress bar (updated between chunks).
    chunk_size
        Steps per jitted chunk (rounded down to a multiple of ``thin``).
        Default: about 1/20 of the run, capped so a chunk's draws take at most
        64 MiB. It changes speed and memory, never the draws.
    store
        A path (conventionally ``*.zarr``, in an existing directory) to stream
        the run to: each chunk is written and committed as it finishes, so the
        host holds one chunk of draws, and the store opens with
        ``sf.load``/xarray/ArviZ while the run goes on. The returned trace is
        then backed by the store (its arrays are read from disk when used). An
        existing path is refused unless ``resume=True``.
    resume
        With ``store``: continue the run stored there from its last committed
        chunk (a chunk torn by a crash is cut off and redone); the result is
        bit-identical to an uninterrupted run. The store must come from the
        same sampler, hyperparameters, target, key, particles, steps, warmup,
        thin and init, or it is refused. If nothing exists at ``store`` yet,
        the run starts fresh, so a job script can always pass ``resume=True``.
        A finished store is returned as it is.
    devices
        Where the particles run. ``None``: one device (JAX's default). ``"all"``:
        every device of every process (``jax.devices()``); a list of
        ``jax.Device``; or a ``jax.sharding.Mesh`` (1-D, or with an axis named
        ``"particles"``). The particle axis of the state and of the recorded
        draws is split evenly over the devices (``num_particles`` must be a
        multiple of their number; nothing is padded) and each chunk runs as one
        SPMD program: shard-local under ``shard_map`` for independent chains and
        SVGD (all-gathers its particles each step), partitioned by XLA for other
        interacting methods. The draws are those of the one-device run with the
        same key: to float32 rounding by default (as measured, bit for bit for
        MALA, BAOAB and UBU draws on 8 devices, within 1 ulp for ULA on a 2-D mesh);
        bit for bit for the chain methods and SVGD with ``reproducible=True``). Under ``jax.distributed`` (several
        processes) every process makes the same call; each gets the whole trace (the draws are
        gathered after every chunk), and with ``store`` process 0 writes the
        store, which the other processes then open, so its path must be on a
        filesystem they share (see the README, "Scale out").
    reproducible
        ``True``: each particle's step is compiled on its own (a loop over the
        particles, :func:`stochflow.kernels.particles.map_particles`, instead of one
        vectorised program), so its arithmetic does not depend on how many
        particles share a device, and the draws and stats are the same bit for bit
        on any number of devices (independent chains and SVGD). XLA gives no such
        promise for a vectorised program: at another batch size it may fuse the
        same step differently and round it differently. Costs the vectorisation
        across particles (slower, most for cheap log-densities). Resume a stored
        run with the same setting.
    """
    if not isinstance(sampler, Sampler):
        raise TypeError(
            f"sampler must be a stochflow Sampler (e.g. sf.mala(step_size=0.1)), got {type(sampler).__name__}."
        )
    if not isinstance(target, Target):
        raise TypeError(f"target must be a stochflow Target, got {type(target).__name__}.")
    key = check_key(key)
    num_steps = _resolve_num_steps(sampler, num_steps)
    warmup = check_int("warmup", warmup, 0)
    thin = check_int("thin", thin, 1)
    if thin > num_steps:
        raise ValueError(f"thin={thin} is larger than num_steps={num_steps}: no draw would be recorded.")
    if init is not None and num_particles is None:
        num_particles = getattr(init, "shape", (4,))[0]
    num_particles = check_int("num_particles", 4 if num_particles is None else num_particles, 1)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, 1)
    if not isinstance(reproducible, bool):
        raise TypeError(f"reproducible must be True or False, got {reproducible!r}.")
    if store is None and resume:
        raise ValueError("resume=True needs store=path: only a run stored on disk can be resumed.")
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a path (str or os.PathLike), got {type(store).__name__}.")
    mesh = sharding.resolve_mesh(devices)
    if mesh is not None:
        sharding.check_divisible(num_particles, mesh)
    multiprocess = sharding.is_multiprocess(mesh)

    dtype = default_dtype()
    num_draws = num_steps // thin
    bytes_per_draw = num_particles * (target.dim + 8) * np.dtype(dtype).itemsize
    if chunk_size is None:
        chunk_draws = _default_chunk_draws(num_draws, bytes_per_draw)
    else:
        chunk_draws = max(1, min(num_draws, chunk_size // thin))
    metadata = run_metadata(sampler, target, key, num_particles, num_steps, warmup, thin, dtype)
    if store is not None:
        _on_process_zero(multiprocess, lambda: RunStore.check(store, metadata, resume=resume))

    init_key, state_key, warmup_key, sample_key = jax.random.split(key, 4)
    if init is None:
        positions = default_init(target, init_key, num_particles)
    else:
        positions = check_positions(target, jnp.asarray(init, dtype))
        if positions.shape[0] != num_particles:
            raise ValueError(
                f"init has {positions.shape[0]} particles but num_particles={num_particles}."
            )
    start_logdensity = _check_start(target, positions)
    state = _strongly_typed(sampler.init(target, positions, state_key))
    if store is None:
        sink = _MemorySink(metadata, target.constrain)
    else:
        opened = _on_process_zero(multiprocess, lambda: RunStore.open(
            store, metadata, resume=resume, chunk_draws=chunk_draws, start_positions=positions,
            start_logdensity=start_logdensity, constrain=target.constrain))
        sink = _FollowerSink(store) if opened is None else opened
    try:
        if store is not None:
            state = sink.restore_state(state)
            sink.prepare()
        done = sink.progress
        if multiprocess and resume:
            state, done = _from_process_zero(state, done)
        if mesh is not None:
            state = sharding.shard_tree(state, mesh, num_particles)
            warmup_key, sample_key = sharding.shard_tree((warmup_key, sample_key), mesh, num_particles)
        layout = _Layout(mesh, num_particles, multiprocess, sampler.shard_local, reproducible)
        bar = tqdm(total=warmup + num_draws * thin, initial=done.warmup_done + done.draws_done * thin,
                   disable=not progress or jax.process_index() != 0, desc=sampler.name, unit="step")
        bar.set_postfix(divergent=done.num_divergent, warmup_divergent=done.num_divergent_warmup, refresh=False)
        try:
            state, done = _run_warmup(sampler, target, state, warmup_key, warmup, chunk_size, bar, sink, done,
                                      layout)
            done = _run_sampling(sampler, target, state, sample_key, thin, chunk_draws, num_draws, bar, sink,
                                 done, layout)
        finally:
            bar.close()
    except BaseException:
        sink.close()
        raise

    if done.num_divergent or done.num_divergent_warmup:
        warnings.warn(
            f"{sampler.name}: {done.num_divergent} of {num_particles * num_draws * thin} sampling steps "
            f"and {done.num_divergent_warmup} of {num_particles * warmup} warmup steps diverged (a non-finite "
            "log-density, gradient or position); those steps were undone or rejected. "
            "See trace.stats['diverging']; a smaller step size usually helps.",
            RuntimeWarning,
            stacklevel=2,
        )
    if store is None:
        return sink.finish(done)
    trace = sink.finish(constrain=target.constrain)
    if multiprocess and jax.process_index() == 0:
        _barrier("stochflow-store-finished")  # the followers load the store after this
    return trace


class _Layout(NamedTuple):
    """Where the particles live: one device (``mesh=None``) or split over a mesh."""

    mesh: Optional[jax.sharding.Mesh]
    num_particles: int
    multiprocess: bool
    shard_local: bool
    one_at_a_time: bool

    @property
    def phase_args(self) -> tuple:
        """The extra ``_make_phase`` arguments (layout and ``reproducible``)."""
        return (self.mesh, self.num_particles, self.shard_local, self.one_at_a_time)

    def repin(self, state: Any) -> Any:
        """``state`` with the particle layout the chunk programs take (after an eager ``end_warmup``)."""
        return state if self.mesh is None else _pinning(self.mesh, self.num_particles)(state)

    def commit(self, sink: Any, done: Progress, state: Any) -> None:
        """Commit to ``sink``; a store gets the state gathered onto the host (a collective
        across processes, so every process takes part even if it does not write)."""
        if isinstance(sink, _MemorySink):
            return
        sink.commit(done, sharding.tree_to_host(state) if self.multiprocess else state)


@functools.lru_cache(maxsize=16)
def _pinning(mesh: jax.sharding.Mesh, num_particles: int) -> Callable:
    return jax.jit(lambda state: sharding.constrain_tree(state, mesh, num_particles))


def _barrier(name: str) -> None:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def _on_process_zero(multiprocess: bool, action: Callable[[], Any]) -> Any:
    """Run ``action`` on process 0 only (its result there, ``None`` elsewhere); if it
    raises, every process raises, so none waits forever in a later collective."""
    if not multiprocess:
        return action()
    from jax.experimental import multihost_utils

    result, error = None, None
    if jax.process_index() == 0:
        try:
            result = action()
        except Exception as exc:  # re-raised below, after the others have heard of it
            error = exc
    failed = int(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if error is not None:
        raise error
    if failed:
        raise RuntimeError("process 0 refused this run's store (its error says why); every process stops.")
    return result


def _from_process_zero(state: Any, done: Progress) -> tuple[Any, Progress]:
    """Process 0's ``state`` and ``done`` (a resumed store's) on every process, bit for bit:
    each leaf travels as raw 32-bit words (a sum with zeros, exact), keys as their data."""
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree_util.tree_flatten(state)
    is_key = [jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) for leaf in leaves]
    arrays = [np.asarray(jax.random.key_data(leaf) if key else leaf) for leaf, key in zip(leaves, is_key)]
    arrays.append(np.asarray(done, dtype=np.int64))

    def words(array: np.ndarray) -> np.ndarray:
        raw = np.ascontiguousarray(array).tobytes()
        return np.frombuffer(raw + b"\0" * (-len(raw) % 4), dtype=np.uint32)

    received = multihost_utils.broadcast_one_to_all([words(a) for a in arrays])
    rebuilt = [np.frombuffer(np.asarray(w).tobytes()[: a.nbytes], a.dtype).reshape(a.shape)
               for w, a in zip(received, arrays)]
    done = Progress(*(int(v) for v in rebuilt.pop()))
    leaves = [jax.random.wrap_key_data(a, impl=jax.random.key_impl(leaf)) if key else jnp.asarray(a)
              for a, leaf, key in zip(rebuilt, leaves, is_key)]
    return jax.tree_util.tree_unflatten(treedef, leaves), done


def _run_warmup(sampler, target, state, key, warmup, chunk_size, bar, sink, done: Progress,
                layout: "_Layout") -> tuple[Any, Progress]:
    """Run the warmup steps not yet done and end the warmup.

    A commit follows every warmup chunk but the last; after the last,
    ``end_warmup`` runs first, so a committed state with the warmup complete is
    always the state the sampling phase starts from."""
    if done.warmup_done >= warmup:
        return state, done
    step_fn = sampler.warmup_step or sampler.step
    chunk = min(warmup, chunk_size or max(1, math.ceil(warmup / _DEFAULT_CHUNKS)))
    run_chunk = _make_phase(step_fn, target, 1, chunk, False, *layout.phase_args)
    for first in range(done.warmup_done, warmup, chunk):
        num_valid = min(chunk, warmup - first)
        state, counts, _ = run_chunk(state, key, first, num_valid)
        counts = sharding.to_host(counts).astype(np.int64)
        done = done._replace(
            warmup_done=first + num_valid,
            num_divergent_warmup=done.num_divergent_warmup + int(counts[0].sum()),
            n_grad_warmup=done.n_grad_warmup + int(counts[1].sum()),
        )
        if done.warmup_done < warmup:
            layout.commit(sink, done, state)
        bar.update(num_valid)
        bar.set_postfix(warmup_divergent=done.num_divergent_warmup, refresh=False)
    if sampler.end_warmup is not None:
        state = layout.repin(sampler.end_warmup(state))
    layout.commit(sink, done, state)
    return state, done


def _run_sampling(sampler, target, state, key, thin, chunk_draws, num_draws, bar, sink, done: Progress,
                  layout: "_Layout") -> Progress:
    """Run the draws not yet done, chunk by chunk: each chunk goes to the sink, then a commit."""
    run_chunk = _make_phase(sampler.step, target, thin, chunk_draws, True, *layout.phase_args)
    host = sharding.to_host
    for first in range(done.draws_done, num_draws, chunk_draws):
        num_valid = min(chunk_draws, num_draws - first)
        state, counts, (draws, stats) = run_chunk(state, key, first, num_valid)
        sink.append(
            np.swapaxes(host(draws)[:num_valid], 0, 1),
            {name: np.swapaxes(host(values)[:num_valid], 0, 1) for name, values in stats.items()},
            first,
        )
        divergent = int(host(counts)[0].astype(np.int64).sum())
        done = done._replace(draws_done=first + num_valid, num_divergent=done.num_divergent + divergent)
        layout.commit(sink, done, state)
        bar.update(num_valid * thin)
        bar.set_postfix(divergent=done.num_divergent, refresh=False)
    return done
