"""Several processes (``jax.distributed.initialize``) running one ``sample`` call.

Every process makes the same call and runs the same driver. What differs is
only who touches the disk: process 0 alone checks, writes and commits a
store (:func:`on_process_zero`), and the others take part in the collectives
(:func:`to_host`, :func:`tree_to_host`: a sharded array gathered onto every
process), receive a resumed store's state from process 0
(:func:`from_process_zero`) and wait for it at a :func:`barrier`. Every
function here is a collective when the run spans processes: all processes
call it, in the same order.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from ..store import Progress

__all__ = ["is_key", "is_multiprocess", "to_host", "tree_to_host", "barrier", "on_process_zero",
           "from_process_zero"]


def is_key(leaf: Any) -> bool:
    """Whether ``leaf`` is an array of typed PRNG keys (it travels as its key data)."""
    return jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def is_multiprocess(mesh: Optional[Mesh]) -> bool:
    """Whether ``mesh`` holds devices of other processes (arrays on it are not all addressable here)."""
    return mesh is not None and any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def to_host(array: Any) -> np.ndarray:
    """A (possibly sharded) array as one NumPy array, on every process.

    With devices of other processes in the array this is a collective: every
    process must call it, in the same order."""
    if getattr(array, "is_fully_addressable", True):
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def tree_to_host(tree: Any) -> Any:
    """Every leaf of ``tree`` on the host; PRNG keys stay keys (rebuilt from their gathered data)."""

    def gather(leaf: Any) -> Any:
        if is_key(leaf):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(to_host(jax.random.key_data(leaf)), impl=impl)
        return to_host(leaf)

    return jax.tree_util.tree_map(gather, tree)


def barrier(name: str) -> None:
    """Wait until every process has reached the barrier ``name``."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def on_process_zero(multiprocess: bool, action: Callable[[], Any]) -> Any:
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


def from_process_zero(state: Any, done: Progress) -> tuple[Any, Progress]:
    """Process 0's ``state`` and ``done`` (a resumed store's) on every process, bit for bit:
    each leaf travels as raw 32-bit words (a sum with zeros, exact), keys as their data."""
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree_util.tree_flatten(state)
    keys = [is_key(leaf) for leaf in leaves]
    arrays = [np.asarray(jax.random.key_data(leaf) if key else leaf) for leaf, key in zip(leaves, keys)]
    arrays.append(np.asarray(done, dtype=np.int64))

    def words(array: np.ndarray) -> np.ndarray:
        raw = np.ascontiguousarray(array).tobytes()
        return np.frombuffer(raw + b"\0" * (-len(raw) % 4), dtype=np.uint32)

    received = multihost_utils.broadcast_one_to_all([words(a) for a in arrays])
    rebuilt = [np.frombuffer(np.asarray(w).tobytes()[: a.nbytes], a.dtype).reshape(a.shape)
               for w, a in zip(received, arrays)]
    done = Progress(*(int(v) for v in rebuilt.pop()))
    leaves = [jax.random.wrap_key_data(a, impl=jax.random.key_impl(leaf)) if key else jnp.asarray(a)
              for a, leaf, key in zip(rebuilt, leaves, keys)]
    return jax.tree_util.tree_unflatten(treedef, leaves), done
