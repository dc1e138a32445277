"""The sampler contract shared by every method.

A sampler factory (``sf.ula(step_size=...)``) takes hyperparameters and returns a
:class:`Sampler`: a pair of pure functions over a NamedTuple state, as optax
returns a pair for an optimiser and BlackJAX a pair for a kernel::

    state = sampler.init(target, positions, key)        # positions: (n_particles, dim)
    state, info = sampler.step(target, state, key)      # info fields: (n_particles,)

``init`` and ``step`` work on the whole particle set, so interacting methods
(SVGD) fit the same frame as independent chains. ``step`` takes an optional
fourth argument, the :class:`~stochflow.kernels.particles.ParticleAxis` the
driver runs it on (sharded or not, vectorised or one particle at a time);
nothing else tells a sampler how its particles are laid out.

An independent-chain method is written as a one-chain kernel
``kernel(key, state, target) -> (state, info)`` (BlackJAX's ``build_kernel``
layer) and :func:`independent_chains` lifts it to the particle set, one key per
particle. Tunables (step size, friction, mass) live in the state, so a sampler
that differs only in their values runs the same compiled program.

Every ``info`` reports ``logdensity``, ``n_grad`` (gradient or density
evaluations spent per particle in that step) and ``diverging`` (the step could
not be trusted). A method that adapts supplies ``warmup_step`` (a step that
also adapts), ``start_warmup`` (told the number of warmup steps, e.g. to lay
out Stan's windows) and ``end_warmup`` (fixes the adapted values); the driver
uses them during warmup only.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax

from ..kernels.adaptation import ChainWarmup
from ..kernels.checks import check_positions
from ..kernels.particles import ALL_PARTICLES, ParticleAxis, batch_kernel
from ..target import Target

Array = jax.Array
State = Any
Info = Any
InitFn = Callable[[Target, Array, Array], State]
StepFn = Callable[..., tuple[State, Info]]
Kernel = Callable[[Array, State, Target], tuple[State, Info]]

__all__ = ["Sampler", "Requirements", "independent_chains"]

REQUIREMENTS = ("smooth", "nonsmooth", "mirror")
NONFINITE_STEP = "a non-finite log-density, gradient or position; the step was undone or rejected"


class Requirements(NamedTuple):
    """What a sampler needs of a target: read by its init check and by the harness.

    ``nonsmooth``: a nonsmooth term with a proximal operator; ``mirror``: a mirror
    map (its domain is the support); ``smooth``: no nonsmooth term (the
    density is ``logdensity`` alone).
    """

    smooth: bool = False
    nonsmooth: bool = False
    mirror: bool = False

    def unmet(self, target: Target) -> list[str]:
        """What ``target`` lacks of these requirements, in words (empty when it qualifies)."""
        missing = []
        if self.smooth and target.nonsmooth is not None:
            missing.append("a smooth target (this one has a nonsmooth term)")
        if self.nonsmooth and target.nonsmooth is None:
            missing.append("a nonsmooth term (sf.Target(..., nonsmooth=g))")
        if self.mirror and target.mirror is None:
            missing.append("a mirror map (sf.Target(..., mirror=...))")
        return missing


class Sampler(NamedTuple):
    """A sampling method: pure ``init``/``step`` over a NamedTuple state.

    Attributes
    ----------
    init
        ``(target, positions (n, dim), key) -> state``.
    step
        ``(target, state, key, axis=ParticleAxis()) -> (state, info)``.
    name
        The method's name (``"mala"``), recorded in traces.
    params
        The hyperparameters the factory was given, recorded in traces.
    warmup_step
        Optional step used instead of ``step`` during warmup (it adapts, e.g.
        the step size).
    end_warmup
        Optional ``state -> state`` called once when warmup ends.
    start_warmup
        Optional ``(state, num_warmup) -> state`` called once before the first
        warmup step of a fresh run (not on resume: the stored state has it).
    num_steps
        For transport samplers with a fixed schedule, the number of steps the
        schedule has; ``None`` for samplers that run for as long as asked.
    shard_local
        ``True`` if ``step``/``warmup_step`` can run on one device's share of
        the particles under :func:`jax.shard_map`, given the axis name in their
        ``axis`` argument: per-particle keys from
        :func:`~stochflow.kernels.particles.particle_keys` and cross-particle
        terms only through :func:`~stochflow.kernels.particles.all_particles`.
        Others are partitioned by XLA. Both are correct; without
        ``reproducible=True`` the rounding may differ.
    requires
        The :class:`Requirements` a target must meet.
    chains
        ``True`` if each particle is a Markov chain of its own, run for as long as
        asked (:func:`independent_chains`): the end-of-run checks then apply R-hat,
        ESS, acceptance and frozen-chain checks across particles.
    divergence
        What a ``diverging`` step means for this method, in words (the end-of-run
        warning quotes it).
    """

    init: InitFn
    step: StepFn
    name: str
    params: dict
    warmup_step: Optional[StepFn] = None
    end_warmup: Optional[Callable[[State], State]] = None
    num_steps: Optional[int] = None
    shard_local: bool = False
    requires: Requirements = Requirements()
    chains: bool = False
    divergence: str = NONFINITE_STEP
    start_warmup: Optional[Callable[[State, int], State]] = None

    def check_target(self, target: Target) -> None:
        """A ValueError naming what ``target`` lacks for this sampler."""
        missing = self.requires.unmet(target)
        if missing:
            raise ValueError(f"{self.name} needs {' and '.join(missing)}.")


def independent_chains(
    name: str,
    params: dict,
    init_one: Callable[[Target, Array, Array], State],
    kernel: Kernel,
    warmup: Optional[ChainWarmup] = None,
    requires: Requirements = Requirements(),
    divergence: str = NONFINITE_STEP,
) -> Sampler:
    """A particle-batch :class:`Sampler` from a one-chain ``kernel(key, state, target)``.

    ``init_one(target, position, key)`` builds one chain's state (tunables
    included); the sampler's ``init`` maps it over the particles, one key each,
    and its ``step`` is :func:`~stochflow.kernels.particles.batch_kernel` of the
    kernel: the same function object for the same kernel, so the driver's
    compiled programs are shared by samplers that differ only in their state's
    values. ``warmup`` (e.g. :func:`~stochflow.kernels.adaptation.window_warmup`) gives the
    warmup functions.
    The sampler is ``shard_local``: the chains interact at most through
    :func:`~stochflow.kernels.particles.all_particles` (a pooled warmup).
    """

    def init(target: Target, positions: Array, key: Array) -> State:
        positions = check_positions(target, positions)
        sampler.check_target(target)
        keys = jax.random.split(key, positions.shape[0])
        return jax.vmap(init_one, in_axes=(None, 0, 0))(target, positions, keys)

    sampler = Sampler(
        init=init,
        step=batch_kernel(kernel),
        name=name,
        params=dict(params),
        warmup_step=None if warmup is None else warmup.step,
        end_warmup=None if warmup is None else warmup.end,
        start_warmup=None if warmup is None else warmup.start,
        shard_local=True,
        requires=requires,
        chains=True,
        divergence=divergence,
    )
    return sampler
