"""Trace export: NetCDF, zarr and CSV round trips through sf.load, readers, bad input.

Round trips are exact: the same arrays (values and dtypes), the same metadata
dict, the same divergence counts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import stochflow as sf
import store_child
from models_numpyro import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, eight_schools
from stochflow.diagnostics.arviz_bridge import group, group_names, open_inference_data
from stochflow.store import StoredArray

pytestmark = pytest.mark.filterwarnings("ignore:mala.*diverged:RuntimeWarning")
FORMATS = {"netcdf": ("run.nc", "to_netcdf"), "zarr": ("run.zarr", "to_zarr"), "csv": ("run.csv", "to_csv")}


@pytest.fixture(scope="module")
def trace():
    """MALA on a target with a hole: bool, int and float stats, and nonzero divergence counts."""
    trace = sf.sample(sf.mala(0.8), store_child.TARGET, jax.random.key(5), num_particles=3, num_steps=80,
                      warmup=40, thin=2, init=jnp.full((3, 5), 0.1), progress=False)
    assert trace.num_divergent > 0 and trace.num_divergent_warmup > 0
    return trace


@pytest.fixture(scope="module")
def numpyro_trace():
    target = sf.from_numpyro(eight_schools, EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
    return sf.sample(sf.mala(0.1), target, jax.random.key(2), num_particles=2, num_steps=30, warmup=10,
                     progress=False)


def export(trace, tmp_path, fmt, **kwargs):
    name, method = FORMATS[fmt]
    path = tmp_path / name
    assert getattr(trace, method)(path, **kwargs) == path
    return path


def assert_same_trace(loaded, trace):
    np.testing.assert_array_equal(loaded.positions, trace.positions)
    assert loaded.positions.dtype == trace.positions.dtype
    assert set(loaded.stats) == set(trace.stats)
    for name, values in trace.stats.items():
        np.testing.assert_array_equal(loaded.stats[name], values, err_msg=name)
        assert loaded.stats[name].dtype == values.dtype, name
    assert loaded.metadata == trace.metadata  # created_at, key, versions, hyperparameters: all of it
    assert (loaded.num_divergent, loaded.num_divergent_warmup) == (trace.num_divergent, trace.num_divergent_warmup)
    assert loaded.n_grad_total == trace.n_grad_total


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, trace, fmt):
    assert_same_trace(sf.load(export(trace, tmp_path, fmt)), trace)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_of_a_numpyro_model_keeps_the_named_variables(tmp_path, numpyro_trace, fmt):
    loaded = sf.load(export(numpyro_trace, tmp_path, fmt))
    assert_same_trace(loaded, numpyro_trace)
    named = numpyro_trace.constrain(numpyro_trace.positions)
    assert loaded.constrain is None and set(loaded.constrained) == {"mu", "tau", "eta", "theta"}
    for name, values in named.items():
        np.testing.assert_array_equal(loaded.constrained[name], values, err_msg=name)
        assert loaded.constrained[name].dtype == values.dtype
    original, reloaded = numpyro_trace.to_arviz(), loaded.to_arviz()
    assert group_names(original) == group_names(reloaded)
    for name in group_names(original):
        xr.testing.assert_equal(group(original, name).drop_attrs(), group(reloaded, name).drop_attrs())


def test_files_open_where_analysts_work(tmp_path, trace):
    posterior = xr.open_zarr(export(trace, tmp_path, "zarr"), group="posterior")
    assert posterior["x"].dims == ("chain", "draw", "dim") and posterior.attrs["sampler"] == "mala"
    np.testing.assert_array_equal(posterior["x"].values, trace.positions)
    idata = open_inference_data(export(trace, tmp_path, "netcdf"))
    assert set(group_names(idata)) == {"posterior", "sample_stats"}
    np.testing.assert_array_equal(idata.sample_stats["diverging"].values, trace.stats["diverging"])
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, trace.stats["logdensity"])
    assert idata.posterior.attrs["target"] == "gaussian-with-a-hole"

    table = pd.read_csv(export(trace, tmp_path, "csv"))  # plain pandas, no sidecar needed
    assert len(table) == trace.num_particles * trace.num_draws
    assert list(table.columns[:4]) == ["chain", "draw", "x[0]", "x[1]"]
    assert {"lp", "acceptance_rate", "diverging", "n_grad", "step_size"} <= set(table.columns)
    chain_2 = table[table["chain"] == 2]
    np.testing.assert_array_equal(chain_2["draw"], np.arange(trace.num_draws))
    np.testing.assert_array_equal(chain_2["x[4]"].to_numpy(np.float32), trace.positions[2, :, 4])


def test_lazy_load_reads_what_is_sliced(tmp_path, trace):
    lazy = sf.load(export(trace, tmp_path, "zarr"), lazy=True)
    assert isinstance(lazy.positions, StoredArray) and lazy.positions.shape == trace.positions.shape
    for index in [np.s_[1], np.s_[:, 3], np.s_[:, -1, 2], np.s_[..., 0], np.s_[0, 2:30:4], np.s_[:, ::-3],
                  np.s_[[0, 2], 5], np.s_[1, ..., 1:3]]:
        np.testing.assert_array_equal(lazy.positions[index], trace.positions[index], err_msg=str(index))
    np.testing.assert_array_equal(np.asarray(lazy.stats["diverging"]), trace.stats["diverging"])
    # Used like an array, it loads: methods, arithmetic, NumPy and JAX functions. (Reductions
    # compare against a C-ordered copy: the summation order follows the memory layout.)
    contiguous = np.ascontiguousarray(trace.positions)
    np.testing.assert_array_equal(lazy.positions.mean(axis=1), contiguous.mean(axis=1))
    np.testing.assert_array_equal(np.std(lazy.positions, axis=(0, 1)), np.std(contiguous, axis=(0, 1)))
    np.testing.assert_array_equal(2 * lazy.positions - 1, 2 * trace.positions - 1)
    np.testing.assert_array_equal(lazy.positions > 0, trace.positions > 0)
    np.testing.assert_array_equal(jnp.asarray(lazy.positions), trace.positions)
    assert lazy.metadata == trace.metadata and lazy.n_grad_total == trace.n_grad_total
    # A view of the first 7 draws of a longer array (what a store with a torn chunk has).
    array = zarr.create_array(store=str(tmp_path / "raw.zarr"), shape=(2, 10, 3), dtype="float32")
    array[:] = np.arange(60, dtype=np.float32).reshape(2, 10, 3)
    view = StoredArray(array, num_draws=7)
    expected = np.arange(60, dtype=np.float32).reshape(2, 10, 3)[:, :7]
    for index in [np.s_[:, -1], np.s_[:, 2:], np.s_[:, ::2, 1], np.s_[1], np.s_[:, [0, 6]]]:
        np.testing.assert_array_equal(view[index], expected[index], err_msg=str(index))
    np.testing.assert_array_equal(np.asarray(view), expected)
    with pytest.raises(IndexError, match="draw 7 is out of range for 7 draws"):
        view[:, 7]


@pytest.mark.parametrize("fmt", FORMATS)
def test_existing_paths_are_refused_unless_overwrite(tmp_path, trace, numpyro_trace, fmt):
    path = export(numpyro_trace, tmp_path, fmt)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        export(trace, tmp_path, fmt)
    export(trace, tmp_path, fmt, overwrite=True)
    assert_same_trace(sf.load(path), trace)


def test_bad_paths(tmp_path, trace):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trace.to_netcdf(tmp_path / "missing" / "run.nc")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trace.to_zarr(tmp_path / "missing" / "run.zarr")
    folder = tmp_path / "results"
    (folder / "notes").mkdir(parents=True)
    with pytest.raises(ValueError, match="is a directory but not a zarr store; it is not replaced"):
        trace.to_zarr(folder, overwrite=True)
    assert (folder / "notes").is_dir()
    with pytest.raises(ValueError, match="needs a path ending in .csv"):
        trace.to_csv(tmp_path / "run.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sf.load(tmp_path / "nothing.nc")
    xr.Dataset({"y": ("a", np.zeros(3))}).to_netcdf(tmp_path / "foreign.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match="is not a stochflow trace"):
        sf.load(tmp_path / "foreign.nc")
    xr.Dataset({"y": ("a", np.zeros(3))}).to_zarr(tmp_path / "foreign.zarr", consolidated=False)
    with pytest.raises(ValueError, match="is not a stochflow trace"):
        sf.load(tmp_path / "foreign.zarr")
    with pytest.raises(ValueError, match="lazy=True needs a zarr store"):
        sf.load(export(trace, tmp_path, "netcdf"), lazy=True)
    path = export(trace, tmp_path, "csv")
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="run.json .* is missing"):
        sf.load(path)
