"""A sampler that differs only in a tunable's value reuses the compiled chunk programs.

Counted, not timed: the log-density counts how often JAX traces it (tests/trace_counter.py).
A second ``sf.sample`` call of an already-compiled sampler still evaluates the log-density
outside the compiled chunks (the eager start check, ``init``); a sampler with a new step size
must count exactly as many evaluations as that, i.e. no chunk program is traced again.
"""

from __future__ import annotations

import jax
import pytest

import stochflow as sf
from trace_counter import Counter

FACTORIES = {
    "ula": lambda h: sf.ula(h),
    "mala": lambda h: sf.mala(h),
    "baoab": lambda h: sf.underdamped(h),
    "obabo": lambda h: sf.underdamped(h, friction=2.0, scheme="obabo"),
    "ubu": lambda h: sf.underdamped(h, scheme="ubu", mass=[1.0, 2.0]),
    "blackjax-nuts": lambda h: sf.from_blackjax("nuts", step_size=h, max_num_doublings=4),
    "blackjax-hmc": lambda h: sf.from_blackjax("hmc", step_size=h, num_integration_steps=3),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_a_new_step_size_traces_nothing_new(name):
    counter = Counter()
    target = sf.Target(counter, dim=2, name=f"reuse-{name}")

    def run(sampler) -> int:
        before = counter.traces
        sf.sample(sampler, target, jax.random.key(0), num_particles=4, num_steps=20, warmup=10,
                  chunk_size=5, progress=False)
        return counter.traces - before

    first = run(FACTORIES[name](0.1))
    again = run(FACTORIES[name](0.1))
    new_step = run(FACTORIES[name](0.11))
    assert first > again  # the first call traced the chunk programs
    assert new_step == again
