"""Trace: the draws of a run, their per-step statistics, and where they came from;
``load`` reads one back from a file.

Layout follows ArviZ: particles are chains, so ``positions`` has shape
``(num_particles, num_draws, dim)`` and each ``stats[name]`` has shape
``(num_particles, num_draws)``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from . import store
from ._version import __version__

__all__ = ["Trace", "load", "run_metadata"]


def run_metadata(sampler, target, key, num_particles, num_steps, warmup, thin, dtype=None) -> dict[str, Any]:
    """What a trace records of its run: enough to tell two runs apart and to redo one.

    The values are plain JSON (tuples and arrays among the hyperparameters
    become lists), so the metadata reads back from a file exactly as it was."""
    key_data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    metadata = {
        "sampler": sampler.name,
        "sampler_params": dict(sampler.params),
        "target": target.name,
        "dim": target.dim,
        "dtype": np.dtype(jnp.zeros(()).dtype if dtype is None else dtype).name,
        "num_particles": int(num_particles),
        "num_steps": int(num_steps),
        "warmup": int(warmup),
        "thin": int(thin),
        "key": np.asarray(key_data).tolist(),
        "stochflow_version": __version__,
        "jax_version": jax.__version__,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return json.loads(json.dumps(metadata, default=lambda value: np.asarray(value).tolist()))


@dataclasses.dataclass
class Trace:
    """The recorded output of :func:`stochflow.sample`.

    Attributes
    ----------
    positions
        ``(num_particles, num_draws, dim)`` array of draws.
    stats
        Dict of ``(num_particles, num_draws)`` arrays: ``logdensity``,
        ``n_grad`` (gradient evaluations since the previous draw), ``diverging``
        and whatever else the method reports (``accept_prob``, ``step_size``...).
    metadata
        Sampler name and hyperparameters, target name, run settings, key, versions.
    num_divergent, num_divergent_warmup
        Number of diverging steps (all particles) after and during warmup.
    constrain
        The target's map from positions to named constrained variables, if it
        has one (NumPyro models); ``to_arviz`` then exports those variables.
    constrained
        The named constrained draws themselves, ``(num_particles, num_draws,
        *shape)`` each: what a trace loaded from a file has instead of
        ``constrain`` (a function is not stored).
    checks
        What ``sample`` found at the end of the run
        (:class:`~stochflow.diagnostics.checks.RunChecks`: R-hat, ESS, acceptance,
        divergences, frozen chains); ``None`` for a trace read from a file
        (``sf.diagnostics.checks.run_checks`` computes them).
    adapted
        What warmup adapted, per particle, as ``sample`` ended it: ``step_size``
        ``(num_particles,)`` and, for methods with a mass, ``inverse_mass``
        ``(num_particles, dim)``; empty without warmup or for a trace read from a file
        (a stored run keeps them in its committed state, which ``resume`` reuses).

    A trace returned by ``sample(..., store=path)`` or ``load(path, lazy=True)``
    keeps its draws on disk: ``positions`` and ``stats`` are then read-only
    :class:`~stochflow.store.StoredArray` objects (slicing reads that slice,
    ``np.asarray`` reads all).
    """

    positions: np.ndarray
    stats: dict[str, np.ndarray]
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_divergent: int = 0
    num_divergent_warmup: int = 0
    constrain: Optional[Callable[[np.ndarray], dict]] = dataclasses.field(default=None, repr=False)
    constrained: Optional[dict[str, Any]] = dataclasses.field(default=None, repr=False)
    checks: Optional[Any] = dataclasses.field(default=None, repr=False)
    adapted: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def num_particles(self) -> int:
        return self.positions.shape[0]

    @property
    def num_draws(self) -> int:
        return self.positions.shape[1]

    @property
    def dim(self) -> int:
        return self.positions.shape[2]

    @property
    def n_grad_total(self) -> int:
        """Gradient evaluations of the whole run, warmup included, over all particles."""
        warmup_cost = self.metadata.get("n_grad_warmup", 0)
        return int(np.sum(self.stats["n_grad"])) + int(warmup_cost)

    def to_arviz(self, var_name: str = "x") -> Any:
        """What the installed ArviZ works on (``arviz.InferenceData`` on ArviZ 0.2x, an
        ``xarray.DataTree`` on 1.x, the same groups and dims): ``posterior`` with dims (chain, draw, dim),
        ``sample_stats`` under ArviZ's names (``lp``, ``acceptance_rate``,
        ``diverging``, ``step_size``, plus ``n_grad``).

        For a target with ``constrain`` (a NumPyro model) the posterior holds
        the model's variables by name in constrained space (deterministic sites
        included) and the raw positions go to ``unconstrained_posterior``."""
        from .diagnostics.arviz_bridge import to_inference_data

        return to_inference_data(self, var_name=var_name)

    def to_netcdf(self, path, *, overwrite: bool = False):
        """Write to a NetCDF-4 file in ArviZ's layout; ``sf.load(path)`` reads it back."""
        return store.to_netcdf(self, path, overwrite=overwrite)

    def to_zarr(self, path, *, overwrite: bool = False):
        """Write to a zarr directory in ArviZ's layout; ``sf.load(path)`` reads it back."""
        return store.to_zarr(self, path, overwrite=overwrite)

    def to_csv(self, path, *, overwrite: bool = False):
        """Write one row per draw (``chain``, ``draw``, ``x[0]``... and the stats) to
        ``path`` (``*.csv``), the metadata to the ``.json`` beside it; see
        :func:`stochflow.store.to_csv`."""
        return store.to_csv(self, path, overwrite=overwrite)

    def __repr__(self) -> str:
        return (
            f"Trace(sampler={self.metadata.get('sampler')!r}, target={self.metadata.get('target')!r}, "
            f"num_particles={self.num_particles}, num_draws={self.num_draws}, dim={self.dim}, "
            f"num_divergent={self.num_divergent}"
            + (f", checks={self.checks.line()}" if self.checks is not None else "") + ")"
        )


def load(path: Union[str, os.PathLike], *, lazy: Optional[bool] = None) -> Trace:
    """Read a trace written by ``to_netcdf``, ``to_zarr``, ``to_csv`` or ``sample(store=...)``.

    The format comes from the path: a directory is zarr, ``*.csv`` is CSV
    (with its ``.json`` beside it), anything else NetCDF. A run store that is
    still running, or was killed, gives its committed draws.

    ``lazy=True`` (zarr only) leaves the draws on disk: ``positions`` and
    ``stats`` are :class:`~stochflow.store.StoredArray` objects that read what
    is sliced; ``lazy=False`` reads them all into memory. The default
    (``None``) reads a zarr trace into memory unless its draws take more than
    :data:`~stochflow.store.LAZY_ABOVE_BYTES` (1 GiB, uncompressed), which it
    then leaves on disk; NetCDF and CSV traces always load whole. A target's
    ``constrain`` function cannot be stored; a loaded trace of a NumPyro model
    carries the stored constrained draws as ``trace.constrained``.

    The file is checked as it is read, with an error saying what is wrong: a CSV
    must hold every column its JSON lists, typed, and each ``(chain, draw)`` of
    the grid once (rows are placed by those columns, in any order); a zarr trace
    or run store written with :data:`~stochflow.store.EVERY_CHUNK_WRITTEN` must
    have the chunk file of every committed draw, and a chunk that fails its
    checksum is an error naming its draws (when read, for a lazy trace).
    """
    return Trace(**store.read(path, lazy=lazy))
