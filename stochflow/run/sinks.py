"""Where a run's draws go: one :class:`Sink` protocol, three sinks.

* :class:`MemorySink` (no ``store``): the draws stay in host memory.
* :class:`StoreSink` (``store=path``): a :class:`~stochflow.store.RunStore`
  on disk, written and committed chunk by chunk, resumable.
* :class:`FollowerSink`: a process other than 0 of a multi-process run with a
  store. Process 0 writes; this one joins the collectives and opens the store
  at the end.

The driver calls, in this order: ``progress`` and ``restore_state`` (where a
resumed run starts), then per chunk ``append`` (the draws) and ``commit`` (a
point a run may resume from: the progress so far and the sampler state,
after every chunk, warmup chunks included; the last commit holds the run's
final counts), and ``finish`` (the :class:`~stochflow.trace.Trace`); ``close``
releases the sink if the run fails.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable, Optional, Protocol

import jax
import numpy as np

from ..store import Progress, RunStore
from ..trace import Trace, load
from .distributed import barrier, on_process_zero, tree_to_host
from .plan import RunPlan

__all__ = ["Sink", "MemorySink", "StoreSink", "FollowerSink", "open_sink"]

_STORE_FINISHED = "stochflow-store-finished"  # barrier: process 0 has finished writing the store


class Sink(Protocol):
    """What the driver writes a run into."""

    @property
    def progress(self) -> Progress:
        """The committed progress the run starts from (zeros for a fresh run)."""

    def restore_state(self, fresh_state: Any) -> Any:
        """The committed sampler state, or ``fresh_state`` (``sampler.init``'s) if none."""

    def append(self, positions: np.ndarray, stats: dict[str, np.ndarray], first_draw: int) -> None:
        """Draws ``first_draw ...``: positions ``(particles, n, dim)``, stats ``(particles, n)``."""

    def commit(self, progress: Progress, state: Any) -> None:
        """Everything appended so far, ``progress`` and ``state``: a point to resume from.
        ``state`` may be sharded over processes (a sink that keeps it gathers it)."""

    def finish(self) -> Trace:
        """The run's trace, with the counts of the last commit."""

    def close(self) -> None:
        """Release what the sink holds (a store's lock); the run failed."""


def _stored_trace(path: os.PathLike, constrain: Optional[Callable]) -> Trace:
    """The trace a finished store holds, backed by the store, with the target's ``constrain``."""
    trace = load(path, lazy=True)
    trace.constrain = constrain
    return trace


class MemorySink:
    """Keeps the draws in host memory, written chunk by chunk into arrays allocated
    for the whole run at the first chunk (no copy at the end, no second copy in memory).
    The arrays are laid out draw-major, as the chunk programs emit them, so writing a
    chunk is one contiguous copy (and a run done in one chunk keeps the chunk's own
    arrays, no copy at all); the trace sees them as read-only ``(particles, draws, ...)``
    views.
    Commits keep only the counts: a run in memory cannot be resumed."""

    def __init__(self, metadata: dict, constrain: Optional[Callable], num_draws: int):
        self._metadata = metadata
        self._constrain = constrain
        self._num_draws = num_draws
        self._positions: Optional[np.ndarray] = None
        self._stats: dict[str, np.ndarray] = {}
        self._committed = Progress()

    @property
    def progress(self) -> Progress:
        return Progress()

    def restore_state(self, fresh_state: Any) -> Any:
        return fresh_state

    def append(self, positions: np.ndarray, stats: dict[str, np.ndarray], first_draw: int) -> None:
        if self._positions is None and positions.shape[1] == self._num_draws:  # one chunk: no copy
            self._positions, self._stats = positions, dict(stats)
            return
        if self._positions is None:
            self._positions = self._whole_run(positions)
            self._stats = {name: self._whole_run(values) for name, values in stats.items()}
        drawn = slice(first_draw, first_draw + positions.shape[1])
        self._positions[:, drawn] = positions
        for name, values in stats.items():
            self._stats[name][:, drawn] = values

    def _whole_run(self, chunk: np.ndarray) -> np.ndarray:
        """An empty ``(particles, every draw of the run, ...)`` array for ``chunk``'s kind,
        a view of draw-major memory."""
        draw_major = np.empty((self._num_draws, chunk.shape[0]) + chunk.shape[2:], chunk.dtype)
        return np.swapaxes(draw_major, 0, 1)

    def commit(self, progress: Progress, state: Any) -> None:
        self._committed = progress

    def finish(self) -> Trace:
        for array in (self._positions, *self._stats.values()):
            if array is not None:  # a record, read-only however it was filled
                array.flags.writeable = False
        return Trace(
            positions=self._positions,
            stats=self._stats,
            metadata=dict(self._metadata, n_grad_warmup=self._committed.n_grad_warmup),
            num_divergent=self._committed.num_divergent,
            num_divergent_warmup=self._committed.num_divergent_warmup,
            constrain=self._constrain,
        )

    def close(self) -> None:
        """Nothing to release."""


class StoreSink:
    """Writes into a :class:`~stochflow.store.RunStore` (on process 0 of a multi-process run)."""

    def __init__(self, store: RunStore, constrain: Optional[Callable], multiprocess: bool):
        self._store = store
        self._constrain = constrain
        self._multiprocess = multiprocess

    @property
    def progress(self) -> Progress:
        return self._store.progress

    def restore_state(self, fresh_state: Any) -> Any:
        return self._store.restore_state(fresh_state)

    def append(self, positions: np.ndarray, stats: dict[str, np.ndarray], first_draw: int) -> None:
        self._store.append(positions, stats, first_draw)

    def commit(self, progress: Progress, state: Any) -> None:
        self._store.commit(progress, tree_to_host(state))

    def finish(self) -> Trace:
        self._store.finish()
        trace = _stored_trace(self._store.path, self._constrain)
        if self._multiprocess:
            barrier(_STORE_FINISHED)  # the followers open the store after this
        return trace

    def close(self) -> None:
        self._store.close()


class FollowerSink:
    """What a process other than 0 of a multi-process run with a store holds: nothing.
    Process 0 writes the store; this process only takes part in the collectives
    (gathers), then opens the finished store, which must be on a shared filesystem."""

    def __init__(self, path: os.PathLike, constrain: Optional[Callable]):
        self._path = path
        self._constrain = constrain

    @property
    def progress(self) -> Progress:
        return Progress()  # process 0's arrives by broadcast

    def restore_state(self, fresh_state: Any) -> Any:
        return fresh_state  # process 0's state arrives by broadcast

    def append(self, positions: np.ndarray, stats: dict[str, np.ndarray], first_draw: int) -> None:
        """Process 0 writes the draws."""

    def commit(self, progress: Progress, state: Any) -> None:
        tree_to_host(state)  # the gather is a collective; process 0 commits what it gathers

    def finish(self) -> Trace:
        barrier(_STORE_FINISHED)
        if not os.path.exists(self._path):
            raise FileNotFoundError(
                f"store={str(self._path)!r} was written by process 0 but is not visible to process "
                f"{jax.process_index()}: give a store path on a filesystem all processes share."
            )
        return _stored_trace(self._path, self._constrain)

    def close(self) -> None:
        """Nothing to release."""


def _open_store(plan: RunPlan) -> RunStore:
    """The plan's store, created or reopened, with a torn chunk of a killed run cut off."""
    store = RunStore.open(plan.store, plan.metadata, resume=plan.resume, chunk_draws=plan.chunk_draws,
                          start_positions=plan.positions, start_logdensity=plan.start_logdensity, probes=plan.probes,
                          constrain=plan.target.constrain)
    try:
        store.prepare()
    except BaseException:
        store.close()
        raise
    return store


def open_sink(plan: RunPlan) -> Sink:
    """The sink the plan's draws go to (on process 0 alone a store is opened)."""
    constrain = plan.target.constrain
    if plan.store is None:
        return MemorySink(plan.metadata, constrain, plan.num_draws)
    opened = on_process_zero(plan.multiprocess, lambda: _open_store(plan))
    if opened is None:
        return FollowerSink(pathlib.Path(plan.store), constrain)
    return StoreSink(opened, constrain, plan.multiprocess)
