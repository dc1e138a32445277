"""A log-density that counts its traces: tests use it to see when the driver recompiles."""

import jax.numpy as jnp


class Counter:
    """A log-density that counts how often JAX traces it."""

    def __init__(self):
        self.traces = 0

    def __call__(self, x):
        self.traces += 1
        return -0.5 * jnp.sum(x**2)
