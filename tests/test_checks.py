"""End-of-run checks (stochflow.diagnostics.checks) and the vectorised R-hat / bulk ESS."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stochflow as sf
from stochflow.diagnostics import arviz_bridge, convergence

UNTRUSTED = "cannot be trusted"


def ar1(rng: np.random.Generator, chains: int, draws: int, dim: int, phi: float) -> np.ndarray:
    noise = rng.normal(size=(chains, draws, dim))
    out = np.empty_like(noise)
    out[:, 0] = noise[:, 0]
    for t in range(1, draws):
        out[:, t] = phi * out[:, t - 1] + noise[:, t]
    return out


@pytest.mark.parametrize("chains, draws, dim, phi", [(4, 1000, 5, 0.9), (2, 37, 6, 0.5), (8, 11, 4, -0.6),
                                                      (3, 200, 3, 0.99), (5, 5, 3, 0.0), (16, 301, 7, 0.7)])
def test_vectorised_estimators_are_arviz(chains, draws, dim, phi):
    # The same estimators as the installed ArviZ (0.2x or 1.x): equal to float64 rounding, with
    # ties (rounded draws, as Metropolis rejections repeat values) and a shifted chain.
    x = np.round(ar1(np.random.default_rng(chains * draws), chains, draws, dim, phi), 1)
    x[0] += 0.3
    rhat, ess = convergence.rhat_and_bulk_ess(x)
    np.testing.assert_allclose(rhat, arviz_bridge.rhat(x), rtol=1e-10)
    np.testing.assert_allclose(ess, arviz_bridge.ess(x), rtol=1e-10)


def gaussian(dim: int = 3) -> sf.Target:
    return sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=dim, name="gauss")


def run_recording(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = sf.sample(*args, progress=False, **kwargs)
    return trace, [str(w.message) for w in caught if UNTRUSTED in str(w.message)]


def test_a_converged_run_is_not_flagged():
    # 4 MALA chains x 2,000 draws on N(0, I): bulk ESS ~ 3,000, so R-hat - 1 ~ 1e-3 << 0.01;
    # 500 warmup steps of dual averaging bring the acceptance within ~0.05 of 0.574.
    trace, untrusted = run_recording(sf.mala(0.5), gaussian(), jax.random.key(0), 4, 2_000, warmup=500)
    assert untrusted == []
    assert trace.checks.problems() == [] and trace.checks.max_rhat < 1.01
    assert "checks=ok" in repr(trace)


def test_chains_stuck_in_different_modes_are_flagged():
    # Modes at -5 and +5 (sd 0.5): MALA chains never cross, so two chains in each mode disagree
    # completely. Rank-normalised, the 4 half-chains of each mode hold the lower and the upper half
    # of the normal scores: chain means +-0.80 (E|Z|), within-chain variance 1 - 0.64, so
    # R-hat -> sqrt(1 + (8/7) 0.64 / 0.36) = 1.74; a mixing run has R-hat - 1 ~ 1e-3.
    mixture = sf.Target(lambda x: jnp.logaddexp(-2.0 * jnp.sum((x - 5.0) ** 2), -2.0 * jnp.sum((x + 5.0) ** 2)),
                        dim=2, name="two-modes")
    init = jnp.array([[5.0, 5.0], [5.0, 5.0], [-5.0, -5.0], [-5.0, -5.0]])
    trace, untrusted = run_recording(sf.mala(0.2), mixture, jax.random.key(1), 4, 1_000, warmup=200, init=init)
    assert trace.checks.max_rhat > 1.5
    assert len(untrusted) == 1 and "R-hat" in untrusted[0]
    assert "UNTRUSTED" in repr(trace)


def test_an_adaptive_sampler_without_warmup_is_flagged_and_a_plain_one_is_not():
    _, untrusted = run_recording(sf.mala(0.5), gaussian(), jax.random.key(2), 4, 2_000)
    assert len(untrusted) == 1 and "warmup=0" in untrusted[0]
    trace, _ = run_recording(sf.ula(0.1), gaussian(), jax.random.key(2), 4, 2_000)
    assert not trace.checks.unadapted


def test_frozen_chains_are_named():
    # Finite only at the starting point: every step is non-finite, undone, and the chains stay put.
    def logdensity(x):
        return -0.5 * jnp.sum(x**2) + jnp.where(jnp.all(x == 0.5), 0.0, jnp.nan)

    target = sf.Target(logdensity, dim=2, name="a-point")
    trace, untrusted = run_recording(sf.ula(0.1), target, jax.random.key(3), 4, 100, init=jnp.full((4, 2), 0.5))
    assert trace.checks.frozen_chains == (0, 1, 2, 3)
    assert len(untrusted) == 1 and "did not move" in untrusted[0] and "400 of 400 sampling steps" in untrusted[0]


def test_far_from_target_acceptance_is_flagged():
    # A warmup of 3 steps cannot move the step size from 5.0 (acceptance ~ 0) to the 0.574 target.
    trace, untrusted = run_recording(sf.mala(5.0), gaussian(20), jax.random.key(4), 4, 500, warmup=3)
    assert trace.checks.accept_rate < 0.574 - 0.15
    assert len(untrusted) == 1 and "acceptance" in untrusted[0]


def test_checks_false_silences_the_warning_not_the_facts():
    trace, untrusted = run_recording(sf.mala(0.5), gaussian(), jax.random.key(2), 4, 50, checks=False)
    assert untrusted == [] and trace.checks.unadapted
    with pytest.raises(TypeError, match="checks"):
        sf.sample(sf.mala(0.5), gaussian(), jax.random.key(2), 4, 50, checks="no", progress=False)


def test_particle_methods_get_no_chain_checks():
    trace, untrusted = run_recording(sf.svgd(0.05), gaussian(), jax.random.key(5), 16, 20)
    assert trace.checks.max_rhat is None and trace.checks.frozen_chains == () and untrusted == []


def test_a_summary_taken_chunk_by_chunk_in_any_order_is_the_whole_trace_read_at_once():
    """What the driver does (chunks as they are recorded; a resumed run adds its stored part
    last) against the trace read in one go: the same spaced draws and frozen chains exactly."""
    from stochflow.diagnostics.checks import DrawSummary

    rng = np.random.default_rng(7)
    positions = rng.standard_normal((6, 9_000, 5)).astype(np.float32)  # spaced: every 3rd draw
    positions[2, 4_500:] = positions[2, 4_500]  # frozen over the second half
    positions[4, 6_000:] = positions[4, 6_000]  # frozen over its last third only: it moved
    whole = DrawSummary(positions.shape, positions.dtype)
    whole.add(0, positions)
    pieces = DrawSummary(positions.shape, positions.dtype)
    bounds = [0, 7, 3_334, 4_500, 4_501, 7_000, 9_000]
    for begin, end in reversed(list(zip(bounds[:-1], bounds[1:]))):
        pieces.add(begin, positions[:, begin:end])
    np.testing.assert_array_equal(pieces.spaced, whole.spaced)
    assert whole.every == 3
    np.testing.assert_array_equal(whole.spaced, positions[:, ::3])
    assert pieces.frozen_chains == whole.frozen_chains == (2,)
