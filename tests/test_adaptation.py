"""Warmup building blocks (stochflow.kernels.adaptation) against exact answers, and the
BlackJAX adapter's windowed warmup."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stochflow as sf
from stochflow.kernels import adaptation


def windows(num_warmup: int) -> tuple[int, list[int]]:
    schedule = adaptation.window_schedule(num_warmup)
    ends = [int(e) for e in schedule.ends if e >= 0]
    return int(schedule.first), ends


def test_window_schedule_is_stans():
    # Stan's windowed_adaptation with its defaults (init_buffer 75, term_buffer 50, window 25):
    # for 1,000 warmup iterations the metric is updated after iterations 100, 150, 250, 450, 950.
    assert windows(1_000) == (75, [100, 150, 250, 450, 950])
    assert windows(2_000) == (75, [100, 150, 250, 450, 850, 1_950])
    # Shorter than 150: buffers of 15% and 10%, one window in between (Stan's fallback).
    assert windows(100) == (15, [90])
    # Below 20 steps there is no window (only the step size adapts).
    assert windows(19) == (0, [])


def test_welford_and_its_pooled_combination_are_the_sample_moments():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(5, 37, 3)) * np.array([1.0, 10.0, 0.1]) + np.array([0.0, 5.0, -2.0])
    draws[2] += 3.0  # chains that disagree: the pooled variance includes the between-chain part

    def moments_of(chain):
        moments = adaptation.welford_init(jnp.zeros(3))
        for x in chain:
            moments = adaptation.welford_add(moments, jnp.asarray(x))
        return moments

    per_chain = [moments_of(chain) for chain in draws]
    for moments, chain in zip(per_chain, draws):
        np.testing.assert_allclose(moments.m2 / (moments.count - 1), chain.var(0, ddof=1), rtol=1e-5)
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *per_chain)
    pooled = adaptation.welford_pool(stacked)
    everything = draws.reshape(-1, 3)
    np.testing.assert_allclose(pooled.mean, everything.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled.m2 / (pooled.count - 1), everything.var(0, ddof=1), rtol=1e-5)
    # Stan's shrinkage: n/(n+5) Var + 1e-3 * 5/(n+5).
    n = everything.shape[0]
    expected = n / (n + 5) * everything.var(0, ddof=1) + 1e-3 * 5 / (n + 5)
    np.testing.assert_allclose(adaptation.regularised_variance(pooled), expected, rtol=1e-5)


def test_blackjax_nuts_adapts_its_mass_and_spends_fewer_gradients():
    # NUTS on an axis-aligned Gaussian with standard deviations 0.1 .. 1: with the identity
    # mass its step is bound by the narrowest coordinate and a transition takes ~ (1 / 0.1)
    # leapfrog steps to cross the widest; with the adapted mass the problem is isotropic.
    # 4 chains pooled over Stan's 1,000-step windows (last window 500 draws a chain, NUTS
    # draws nearly independent: n_eff ~ 2,000 pooled, relative SE sqrt(2/2000) = 0.03; 5 SE).
    target = sf.models.anisotropic_gaussian(dim=10, condition_number=100.0, rotate=False)
    variances = np.diag(target.truth.cov)
    adapted = sf.sample(sf.from_blackjax("nuts", pooled=True), target, jax.random.key(0), 4, 500, warmup=1_000,
                        progress=False)
    np.testing.assert_array_less(np.abs(adapted.adapted["inverse_mass"] / variances - 1.0), 5 * 0.03)
    identity = sf.sample(sf.from_blackjax("nuts", inverse_mass_matrix=np.ones(10)), target, jax.random.key(0), 4,
                         500, warmup=1_000, progress=False)
    assert np.all(identity.adapted["inverse_mass"] == 1.0)  # a given mass is kept
    # Min bulk ESS per 1,000 gradients, measured (keys 0 and 1): 257 and 262 adapted against 23 and
    # 19 with the identity mass (6.5 against 15.7 leapfrog steps a transition). Held to 4x.
    def ess_per_gradient(trace):
        return sf.diagnostics.ess(trace.positions).min() / trace.stats["n_grad"].sum()

    assert ess_per_gradient(adapted) > 4 * ess_per_gradient(identity)
    assert adapted.checks.problems() == []


def test_mclmc_still_needs_its_step_size():
    with pytest.raises(ValueError, match="needs step_size"):
        sf.from_blackjax("mclmc", L=1.0)
