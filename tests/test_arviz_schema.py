"""The two ArviZ lines (0.2x InferenceData on Python 3.11, 1.x DataTree on 3.12+) must see
one and the same trace: the same groups, variables, dims, dtypes and sample_stats names, in
what ``trace.to_arviz()`` returns and in what ``open_inference_data`` reads from the files;
the same ESS and R-hat. Both lines run this file (``.ci/run``) against the one committed
expectation, tests/data/arviz_schema.json, so the lines cannot drift apart unnoticed.

After a deliberate change of the layout, rewrite the expectation with
``python tests/test_arviz_schema.py`` and check the diff on both lines.
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import stochflow as sf
from families import FAMILIES
from stochflow.diagnostics import arviz_bridge
from stochflow.kernels.particles import ALL_PARTICLES

EXPECTED = pathlib.Path(__file__).parent / "data" / "arviz_schema.json"


def tiny_model():
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))  # constrained: a log-Jacobian factor
    with numpyro.plate("n", 2):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.deterministic("theta", mu + sigma * z)


def fixed_draws() -> np.ndarray:
    """(4 chains, 200 draws, 2): one well-mixed coordinate, one autocorrelated with a chain off."""
    rng = np.random.default_rng(2026)
    draws = rng.standard_normal((4, 200, 2))
    draws[..., 1] = np.cumsum(draws[..., 1], axis=1) * 0.1 + draws[..., 1]
    draws[3, :, 1] += 0.5
    return draws


def current(folder: pathlib.Path) -> dict:
    """The schemas and diagnostics this process's ArviZ line gives for fixed runs."""
    gauss = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=2, name="gauss-2d")
    run = dict(num_particles=2, num_steps=6, warmup=2, progress=False)
    mala = sf.sample(sf.mala(0.5), gauss, jax.random.key(0), **run)
    numpyro_trace = sf.sample(sf.ula(0.1), sf.from_numpyro(tiny_model), jax.random.key(0), **run)
    store = sf.sample(sf.mala(0.5), gauss, jax.random.key(0), store=folder / "store.zarr", **run)
    mala.to_netcdf(folder / "mala.nc")
    mala.to_zarr(folder / "mala.zarr")
    numpyro_trace.to_netcdf(folder / "numpyro.nc")
    schemas = {
        "to_arviz/mala": arviz_bridge.schema(mala.to_arviz()),
        "to_arviz/numpyro": arviz_bridge.schema(numpyro_trace.to_arviz()),
        "to_arviz/stored_run": arviz_bridge.schema(store.to_arviz()),
        "file/mala.nc": arviz_bridge.schema(arviz_bridge.open_inference_data(folder / "mala.nc")),
        "file/mala.zarr": arviz_bridge.schema(arviz_bridge.open_inference_data(folder / "mala.zarr")),
        "file/numpyro.nc": arviz_bridge.schema(arviz_bridge.open_inference_data(folder / "numpyro.nc")),
        "file/store.zarr": arviz_bridge.schema(arviz_bridge.open_inference_data(folder / "store.zarr")),
    }
    draws = fixed_draws()
    diagnostics = {
        "ess_bulk": arviz_bridge.ess(draws).tolist(),
        "ess_tail": arviz_bridge.ess(draws, method="tail").tolist(),
        "rhat": arviz_bridge.rhat(draws).tolist(),
    }
    return {"schemas": schemas, "diagnostics": diagnostics}


@pytest.fixture(scope="module")
def found(tmp_path_factory) -> dict:
    return current(tmp_path_factory.mktemp("schema"))


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads(EXPECTED.read_text())


def test_groups_dims_dtypes_and_stat_names_are_the_committed_ones(found, expected):
    assert sorted(found["schemas"]) == sorted(expected["schemas"])
    for name, schema in expected["schemas"].items():
        # Compared whole (groups, each variable's dims and dtype, coordinates, sizes); the
        # messages name the first difference.
        got = found["schemas"][name]
        assert sorted(got) == sorted(schema), (name, arviz_bridge.ARVIZ_VERSION)
        for group, content in schema.items():
            assert got[group] == content, (name, group, arviz_bridge.ARVIZ_VERSION)


def test_sample_stats_use_arviz_names(expected):
    # The committed expectation itself says what ArviZ users look for.
    stats = expected["schemas"]["to_arviz/mala"]["sample_stats"]["data_vars"]
    assert {"lp", "acceptance_rate", "diverging", "step_size", "n_grad"} <= set(stats)
    assert stats["diverging"]["dtype"] == "bool" and stats["lp"]["dims"] == ["chain", "draw"]
    assert expected["schemas"]["to_arviz/numpyro"]["unconstrained_posterior"]["data_vars"]["x"]["dims"] == \
        ["chain", "draw", "dim"]


def test_ess_and_rhat_agree_across_lines(found, expected):
    # The same estimators on both lines (rank-normalised split R-hat, bulk and tail ESS of
    # Vehtari et al. 2021) in float64: only the summation order may differ between NumPy
    # versions, ~1e-15 relative per sum, so 1e-12. Another estimator moves them by percents.
    for name, values in expected["diagnostics"].items():
        np.testing.assert_allclose(found["diagnostics"][name], values, rtol=1e-12, err_msg=name)
    assert expected["diagnostics"]["rhat"][1] > 1.1 > expected["diagnostics"]["rhat"][0]


def test_summary_has_the_common_columns_and_a_94_percent_hdi():
    trace = sf.Trace(positions=fixed_draws(), stats={"logdensity": np.zeros((4, 200))})
    summary = sf.diagnostics.summary(trace, round_to="none")
    assert list(summary.index) == ["x[0]", "x[1]"]
    assert {"mean", "sd", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"} <= set(summary.columns)
    low, high = [c for c in summary.columns if c.startswith("hdi")]
    assert (low, high) in {("hdi_3%", "hdi_97%"), ("hdi94_lb", "hdi94_ub")}
    draws = fixed_draws()
    np.testing.assert_allclose(summary["ess_bulk"], sf.diagnostics.ess(draws), rtol=1e-12)
    np.testing.assert_allclose(summary["r_hat"], sf.diagnostics.rhat(draws), rtol=1e-12)
    np.testing.assert_allclose(summary["mean"], draws.mean(axis=(0, 1)), rtol=1e-12)


# ArviZ 0.23's matplotlib backend uses an API matplotlib 3.11 deprecates (not stochflow's call).
@pytest.mark.filterwarnings("ignore:Passing a dict or None as alias_mapping")
def test_trace_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = sf.Trace(positions=fixed_draws(), stats={"logdensity": np.zeros((4, 200))})
    plot = arviz_bridge.plot_trace(trace)
    assert plot is not None and plt.get_fignums()
    plt.savefig(tmp_path / "trace.png")
    assert (tmp_path / "trace.png").stat().st_size > 0
    plt.close("all")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        result = current(pathlib.Path(folder))
    EXPECTED.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED} with ArviZ {arviz_bridge.ARVIZ_VERSION}", file=sys.stderr)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_recorded_stat_is_arviz_or_a_documented_extra(family):
    # The step is traced, not compiled: the info it returns is what the driver records per draw.
    sampler, target, _, _ = FAMILIES[family]
    positions = jnp.zeros((4, target.dim)) + (0.3 if target.mirror is not None else 0.0)
    state = sampler.init(target, positions, jax.random.key(0))
    _, info = jax.eval_shape(lambda s: sampler.step(target, s, jax.random.key(1), ALL_PARTICLES), state)
    names = {arviz_bridge.SAMPLE_STATS_NAMES.get(name, name) for name in info._fields}
    unknown = names - arviz_bridge.ARVIZ_SAMPLE_STATS - set(arviz_bridge.STOCHFLOW_SAMPLE_STATS)
    assert not unknown, f"{family} records {sorted(unknown)}: map it to ArviZ's name or document it"
    assert {"lp", "diverging", "n_grad"} <= names
