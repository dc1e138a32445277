"""Traces on disk: NetCDF, zarr and CSV files, and the run store that
``sample(..., store=path)`` streams into.

This module knows a trace by its fields (``positions``, ``stats``,
``metadata``, the divergence counts, ``constrain``/``constrained``), not by the
:class:`~stochflow.trace.Trace` class, which sits above it: the writers take
any object with those attributes, :func:`read` returns them as a dict
(``Trace(**read(path))`` is :func:`stochflow.load`).

File layout (NetCDF and zarr) is ArviZ's: a group ``posterior`` with the
variable ``x`` of dims ``(chain, draw, dim)`` (for a target with ``constrain``,
a NumPyro model: one variable per site, in constrained space, and the raw
positions in ``unconstrained_posterior``), a group ``sample_stats`` under
ArviZ's names (``lp``, ``acceptance_rate``, ``diverging``, ``step_size``,
``n_grad``), and on every group the run's metadata as attributes: flat ones
for people (``sampler``, ``target``, ``stochflow_version``...) and
``stochflow_metadata``, the whole metadata as JSON, which ``load`` reads back
exactly.

The run store is a zarr directory in that layout whose draw dimension grows
chunk by chunk, plus a folder ``stochflow_run/`` with what a resume needs:
``metadata.json`` (the run's metadata, written first: it makes the folder a
run store), ``start.npz`` (the starting positions, the log-density there and probe
values of the target, to recognise the run's init and target), ``checkpoint.npz`` (how far the run
got, its counters and the sampler state's leaves) and ``lock`` (held with
``flock`` by the one process writing). A chunk is committed in three steps: its draws are
written, the zarr metadata is consolidated, then ``checkpoint.npz`` is
replaced atomically (write to a temporary file, fsync, ``os.replace``). Draws
past the checkpoint's count belong to a chunk that was not committed (a torn
chunk); ``load`` ignores them and a resume cuts them off and redoes them.

Nothing lost, nothing scrambled: exports go to a temporary sibling that replaces
the target only when complete (:func:`_replacing`), so a failed write leaves the
old file. Zarr traces and run stores write every chunk, none left out for holding
only the fill value, with a zstd checksum, and say so in the root attribute
:data:`CHUNKS_ATTR`; for such a store the committed draws are its record of the
chunks that must exist: ``load`` and a resume list the chunk files (nothing is
read) and refuse a store that lost one, and a chunk that fails its checksum is
an error naming its draws when it is read. Stores written before the attribute
are read unverified.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import itertools
import json
import os
import pathlib
import shutil
import uuid
import warnings
import zipfile
from typing import Any, Callable, Iterator, NamedTuple, Optional, Union

import jax
import numpy as np

__all__ = ["read", "to_netcdf", "to_zarr", "to_csv", "RunStore", "Progress", "StoredArray", "RUN_IDENTITY"]

PathLike = Union[str, os.PathLike]

POSITIONS = "x"
RUN_DIR = "stochflow_run"
_FORMAT_VERSION = 1
# A zarr root attribute: every chunk of the store was written (none left out for holding
# only the fill value) with a zstd checksum, so a missing chunk file is lost data and a
# damaged one fails to decode. Stores without it (written before) are read unverified.
CHUNKS_ATTR, EVERY_CHUNK_WRITTEN = "stochflow_chunks", "every chunk written, zstd with checksum"
# ``load(path)`` of a zarr trace whose draws take more than this (uncompressed) leaves them on disk.
LAZY_ABOVE_BYTES = 2**30
# Metadata entries that must agree for a store to be resumed by a run.
RUN_IDENTITY = ("sampler", "sampler_params", "target", "dim", "dtype", "num_particles",
                "num_steps", "warmup", "thin", "key")


def _stats_names() -> dict[str, str]:
    from .diagnostics.arviz_bridge import SAMPLE_STATS_NAMES

    return SAMPLE_STATS_NAMES


def _file_stat_name(name: str) -> str:
    return _stats_names().get(name, name)


def _trace_stat_name(name: str) -> str:
    inverse = {file_name: name for name, file_name in _stats_names().items()}
    return inverse.get(name, name)


def _attrs(metadata: dict, num_divergent: int, num_divergent_warmup: int) -> dict[str, Any]:
    from .diagnostics.arviz_bridge import flat_attrs

    attrs = flat_attrs(metadata)
    attrs["stochflow_metadata"] = json.dumps(metadata)
    attrs["num_divergent"] = int(num_divergent)
    attrs["num_divergent_warmup"] = int(num_divergent_warmup)
    return attrs


def _variable_dims(name: str, shape: tuple) -> tuple[str, ...]:
    """ArviZ's dims: ``dim`` for the positions, ``name_dim_k`` for a named variable's axes."""
    if name == POSITIONS:
        return ("chain", "draw", "dim")
    return ("chain", "draw") + tuple(f"{name}_dim_{k}" for k in range(len(shape) - 2))


def _dataset(variables: dict[str, np.ndarray], attrs: dict):
    import xarray as xr

    data_vars = {name: (_variable_dims(name, np.shape(v)), np.asarray(v)) for name, v in variables.items()}
    num_chains, num_draws = np.shape(next(iter(variables.values())))[:2]
    coords = {"chain": np.arange(num_chains), "draw": np.arange(num_draws)}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _constrained_draws(trace: Any) -> Optional[dict[str, np.ndarray]]:
    if trace.constrain is not None:
        return {name: np.asarray(v) for name, v in trace.constrain(np.asarray(trace.positions)).items()}
    if trace.constrained is not None:
        return {name: np.asarray(v) for name, v in trace.constrained.items()}
    return None


def _trace_groups(trace: Any) -> dict[str, Any]:
    """The trace's ArviZ groups as xarray Datasets."""
    attrs = _attrs(trace.metadata, trace.num_divergent, trace.num_divergent_warmup)
    stats = {_file_stat_name(name): np.asarray(value) for name, value in trace.stats.items()}
    positions = {POSITIONS: np.asarray(trace.positions)}
    constrained = _constrained_draws(trace)
    groups = {"posterior": _dataset(constrained or positions, attrs), "sample_stats": _dataset(stats, attrs)}
    if constrained is not None:
        groups["unconstrained_posterior"] = _dataset(positions, attrs)
    return groups


def _refuse_existing(path: pathlib.Path, overwrite: bool) -> None:
    """Refuse a path in a missing directory, an existing path without ``overwrite``, and a
    directory that is not a zarr store (never replaced, whatever ``overwrite`` says)."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the directory {path.parent} does not exist.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it, or choose another path.")
    if path.is_dir() and not ((path / "zarr.json").exists() or (path / ".zgroup").exists()):
        raise ValueError(f"{path} is a directory but not a zarr store; it is not replaced. Choose another path.")


def _temporary_sibling(path: pathlib.Path, kind: str = "partial") -> pathlib.Path:
    """A fresh name beside ``path`` (same directory, so same filesystem: renames are atomic):
    ``.<name>.<hex>.partial`` for a copy being written, ``.previous`` for the old one moved aside."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.{kind}")


def _discard(path: pathlib.Path) -> None:
    """Remove a file or directory if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync(path: pathlib.Path) -> None:
    """Flush a file, or a directory entry, to the disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _move_in(temporary: pathlib.Path, path: pathlib.Path) -> None:
    """Put ``temporary`` at ``path``: one ``os.replace`` for a file over a file; otherwise
    (a zarr directory) the old one is renamed aside, the new one renamed in, then the old
    one deleted; if the second rename fails the old one is put back. (A process killed
    between the two renames leaves the old store at ``.<name>.<hex>.previous``.)"""
    if temporary.is_file() and not path.is_dir():
        os.replace(temporary, path)
        return
    if not path.exists():
        os.rename(temporary, path)
        return
    aside = _temporary_sibling(path, "previous")
    os.rename(path, aside)
    try:
        os.rename(temporary, path)
    except BaseException:
        os.rename(aside, path)
        raise
    _discard(aside)


def _write_failed(paths: tuple[pathlib.Path, ...], existed: list[bool], error: Exception) -> Exception:
    """The error a failed replacement raises: what failed, and that the old files are untouched."""
    names = " and ".join(str(path) for path in paths)
    kept = [path.name for path, there in zip(paths, existed) if there]
    outcome = (f"the existing {' and '.join(kept)} {'is' if len(kept) == 1 else 'are'} unchanged"
               if kept else "nothing was written there")
    message = (f"could not write {names}: {type(error).__name__}: {error}. The new data went to a temporary "
               f"copy beside it, now removed; {outcome}.")
    if isinstance(error, OSError):
        hint = " Free some space (or raise the file size limit) and write again." \
            if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
        return OSError(error.errno, message + hint)
    return ValueError(message)


@contextlib.contextmanager
def _replacing(*paths: pathlib.Path) -> Iterator[tuple[pathlib.Path, ...]]:
    """Temporary siblings of ``paths`` to write into, as one unit: when the block succeeds
    they are flushed to disk and replace ``paths`` (:func:`_move_in`); when it fails they
    are removed and the error (:func:`_write_failed`) says ``paths`` are as they were.
    An old file is never deleted before its replacement is complete."""
    temporaries = tuple(_temporary_sibling(path) for path in paths)
    existed = [path.exists() for path in paths]
    try:
        yield temporaries
        for temporary in temporaries:
            if temporary.is_file():
                _fsync(temporary)
    except Exception as error:
        for temporary in temporaries:
            _discard(temporary)
        raise _write_failed(paths, existed, error) from error
    except BaseException:
        for temporary in temporaries:
            _discard(temporary)
        raise
    for temporary, path in zip(temporaries, paths):
        _move_in(temporary, path)
    _fsync(paths[0].parent)


def to_netcdf(trace: Any, path: PathLike, *, overwrite: bool = False) -> pathlib.Path:
    """Write ``trace`` to a NetCDF-4 file (one HDF5 group per ArviZ group). The file is
    composed in memory (HDF5 does not survive a failed write to disk: a full disk left it
    crashing on close) and written beside ``path`` in one piece, then moved there: a
    failed write leaves an existing file as it was."""
    path = pathlib.Path(path)
    _refuse_existing(path, overwrite)
    with _replacing(path) as (temporary,):
        composed = io.BytesIO()
        for index, (group, dataset) in enumerate(_trace_groups(trace).items()):
            dataset.to_netcdf(composed, group=group, mode="w" if index == 0 else "a", engine="h5netcdf")
        temporary.write_bytes(composed.getbuffer())
    return path


def _checked_compressors() -> list:
    """Zstd with its frame checksum: a damaged chunk fails to decode instead of reading as other numbers."""
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=0, checksum=True)]


def _zarr_files(trace: Any) -> dict[str, Any]:
    """The files of ``trace``'s zarr store, composed in memory (key -> bytes): every chunk
    written (none left out for holding only the fill value), with checksums."""
    import zarr

    files: dict[str, Any] = {}
    with _quiet_zarr():
        for index, (group, dataset) in enumerate(_trace_groups(trace).items()):
            encoding = {name: {"compressors": _checked_compressors()} for name in dataset.data_vars}
            dataset.to_zarr(zarr.storage.MemoryStore(files), group=group, mode="w-" if index == 0 else "a",
                            consolidated=True, write_empty_chunks=True, encoding=encoding)
        root = zarr.open_group(zarr.storage.MemoryStore(files), mode="a")
        root.attrs[CHUNKS_ATTR] = EVERY_CHUNK_WRITTEN
        zarr.consolidate_metadata(zarr.storage.MemoryStore(files))
    return files


def to_zarr(trace: Any, path: PathLike, *, overwrite: bool = False) -> pathlib.Path:
    """Write ``trace`` to a zarr directory (one zarr group per ArviZ group), every chunk
    written and checksummed, so ``load`` can tell a lost or damaged chunk. The store is
    composed in memory (compressed), written beside ``path`` file by file, then swapped
    in: a failed write leaves an existing store as it was."""
    path = pathlib.Path(path)
    _refuse_existing(path, overwrite)
    with _replacing(path) as (temporary,):
        for key, content in _zarr_files(trace).items():
            file = temporary.joinpath(*key.split("/"))
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(content.to_bytes())
    return path


def _csv_columns(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """One column per coordinate of a ``(chain, draw, *shape)`` variable, for one chain."""
    shape = values.shape[1:]
    if not shape:
        return {name: values}
    flat = values.reshape(values.shape[0], -1)
    return {
        f"{name}[{','.join(map(str, index))}]": flat[:, k]
        for k, index in enumerate(np.ndindex(*shape))
    }


def _csv_sidecar(path: pathlib.Path) -> pathlib.Path:
    return path.with_suffix(".json")


def to_csv(trace: Any, path: PathLike, *, overwrite: bool = False) -> pathlib.Path:
    """Write ``trace`` as CSV: one row per draw, columns ``chain``, ``draw``, then one
    column per coordinate (``x[0]``, ``x[1]``...; for a NumPyro target the
    variables by name, ``theta[3]``, and the raw positions as ``unconstrained[i]``),
    then the sample stats under ArviZ's names. Floats are written with 17
    significant digits, so reading them back gives the same numbers.

    The metadata goes to a JSON file beside it (``run.csv`` -> ``run.json``),
    which ``load`` needs to give the exact Trace back; pandas (``pd.read_csv``)
    and R (``read.csv``) read the CSV alone."""
    import pandas as pd

    path = pathlib.Path(path)
    if path.suffix != ".csv":
        raise ValueError(f"a CSV trace needs a path ending in .csv (the metadata goes to .json beside it), got {path}.")
    sidecar = _csv_sidecar(path)
    _refuse_existing(path, overwrite)
    _refuse_existing(sidecar, overwrite)
    constrained = _constrained_draws(trace)
    position_name = POSITIONS if constrained is None else "unconstrained"
    if constrained is not None and position_name in constrained:
        raise ValueError(f"the model has a site named {position_name!r}, which clashes with the position columns.")
    variables = dict(constrained or {})
    variables[position_name] = np.asarray(trace.positions)
    stats = {_file_stat_name(name): np.asarray(value) for name, value in trace.stats.items()}
    columns: dict[str, str] = {}
    with _replacing(path, sidecar) as (temporary, temporary_sidecar):
        with open(temporary, "w", newline="") as handle:
            for chain in range(trace.num_particles):
                frame = {"chain": np.full(trace.num_draws, chain), "draw": np.arange(trace.num_draws)}
                for name, values in list(variables.items()) + list(stats.items()):
                    frame.update(_csv_columns(name, values[chain]))
                table = pd.DataFrame(frame)
                columns = {column: str(dtype) for column, dtype in table.dtypes.items()}
                table.to_csv(handle, header=chain == 0, index=False, float_format="%.17g")
        temporary_sidecar.write_text(_csv_sidecar_text(trace, position_name, variables, stats, columns))
    return path


def _csv_sidecar_text(trace: Any, position_name: str, variables: dict[str, np.ndarray],
                      stats: dict[str, np.ndarray], columns: dict[str, str]) -> str:
    """The JSON beside a CSV trace: metadata, counts, the grid, and each column's dtype."""
    return json.dumps({
        "format": "stochflow-csv",
        "format_version": _FORMAT_VERSION,
        "metadata": trace.metadata,
        "num_divergent": int(trace.num_divergent),
        "num_divergent_warmup": int(trace.num_divergent_warmup),
        "num_chains": int(trace.num_particles),
        "num_draws": int(trace.num_draws),
        "positions": position_name,
        "variables": {name: list(np.shape(v)[2:]) for name, v in variables.items()},
        "stats": {name: list(np.shape(v)[2:]) for name, v in stats.items()},
        "dtypes": columns,
    }, indent=1)


def _read_sidecar(path: pathlib.Path) -> dict[str, Any]:
    """The JSON ``to_csv`` writes beside ``path``, checked to be one."""
    sidecar = _csv_sidecar(path)
    if not sidecar.exists():
        raise FileNotFoundError(f"{sidecar} (the metadata written beside {path.name} by to_csv) is missing.")
    try:
        info = json.loads(sidecar.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{sidecar} (the metadata beside {path.name}) is not valid JSON ({error}): it was "
                         "damaged or replaced; write the trace again with trace.to_csv.") from None
    needed = ("metadata", "num_divergent", "num_divergent_warmup", "positions", "variables", "stats", "dtypes")
    if not isinstance(info, dict) or info.get("format") != "stochflow-csv" or any(k not in info for k in needed):
        raise ValueError(f"{sidecar} is not the metadata stochflow writes beside a CSV trace "
                         f"(a JSON object with format 'stochflow-csv' and {', '.join(needed)}).")
    return info


def _read_table(path: pathlib.Path) -> Any:
    """The CSV as pandas parses it, every column's type inferred (checked by :func:`_typed_column`)."""
    import pandas as pd

    try:
        return pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty: no header, no rows. Write the trace again with trace.to_csv.") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"{path} is not a well-formed CSV table ({error}).") from None


_CSV_KINDS = {"f": ("fiu", "numbers"), "i": ("iu", "integers"), "u": ("iu", "integers"), "b": ("b", "True or False")}


def _typed_column(path: pathlib.Path, table: Any, name: str, dtype: str) -> np.ndarray:
    """Column ``name`` as ``dtype`` (what ``to_csv`` wrote), or an error naming the first
    row (line of the file) that does not hold such a value."""
    column, wanted = table[name], np.dtype(dtype)
    accepted, what = _CSV_KINDS.get(wanted.kind, (None, wanted.name))
    if accepted is not None and column.dtype.kind not in accepted:
        import pandas as pd

        if wanted.kind == "b":
            bad = ~column.isin([True, False, "True", "False"])
        else:
            numbers = pd.to_numeric(column, errors="coerce")
            bad = numbers.isna() | ((numbers % 1 != 0) if wanted.kind in "iu" else False)
        bad = np.flatnonzero(bad.to_numpy())
        if bad.size:
            row = int(bad[0])
            value = column.iloc[row]
            value = value.item() if isinstance(value, np.generic) else value
            shown = "an empty cell" if isinstance(value, float) and np.isnan(value) else repr(value)
            raise ValueError(f"{path}: column {name!r} holds {what} ({wanted.name}), but line {row + 2} has {shown}.")
        # Every cell is a value of the kind (whole numbers re-saved as 0.0, "True" as text): cast.
        column = column.map({True: True, False: False, "True": True, "False": False}) if wanted.kind == "b" \
            else pd.to_numeric(column)
    values = column.to_numpy()
    typed = values.astype(wanted)
    if wanted.kind in "iu" and not np.array_equal(typed, values):
        row = int(np.flatnonzero(typed != values)[0])
        raise ValueError(f"{path}: column {name!r} holds {wanted.name}, but line {row + 2} has {values[row].item()!r}, "
                         "which does not fit.")
    return typed


def _cells(cells: np.ndarray, num_draws: int, limit: int = 8) -> str:
    """``(chain, draw)`` pairs of flat grid cells, the first ``limit`` of them, for a message."""
    shown = ", ".join(f"({cell // num_draws}, {cell % num_draws})" for cell in cells[:limit])
    return shown + (f" and {cells.size - limit} more" if cells.size > limit else "")


def _grid_order(path: pathlib.Path, chain: np.ndarray, draw: np.ndarray, num_chains: int,
                num_draws: int) -> np.ndarray:
    """The row of each ``(chain, draw)`` cell of the grid, in C order: every cell must be
    held by exactly one row, whatever the rows' order; an error names the rows outside
    the grid, or the missing and the duplicated cells."""
    grid = f"the grid of {num_chains} chains x {num_draws} draws that {_csv_sidecar(path).name} states"
    outside = np.flatnonzero((chain < 0) | (chain >= num_chains) | (draw < 0) | (draw >= num_draws))
    if outside.size:
        rows = ", ".join(f"line {row + 2} ({chain[row]}, {draw[row]})" for row in outside[:8])
        raise ValueError(f"{path}: {outside.size} row{'s' if outside.size > 1 else ''} with a (chain, draw) outside {grid}: {rows}"
                         f"{' ...' if outside.size > 8 else ''}. Was a cell edited?")
    cell = chain.astype(np.int64) * num_draws + draw
    counts = np.bincount(cell, minlength=num_chains * num_draws)
    missing, duplicated = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
    if missing.size or duplicated.size:
        found = ([f"missing {missing.size} (chain, draw): {_cells(missing, num_draws)}"] if missing.size else []) + \
            ([f"duplicated {duplicated.size}: {_cells(duplicated, num_draws)}"] if duplicated.size else [])
        raise ValueError(f"{path} does not hold each (chain, draw) of {grid} once: {'; '.join(found)}. "
                         "Rows were deleted, repeated or edited; write the trace again with trace.to_csv.")
    order = np.empty(cell.size, np.int64)
    order[cell] = np.arange(cell.size)
    return order


def _from_csv(path: pathlib.Path) -> dict[str, Any]:
    """A CSV trace: every column the sidecar lists, typed; rows placed by their ``chain``
    and ``draw`` columns (any order), which must cover the sidecar's grid exactly once."""
    info = _read_sidecar(path)
    table = _read_table(path)
    missing = [name for name in info["dtypes"] if name not in table.columns]
    if missing:
        listed = ", ".join(map(repr, missing[:8])) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ValueError(f"{path} has no column {listed}, which {_csv_sidecar(path).name} lists (to_csv writes "
                         "them all): the CSV was edited, or belongs to another JSON. Write the trace again with "
                         "trace.to_csv.")
    columns = {name: _typed_column(path, table, name, dtype) for name, dtype in info["dtypes"].items()}
    metadata = info["metadata"]
    # Sidecars from before the grid was recorded: the chains of the metadata, the draws seen.
    num_chains = int(info.get("num_chains", metadata.get("num_particles", columns["chain"].max(initial=-1) + 1)))
    num_draws = int(info.get("num_draws", columns["draw"].max(initial=-1) + 1))
    order = _grid_order(path, columns["chain"], columns["draw"], num_chains, num_draws)

    def gather(name: str, shape: list[int]) -> np.ndarray:
        names = list(_csv_columns(name, np.zeros([1] + shape)).keys())
        values = np.stack([columns[column] for column in names], axis=-1)[order]
        return values.reshape([num_chains, num_draws] + shape)

    variables = {name: gather(name, shape) for name, shape in info["variables"].items()}
    positions = variables.pop(info["positions"])
    stats = {_trace_stat_name(name): gather(name, shape) for name, shape in info["stats"].items()}
    return dict(positions=positions, stats=stats, metadata=metadata,
                num_divergent=info["num_divergent"], num_divergent_warmup=info["num_divergent_warmup"],
                constrained=variables or None)


class StoredArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A read-only array backed by a zarr array, holding its first ``num_draws`` draws
    (axis 1). Integers and forward slices read only that part from disk; other
    indices (lists, negative steps), ``np.asarray``, arithmetic, NumPy functions
    and ndarray methods (``.mean(axis=1)``, ``.reshape``...) read it all."""

    def __init__(self, array: Any, num_draws: int):
        self._array = array
        self.shape = (array.shape[0], num_draws) + tuple(array.shape[2:])
        self.dtype = np.dtype(array.dtype)
        self.chunk_draws = int(array.chunks[1])  # draws per stored chunk: read whole chunks

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self._read((slice(None), slice(0, self.shape[1])))
        return values if dtype is None else values.astype(dtype)

    def _read(self, selection: tuple) -> np.ndarray:
        """``selection`` of the zarr array; a chunk that fails to decode is an error naming its draws."""
        try:
            return np.asarray(self._array[selection])
        except (IndexError, TypeError):  # a selection out of bounds or of the wrong kind: no chunk read
            raise
        except Exception as error:
            damaged = _undecodable_draws(self._array, self.shape[1])
            if not damaged:
                raise
            raise ValueError(
                f"{self._array.store_path}: the chunks holding draws {_draw_ranges(damaged)} cannot be decoded "
                f"({type(error).__name__}: {error}): the files were damaged after they were written. "
                "The other draws are intact (slice around these); restore the store from a copy, or rerun."
            ) from None

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        loaded = [np.asarray(x) if isinstance(x, StoredArray) else x for x in inputs]
        return getattr(ufunc, method)(*loaded, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        basic = all(isinstance(i, (int, np.integer)) or i is Ellipsis
                    or (isinstance(i, slice) and (i.step is None or i.step > 0)) for i in index)
        if not basic or sum(i is Ellipsis for i in index) > 1:  # zarr reads basic forward slices only
            return np.asarray(self)[index]
        if Ellipsis in index:
            at = index.index(Ellipsis)
            index = index[:at] + (slice(None),) * (self.ndim - len(index) + 1) + index[at + 1:]
        index = index + (slice(None),) * (self.ndim - len(index))
        if len(index) > self.ndim:
            raise IndexError(f"too many indices for an array of shape {self.shape}.")
        draw = index[1]
        if isinstance(draw, slice):
            draw = slice(*draw.indices(self.shape[1]))
        else:
            if not -self.shape[1] <= draw < self.shape[1]:
                raise IndexError(f"draw {draw} is out of range for {self.shape[1]} draws.")
            draw = int(draw) % self.shape[1]
        return self._read((index[0], draw) + index[2:])

    def __repr__(self) -> str:
        return f"StoredArray(shape={self.shape}, dtype={self.dtype})"


def _draw_axis(array: Any) -> Optional[int]:
    names = tuple(array.metadata.dimension_names or ())
    return names.index("draw") if "draw" in names else None


def _draw_chunks(array: Any, num_draws: int) -> Iterator[tuple[int, int]]:
    """The draw ranges ``(first, last)`` of ``array``'s chunks over its first ``num_draws`` draws."""
    axis = _draw_axis(array)
    size, step = min(array.shape[axis], num_draws), array.chunks[axis]
    for first in range(0, size, step):
        yield first, min(first + step, size) - 1


def _undecodable_draws(array: Any, num_draws: int) -> list[tuple[int, int]]:
    """The draw ranges of ``array``'s chunks that fail to decode (each read on its own)."""
    axis, damaged = _draw_axis(array), []
    for first, last in _draw_chunks(array, num_draws):
        selection = [slice(None)] * array.ndim
        selection[axis] = slice(first, last + 1)
        try:
            array[tuple(selection)]
        except Exception:
            damaged.append((first, last))
    return damaged


def _missing_draws(path: pathlib.Path, array: Any, num_draws: int) -> list[tuple[int, int]]:
    """The draw ranges of ``array``'s chunks over its first ``num_draws`` draws whose
    files are missing from the store at ``path`` (a listing: nothing is read)."""
    axis = _draw_axis(array)
    counts = [-(-size // chunk) for size, chunk in zip(array.shape, array.chunks)]
    missing = []
    for number, (first, last) in enumerate(_draw_chunks(array, num_draws)):
        counts[axis] = 1
        for coords in itertools.product(*(range(count) for count in counts)):
            coords = coords[:axis] + (number,) + coords[axis + 1:]
            if not (path / array.path / array.metadata.encode_chunk_key(coords)).is_file():
                missing.append((first, last))
                break
    return missing


def _draw_ranges(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{first}..{last}" if last > first else str(first) for first, last in ranges)


def _lost_chunks(path: pathlib.Path, root: Any, num_draws: int) -> dict[str, list[tuple[int, int]]]:
    """The draw ranges whose chunk files are missing, per array (``group/name``), over the
    first ``num_draws`` draws of a store marked :data:`EVERY_CHUNK_WRITTEN`; empty for an
    intact store, or one written before the mark (which cannot be verified)."""
    if root.attrs.get(CHUNKS_ATTR) != EVERY_CHUNK_WRITTEN:
        return {}
    lost = {}
    for group in ("posterior", "unconstrained_posterior", "sample_stats"):
        if group not in root:
            continue
        for name, array in root[group].arrays():
            missing = _missing_draws(path, array, num_draws) if _draw_axis(array) is not None else []
            if missing:
                lost[f"{group}/{name}"] = missing
    return lost


def _describe_lost(lost: dict[str, list[tuple[int, int]]]) -> str:
    """Which draws of which arrays lost their chunk files, for a message."""
    return "; ".join(f"{name}: draws {_draw_ranges(ranges)}" for name, ranges in lost.items())


def _open_root(path: pathlib.Path) -> Any:
    """The zarr root group at ``path`` (consolidated metadata), or an error saying why not."""
    import zarr

    if not any(path.iterdir()):
        raise ValueError(f"{path} is an empty directory, not a trace: nothing was written there. Give the path "
                         "of a file or store written by to_netcdf, to_zarr, to_csv or sample(store=...).")
    if not ((path / "zarr.json").exists() or (path / ".zgroup").exists()):
        if (path / RUN_DIR).is_dir():
            raise ValueError(f"{path} is a run store that lost its zarr root metadata ({path / 'zarr.json'}): "
                             "the draws cannot be located without it. Restore the store from a copy, or rerun.")
        raise ValueError(f"{path} is a directory but not a zarr store (no zarr.json at its root), so not a "
                         "stochflow trace.")
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as error:
        raise ValueError(f"{path}: the zarr metadata cannot be read ({type(error).__name__}: {error}); "
                         "the store was damaged. Restore it from a copy, or rerun.") from None


def _draw_bytes(root: Any, num_draws: int) -> int:
    """What reading the first ``num_draws`` draws of every stored variable takes in memory."""
    total = 0
    for group in ("posterior", "unconstrained_posterior", "sample_stats"):
        if group not in root:
            continue
        for _, array in root[group].arrays():
            if array.ndim >= 2:
                total += int(np.prod((array.shape[0], min(array.shape[1], num_draws)) + array.shape[2:])) \
                    * np.dtype(array.dtype).itemsize
    return total


def _read_zarr(path: pathlib.Path, lazy: Optional[bool]) -> dict[str, Any]:
    # The checkpoint first: the consolidated metadata read after it covers at
    # least its committed draws, even while a run appends more.
    run_dir = path / RUN_DIR
    checkpoint = _read_checkpoint(run_dir / "checkpoint.npz")
    root = _open_root(path)
    attrs = dict(root["sample_stats"].attrs) if "sample_stats" in root else {}
    if checkpoint is not None:  # a run store: its committed draws
        record = checkpoint[0]
        num_draws = record["draws_done"]
        metadata = dict(record["metadata"], n_grad_warmup=record["n_grad_warmup"])
        num_divergent, num_divergent_warmup = record["num_divergent"], record["num_divergent_warmup"]
    elif (run_dir / "metadata.json").exists():  # a run store with nothing committed yet
        metadata = dict(_run_metadata_json(run_dir / "metadata.json"), n_grad_warmup=0)
        num_draws = num_divergent = num_divergent_warmup = 0
    elif "stochflow_metadata" in attrs:  # an exported trace
        metadata = json.loads(attrs["stochflow_metadata"])
        num_divergent, num_divergent_warmup = attrs["num_divergent"], attrs["num_divergent_warmup"]
        num_draws = root["sample_stats"]["draw"].shape[0]
    else:
        raise ValueError(f"{path} is not a stochflow trace (no stochflow metadata, no run record).")
    lost = _lost_chunks(path, root, num_draws)
    if lost:
        raise ValueError(f"{path}: chunk files are missing (deleted, or a copy cut short), so these draws are "
                         f"lost: {_describe_lost(lost)}. The other draws are intact; restore the store from a "
                         "copy, or rerun.")

    lazy = _draw_bytes(root, num_draws) > LAZY_ABOVE_BYTES if lazy is None else lazy

    def variables(group: str, skip=("chain", "draw")) -> dict[str, Any]:
        if group not in root:
            return {}
        found = {}
        for name, array in root[group].arrays():
            if name in skip or array.ndim < 2:
                continue
            view = StoredArray(array, num_draws)
            found[name] = view if lazy else np.asarray(view)
        return found

    stats = {_trace_stat_name(name): value for name, value in variables("sample_stats").items()}
    constrained = variables("posterior") if "unconstrained_posterior" in root else None
    positions = variables("unconstrained_posterior" if constrained is not None else "posterior")
    if POSITIONS not in positions:
        if num_draws:
            raise ValueError(f"{path} holds no positions (variable {POSITIONS!r}).")
        positions = {POSITIONS: np.zeros((metadata["num_particles"], 0, metadata["dim"]))}
    return dict(positions=positions[POSITIONS], stats=stats, metadata=metadata,
                num_divergent=int(num_divergent), num_divergent_warmup=int(num_divergent_warmup),
                constrained=constrained or None)


def _read_netcdf(path: pathlib.Path) -> dict[str, Any]:
    import xarray as xr

    def group(name: str) -> Optional[Any]:
        try:
            with xr.open_dataset(path, group=name, engine="h5netcdf") as dataset:
                return dataset.load()
        except OSError:
            return None

    sample_stats = group("sample_stats")
    if sample_stats is None or "stochflow_metadata" not in sample_stats.attrs:
        raise ValueError(f"{path} is not a stochflow trace (no sample_stats group with stochflow metadata).")
    unconstrained = group("unconstrained_posterior")
    posterior = group("posterior")
    raw = unconstrained if unconstrained is not None else posterior
    constrained = None
    if unconstrained is not None:
        constrained = {name: posterior[name].values for name in posterior.data_vars}
    attrs = sample_stats.attrs
    return dict(
        positions=raw[POSITIONS].values,
        stats={_trace_stat_name(name): sample_stats[name].values for name in sample_stats.data_vars},
        metadata=json.loads(attrs["stochflow_metadata"]),
        num_divergent=int(attrs["num_divergent"]),
        num_divergent_warmup=int(attrs["num_divergent_warmup"]),
        constrained=constrained,
    )


def read(path: PathLike, *, lazy: Optional[bool] = None) -> dict[str, Any]:
    """The fields of the trace stored at ``path`` (the keyword arguments of
    :class:`~stochflow.trace.Trace`); :func:`stochflow.load` says which files
    and what ``lazy`` does. For a NumPyro model the stored constrained draws
    come as ``constrained`` (a ``constrain`` function cannot be stored)."""
    if lazy is not None and not isinstance(lazy, bool):
        raise TypeError(f"lazy must be True, False or None (lazy above {LAZY_ABOVE_BYTES} bytes), got {lazy!r}.")
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.is_dir():
        return _read_zarr(path, lazy)
    if lazy:
        raise ValueError("lazy=True needs a zarr store (a directory); NetCDF and CSV traces load whole.")
    if path.suffix == ".csv":
        return _from_csv(path)
    return _read_netcdf(path)


# ---------------------------------------------------------------------------
# The run store: a zarr store written chunk by chunk, with a checkpoint.


class Progress(NamedTuple):
    """How far a run got, and what it counted on the way (all particles)."""

    warmup_done: int = 0  # warmup steps run
    draws_done: int = 0  # draws recorded (after warmup)
    num_divergent: int = 0
    num_divergent_warmup: int = 0
    n_grad_warmup: int = 0


def _atomic_write(path: pathlib.Path, write: Callable[[Any], None]) -> None:
    """Write a file with ``write(handle)`` so that readers see the old one or the new one,
    never a part; a failed write leaves the old one (:func:`_replacing`)."""
    with _replacing(path) as (temporary,), open(temporary, "wb") as handle:
        write(handle)


def _leaf_to_numpy(leaf: Any) -> tuple[np.ndarray, str]:
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf)), str(jax.random.key_impl(leaf))
    return np.asarray(leaf), ""


def _read_checkpoint(path: pathlib.Path) -> Optional[tuple[dict, list[np.ndarray]]]:
    """The committed record and sampler state leaves, ``None`` if nothing was committed,
    or an error saying the checkpoint is damaged."""
    if not path.exists():
        return None
    try:
        with np.load(path) as archive:
            record = json.loads(archive["record"].tobytes().decode())
            leaves = [archive[f"leaf_{i}"] for i in range(record["num_leaves"])]
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as error:
        store = path.parent.parent
        raise ValueError(
            f"store={str(store)!r}: its checkpoint {path} is damaged ({type(error).__name__}: {error}). "
            "Checkpoints are replaced atomically, so it was cut short or overwritten from outside (a partial "
            "copy, a disk fault): the store can be neither loaded nor resumed. Restore it from a copy, or "
            "rerun at a new path."
        ) from None
    return record, leaves


@contextlib.contextmanager
def _quiet_zarr() -> Iterator[None]:
    """Silence two notes zarr makes on every write here: that consolidated metadata
    is not (yet) in the zarr v3 specification (xarray relies on it all the same),
    and that the ``stochflow_run`` folder is not a zarr node (it is not meant to be)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        warnings.filterwarnings("ignore", message="Object at .* is not recognized")
        yield


def _consolidate(path: pathlib.Path) -> None:
    """Rewrite the consolidated metadata (one atomic write of the root ``zarr.json``),
    which is what xarray and ``load`` read: a consistent view of the store."""
    import zarr

    with _quiet_zarr():
        zarr.consolidate_metadata(str(path))


def _run_metadata_json(path: pathlib.Path) -> dict:
    """A run store's ``metadata.json`` (written atomically before anything else), or a clear
    error if it was damaged from outside."""
    try:
        metadata = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged ({type(err).__name__}: {err}); it is written atomically, so it was cut "
                         "short or edited from outside. Restore the store from a copy, or rerun at a new path.") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} is not the metadata of a stochflow run (a JSON object); restore the store "
                         "from a copy, or rerun at a new path.")
    return metadata


def _close(stored: np.ndarray, values: np.ndarray) -> bool:
    """Equal up to float32 rounding where finite, and the same non-finite values (NaN, the same
    infinities: a probe outside the support) elsewhere."""
    if stored.shape != values.shape:
        return False
    finite = np.isfinite(stored)
    if not np.array_equal(finite, np.isfinite(values)) or \
            not np.array_equal(stored[~finite], values[~finite], equal_nan=True):
        return False
    scale = float(np.max(np.abs(stored[finite]), initial=0.0))
    return bool(np.allclose(stored[finite], values[finite], rtol=1e-5, atol=1e-6 * scale))


def _jsonable(metadata: dict) -> dict:
    return json.loads(json.dumps(metadata))


class RunStore:
    """A zarr run store that ``sample`` writes into: one chunk at a time, committed
    with a checkpoint, resumable after a crash.

    Use :meth:`open` (creates or resumes), :meth:`prepare`, then per chunk
    :meth:`append` and :meth:`commit`, and :meth:`finish` at the end (then
    :func:`read` gives the stored trace). The store holds a lock
    (``fcntl.flock``) while open, so two runs never write one store.
    """

    def __init__(self, path: pathlib.Path, metadata: dict, chunk_draws: int, constrain: Optional[Callable],
                 lock: Any, record: Optional[dict], leaves: Optional[list[np.ndarray]]):
        import zarr

        self.path = path
        self.metadata = metadata
        self._chunk_draws = chunk_draws
        self._constrain = constrain
        self._lock = lock
        self._root = zarr.open_group(str(path), mode="a", use_consolidated=False)
        self._record = record
        self._leaves = leaves

    # -- opening ---------------------------------------------------------

    @classmethod
    def check(cls, path: PathLike, metadata: dict, *, resume: bool) -> None:
        """Refuse, touching nothing: a path whose directory is missing, an existing
        path without ``resume=True``, a path that is not a stochflow run store, and
        a store of another run (any of :data:`RUN_IDENTITY` differs)."""
        path = pathlib.Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"store={str(path)!r}: the directory {str(path.parent)!r} does not exist; create it first."
            )
        if not path.exists():
            return
        if not resume:
            raise FileExistsError(
                f"store={str(path)!r} already exists. Pass resume=True to continue that run, "
                "or choose a new path (an existing store is never overwritten)."
            )
        cls._check_same_run(path, cls._stored_metadata(path), _jsonable(metadata))
        cls._check_intact(path)

    @staticmethod
    def _check_intact(path: pathlib.Path) -> None:
        """Refuse a store whose committed draws lost chunk files: a resume goes on from the
        last commit and cannot redo draws before it (a listing: nothing is read)."""
        checkpoint = _read_checkpoint(path / RUN_DIR / "checkpoint.npz")
        if checkpoint is None:
            return
        lost = _lost_chunks(path, _open_root(path), checkpoint[0]["draws_done"])
        if lost:
            raise ValueError(
                f"store={str(path)!r} cannot be resumed: chunk files of committed draws are missing "
                f"({_describe_lost(lost)}). A resume goes on from the last commit and cannot redo draws "
                "before it; restore the store from a copy, or rerun at a new path."
            )

    @staticmethod
    def _stored_metadata(path: pathlib.Path) -> dict:
        checkpoint = _read_checkpoint(path / RUN_DIR / "checkpoint.npz")
        if checkpoint is not None:
            return checkpoint[0]["metadata"]
        if (path / RUN_DIR / "metadata.json").exists():
            return _run_metadata_json(path / RUN_DIR / "metadata.json")
        raise ValueError(f"store={str(path)!r} exists but is not a stochflow run store; choose another path.")

    @classmethod
    def open(cls, path: PathLike, metadata: dict, *, resume: bool, chunk_draws: int,
             start_positions: np.ndarray, start_logdensity: np.ndarray,
             constrain: Optional[Callable] = None, probes: Optional[dict[str, np.ndarray]] = None) -> "RunStore":
        """Create a new store at ``path``, or (``resume=True``) reopen the store of this
        run there, after the refusals of :meth:`check` and :meth:`check_start` (``probes``:
        values of the target that identify it, see :meth:`check_start`).
        ``resume=True`` where nothing exists starts a fresh store."""
        import zarr

        path = pathlib.Path(path)
        metadata = _jsonable(metadata)
        cls.check(path, metadata, resume=resume)
        run_dir = path / RUN_DIR
        if path.exists():
            lock = cls._acquire_lock(path)
            checkpoint = _read_checkpoint(run_dir / "checkpoint.npz")
            record, leaves = checkpoint if checkpoint is not None else (None, None)
            stored = cls._stored_metadata(path)
            store = cls(path, stored, chunk_draws, constrain, lock, record, leaves)
        else:
            # The record that makes this a run store comes first, the zarr layout after it.
            run_dir.mkdir(parents=True)
            lock = cls._acquire_lock(path)
            _atomic_write(run_dir / "metadata.json", lambda f: f.write(json.dumps(metadata).encode()))
            root = zarr.open_group(str(path), mode="a")
            attrs = _attrs(metadata, 0, 0)
            root.attrs.update(dict(attrs, **{CHUNKS_ATTR: EVERY_CHUNK_WRITTEN}))
            for group in ("posterior", "sample_stats"):  # empty until the first chunk
                node = root.create_group(group, attributes=attrs)
                node.create_array("chain", data=np.arange(metadata["num_particles"]), dimension_names=("chain",))
            _consolidate(path)
            store = cls(path, metadata, chunk_draws, constrain, lock, None, None)
        try:
            cls._check_same_run(path, store.metadata, metadata)  # again, now that the lock is held
            store.check_start(start_positions, start_logdensity, probes or {})
        except BaseException:
            store.close()
            raise
        return store

    @staticmethod
    def _acquire_lock(path: pathlib.Path) -> Any:
        handle = open(path / RUN_DIR / "lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RuntimeError(f"store={str(path)!r} is being written by another process.") from None
        return handle

    @staticmethod
    def _check_same_run(path: pathlib.Path, stored: dict, metadata: dict) -> None:
        differ = [name for name in RUN_IDENTITY if stored.get(name) != metadata.get(name)]
        if differ:
            details = "; ".join(f"{name}: store has {stored.get(name)!r}, this run {metadata.get(name)!r}"
                                for name in differ)
            raise ValueError(
                f"store={str(path)!r} belongs to another run ({details}). A store is only resumed by "
                "the same sampler, hyperparameters, target, key and run settings; use a new path."
            )
        for name in ("stochflow_version", "jax_version"):
            if stored.get(name) != metadata.get(name):
                warnings.warn(
                    f"resuming a store written with {name} {stored.get(name)}, now {metadata.get(name)}: "
                    "the draws after the resume may differ from an uninterrupted run's.",
                    RuntimeWarning, stacklevel=3,
                )

    def check_start(self, positions: Any, logdensity: Any, probes: Optional[dict[str, np.ndarray]] = None) -> None:
        """Record the run's start (new store) or check it is the stored run's start.

        The starting positions, the log-density there and the ``probes`` (the
        driver's: the gradient at the starts, the log-density and gradient at
        points drawn from the run key near them) identify the run's init and
        target beyond their names: a resume with another ``init``, another
        log-density or other data under the same name is refused (a log-density
        can agree at the starts alone, e.g. a logistic regression at beta = 0
        whatever its labels). A store written before probes were recorded is
        checked on what it has."""
        start = self.path / RUN_DIR / "start.npz"
        positions, logdensity = np.asarray(positions), np.asarray(logdensity)
        probes = {name: np.asarray(values) for name, values in (probes or {}).items()}
        if not start.exists():
            _atomic_write(start, lambda f: np.savez(f, positions=positions, logdensity=logdensity, **probes))
            return
        with np.load(start) as stored:
            if stored["positions"].shape != positions.shape or not np.array_equal(stored["positions"], positions):
                raise ValueError(f"store={str(self.path)!r} was started from other positions (init); "
                                 "resume with the same init, or use a new path.")
            differ = [name for name, values in {"logdensity": logdensity, **probes}.items()
                      if name in stored.files and not _close(stored[name], values)]
            if differ:
                raise ValueError(
                    f"store={str(self.path)!r} belongs to another target: {', '.join(differ)} differ "
                    "(the log-density and its gradient at the starts and at probe points drawn from the run "
                    "key). Resume with the same target and data, or use a new path."
                )

    # -- resuming --------------------------------------------------------

    @property
    def progress(self) -> Progress:
        if self._record is None:
            return Progress()
        return Progress(*(int(self._record[name]) for name in Progress._fields))

    def restore_state(self, fresh_state: Any) -> Any:
        """The committed sampler state, in the structure of ``fresh_state`` (a state
        just made by ``sampler.init``), or ``fresh_state`` if nothing was committed."""
        if self._record is None:
            return fresh_state
        fresh_leaves, treedef = jax.tree_util.tree_flatten(fresh_state)
        impls = self._record["key_impls"]
        if len(fresh_leaves) != len(self._leaves):
            raise ValueError(f"store={str(self.path)!r}: the stored sampler state does not fit this sampler.")
        leaves = []
        for fresh, stored, impl in zip(fresh_leaves, self._leaves, impls):
            leaf = jax.random.wrap_key_data(stored, impl=impl) if impl else jax.numpy.asarray(stored)
            if leaf.shape != fresh.shape or leaf.dtype != fresh.dtype:
                raise ValueError(f"store={str(self.path)!r}: the stored sampler state does not fit this sampler "
                                 f"(a leaf {leaf.shape} {leaf.dtype}, expected {fresh.shape} {fresh.dtype}).")
            leaves.append(leaf)
        return jax.tree_util.tree_unflatten(treedef, leaves)

    def _truncate(self, num_draws: int) -> None:
        """Cut every draw past ``num_draws`` (a torn chunk of a killed run)."""
        for group in ("posterior", "unconstrained_posterior", "sample_stats"):
            if group not in self._root:
                continue
            for name, array in self._root[group].arrays():
                if name == "chain":
                    continue
                axis = 0 if name == "draw" else 1
                if array.shape[axis] < num_draws:
                    raise ValueError(
                        f"store={str(self.path)!r} has {array.shape[axis]} draws in {group}, fewer than the "
                        f"{num_draws} its checkpoint committed: the data was lost (a disk or OS failure); "
                        "start a new run."
                    )
                if array.shape[axis] > num_draws:
                    shape = list(array.shape)
                    shape[axis] = num_draws
                    array.resize(tuple(shape))

    def prepare(self) -> None:
        """Drop a torn chunk, so the store holds exactly the committed draws."""
        with self._writing("the cut of a torn chunk"):
            self._truncate(self.progress.draws_done)
            _consolidate(self.path)

    # -- writing ---------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Write ``what`` with every chunk stored (none left out for holding the fill value,
        as :data:`EVERY_CHUNK_WRITTEN` promises); an OS error (a full disk) becomes one
        saying what the store still holds and how to go on."""
        import zarr

        try:
            with zarr.config.set({"array.write_empty_chunks": True}):
                yield
        except OSError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise OSError(error.errno, (
                f"store={str(self.path)!r}: could not write {what}: {reason}. The store keeps the "
                f"{self.progress.draws_done} draws of its last commit, intact; free some space (or raise the "
                "file size limit), then run again with resume=True to go on from there."
            )) from error

    def _group(self, group: str, num_chains: int) -> Any:
        """The zarr group ``group``, created with its ``chain`` coordinate on first use."""
        if group not in self._root:
            node = self._root.create_group(group, attributes=dict(self._root.attrs))
            node.create_array("chain", data=np.arange(num_chains), dimension_names=("chain",))
        return self._root[group]

    def _array(self, node: Any, name: str, values: np.ndarray) -> Any:
        """The zarr array ``name`` of ``node``, created with zero draws on first use."""
        if name in node:
            return node[name]
        chunk = max(self._chunk_draws, 1)
        if name == "draw":
            return node.create_array(name, shape=(0,), chunks=(chunk,), dtype=values.dtype, fill_value=0,
                                     compressors=_checked_compressors(), dimension_names=("draw",))
        shape = values.shape
        fill = np.nan if np.issubdtype(values.dtype, np.floating) else 0
        return node.create_array(name, shape=(shape[0], 0) + shape[2:], chunks=(shape[0], chunk) + shape[2:],
                                 dtype=values.dtype, fill_value=fill, compressors=_checked_compressors(),
                                 dimension_names=_variable_dims(name, shape))

    def _append_group(self, group: str, variables: dict[str, np.ndarray], first: int) -> None:
        num_chains, num_new = next(iter(variables.values())).shape[:2]
        node = self._group(group, num_chains)
        end = first + num_new
        for name, values in variables.items():
            array = self._array(node, name, values)
            array.resize((array.shape[0], end) + array.shape[2:])
            array[:, first:end] = values
        draw = self._array(node, "draw", np.arange(first, end))
        draw.resize((end,))
        draw[first:end] = np.arange(first, end)

    def append(self, positions: np.ndarray, stats: dict[str, np.ndarray], first_draw: int) -> None:
        """Write draws ``first_draw ...`` (positions ``(particles, n, dim)``, stats
        ``(particles, n)``). Not committed until :meth:`commit`."""
        stats = {_file_stat_name(name): value for name, value in stats.items()}
        constrained = None if self._constrain is None else \
            {name: np.asarray(v) for name, v in self._constrain(positions).items()}
        with self._writing(f"draws {first_draw}..{first_draw + positions.shape[1] - 1}"):
            self._append_group("sample_stats", stats, first_draw)
            if constrained is None:
                self._append_group("posterior", {POSITIONS: positions}, first_draw)
            else:
                self._append_group("posterior", constrained, first_draw)
                self._append_group("unconstrained_posterior", {POSITIONS: positions}, first_draw)

    def commit(self, progress: Progress, state: Any) -> None:
        """Make everything written so far, and ``state``, the point a resume starts from."""
        converted = [_leaf_to_numpy(leaf) for leaf in jax.tree_util.tree_leaves(state)]
        record = dict(progress._asdict(), metadata=self.metadata, num_leaves=len(converted),
                      key_impls=[impl for _, impl in converted], format_version=_FORMAT_VERSION)
        arrays = {f"leaf_{i}": leaf for i, (leaf, _) in enumerate(converted)}
        arrays["record"] = np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)
        with self._writing(f"the checkpoint of draw {progress.draws_done}"):
            _consolidate(self.path)
            _atomic_write(self.path / RUN_DIR / "checkpoint.npz", lambda f: np.savez(f, **arrays))
        self._record = record

    def finish(self) -> None:
        """Write the final counts into the groups' attributes and release the lock."""
        progress = self.progress
        metadata = dict(self.metadata, n_grad_warmup=progress.n_grad_warmup)
        attrs = _attrs(metadata, progress.num_divergent, progress.num_divergent_warmup)
        try:
            with self._writing("the final counts"):
                self._root.attrs.update(attrs)
                for group in ("posterior", "unconstrained_posterior", "sample_stats"):
                    if group in self._root:
                        self._root[group].attrs.update(attrs)
                _consolidate(self.path)
        finally:
            self.close()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None
