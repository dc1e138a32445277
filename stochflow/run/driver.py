"""``sample()``: the driver shared by every sampler, executing a :class:`~stochflow.run.plan.RunPlan`.

The run has two phases. ``warmup`` steps run first (with the sampler's
``warmup_step`` if it adapts) and are not recorded; then ``num_steps`` steps
run, of which every ``thin``-th is recorded, giving
``num_draws = num_steps // thin`` draws per particle.

Work is done in chunks: one jitted ``lax.scan`` runs a chunk of steps, the
host receives the recorded draws, hands them to the sink
(:mod:`stochflow.run.sinks`), moves the progress bar and goes on. Each step's
key is ``fold_in(phase_key, global_step_index)``, so the draws do not depend
on the chunk size: the same key gives the same trace, bit for bit. All chunks
of a phase share one compiled program (the last, shorter chunk skips its
spare iterations with a ``lax.cond`` rather than recompiling), cached on the
identity of the sampler's step: a sampler differing only in a tunable held in
its state reuses it.

A recorded draw carries the info of the step that produced it, except
``n_grad`` (summed over the ``thin`` steps since the previous draw, so the
stats' total is the run's cost) and ``diverging`` (true if any of those steps
diverged). Every diverging step is also counted: ``trace.num_divergent``.

A commit follows every chunk (warmup chunks too), so that a stored run
resumed with ``resume=True`` continues from its last committed chunk; since
each step's key depends only on its global index, the resumed run's draws,
stats and counts are those of an uninterrupted run, bit for bit.

With ``devices=`` the particle axis of the state and of each chunk's draws is
split over a mesh (:mod:`stochflow.run.sharding`) and every chunk runs as one
SPMD program (shard-local under ``shard_map`` for samplers that declare
``shard_local``, partitioned by XLA otherwise); the host gathers each chunk's
draws as before. Under ``jax.distributed`` every process runs the same driver
(:mod:`stochflow.run.distributed`): the gathers are collectives, the draws
reach every process, and with a store process 0 alone writes it.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..diagnostics.checks import DrawSummary, RunChecks, run_checks
from ..kernels.checks import check_bool
from ..kernels.particles import ParticleAxis
from ..samplers.base import Sampler
from ..store import Progress
from ..target import Target
from ..trace import Trace
from . import sharding
from .distributed import from_process_zero, is_key, to_host
from .plan import RunPlan, plan_run
from .progress import ProgressBar
from .sinks import Sink, open_sink

__all__ = ["sample"]


def sample(
    sampler: Sampler,
    target: Target,
    key: jax.Array,
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
    checks: bool = True,
) -> Trace:
    """Run ``sampler`` on ``target`` and return the recorded :class:`~stochflow.Trace`.

    Every argument is checked (:func:`~stochflow.run.plan.plan_run`) before
    anything compiles.

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
        same key: to float32 rounding by default (XLA may round a vectorised
        program differently at another batch size, depending on the jax version
        and the CPU); bit for bit for the chain methods and SVGD with
        ``reproducible=True``. Under ``jax.distributed`` (several
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
    checks
        Warn once at the end if the run cannot be trusted as it is: R-hat above
        1.01 or bulk ESS below 100 across chains, acceptance far from its target,
        diverging steps, chains that stopped moving, an adaptive sampler run with
        ``warmup=0`` (:mod:`stochflow.diagnostics.checks`). The facts are in
        ``trace.checks`` either way; ``False`` only silences the warning.
    """
    checks = check_bool("checks", checks)
    plan = plan_run(sampler, target, key, num_particles, num_steps, warmup=warmup, thin=thin, init=init,
                    progress=progress, chunk_size=chunk_size, store=store, resume=resume, devices=devices,
                    reproducible=reproducible)
    state = sampler.init(target, plan.positions, plan.keys.state)
    if plan.warmup and sampler.warmup_step is not None and sampler.start_warmup is not None:
        state = sampler.start_warmup(state, plan.warmup)
    state = _strongly_typed(state)
    sink = open_sink(plan)
    try:
        state = sink.restore_state(state)
        done = sink.progress
        if plan.multiprocess and plan.resume:
            state, done = from_process_zero(state, done)
        warmup_key, sample_key = plan.keys.warmup, plan.keys.sample
        if plan.mesh is not None:
            state = sharding.shard_tree(state, plan.mesh, plan.num_particles)
            warmup_key, sample_key = sharding.shard_tree((warmup_key, sample_key), plan.mesh, plan.num_particles)
        resumed_from = done.draws_done
        summary = DrawSummary((plan.num_particles, plan.num_draws, target.dim), np.dtype(state.position.dtype)) \
            if sampler.chains else None
        with ProgressBar(plan, done) as bar:
            state, done = _run_warmup(plan, state, warmup_key, sink, bar, done)
            adapted = _adapted_values(state) if plan.warmup and sampler.warmup_step is not None else {}
            done = _run_sampling(plan, state, sample_key, sink, bar, done, summary)
    except BaseException:
        sink.close()
        raise

    trace = sink.finish()
    trace.adapted = adapted
    if summary is not None and resumed_from:  # the draws of the run's earlier part are on disk
        summary.add_stored(trace.positions, stop=resumed_from)
    trace.checks = _end_of_run_checks(plan, trace, done, summary)
    if checks and trace.checks.problems():
        warnings.warn(f"{sampler.name}: this run cannot be trusted as it is: {'; '.join(trace.checks.problems())}. "
                      "The facts are in trace.checks.", RuntimeWarning, stacklevel=2)
    return trace


def _adapted_values(state: Any) -> dict[str, np.ndarray]:
    """The tunables warmup adapts, as the state holds them (``step_size``, ``inverse_mass``)."""
    return {name: to_host(getattr(state, name)) for name in ("step_size", "inverse_mass") if hasattr(state, name)}


def _end_of_run_checks(plan: RunPlan, trace: Trace, done: Progress, summary: Optional[DrawSummary]) -> RunChecks:
    sampler = plan.sampler
    return run_checks(trace.positions, trace.stats, chains=sampler.chains, adaptive=sampler.warmup_step is not None,
                      warmup=plan.warmup, thin=plan.thin, target_accept=sampler.params.get("target_accept"),
                      num_divergent=done.num_divergent, num_divergent_warmup=done.num_divergent_warmup,
                      divergence_kind=sampler.divergence, summary=summary)


def _strongly_typed(state: Any) -> Any:
    """``state`` with no weakly typed leaves, the form a state restored from disk has:
    a fresh and a resumed run then run the same compiled program (a weak type in
    the input signature would compile a second one, and could change promotion)."""

    def strong(leaf: Any) -> Any:
        return leaf if is_key(leaf) else jnp.asarray(leaf, dtype=leaf.dtype)

    return jax.tree_util.tree_map(strong, state)


def _draw_stats(step_info: Any, n_grad: jax.Array, diverging: jax.Array) -> dict[str, jax.Array]:
    stats = dict(step_info._asdict())
    stats["n_grad"] = n_grad
    stats["diverging"] = diverging
    return stats


@functools.lru_cache(maxsize=64)
def _make_phase(
    step_fn: Callable,
    target: Target,
    density_digest: str,
    thin: int,
    chunk_draws: int,
    record: bool,
    mesh: Optional[jax.sharding.Mesh] = None,
    num_particles: int = 0,
    shard_local: bool = False,
    one_at_a_time: bool = False,
) -> Callable:
    """A jitted function running up to ``chunk_draws`` draws of ``thin`` steps each.

    Cached on its arguments (the step function and the target by identity, and
    the target's :func:`~stochflow.run.plan.density_digest`), so repeated
    ``sample`` calls with the same sampler and target reuse the compiled
    program while what the log-density reads is unchanged. With a ``mesh``, the state's particle axis stays split
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


def _phase(plan: RunPlan, step_fn: Callable, thin: int, chunk_draws: int, record: bool) -> Callable:
    """The plan's compiled chunk program for ``step_fn`` (:func:`_make_phase`)."""
    return _make_phase(step_fn, plan.target, plan.density_digest, thin, chunk_draws, record, plan.mesh, plan.num_particles,
                       plan.sampler.shard_local, plan.reproducible)


def _run_warmup(plan: RunPlan, state: Any, key: jax.Array, sink: Sink, bar: ProgressBar,
                done: Progress) -> tuple[Any, Progress]:
    """Run the warmup steps not yet done and end the warmup.

    A commit follows every warmup chunk but the last; after the last,
    ``end_warmup`` runs first, so a committed state with the warmup complete is
    always the state the sampling phase starts from."""
    if done.warmup_done >= plan.warmup:
        return state, done
    sampler, chunk = plan.sampler, plan.warmup_chunk
    run_chunk = _phase(plan, sampler.warmup_step or sampler.step, 1, chunk, False)
    for first in range(done.warmup_done, plan.warmup, chunk):
        num_valid = min(chunk, plan.warmup - first)
        state, counts, _ = run_chunk(state, key, first, num_valid)
        counts = to_host(counts).astype(np.int64)
        done = done._replace(
            warmup_done=first + num_valid,
            num_divergent_warmup=done.num_divergent_warmup + int(counts[0].sum()),
            n_grad_warmup=done.n_grad_warmup + int(counts[1].sum()),
        )
        if done.warmup_done < plan.warmup:
            sink.commit(done, state)
        bar.update(done)
    if sampler.end_warmup is not None:
        state = sampler.end_warmup(state)
        if plan.mesh is not None:  # back to the layout the chunk programs take
            state = sharding.pinning(plan.mesh, plan.num_particles)(state)
    sink.commit(done, state)
    return state, done


def _run_sampling(plan: RunPlan, state: Any, key: jax.Array, sink: Sink, bar: ProgressBar,
                  done: Progress, summary: Optional[DrawSummary]) -> Progress:
    """Run the draws not yet done, chunk by chunk: each chunk goes to the sink (and to the
    checks' ``summary``), then a commit.

    The next chunk is dispatched before the last one's draws are copied to the host and
    handed to the sink (JAX runs it asynchronously), so the device does not wait for the
    host; each commit holds the state right after the draws it commits."""
    chunk = plan.chunk_draws
    run_chunk = _phase(plan, plan.sampler.step, plan.thin, chunk, True)

    def record(done: Progress, first: int, num_valid: int, result: tuple) -> Progress:
        state, counts, (draws, stats) = result
        positions = np.swapaxes(to_host(draws)[:num_valid], 0, 1)
        sink.append(positions, {name: np.swapaxes(to_host(values)[:num_valid], 0, 1)
                                for name, values in stats.items()}, first)
        if summary is not None:
            summary.add(first, positions)
        divergent = int(to_host(counts)[0].astype(np.int64).sum())
        done = done._replace(draws_done=first + num_valid, num_divergent=done.num_divergent + divergent)
        sink.commit(done, state)
        bar.update(done)
        return done

    pending = None
    for first in range(done.draws_done, plan.num_draws, chunk):
        num_valid = min(chunk, plan.num_draws - first)
        result = run_chunk(state, key, first, num_valid)
        if pending is not None:
            done = record(done, *pending)
        state, pending = result[0], (first, num_valid, result)
    if pending is not None:
        done = record(done, *pending)
    return done
