r"""The stochastic normalizing flow: a sequence of blocks with path weights.

Forward path (sampling): :math:`z \sim N(0, I)`, then every block in order,

.. math::

    \log w(z \to x) = u_Z(z) - u_X(x) + \sum_t \Delta S_t
                    = \log p_X(x) - \log N(z; 0, I) + \sum_t \Delta S_t ,

with :math:`\log p_X` the target's unnormalised log-density, so that
:math:`E[w] = Z_X` (Jarzynski's identity for the SNF path) and
:math:`E[w f(x)] / E[w] = E_{\mu_X}[f]`.

Backward path (maximum likelihood, Wu et al. 2020 Sec. 3): a data point
:math:`x` runs through the inverse blocks in reverse order to :math:`z`;
:math:`\log N(z) + \sum_t \Delta S^{inv}_t` is a one-path estimate whose
exponential has expectation :math:`q_X(x)`, the flow's marginal density at
:math:`x`; its negative mean over data is the ML loss (reference code:
``unormalized_nll``).
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from ..target import Target
from .layers import LayerSpec, RealNVP, Metropolis, prior_energy, spec_from_dict, spec_to_dict

Array = jax.Array

__all__ = ["StochasticFlow", "build_flow", "realnvp_snf_layers"]


class StochasticFlow(eqx.Module):
    """An SNF: equinox blocks (trainable couplings, static stochastic blocks) on R^dim.

    Build one with :func:`build_flow` (or ``sf.fit_snf``). ``specs`` are the
    layer hyperparameters it was built from; ``training`` holds the training
    settings ``fit_snf`` used (a tuple of ``(name, value)`` pairs). The flow
    holds arrays: jit its methods with ``eqx.filter_jit`` (e.g.
    ``eqx.filter_jit(lambda flow, key: flow.sample(key, n, target))(flow, key)``).
    """

    layers: tuple
    dim: int = eqx.field(static=True)
    specs: tuple = eqx.field(static=True)
    training: tuple = eqx.field(static=True, default=())

    def hyperparameters(self) -> dict:
        """JSON-able description: dim, layer specs, training settings."""
        return {
            "dim": self.dim,
            "layers": [spec_to_dict(spec) for spec in self.specs],
            "training": dict(self.training),
        }

    @property
    def target_evaluations(self) -> int:
        """Target log-density (or gradient) evaluations per sample, the final weight included."""
        return sum(layer.target_evaluations() for layer in self.layers) + 1

    def forward(self, z: Array, key: Array, target: Target) -> tuple[Array, Array]:
        """Run the blocks on one point ``z`` (dim,): ``(x, sum of Delta S)``."""
        delta_s = jnp.zeros((), z.dtype)
        for layer, layer_key in zip(self.layers, jax.random.split(key, len(self.layers))):
            z, term = layer.forward(z, layer_key, target)
            delta_s = delta_s + term
        return z, delta_s

    def inverse(self, x: Array, key: Array, target: Target) -> tuple[Array, Array]:
        """Run the inverse blocks in reverse order on one point ``x``: ``(z, sum of Delta S_inv)``."""
        delta_s = jnp.zeros((), x.dtype)
        keys = jax.random.split(key, len(self.layers))
        for layer, layer_key in zip(reversed(self.layers), keys[::-1]):
            x, term = layer.inverse(x, layer_key, target)
            delta_s = delta_s + term
        return x, delta_s

    def sample_one(self, key: Array, target: Target) -> tuple[Array, Array, Array]:
        """One forward path: ``(x, log w, log p_X(x))``."""
        prior_key, path_key = jax.random.split(key)
        z = jax.random.normal(prior_key, (self.dim,))
        x, delta_s = self.forward(z, path_key, target)
        logdensity = target.logdensity(x)
        return x, logdensity + prior_energy(z) + delta_s, logdensity

    def sample(self, key: Array, num_samples: int, target: Target) -> tuple[Array, Array]:
        """``num_samples`` independent forward paths: positions ``(n, dim)`` and log weights ``(n,)``."""
        x, log_weight, _ = jax.vmap(self.sample_one, in_axes=(0, None))(
            jax.random.split(key, num_samples), target
        )
        return x, log_weight

    def path_log_likelihood(self, x: Array, key: Array, target: Target) -> Array:
        """One backward path from data ``x`` (dim,): ``log N(z) + sum Delta S_inv`` (= -NLL)."""
        z, delta_s = self.inverse(x, key, target)
        return -prior_energy(z) + delta_s


def build_flow(layers: Sequence[LayerSpec], dim: int, key: Array) -> StochasticFlow:
    """Initialise the equinox modules of ``layers`` (specs) on R^dim, couplings' weights from ``key``."""
    specs = tuple(spec_from_dict(s) if isinstance(s, dict) else s for s in layers)
    keys = jax.random.split(key, len(specs))
    modules = tuple(spec.build(dim, layer_key) for spec, layer_key in zip(specs, keys))
    return StochasticFlow(layers=modules, dim=dim, specs=specs)


def realnvp_snf_layers(
    num_transforms: int = 3,
    width: int = 64,
    depth: int = 2,
    stochastic: bool = True,
    num_steps: int = 20,
    step_size: float = 0.25,
    diffuse_at_0: bool = True,
    block: type = Metropolis,
) -> list[LayerSpec]:
    """The paper's double-well architecture (reference ``boltzmann_generator_RNVP_MC``).

    ``num_transforms`` RealNVP transforms, each two couplings (the second
    flipped); with ``stochastic``: after transform ``i < num_transforms - 1`` a
    block of ``num_steps`` stochastic steps toward ``u_lam``,
    ``lam = i / (num_transforms - 1)``, a final block on the target (lam = 1), and
    with ``diffuse_at_0`` one on the prior first. ``block`` is the stochastic
    spec class (``Metropolis`` as in the paper, or ``MALA`` / ``Langevin``).
    """
    layers: list[LayerSpec] = []
    if stochastic and diffuse_at_0:
        layers.append(block(num_steps, step_size, 0.0))
    for i in range(num_transforms):
        layers += [RealNVP(width, depth, flip=False), RealNVP(width, depth, flip=True)]
        if stochastic and i < num_transforms - 1:
            layers.append(block(num_steps, step_size, i / max(num_transforms - 1, 1)))
    if stochastic:
        layers.append(block(num_steps, step_size, 1.0))
    return layers
