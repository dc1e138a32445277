"""The plan of a run: every argument of ``sample`` checked and resolved into a
:class:`RunPlan` before anything compiles.

:func:`plan_run` refuses bad input with a ``TypeError``/``ValueError`` naming
the argument (wrong types, counts, a ``thin`` above ``num_steps``, particles
that do not split over the devices, a target the sampler cannot use), refuses
a store that cannot be written or resumed (touching nothing), and settles what
the driver then only executes: the chunk sizes, the starting positions and the
log-density there (a start outside the support is refused here), the run's
metadata and its keys.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.checks import check_bool, check_int, check_key, check_positions
from ..kernels.finite import finite_rows
from ..samplers.base import Sampler
from ..store import RunStore
from ..target import Target, default_dtype
from ..trace import run_metadata
from .distributed import is_multiprocess, on_process_zero
from .sharding import Devices, check_divisible, resolve_mesh

Array = jax.Array
PathLike = Union[str, os.PathLike]

__all__ = ["RunKeys", "RunPlan", "plan_run", "default_init"]

# Upper bound on the bytes one chunk's recorded draws may take on the host.
CHUNK_BYTES = 64 * 2**20
# Number of chunks a phase is cut into by default, so the progress bar moves.
DEFAULT_CHUNKS = 20
MAX_INIT_TRIES = 100  # redraws of default starts where the density or its gradient is not finite
NUM_PROBES = 4  # particles whose gradient, and points near whose start, identify the target to a resume


class RunKeys(NamedTuple):
    """The run's key split four ways: starting positions, sampler state, warmup, sampling."""

    init: Array
    state: Array
    warmup: Array
    sample: Array


class RunPlan(NamedTuple):
    """A checked ``sample`` call: what to run, where, and where the draws go."""

    sampler: Sampler
    target: Target
    key: Array
    keys: RunKeys
    num_particles: int
    num_steps: int  # steps after warmup
    warmup: int
    thin: int
    num_draws: int  # num_steps // thin, per particle
    chunk_draws: int  # draws per sampling chunk
    warmup_chunk: int  # steps per warmup chunk (0 without warmup)
    positions: Array  # starting positions (num_particles, dim)
    start_logdensity: np.ndarray  # the log-density there, finite
    probes: dict[str, np.ndarray]  # values that identify the target to a resume (_probe_values)
    density_digest: str  # what the log-density computes now (density_digest): a key of the program caches
    metadata: dict
    store: Optional[PathLike]
    resume: bool
    mesh: Optional[jax.sharding.Mesh]  # None: one device
    multiprocess: bool  # the mesh spans several processes
    reproducible: bool
    progress: bool


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


def density_digest(target: Target) -> str:
    """A digest of what ``target.logdensity`` computes now: its jaxpr (traced abstractly, nothing
    compiled; a few ms) and the arrays it closes over.

    The compiled programs of a run are cached on the target and this digest, so a log-density
    that reads a global (or a NumPy array mutated in place) gets fresh programs once the value
    it reads changes, and one run never mixes programs compiled before and after the change.
    A JAX array is immutable and is known by its identity; a log-density that is itself
    ``jax.jit``-decorated is traced once by JAX and keeps the values it saw then."""
    # A fresh wrapper each call: make_jaxpr caches its trace on the function it is given.
    closed = jax.make_jaxpr(lambda x: target.logdensity(x))(jax.ShapeDtypeStruct((target.dim,), default_dtype()))
    digest = hashlib.blake2b(str(closed.jaxpr).encode(), digest_size=16)
    for const in closed.consts:
        if isinstance(const, jax.Array):  # immutable: its identity names its value (no copy to the host)
            digest.update(f"{id(const)}:{const.shape}:{const.dtype}".encode())
        else:  # a NumPy array can be changed in place: its bytes
            digest.update(np.asarray(const).tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _batched_start_values(target: Target, digest: str) -> Callable[[Array], tuple[Array, Array, Array]]:
    """``target``'s log-density over a batch of positions, whether its gradient is finite
    there, and the gradient at the first :data:`NUM_PROBES` (only those leave the device),
    compiled once per target and :func:`density_digest` (cached by identity, as the driver's chunk programs are),
    so another run on it compiles nothing."""
    # Compiled, not eager: eagerly, every primitive of the density is compiled on its own the
    # first time it is seen (a NumPyro model with three constrained sites: 6.6 s eager, against
    # one program of well under a second; a 100-d Gaussian pays 16 ms instead of 0.6 ms).
    def values(positions: Array) -> tuple[Array, Array, Array]:
        value, grad = jax.vmap(jax.value_and_grad(target.logdensity))(positions)
        return value, finite_rows(grad), grad[:NUM_PROBES]

    return jax.jit(values)


def _probe_values(target: Target, digest: str, key: Array, positions: Array,
                  start_grad: np.ndarray) -> dict[str, np.ndarray]:
    """What identifies the target to a resume beyond the log-density at the starts: the
    gradient at the first :data:`NUM_PROBES` starts, and the log-density and gradient at
    points drawn from ``key`` near them (one more call of the start check's program: same
    shapes, nothing compiled)."""
    near = positions + jax.random.normal(key, positions.shape, positions.dtype)
    value, _, grad = _batched_start_values(target, digest)(near)
    return {"start_grad": start_grad, "probe_logdensity": np.asarray(value[:NUM_PROBES]),
            "probe_grad": np.asarray(grad)}


def _check_start(target: Target, digest: str, positions: Array) -> tuple[np.ndarray, np.ndarray]:
    """The log-density at the starting positions; refuses starts outside the target and
    starts where the log-density or its gradient is not finite (every step from there
    would diverge and the chain would never move)."""
    logdensity, grad_finite, grad = (np.asarray(values) for values in _batched_start_values(target, digest)(positions))
    for what, finite in (("log-density", np.isfinite(logdensity)), ("gradient of the log-density", grad_finite)):
        bad = np.flatnonzero(~finite)
        if bad.size:
            raise ValueError(
                f"the {what} is not finite at {bad.size} starting position(s) "
                f"(particles {bad[:10].tolist()}{'...' if bad.size > 10 else ''}); "
                "start where the density is finite and differentiable, e.g. pass init= explicitly "
                f"(default starts are drawn {MAX_INIT_TRIES} times before they are refused)."
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
    return logdensity, grad


def _chunk_draws(num_draws: int, thin: int, bytes_per_draw: int, chunk_size: Optional[int]) -> int:
    """Draws per sampling chunk: ``chunk_size // thin``, or by default about 1/20 of the
    run, capped so a chunk's draws take at most :data:`CHUNK_BYTES` on the host."""
    if chunk_size is not None:
        return max(1, min(num_draws, chunk_size // thin))
    by_memory = max(1, CHUNK_BYTES // max(bytes_per_draw, 1))
    by_progress = max(1, math.ceil(num_draws / DEFAULT_CHUNKS))
    return max(1, min(num_draws, by_memory, by_progress))


def _good_starts(target: Target, digest: str, positions: Array) -> np.ndarray:
    """Per position: log-density and gradient finite, and inside the support if it has one."""
    value, grad_finite, _ = _batched_start_values(target, digest)(positions)
    good = np.isfinite(np.asarray(value)) & np.asarray(grad_finite)
    if target.support is not None:
        good &= np.asarray(jax.vmap(target.support)(positions))
    return good


def _redraw_bad_starts(target: Target, digest: str, key: Array, positions: Array) -> Array:
    """Default starts where the log-density or its gradient is not finite are drawn again (as
    NumPyro's ``init_to_uniform`` does), each try with its own key, at most
    :data:`MAX_INIT_TRIES` times; the rows that were fine are kept, so a target fine
    everywhere gets the first draw. Starts still bad after that are refused by the start check."""
    bad = ~_good_starts(target, digest, positions)
    for attempt in range(1, MAX_INIT_TRIES + 1):
        if not bad.any():
            break
        fresh = default_init(target, jax.random.fold_in(key, attempt), positions.shape[0])
        positions = jnp.where(jnp.asarray(bad)[:, None], fresh, positions)
        bad = ~_good_starts(target, digest, positions)
    return positions


def _as_array(name: str, value: Any) -> Any:
    """``value`` itself if it is an array, else as a NumPy array (a nested list of numbers)."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return value
    try:
        return np.asarray(value)
    except ValueError:
        raise ValueError(f"{name} must be an array of shape (n_particles, dim); got a ragged sequence "
                         "(rows of different lengths).") from None


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or ``None`` where
    it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gigabytes(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.3g} GB"


def _check_memory(sampler: Sampler, target: Target, num_particles: int, num_draws: int, chunk_draws: int,
                  bytes_per_draw: int, in_memory: bool) -> None:
    """Refuse a run whose state and draws cannot fit in memory, before anything is allocated.

    The estimate: the sampler's state (its shape worked out without allocating it, by
    ``jax.eval_shape`` of ``init``) three times over (the state, a step's proposal and its
    temporaries), one chunk of recorded draws twice (on the device and its host copy), and,
    for a run kept in memory, every draw of the trace; against the host's available memory.
    The state counts only on CPU devices (an accelerator's memory is its own) and by this
    process's share of a multi-process run."""
    trace_bytes = num_draws * bytes_per_draw if in_memory else 0
    available = available_memory()
    # A bound that holds for every sampler here (a state of at most 16 + dim position-sized
    # arrays: a dense mass is dim of them), so the exact estimate, which traces ``init``, is
    # only worked out near the limit.
    position_bytes = num_particles * target.dim * np.dtype(default_dtype()).itemsize
    if available is None or 3 * (16 + target.dim) * position_bytes + 2 * chunk_draws * bytes_per_draw \
            + trace_bytes < available / 2:
        return
    positions = jax.ShapeDtypeStruct((num_particles, target.dim), default_dtype())
    state_shape = jax.eval_shape(lambda p, k: sampler.init(target, p, k), positions, jax.random.key(0))
    state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(state_shape)
                      if hasattr(leaf, "size") and not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key))
    on_host = jax.default_backend() == "cpu"
    state_bytes = state_bytes // jax.process_count() if on_host else 0
    needed = 3 * state_bytes + 2 * chunk_draws * bytes_per_draw + trace_bytes
    if needed > available:
        raise MemoryError(
            f"this run needs about {_gigabytes(needed)} of memory (the sampler state of {num_particles:,} "
            f"particles: {_gigabytes(state_bytes)}; the recorded draws: {_gigabytes(trace_bytes)}) but "
            f"{_gigabytes(available)} are available. Use fewer particles or steps, record fewer draws "
            "with thin=, or stream the draws to disk with store=path."
        )


def _given_starts(target: Target, init: Any, num_particles: int) -> Array:
    """A given ``init``, checked (shape, real numbers, one row per particle) before anything is traced."""
    positions = check_positions(target, init, "init").astype(default_dtype())
    if positions.shape[0] != num_particles:
        raise ValueError(f"init has {positions.shape[0]} particles (rows) but num_particles={num_particles}; "
                         "leave num_particles out to run one particle per row of init.")
    return positions


def plan_run(
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
    store: Optional[PathLike] = None,
    resume: bool = False,
    devices: Devices = None,
    reproducible: bool = False,
) -> RunPlan:
    """Check the arguments of :func:`~stochflow.run.sample` (same names, same meaning)
    and resolve them into a :class:`RunPlan`; raises before anything compiles."""
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
    if init is not None:
        init = _as_array("init", init)
        if num_particles is None and init.ndim >= 1:
            num_particles = init.shape[0]
    num_particles = check_int("num_particles", 4 if num_particles is None else num_particles, 1)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, 1)
    progress = check_bool("progress", progress)
    reproducible = check_bool("reproducible", reproducible)
    resume = check_bool("resume", resume)
    if store is None and resume:
        raise ValueError("resume=True needs store=path: only a run stored on disk can be resumed.")
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a path (str or os.PathLike), got {type(store).__name__}.")
    mesh = resolve_mesh(devices)
    if mesh is not None:
        check_divisible(num_particles, mesh)
    multiprocess = is_multiprocess(mesh)
    sampler.check_target(target)

    dtype = default_dtype()
    num_draws = num_steps // thin
    bytes_per_draw = num_particles * (target.dim + 8) * np.dtype(dtype).itemsize
    metadata = run_metadata(sampler, target, key, num_particles, num_steps, warmup, thin, dtype)
    if store is not None:
        on_process_zero(multiprocess, lambda: RunStore.check(store, metadata, resume=resume))

    chunk_draws = _chunk_draws(num_draws, thin, bytes_per_draw, chunk_size)
    _check_memory(sampler, target, num_particles, num_draws, chunk_draws, bytes_per_draw, in_memory=store is None)
    keys = RunKeys(*jax.random.split(key, 4))
    given = None if init is None else _given_starts(target, init, num_particles)
    digest = density_digest(target)
    positions = given if given is not None else _redraw_bad_starts(
        target, digest, keys.init, default_init(target, keys.init, num_particles))
    start_logdensity, start_grad = _check_start(target, digest, positions)
    probes = _probe_values(target, digest, jax.random.fold_in(keys.init, MAX_INIT_TRIES + 1), positions,
                           start_grad) if store is not None else {}
    return RunPlan(
        sampler=sampler, target=target, key=key, keys=keys, num_particles=num_particles,
        num_steps=num_steps, warmup=warmup, thin=thin, num_draws=num_draws,
        chunk_draws=chunk_draws,
        warmup_chunk=min(warmup, chunk_size or max(1, math.ceil(warmup / DEFAULT_CHUNKS))),
        positions=positions, start_logdensity=start_logdensity, probes=probes, density_digest=digest, metadata=metadata,
        store=store, resume=resume, mesh=mesh, multiprocess=multiprocess, reproducible=reproducible,
        progress=progress,
    )
