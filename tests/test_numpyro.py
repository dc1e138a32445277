"""NumPyro integration: models as targets, stochflow samplers as MCMC kernels."""

import json
import pathlib

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
import pytest
from numpyro.infer import MCMC
from scipy import integrate, stats

import stochflow as sf
from stochflow.diagnostics import arviz_bridge
from models_numpyro import (
    EIGHT_SCHOOLS_SIGMA,
    EIGHT_SCHOOLS_Y,
    eight_schools,
    logistic_data,
    logistic_regression,
)

REFERENCES = json.loads((pathlib.Path(__file__).parent / "data" / "nuts_references.json").read_text())


def assert_agrees_with_reference(summary, reference, names, columns=("mean", "sd")):
    """Each statistic within 5 combined Monte Carlo SEs: sqrt(mcse_sf^2 + mcse_ref^2)."""
    for name in names:
        for column in columns:
            mcse = "mcse_mean" if column == "mean" else "mcse_sd"
            se = np.hypot(summary.loc[name, mcse], reference[name][mcse])
            gap = summary.loc[name, column] - reference[name][column]
            assert abs(gap) < 5 * se, f"{name} {column}: {summary.loc[name, column]:.3f} vs " \
                                      f"{reference[name][column]:.3f} (se {se:.3f})"


EIGHT_SCHOOLS_NAMES = ["mu", "tau"] + [f"theta[{i}]" for i in range(8)]
SAMPLERS = {
    "mala": lambda: sf.mala(0.1),
    # Unadjusted, so the step is kept small: its bias must stay under the MC error.
    "underdamped": lambda: sf.underdamped(0.05, friction=0.5),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_eight_schools_through_target(name):
    target = sf.from_numpyro(eight_schools, EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
    trace = sf.sample(SAMPLERS[name](), target, jax.random.key(1), num_particles=16,
                      num_steps=6_000, warmup=1_000, thin=2, progress=False)
    idata = trace.to_arviz()
    assert set(idata.posterior.data_vars) == {"mu", "tau", "eta", "theta"}
    assert idata.posterior["theta"].shape == (16, 3_000, 8)
    summary = arviz_bridge.summary(idata, var_names=["mu", "tau", "theta"], round_to="none")
    assert summary["ess_bulk"].min() > 300
    assert_agrees_with_reference(summary, REFERENCES["eight_schools"], EIGHT_SCHOOLS_NAMES)


@pytest.mark.parametrize("name", SAMPLERS)
def test_eight_schools_through_mcmc_kernel(name):
    kernel = sf.numpyro_kernel(eight_schools, SAMPLERS[name]())
    mcmc = MCMC(kernel, num_warmup=1_000, num_samples=20_000, num_chains=4, thinning=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(2), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y,
             extra_fields=("accept_prob", "n_grad", "potential_energy"))
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples["theta"].shape == (4, 5_000, 8)
    extra = mcmc.get_extra_fields(group_by_chain=True)
    assert set(extra) >= {"accept_prob", "diverging", "n_grad", "potential_energy"}
    assert np.all(extra["n_grad"] == 1)
    idata = arviz_bridge.from_numpyro(mcmc)
    assert {"lp", "diverging", "acceptance_rate"} <= set(idata.sample_stats.data_vars)
    summary = arviz_bridge.summary(idata, var_names=["mu", "tau", "theta"], round_to="none")
    assert summary["ess_bulk"].min() > 300
    assert_agrees_with_reference(summary, REFERENCES["eight_schools"], EIGHT_SCHOOLS_NAMES)


def test_chain_methods_give_the_same_draws(capsys):
    # Each chain has its own key either way, so the chains are the same Markov chains;
    # vmapped and unvmapped XLA programs round float32 differently, hence rtol 1e-3
    # rather than equality (seen: relative gaps below 1e-3 after 100 steps).
    draws = {}
    for method in ("vectorized", "sequential"):
        mcmc = MCMC(sf.numpyro_kernel(eight_schools, sf.mala(0.1)), num_warmup=50, num_samples=50,
                    num_chains=2, chain_method=method, progress_bar=False)
        mcmc.run(jax.random.key(3), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y)
        draws[method] = mcmc.get_samples(group_by_chain=True)["mu"]
    mcmc.print_summary()
    printed = capsys.readouterr().out
    assert "mu" in printed and "tau" in printed and "r_hat" in printed
    np.testing.assert_allclose(draws["vectorized"], draws["sequential"], rtol=1e-3, atol=1e-4)


# A model whose posterior is known in closed form (or by 1-D quadrature), with a
# bounded, a simplex and a positive site.
BERNOULLI = np.array([1.0] * 7 + [0.0] * 13)  # 7 successes in 20: theta | y ~ Beta(8, 14)
COUNTS = np.array([5.0, 10.0, 15.0])  # p | counts ~ Dirichlet(1 + 5, 2 + 10, 3 + 15)
NORMAL_DATA = np.array([0.8, -1.3, 0.4, 2.1, -0.2])  # sigma | z by quadrature


def constrained_model():
    theta = numpyro.sample("theta", dist.Uniform(0.0, 1.0))
    numpyro.sample("y", dist.Bernoulli(probs=theta), obs=BERNOULLI)
    p = numpyro.sample("p", dist.Dirichlet(np.array([1.0, 2.0, 3.0])))
    numpyro.sample("counts", dist.Multinomial(total_count=30, probs=p), obs=COUNTS)
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("z", dist.Normal(0.0, sigma), obs=NORMAL_DATA)


def sigma_posterior_mean():
    def unnormalised(s):
        return stats.halfnorm.pdf(s) * np.prod(stats.norm.pdf(NORMAL_DATA, scale=s))

    mass = integrate.quad(unnormalised, 0, np.inf)[0]
    return integrate.quad(lambda s: s * unnormalised(s), 0, np.inf)[0] / mass


def test_constrained_sites_stay_in_support_and_match_the_conjugate_posterior():
    target = sf.from_numpyro(constrained_model)
    trace = sf.sample(sf.mala(0.1), target, jax.random.key(4), num_particles=16, num_steps=4_000,
                      warmup=1_000, thin=2, progress=False)
    draws = target.constrain(trace.positions)
    assert np.all((draws["theta"] > 0) & (draws["theta"] < 1))
    assert np.all(draws["p"] > 0) and np.allclose(draws["p"].sum(-1), 1.0, atol=1e-5)
    assert np.all(draws["sigma"] > 0)
    summary = arviz_bridge.summary(trace.to_arviz(), round_to="none")
    exact = {"theta": 8 / 22, "p[0]": 6 / 36, "p[1]": 12 / 36, "p[2]": 18 / 36,
             "sigma": sigma_posterior_mean()}
    for name, mean in exact.items():
        z = (summary.loc[name, "mean"] - mean) / summary.loc[name, "mcse_mean"]
        assert abs(z) < 5, f"{name}: {summary.loc[name, 'mean']:.4f} vs exact {mean:.4f} (z = {z:.1f})"


def test_logistic_regression_matches_nuts():
    features, labels = logistic_data()
    target = sf.from_numpyro(logistic_regression, features, labels)
    trace = sf.sample(sf.mala(0.05), target, jax.random.key(5), num_particles=16, num_steps=4_000,
                      warmup=1_000, thin=2, progress=False)
    summary = arviz_bridge.summary(trace.to_arviz(), round_to="none")
    names = ["bias", "weights[0]", "weights[1]", "weights[2]"]
    assert_agrees_with_reference(summary, REFERENCES["logistic_regression"], names, columns=("mean",))


def flat_regression(features, y):
    # Stan's flat priors, written as NumPyro writes them: the prior has no sampler.
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (features.shape[1],)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    numpyro.sample("y", dist.Normal(features @ beta, sigma), obs=y)


def test_flat_prior_model_loads_and_matches_its_closed_form_posterior():
    # p(beta, sigma) flat on R^k x (0, inf): beta | sigma, y ~ N(beta_hat, sigma^2 (X'X)^-1) and,
    # integrating beta out, p(sigma | y) ~ sigma^-(n-k) exp(-S / 2 sigma^2), i.e. sigma^2 ~
    # InvGamma((n - k - 1) / 2, S / 2): E[beta] = beta_hat, E[sigma^2] = S / (n - k - 3), with S
    # the residual sum of squares at beta_hat.
    rng = np.random.default_rng(7)
    n, k = 30, 3
    features = rng.normal(size=(n, k))
    y = features @ np.array([1.0, -2.0, 0.5]) + 0.7 * rng.normal(size=n)
    beta_hat, residual, *_ = np.linalg.lstsq(features, y, rcond=None)
    exact = {f"beta[{i}]": beta_hat[i] for i in range(k)}
    target = sf.from_numpyro(flat_regression, features, y)
    trace = sf.sample(sf.mala(0.05), target, jax.random.key(8), num_particles=16, num_steps=4_000,
                      warmup=1_000, thin=2, progress=False)
    summary = arviz_bridge.summary(trace.to_arviz(), round_to="none")
    sigma2 = target.constrain(trace.positions)["sigma"] ** 2
    se_sigma2 = sigma2.std() / np.sqrt(sf.diagnostics.ess(sigma2))
    # Within 5 Monte Carlo standard errors (mcse_mean: ArviZ's, from the bulk ESS).
    for name, mean in exact.items():
        z = (summary.loc[name, "mean"] - mean) / summary.loc[name, "mcse_mean"]
        assert abs(z) < 5, f"{name}: {summary.loc[name, 'mean']:.4f} vs exact {mean:.4f} (z = {z:.1f})"
    assert abs(sigma2.mean() - residual[0] / (n - k - 3)) < 5 * se_sigma2
    # NumPyro's MCMC with the stochflow kernel loads it too.
    mcmc = MCMC(sf.numpyro_kernel(flat_regression, sf.mala(0.05)), num_warmup=200, num_samples=200,
                progress_bar=False)
    mcmc.run(jax.random.key(9), features, y)
    assert mcmc.get_samples()["beta"].shape == (200, k)


def test_discrete_latent_site_is_refused_by_name():
    def mixture(y):
        z = numpyro.sample("z", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(3.0 * z, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"discrete latent site\(s\) 'z' \(Bernoulli.*[Mm]arginalise"):
        sf.from_numpyro(mixture, 1.0)
    with pytest.raises(ValueError, match="'z'"):
        MCMC(sf.numpyro_kernel(mixture, sf.mala(0.1)), num_warmup=5, num_samples=5,
             progress_bar=False).run(jax.random.key(0), 1.0)


def test_nan_potential_everywhere_names_the_site():
    def broken():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.sample("obs", dist.Normal(x, 1.0), obs=np.nan)  # a missing value left in the data

    with pytest.raises(ValueError, match=r"NaN or infinite at every start.*'obs'"):
        sf.from_numpyro(broken)


def test_wrong_model_arguments_surface_numpyro_errors():
    with pytest.raises(TypeError, match="sigma"):
        sf.from_numpyro(eight_schools)  # missing the required argument sigma


def test_kernel_bad_input():
    with pytest.raises(ValueError, match="exactly one of model or potential_fn"):
        sf.numpyro_kernel(sampler=sf.mala(0.1))
    with pytest.raises(TypeError, match="stochflow Sampler"):
        sf.numpyro_kernel(eight_schools, "mala")


def test_potential_fn_route():
    potential = lambda z: 0.5 * (z["a"] ** 2).sum()  # standard normal in 2-D
    mcmc = MCMC(sf.numpyro_kernel(potential_fn=potential, sampler=sf.mala(0.5)), num_warmup=500,
                num_samples=20_000, progress_bar=False)
    mcmc.run(jax.random.key(6), init_params={"a": np.zeros(2)})
    a = np.asarray(mcmc.get_samples()["a"])
    assert a.shape == (20_000, 2)
    # Mean 0 and variance 1 within 5 Monte Carlo SEs, SE = sd / sqrt(ESS) (ArviZ bulk ESS).
    for statistic, truth in ((a, 0.0), (a**2, 1.0)):
        se = statistic.std(0) / np.sqrt(sf.diagnostics.ess(statistic[None]))
        assert np.all(np.abs(statistic.mean(0) - truth) < 5 * se)


# A fresh interpreter per import order: in this pytest process NumPyro is already loaded.
IMPORT_ORDERS = {
    "stochflow first": "import stochflow as sf\nimport numpyro, numpyro.distributions as dist\n",
    "arviz first": "import arviz\nimport stochflow as sf\nimport numpyro, numpyro.distributions as dist\n",
}
CONSTRAINED_MODEL = """
import jax, jax.numpy as jnp

def model():
    numpyro.sample("tau", dist.HalfCauchy(5.0))  # positive: a log-Jacobian numpyro.factor

target = sf.from_numpyro(model)
print(float(jax.grad(target.logdensity)(jnp.zeros(target.dim))[0]))
"""


@pytest.mark.parametrize("order", IMPORT_ORDERS)
def test_models_with_constrained_sites_after_any_import_order(order):
    # ArviZ 1.x registers numpyro lazily; a first `import numpyro.distributions` then loaded
    # that package twice, and numpyro.factor raised "module 'numpyro.distributions' has no
    # attribute 'distribution'" (stochflow/diagnostics/arviz_bridge.py: _load_lazy_numpyro).
    import os
    import subprocess
    import sys

    root = pathlib.Path(__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", IMPORT_ORDERS[order] + CONSTRAINED_MODEL],
                          env=dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # d/du log p at u = log tau = 0 of HalfCauchy(5) with the Jacobian e^u: 1 - 2/(1 + 25) = 12/13.
    assert abs(float(done.stdout.strip()) - 12 / 13) < 1e-6


def test_mcmc_kernel_runs_the_windowed_warmup_and_shows_the_running_acceptance():
    # NumPyro tells the kernel num_warmup at init, so Stan's windows are laid out (for 200
    # steps: windows 75-100 and 100-150, then a 50-step fast buffer): after warmup each chain's
    # inverse mass is its last window's variance estimate, not the identity it started from.
    kernel = sf.numpyro_kernel(eight_schools, sf.mala(0.1))
    mcmc = MCMC(kernel, num_warmup=200, num_samples=50, num_chains=2, chain_method="vectorized",
                progress_bar=False)
    mcmc.run(jax.random.key(4), EIGHT_SCHOOLS_SIGMA, y=EIGHT_SCHOOLS_Y, extra_fields=("accept_prob",))
    state = mcmc.last_state
    assert not np.allclose(np.asarray(state.inner.inverse_mass), 1.0)
    # The running mean over the sampling phase is what the progress bar prints.
    accept = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["accept_prob"])
    np.testing.assert_allclose(np.asarray(state.mean_accept_prob), accept.mean(axis=1), rtol=1e-4)
    assert kernel.get_diagnostics_str(state) == f"mala, acc. prob={float(np.mean(accept)):.2f}"
