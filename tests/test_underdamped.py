"""Underdamped Langevin schemes against their exact stationary laws on a Gaussian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stochflow as sf
from gaussian_laws import underdamped_law

SIGMA2, MASS, FRICTION, STEP = 2.0, 0.5, 1.0, 1.0


def run_to_stationarity(scheme, n=4000, dim=10, steps=150):
    target = sf.Target(lambda x: -0.5 * jnp.sum(x**2) / SIGMA2, dim=dim)
    sampler = sf.underdamped(STEP, friction=FRICTION, scheme=scheme, mass=MASS)
    init = jnp.sqrt(SIGMA2) * jax.random.normal(jax.random.key(0), (n, dim))
    state = sampler.init(target, init, jax.random.key(1))

    @jax.jit
    def run(state):
        def body(state, key):
            return sampler.step(target, state, key)[0], None

        return jax.lax.scan(body, state, jax.random.split(jax.random.key(2), steps))[0]

    # friction * time = 150: the start's offset has decayed by e^-150.
    state = run(state)
    return np.asarray(state.position).ravel(), np.asarray(state.momentum).ravel()


@pytest.mark.parametrize("scheme", ["baoab", "obabo", "ubu"])
def test_stationary_law_of_each_scheme(scheme):
    law = underdamped_law(scheme, STEP, FRICTION, SIGMA2, MASS)
    x, p = run_to_stationarity(scheme)
    n = x.size  # independent (x, p) pairs: particles x dims
    # For a centred bivariate Gaussian with covariance S the moment estimators have
    # Var(mean x^2) = 2 S_xx^2 / n, Var(mean p^2) = 2 S_pp^2 / n,
    # Var(mean xp) = (S_xx S_pp + S_xp^2) / n. Tolerance: 5 standard errors each.
    estimates = [np.mean(x * x), np.mean(p * p), np.mean(x * p)]
    truths = [law[0, 0], law[1, 1], law[0, 1]]
    ses = [law[0, 0] * np.sqrt(2 / n), law[1, 1] * np.sqrt(2 / n),
           np.sqrt((law[0, 0] * law[1, 1] + law[0, 1] ** 2) / n)]
    for name, est, truth, se in zip(["var x", "var p", "cov xp"], estimates, truths, ses):
        assert abs(est - truth) < 5 * se, f"{scheme} {name}: {est:.4f} vs law {truth:.4f} (se {se:.4f})"
    if scheme == "baoab":
        assert law[0, 0] == pytest.approx(SIGMA2)  # BAOAB is exact in position for Gaussians
    else:
        # The step is large enough that the scheme's law differs from the target's:
        # a kernel without this scheme's discretisation error would fail above.
        assert abs(law[0, 0] - SIGMA2) > 10 * ses[0]


def test_schemes_spend_one_gradient_per_step():
    target = sf.models.anisotropic_gaussian(dim=3, condition_number=4.0)
    for scheme in ["baoab", "obabo", "ubu"]:
        trace = sf.sample(sf.underdamped(0.3, scheme=scheme), target, jax.random.key(0),
                          num_particles=2, num_steps=50, warmup=10, progress=False)
        assert np.all(trace.stats["n_grad"] == 1)
        assert trace.n_grad_total == 2 * 60


def test_mass_shape_is_checked():
    target = sf.models.anisotropic_gaussian(dim=3)
    with pytest.raises(ValueError, match="mass"):
        sf.underdamped(0.1, mass=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match=r"mass has shape \(2,\)"):
        sf.sample(sf.underdamped(0.1, mass=[1.0, 2.0]), target, jax.random.key(0), num_steps=5,
                  progress=False)


@pytest.mark.parametrize("scheme", ["baoab", "obabo"])
def test_funnel_divergences_are_flagged_and_no_chain_freezes(scheme):
    # Neal's funnel (d = 10) at h = 0.8: fine in the mouth (std up to e^3), far beyond the
    # stability limit h < 2 std in the neck (std e^-3). There the energy error explodes: those
    # steps must be flagged as divergences, undone, and their momentum reversed, so every chain
    # keeps moving. Measured (float32, key 0, jax 0.10.2 / 0.12.0 / 0.12.1): 205-242 (BAOAB) and
    # 332-355 (OBABO) of 32,000 steps flagged, no chain frozen, |x| < 75. With the momentum
    # redrawn instead, OBABO froze a chain on 0.12.1 (keys 0, 1, 2 of 0-3; 2,893 steps flagged
    # on 0.10.2). Without the energy criterion (threshold inf) the same
    # runs froze 3 and 4 of the 8 chains (at |x| = 87, overflowing steps undone for ever).
    with pytest.warns(RuntimeWarning, match="energy error beyond 1000") as caught:
        trace = sf.sample(sf.underdamped(0.8, scheme=scheme), sf.models.funnel(10), jax.random.key(0), 8, 4000,
                          progress=False)
    diverging = np.asarray(trace.stats["diverging"])
    assert trace.checks.num_divergent == diverging.sum() > 0
    assert trace.checks.frozen_chains == ()
    assert "did not move" not in str(caught[0].message)
    positions = np.asarray(trace.positions)
    assert np.isfinite(positions).all()
    # Each chain keeps moving: a diverging step is undone, the next one is a new move
    # (measured: the least mobile chain moved on 99% of its steps, both schemes).
    moved = np.mean(np.any(positions[:, 1:] != positions[:, :-1], axis=-1), axis=1)
    assert moved.min() > 0.25


def test_a_start_where_every_step_diverges_is_reported_by_chain():
    # Start two of four chains where the gradient is 1e6 (a quartic at x = 100, h = 0.1): no
    # momentum makes a stable step there, so those chains cannot move; they are named.
    target = sf.Target(lambda x: -0.25 * jnp.sum(x**4), dim=2)
    init = jnp.array([[100.0, 100.0], [0.1, 0.2], [100.0, -100.0], [-0.3, 0.1]])
    with pytest.warns(RuntimeWarning, match=r"2 chain\(s\) did not move .*chains 0, 2"):
        trace = sf.sample(sf.underdamped(0.1), target, jax.random.key(1), 4, 500, init=init, progress=False)
    assert trace.checks.frozen_chains == (0, 2)


@pytest.mark.parametrize("scheme", ["baoab", "obabo"])
def test_step_adaptation_lands_where_the_energy_criterion_says(scheme):
    # No accept step: warmup drives the mean of c = min(dE^2 / (d xi), 2) to 1 (xi = 5e-4).
    # On N(0, I_100) after 1,000 warmup steps (step size alone), the post-warmup mean of c
    # (16,000 values, ESS-based SE measured 0.007) must be 1 up to 10%: dual averaging ends on
    # an averaged iterate, measured 2-3% off the root. c grows like h^5 here, so 10% in c is 2%
    # in h; a step 20% off would put c off by a factor 2.5.
    target = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=100)
    trace = sf.sample(sf.underdamped(0.05, scheme=scheme, adapt_mass=False), target, jax.random.key(0), 8, 2_000,
                      warmup=1_000, progress=False)
    criterion = np.minimum(np.asarray(trace.stats["energy_error"]) ** 2 / (100 * 5e-4), 2.0)
    assert abs(criterion.mean() - 1.0) < 0.1
    # It moved the step far from where it started (0.05), and each chain has its own.
    steps = trace.adapted["step_size"]
    assert np.all(steps > 0.3) and len(np.unique(steps)) == 8
    assert trace.checks.problems() == []


@pytest.mark.parametrize("pooled", [False, True])
def test_windowed_warmup_recovers_a_diagonal_mass(pooled):
    # As MALA's test (tests/test_langevin.py): axis-aligned Gaussian, variances 1e-2 .. 1. With
    # the adapted step the last window (1,300 draws a chain) is worth n_eff ~ 200 a chain (ESS
    # per draw measured ~0.16 after warmup), so a variance's relative SE is sqrt(2/200) = 0.1
    # a chain, 0.035 pooled over 8 chains. Tolerance 5 SE. The mass is the inverse variance.
    target = sf.models.anisotropic_gaussian(dim=20, condition_number=100.0, rotate=False)
    variances = np.diag(target.truth.cov)
    trace = sf.sample(sf.underdamped(0.05, adapt_mass=True, pooled=pooled), target, jax.random.key(4), 8, 2_000, warmup=3_000,
                      progress=False)
    relative_error = trace.adapted["inverse_mass"] / variances - 1.0
    assert np.abs(relative_error).max() < 5 * (0.035 if pooled else 0.1), relative_error.round(3)
    # With the mass the run mixes: ESS is limited by the widest coordinate, not the narrowest
    # (measured 2,500 against 160 with the identity mass and the step adapted alone).
    assert sf.diagnostics.ess(trace.positions).min() > 1_000
    assert trace.checks.problems() == []
