"""Faults and bad inputs: each is refused with an error that says what is wrong and how to
fix it, before anything compiles, or fails without losing data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import stochflow as sf
from stochflow.benchmarks.cli import main as cli_main
from stochflow.diagnostics.kernels import mmd
from trace_counter import Counter

# --- bad inputs ---

GAUSSIAN = sf.Target(lambda x: -0.5 * jnp.sum(x**2), 2, name="gaussian-2d")
KEY = jax.random.key(0)


def run(target=GAUSSIAN, sampler=None, **kwargs):
    kwargs.setdefault("num_steps", 5)
    return sf.sample(sampler or sf.ula(0.1), target, KEY, progress=False, checks=False, **kwargs)


@pytest.mark.parametrize("factory, kwargs, message", [
    (sf.ula, {"step_size": "0.1"}, "step_size must be a positive number (an int or float), got '0.1' of type str"),
    (sf.ula, {"step_size": True}, "step_size must be a positive number (an int or float), got True of type bool"),
    (sf.mala, {"step_size": 0.1, "target_accept": "0.6"}, "target_accept must be a number in (0, 1)"),
    (sf.mala, {"step_size": 0.1, "adapt_step_size": "no"}, "adapt_step_size must be True or False, got 'no'"),
    (sf.underdamped, {"step_size": np.array([0.1, 0.2])}, "step_size must be a positive number"),
])
def test_numbers_and_bools_must_be_what_they_say(factory, kwargs, message):
    with pytest.raises(TypeError) as err:
        factory(**kwargs)
    assert message in str(err.value)


def test_numbers_of_numpy_and_jax_types_are_accepted():
    assert sf.ula(np.float32(0.1)).params["step_size"] == pytest.approx(0.1)
    assert sf.ula(jnp.asarray(0.25)).params["step_size"] == 0.25
    assert sf.ula(1).params["step_size"] == 1.0


def test_progress_must_be_a_bool():
    with pytest.raises(TypeError, match="progress must be True or False, got 'no'"):
        sf.sample(sf.ula(0.1), GAUSSIAN, KEY, num_particles=2, num_steps=5, progress="no")


def test_a_complex_init_is_refused_not_cast():
    with pytest.raises(TypeError, match="init must be real numbers, got dtype complex128"):
        run(init=np.ones((2, 2)) + 1j)


def test_a_list_init_gives_the_number_of_particles():
    trace = run(init=[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    assert trace.positions.shape == (3, 5, 2)
    with pytest.raises(ValueError, match=r"init has 3 particles \(rows\) but num_particles=4; leave num_particles out"):
        run(init=[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], num_particles=4)
    with pytest.raises(ValueError, match="ragged sequence"):
        run(init=[[0.0, 0.0], [1.0]])


def test_a_start_with_a_nan_gradient_is_refused():
    # sqrt(|x|) has a finite value at 0 and an infinite gradient there: every step from it diverges.
    target = sf.Target(lambda x: -jnp.sum(jnp.sqrt(jnp.abs(x))), 2)
    with pytest.raises(ValueError, match=r"the gradient of the log-density is not finite at 1 starting position\(s\) "
                                         r"\(particles \[1\]\)"):
        run(target, init=np.array([[0.5, 0.5], [0.0, 0.5]]))


@pytest.mark.parametrize("num_particles", [10**12, 4 * 10**9])
def test_a_run_that_cannot_fit_in_memory_is_refused_before_allocating(num_particles):
    counter = Counter()
    target = sf.Target(counter, 2)
    traces_at_build = counter.traces
    with pytest.raises(MemoryError, match=r"this run needs about .* GB of memory .* are available\. Use fewer "
                                          r"particles or steps, record fewer draws with thin=, or stream"):
        run(target, num_particles=num_particles)
    # The exact estimate traces init abstractly (eval_shape) once; nothing is compiled or run.
    assert counter.traces - traces_at_build <= 1


def test_the_memory_check_counts_the_in_memory_trace():
    # 10^6 particles x 2 dims: the state is a few tens of MB, but 20,000 draws of them kept in
    # memory (1e6 x 2e4 x (2 + 8) x 4 bytes = 800 GB) cannot be.
    with pytest.raises(MemoryError, match="the recorded draws: 745 GB"):
        run(num_particles=10**6, num_steps=20_000)


def test_interacting_samplers_are_refused_where_independent_chains_are_needed():
    def model():
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="numpyro_kernel runs each NumPyro chain as one particle .* 'svgd' moves "
                                         "its particles together"):
        sf.numpyro_kernel(model, sf.svgd(0.1))
    with pytest.raises(ValueError, match="inner sampler 'svgd' is not a set of independent Markov chains"):
        sf.rdmc(inner=sf.svgd(0.1))
    sf.numpyro_kernel(model, sf.mala(0.1))  # chain methods stay accepted
    sf.rdmc(inner=sf.mala(0.1))


def test_a_numpyro_model_without_latent_sites_is_named():
    def all_observed(y):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match="the NumPyro model 'all_observed' has no latent sites to sample"):
        sf.from_numpyro(all_observed, jnp.ones(3))


def test_bmumla_on_a_target_without_a_nonsmooth_term_says_so():
    with pytest.raises(ValueError, match=r"bmumla needs a nonsmooth term \(sf.Target\(..., nonsmooth=g\)\)"):
        run(sampler=sf.bmumla(0.01, 0.1), num_particles=2)


def test_mmd_of_a_collapsed_sample_says_why_instead_of_nan():
    with pytest.raises(ValueError, match="the median heuristic gives bandwidth 0"):
        mmd(np.zeros((3, 2)), np.zeros((3, 2)))
    assert np.isfinite(mmd(np.zeros((3, 2)), np.zeros((3, 2)), bandwidth=1.0))
    rng = np.random.default_rng(0)
    assert np.isfinite(mmd(rng.normal(size=(1, 2)), rng.normal(size=(5, 2))))  # one point is a sample


@pytest.mark.parametrize("argv, message", [
    (["bench", "--quick", "--seeds", "0"], "--seeds must be at least 1 (the number of seeds per cell), got 0"),
    (["bench", "--quick", "--particles", "0"], "--particles must be at least 8, got 0"),
    (["bench", "--quick", "--out", "/proc/no-such-dir/out"], "cannot write the report to --out /proc/no-such-dir/out (/proc/no-such-dir: No such file"),
])
def test_cli_counts_and_paths_are_checked(argv, message, capsys):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err
