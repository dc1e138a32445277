r"""Layers of a stochastic normalizing flow (Wu, Köhler & Noé, NeurIPS 2020).

A stochastic normalizing flow (SNF) carries a sample from the prior
:math:`\mu_Z = N(0, I)` to the target :math:`\mu_X \propto e^{-u_X}` through
blocks :math:`y_0 = z \to y_1 \to \dots \to y_T = x`. Each block reports its
term :math:`\Delta S_t` of the log path weight, the log ratio of the backward
to the forward transition density, and every sample carries the log
importance weight

.. math::

    \log w = u_Z(z) - u_X(x) + \sum_t \Delta S_t,
    \qquad E_{\text{forward path}}[w] = Z_X / Z_Z .

Blocks (each a *spec*, a small frozen dataclass holding hyperparameters, and
the equinox module it builds):

* :class:`RealNVP` → :class:`AffineCoupling` (Dinh et al. 2017, as in the
  reference code ``bgtorch`` ``AffineTransformer``): the conditioning
  coordinates :math:`x_c` pass unchanged, the others move by
  :math:`y_t = x_t e^{\alpha \tanh s(x_c)} + m(x_c)` with MLPs ``s`` and ``m``
  and a learnt :math:`\log\alpha` (initialised to -1). Invertible, so
  :math:`\Delta S = \log|\det J| = \sum \alpha \tanh s(x_c)`.
* :class:`Metropolis` → :class:`MetropolisBlock`: ``num_steps`` random-walk
  Metropolis steps :math:`y' = y + \sigma\xi` toward the interpolated energy
  :math:`u_\lambda = (1-\lambda) u_Z + \lambda u_X`. The kernel is in detailed
  balance with :math:`e^{-u_\lambda}`, so the backward kernel can be taken equal
  to the forward one and :math:`\Delta S = u_\lambda(y_{end}) - u_\lambda(y_{start})`.
* :class:`MALA` → :class:`MALABlock`: the same with Metropolis-adjusted
  Langevin steps (detailed balance too, same :math:`\Delta S`).
* :class:`Langevin` → :class:`LangevinBlock`: unadjusted overdamped Langevin
  steps :math:`y' = y - \epsilon\nabla u_\lambda(y) + \sqrt{2\epsilon}\,\eta`; the
  backward step from :math:`y'` would need the noise
  :math:`\tilde\eta = (y - y' + \epsilon\nabla u_\lambda(y'))/\sqrt{2\epsilon}`,
  so :math:`\Delta S = \tfrac12(\|\eta\|^2 - \|\tilde\eta\|^2)` per step.

Stochastic blocks run the same dynamics in the inverse direction (the
backward kernel equals the forward one), as the reference code does; their
inverse :math:`\Delta S` enters the maximum-likelihood (backward-path) loss.
Hyperparameters of stochastic blocks are static (not trained).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Union

import equinox as eqx
import jax
import jax.numpy as jnp

from ..kernels.checks import check_int, check_positive
from ..kernels.langevin import LangevinPoint, langevin_point, langevin_position
from ..kernels.metropolis import langevin_mh
from ..target import Target

Array = jax.Array

__all__ = [
    "RealNVP",
    "Metropolis",
    "MALA",
    "Langevin",
    "LayerSpec",
    "AffineCoupling",
    "MetropolisBlock",
    "MALABlock",
    "LangevinBlock",
    "prior_energy",
    "interpolated_logdensity",
    "spec_from_dict",
]


def prior_energy(z: Array) -> Array:
    """u_Z(z) = -log N(z; 0, I): the standard normal energy, normalised (so E[w] = Z_X)."""
    return 0.5 * jnp.sum(z**2) + 0.5 * z.shape[-1] * math.log(2.0 * math.pi)


def interpolated_logdensity(target: Target, lam: float) -> Callable[[Array], Array]:
    """x -> -u_lambda(x) = -(1 - lam) u_Z(x) + lam log p_X(x); the target is not evaluated at lam = 0."""
    if lam == 0.0:
        return lambda x: -prior_energy(x)
    if lam == 1.0:
        return target.logdensity
    return lambda x: -(1.0 - lam) * prior_energy(x) + lam * target.logdensity(x)


def _check_lam(lam: Any) -> float:
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise TypeError(f"lam must be a number in [0, 1], got {lam!r}.") from None
    if not 0.0 <= lam <= 1.0:
        raise ValueError(
            f"lam must lie in [0, 1] (0: the prior N(0, I), 1: the target), got {lam}."
        )
    return lam


# --------------------------------------------------------------------------- specs


@dataclasses.dataclass(frozen=True)
class RealNVP:
    """Spec of an affine coupling layer.

    ``mask``: tuple of 0/1 of length ``dim``, 1 marking a conditioning
    coordinate; default: the first ``dim // 2`` coordinates condition the rest,
    or with ``flip=True`` the rest condition the first ``dim // 2`` (the
    reference code's split/swap). ``width``/``depth``: the hidden layers of the
    shift and scale MLPs (ReLU), e.g. the paper's [64, 64] is width 64, depth 2.
    """

    width: int = 64
    depth: int = 2
    flip: bool = False
    mask: Optional[tuple[int, ...]] = None
    kind: str = dataclasses.field(default="realnvp", init=False)

    def __post_init__(self) -> None:
        check_int("RealNVP width", self.width, 1)
        check_int("RealNVP depth", self.depth, 0)
        if self.mask is not None:
            mask = tuple(int(m) for m in self.mask)
            if any(m not in (0, 1) for m in mask):
                raise ValueError(f"RealNVP mask must hold 0/1 entries, got {self.mask!r}.")
            object.__setattr__(self, "mask", mask)

    def condition_mask(self, dim: int) -> tuple[int, ...]:
        """The 0/1 conditioning mask for ``dim`` coordinates (validated)."""
        if dim < 2:
            raise ValueError(f"a coupling layer needs dim >= 2 (one coordinate conditions another), got dim={dim}.")
        if self.mask is not None:
            if len(self.mask) != dim:
                raise ValueError(
                    f"RealNVP mask has length {len(self.mask)} but the target has dim={dim}; "
                    "the flow must match the target's dimension."
                )
            if 0 < sum(self.mask) < dim:
                return self.mask
            raise ValueError(f"RealNVP mask {self.mask} must condition on some but not all coordinates.")
        left = dim // 2
        first = tuple([1] * left + [0] * (dim - left))
        return tuple(1 - m for m in first) if self.flip else first

    def build(self, dim: int, key: Array) -> "AffineCoupling":
        return AffineCoupling(self.condition_mask(dim), self.width, self.depth, key)


@dataclasses.dataclass(frozen=True)
class _StochasticSpec:
    num_steps: int
    step_size: float
    lam: float

    def __post_init__(self) -> None:
        check_int(f"{type(self).__name__} num_steps", self.num_steps, 1)
        object.__setattr__(self, "step_size", check_positive(f"{type(self).__name__} step_size", self.step_size))
        object.__setattr__(self, "lam", _check_lam(self.lam))


@dataclasses.dataclass(frozen=True)
class Metropolis(_StochasticSpec):
    """Spec of ``num_steps`` random-walk Metropolis steps (proposal std ``step_size``) toward u_lam."""

    kind: str = dataclasses.field(default="metropolis", init=False)

    def build(self, dim: int, key: Array) -> "MetropolisBlock":
        return MetropolisBlock(self.num_steps, self.step_size, self.lam)


@dataclasses.dataclass(frozen=True)
class MALA(_StochasticSpec):
    """Spec of ``num_steps`` MALA steps (step ``h = step_size``) toward u_lam."""

    kind: str = dataclasses.field(default="mala", init=False)

    def build(self, dim: int, key: Array) -> "MALABlock":
        return MALABlock(self.num_steps, self.step_size, self.lam)


@dataclasses.dataclass(frozen=True)
class Langevin(_StochasticSpec):
    """Spec of ``num_steps`` unadjusted overdamped Langevin steps (step ``step_size``) toward u_lam."""

    kind: str = dataclasses.field(default="langevin", init=False)

    def build(self, dim: int, key: Array) -> "LangevinBlock":
        return LangevinBlock(self.num_steps, self.step_size, self.lam)


LayerSpec = Union[RealNVP, Metropolis, MALA, Langevin]
_SPEC_KINDS = {"realnvp": RealNVP, "metropolis": Metropolis, "mala": MALA, "langevin": Langevin}


def spec_to_dict(spec: LayerSpec) -> dict:
    """A JSON-able dict of a spec (``kind`` plus its fields)."""
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.init}
    if fields.get("mask") is not None:
        fields["mask"] = list(fields["mask"])
    return {"kind": spec.kind, **fields}


def spec_from_dict(data: dict) -> LayerSpec:
    """Inverse of :func:`spec_to_dict`."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _SPEC_KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; known: {sorted(_SPEC_KINDS)}.")
    if data.get("mask") is not None:
        data["mask"] = tuple(data["mask"])
    return _SPEC_KINDS[kind](**data)


# --------------------------------------------------------------------------- modules


class AffineCoupling(eqx.Module):
    """RealNVP affine coupling: ``y_t = x_t exp(alpha tanh s(x_c)) + m(x_c)``, ``x_c`` unchanged."""

    shift: eqx.nn.MLP
    scale: eqx.nn.MLP
    log_alpha: Array
    condition: tuple[int, ...] = eqx.field(static=True)
    transform: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, mask: tuple[int, ...], width: int, depth: int, key: Array):
        self.condition = tuple(i for i, m in enumerate(mask) if m)
        self.transform = tuple(i for i, m in enumerate(mask) if not m)
        shift_key, scale_key = jax.random.split(key)
        sizes = dict(in_size=len(self.condition), out_size=len(self.transform), width_size=width, depth=depth)
        self.shift = eqx.nn.MLP(**sizes, activation=jax.nn.relu, key=shift_key)
        self.scale = eqx.nn.MLP(**sizes, activation=jax.nn.relu, key=scale_key)
        self.log_alpha = -jnp.ones(())

    def _shift_and_log_scale(self, x: Array) -> tuple[Array, Array]:
        conditioning = x[jnp.asarray(self.condition)]
        log_scale = jnp.exp(self.log_alpha) * jnp.tanh(self.scale(conditioning))
        return self.shift(conditioning), log_scale

    def forward(self, x: Array, key: Array, target: Target) -> tuple[Array, Array]:
        """``(y, log|det dy/dx|)``; ``key`` and ``target`` are unused (deterministic layer)."""
        shift, log_scale = self._shift_and_log_scale(x)
        moved = jnp.asarray(self.transform)
        return x.at[moved].set(x[moved] * jnp.exp(log_scale) + shift), jnp.sum(log_scale)

    def inverse(self, y: Array, key: Array, target: Target) -> tuple[Array, Array]:
        """``(x, log|det dx/dy|)``."""
        shift, log_scale = self._shift_and_log_scale(y)
        moved = jnp.asarray(self.transform)
        return y.at[moved].set((y[moved] - shift) * jnp.exp(-log_scale)), -jnp.sum(log_scale)

    def target_evaluations(self) -> int:
        return 0


class _StochasticBlock(eqx.Module):
    num_steps: int = eqx.field(static=True)
    step_size: float = eqx.field(static=True)
    lam: float = eqx.field(static=True)

    def inverse(self, y: Array, key: Array, target: Target) -> tuple[Array, Array]:
        """The backward kernel is the forward one: run the same dynamics."""
        return self.forward(y, key, target)

    def target_evaluations(self) -> int:
        """Target log-density/gradient evaluations per sample (the start and each step)."""
        return 0 if self.lam == 0.0 else self.num_steps + 1


class MetropolisBlock(_StochasticBlock):
    """Random-walk Metropolis toward u_lam; ``Delta S = u_lam(end) - u_lam(start)``."""

    def forward(self, y: Array, key: Array, target: Target) -> tuple[Array, Array]:
        logdensity = interpolated_logdensity(target, self.lam)

        def step(carry, step_key):
            position, current = carry
            noise_key, accept_key = jax.random.split(step_key)
            proposal = position + self.step_size * jax.random.normal(noise_key, position.shape, position.dtype)
            proposed = logdensity(proposal)
            # A NaN log-density compares False: such a proposal is rejected.
            accepted = jnp.log(jax.random.uniform(accept_key, dtype=position.dtype)) < proposed - current
            return (jnp.where(accepted, proposal, position), jnp.where(accepted, proposed, current)), None

        start = logdensity(y)
        (y, end), _ = jax.lax.scan(step, (y, start), jax.random.split(key, self.num_steps))
        return y, start - end


class MALABlock(_StochasticBlock):
    """MALA toward u_lam (stochflow's Langevin proposal); ``Delta S = u_lam(end) - u_lam(start)``."""

    def forward(self, y: Array, key: Array, target: Target) -> tuple[Array, Array]:
        logdensity = interpolated_logdensity(target, self.lam)

        def step(state: LangevinPoint, step_key):
            new_state, _, _ = langevin_mh(
                step_key, state, self.step_size, lambda x: langevin_point(logdensity, x),
                lambda s: s.logdensity_grad, lambda s: s.logdensity,
            )
            return new_state, None

        start = langevin_point(logdensity, y)
        end, _ = jax.lax.scan(step, start, jax.random.split(key, self.num_steps))
        return end.position, start.logdensity - end.logdensity


class LangevinBlock(_StochasticBlock):
    """Unadjusted overdamped Langevin toward u_lam; ``Delta S = sum 0.5 (|eta|^2 - |eta~|^2)``."""

    def forward(self, y: Array, key: Array, target: Target) -> tuple[Array, Array]:
        logdensity = interpolated_logdensity(target, self.lam)
        h = self.step_size

        def step(carry, step_key):
            state, delta_s = carry
            noise = jax.random.normal(step_key, state.position.shape, state.position.dtype)
            moved = langevin_point(logdensity, langevin_position(state.position, state.logdensity_grad, h, noise))
            # The noise a Langevin step from the new point would need to come back.
            backward_noise = (state.position - moved.position - h * moved.logdensity_grad) / jnp.sqrt(2.0 * h)
            return (moved, delta_s + 0.5 * (jnp.sum(noise**2) - jnp.sum(backward_noise**2))), None

        start = langevin_point(logdensity, y)
        (end, delta_s), _ = jax.lax.scan(step, (start, jnp.zeros((), y.dtype)), jax.random.split(key, self.num_steps))
        return end.position, delta_s
