"""sf.sample: determinism, thinning and warmup semantics, bad input, ArviZ export."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stochflow as sf
from trace_counter import Counter
from stochflow.run.sinks import FollowerSink, MemorySink, Sink, StoreSink
from stochflow.samplers.base import Requirements


@pytest.fixture(scope="module")
def target():
    return sf.models.anisotropic_gaussian(dim=3, condition_number=10.0)


def run(sampler, target, **kwargs):
    settings = dict(num_particles=3, num_steps=60, warmup=25, progress=False)
    settings.update(kwargs)
    return sf.sample(sampler, target, jax.random.key(11), **settings)


@pytest.mark.parametrize("make", [lambda: sf.mala(0.3), lambda: sf.underdamped(0.3, scheme="ubu")])
def test_same_key_same_draws_whatever_the_chunk_size(make, target):
    reference = run(make(), target, thin=3, chunk_size=1000)
    for chunk_size in (1, 7, 30):
        other = run(make(), target, thin=3, chunk_size=chunk_size)
        np.testing.assert_array_equal(other.positions, reference.positions)
        for name in reference.stats:
            np.testing.assert_array_equal(other.stats[name], reference.stats[name])


def test_thinning_keeps_every_thin_th_step(target):
    full = run(sf.ula(0.2), target, thin=1)
    thinned = run(sf.ula(0.2), target, thin=4)
    assert thinned.num_draws == 60 // 4
    np.testing.assert_array_equal(thinned.positions, full.positions[:, 3::4])
    # n_grad of a thinned draw counts every step since the previous draw.
    assert np.all(thinned.stats["n_grad"] == 4)
    assert thinned.n_grad_total == full.n_grad_total == 3 * (60 + 25)


def test_warmup_is_not_recorded_and_ends_adaptation(target):
    trace = run(sf.mala(0.3), target, warmup=200, num_steps=50)
    assert trace.positions.shape == (3, 50, 3)
    assert trace.metadata["warmup"] == 200
    steps = trace.stats["step_size"]
    assert np.all(steps == steps[:, :1]) and np.all(steps[:, 0] != 0.3)
    no_warmup = run(sf.mala(0.3), target, warmup=0, num_steps=50)
    assert np.all(no_warmup.stats["step_size"] == np.float32(0.3))


def test_jitted_step_is_pure(target):
    sampler = sf.mala(0.3)
    state = sampler.init(target, jnp.zeros((5, 3)), jax.random.key(0))
    step = jax.jit(sampler.step)
    a, _ = step(target, state, jax.random.key(1))
    b, _ = step(target, state, jax.random.key(1))
    c, _ = step(target, state, jax.random.key(2))
    np.testing.assert_array_equal(a.position, b.position)
    assert not np.array_equal(a.position, c.position)


def test_to_arviz_follows_arviz_names(target):
    trace = run(sf.mala(0.3), target)
    idata = trace.to_arviz()
    assert idata.posterior["x"].dims == ("chain", "draw", "dim")
    assert idata.posterior["x"].shape == (3, 60, 3)
    stats = idata.sample_stats
    for name in ("lp", "acceptance_rate", "diverging", "step_size", "n_grad"):
        assert name in stats, name
    np.testing.assert_array_equal(stats["lp"].values, trace.stats["logdensity"])
    assert idata.posterior.attrs["sampler"] == "mala"
    summary = sf.diagnostics.summary(trace)
    assert list(summary.index) == ["x[0]", "x[1]", "x[2]"]
    assert {"mean", "sd", "ess_bulk", "r_hat"} <= set(summary.columns)


def test_default_init_and_num_particles(target):
    trace = run(sf.ula(0.1), target, num_particles=None)
    assert trace.num_particles == 4
    init = jnp.zeros((6, 3))
    assert run(sf.ula(0.1), target, num_particles=None, init=init).num_particles == 6


BAD_RUNS = [
    (dict(init=jnp.zeros((3, 2))), ValueError, r"shape \(n_particles, dim\) = \(n, 3\)"),
    (dict(init=jnp.zeros((4, 3)), num_particles=3), ValueError, "init has 4 particles"),
    (dict(warmup=-1), ValueError, "warmup must be >= 0"),
    (dict(thin=100), ValueError, "thin=100 is larger than num_steps=60"),
    (dict(thin=0), ValueError, "thin must be >= 1"),
    (dict(num_steps=0), ValueError, "num_steps must be >= 1"),
    (dict(num_steps=2.5), TypeError, "num_steps must be an int"),
    (dict(num_particles=0), ValueError, "num_particles must be >= 1"),
    (dict(chunk_size=0), ValueError, "chunk_size must be >= 1"),
    (dict(progress="no"), TypeError, "progress must be True or False"),
    (dict(reproducible=1), TypeError, "reproducible must be True or False"),
    (dict(resume=True), ValueError, "resume=True needs store=path"),
    (dict(store=3), TypeError, "store must be a path"),
    (dict(devices="some"), ValueError, "devices='some' is not understood"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_RUNS)
def test_bad_run_settings_fail_before_compiling(kwargs, error, message):
    logdensity = Counter()
    target = sf.Target(logdensity, dim=3)
    traced_by_validation = logdensity.traces
    settings = dict(num_particles=3, num_steps=60, progress=False)
    settings.update(kwargs)
    with pytest.raises(error, match=message):
        sf.sample(sf.ula(0.1), target, jax.random.key(0), **settings)
    assert logdensity.traces == traced_by_validation  # nothing was traced or compiled


def test_a_target_the_sampler_cannot_use_fails_before_compiling():
    logdensity = Counter()
    target = sf.Target(logdensity, dim=3)
    traced_by_validation = logdensity.traces
    needs_a_prox = sf.ula(0.1)._replace(requires=Requirements(nonsmooth=True))
    with pytest.raises(ValueError, match="ula needs a nonsmooth term"):
        sf.sample(needs_a_prox, target, jax.random.key(0), num_particles=3, num_steps=5, progress=False)
    assert logdensity.traces == traced_by_validation


def test_every_sink_has_the_sink_protocol_s_methods_and_signatures():
    def methods(cls):
        members = {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_")}
        return {name: inspect.signature(member.fget if isinstance(member, property) else member)
                for name, member in members.items()}

    protocol = methods(Sink)
    assert set(protocol) == {"progress", "restore_state", "append", "commit", "finish", "close"}
    for sink in (MemorySink, StoreSink, FollowerSink):
        assert methods(sink) == protocol, sink.__name__
        assert isinstance(sink.progress, property), sink.__name__  # as in Sink


def test_bad_targets():
    with pytest.raises(ValueError, match="must return a scalar.*returned shape \\(3,\\)"):
        sf.Target(lambda x: x**2, dim=3)
    with pytest.raises(ValueError, match="failed on an input of shape \\(3,\\)"):
        sf.Target(lambda x: x @ jnp.ones(4), dim=3)
    with pytest.raises(TypeError, match="positive int"):
        sf.Target(lambda x: jnp.sum(x), dim=2.0)
    with pytest.raises(ValueError, match="positive int"):
        sf.Target(lambda x: jnp.sum(x), dim=0)
    with pytest.raises(TypeError, match="callable"):
        sf.Target("not a function", dim=2)
    with pytest.raises(TypeError, match="floating"):
        sf.Target(lambda x: jnp.sum(x > 0), dim=2)


@pytest.mark.parametrize("factory", [
    lambda: sf.ula(0.0),
    lambda: sf.ula(-0.1),
    lambda: sf.mala(float("nan")),
    lambda: sf.underdamped(-1.0),
    lambda: sf.underdamped(0.1, friction=0.0),
])
def test_non_positive_hyperparameters(factory):
    with pytest.raises(ValueError, match="must be a finite positive number"):
        factory()


def test_other_bad_sampler_input(target):
    with pytest.raises(ValueError, match="unknown scheme 'leapfrog'; choose one of baoab, obabo, ubu"):
        sf.underdamped(0.1, scheme="leapfrog")
    with pytest.raises(ValueError, match="target_accept"):
        sf.mala(0.1, target_accept=1.5)
    with pytest.raises(TypeError, match="Sampler"):
        sf.sample("mala", target, jax.random.key(0), num_steps=5)
    with pytest.raises(TypeError, match="PRNG key"):
        sf.sample(sf.ula(0.1), target, 0, num_steps=5)


def test_start_outside_support_is_refused():
    target = sf.Target(lambda x: jnp.where(x[0] > 0, -x[0], -jnp.inf), dim=1)
    with pytest.raises(ValueError, match="not finite at 1 starting position"):
        sf.sample(sf.ula(0.1), target, jax.random.key(0), init=jnp.array([[1.0], [-1.0]]),
                  num_steps=5, progress=False)


def test_default_starts_where_the_density_is_not_finite_are_drawn_again():
    # Half of Uniform(-2, 2)^2 has x0 <= 0, where this density is 0: about half of 64 default
    # starts land there and are redrawn (each redraw keeps the good rows), so all start inside.
    target = sf.Target(lambda x: jnp.where(x[0] > 0, -x[0] - 0.5 * x[1] ** 2, -jnp.inf), dim=2)
    trace = sf.sample(sf.ula(0.01), target, jax.random.key(0), 64, 3, progress=False, checks=False)
    first = trace.positions[:, 0]
    assert np.all(np.isfinite(first)) and np.all(first[:, 0] > -0.5)  # one ULA step of 0.01 from x0 > 0
    # The good default starts are the first draw itself: the same key on a target finite
    # everywhere starts those particles at the same points.
    everywhere = sf.Target(lambda x: -x[0] - 0.5 * x[1] ** 2, dim=2)
    plain = sf.sample(sf.ula(0.01), everywhere, jax.random.key(0), 64, 3, progress=False, checks=False)
    kept = plain.positions[:, 0, 0] > 0.1  # started well inside x0 > 0 on both targets
    assert 16 < kept.sum() < 48
    np.testing.assert_array_equal(first[kept], plain.positions[kept, 0])
    # A density finite nowhere is still refused, after the redraws.
    nowhere = sf.Target(lambda x: -jnp.inf * jnp.ones(()) + x[0], dim=2)
    with pytest.raises(ValueError, match="drawn 100 times"):
        sf.sample(sf.ula(0.01), nowhere, jax.random.key(0), 4, 3, progress=False)
