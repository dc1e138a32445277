"""The samplers the benchmark runs: one table row per sampler, with explicit hyperparameter rules.

Adding a sampler is one :class:`SamplerSpec` row in :data:`SAMPLER_TABLE`: a
name, how to build it for a target at a budget, which targets it applies to,
and how its hyperparameters were chosen. A row whose factory is not in this
version of stochflow is left out (so rows can wait for samplers to land).

How hyperparameters are chosen. Nothing is tuned on the metrics the report
shows. Every rule uses only two length scales of the target
(:func:`target_scales`): ``s_loc``, the smallest local standard deviation a step
must resolve, and ``s_glob``, the largest scale a chain must travel. They come
from the exact covariance (smallest eigenvalue, and for a mixture the
smallest component eigenvalue; largest eigenvalue) except for the targets in
:data:`SCALE_OVERRIDES`, whose global covariance hides a smaller local scale.

======================  ===========================================================
sampler                 rule (and why)
======================  ===========================================================
ula                     h = 0.1 s_loc^2: on a Gaussian, ULA inflates the variance by
                        1 / (1 - h / (2 s^2)), 5% in the stiffest direction.
mala                    h0 = s_loc^2, then per-chain dual averaging to acceptance
                        0.574 in warmup (Roberts & Rosenthal 1998).
underdamped-*           h = 0.5 s_loc (about 12 steps per period of the stiffest
                        direction), friction 1 / s_glob (critical damping of the
                        softest direction, where mixing is slowest).
blackjax-nuts           h0 = s_loc, dual averaging to acceptance 0.8 (Stan's
                        default) in warmup (budget / 100 transitions, 10 to 100); tree
                        depth <= 7 (<= 127 gradients per transition), so a transition
                        fits small budgets.
blackjax-hmc            h0 = s_loc, dual averaging to 0.8; L = clip(s_glob / s_loc,
                        4, 32) leapfrog steps: a trajectory of about one s_glob.
blackjax-mclmc          L = sqrt(d) s_glob, h = 0.25 sqrt(d) s_loc: BlackJAX's own
                        starting values for its tuner (sqrt(d) and sqrt(d)/4 on a
                        standard Gaussian) rescaled by the target's scales; no tuning.
rdmc                    the rdMC defaults (T = 2, inner ULA h = 1/2 rescaled, importance
                        starts) with curvature bound L = 1 / s_loc^2, so the inner step
                        is h over the curvature of q_t (the default L = 1 gave on
                        many-well, s_loc = 0.2, 25x too large a step: every score
                        estimate diverged),
                        K = 10 outer steps (20 above 5,000 gradients),
                        8 inner chains, 32 importance proposals, inner steps = what
                        the budget leaves: (budget / K - 41) / 8, at least 2.
snf                     the paper's RealNVP + Metropolis architecture, scaled down
                        (2 transforms, width 32, 5 Metropolis steps per block, step
                        0.25 s_glob); Adam 5e-3, batch 128; training iterations =
                        what the budget leaves once the N output samples are paid.
myula                   h = 0.1 s_loc^2 as ULA; smoothing lambda = h (Durmus,
                        Moulines & Pereyra 2018 take lambda of the order of h).
mymala                  h = s_loc^2, lambda = h (exact MH correction; a reference).
mla                     h = 0.1 s_loc^2 (as ULA, in the mirror geometry).
bmumla, bmmla           h = 0.04 s_loc^2, lambda = h; bmmla with 10 dual sub-steps. The
                        entropic simplex map is stiff near the faces: at 0.1 s_loc^2
                        (1.2e-3 on the Dirichlets) 1,390 (BMUMLA) and 1,709 (BMMLA)
                        of 512,000 steps on the tilted Dirichlet overshoot and are
                        undone; at 0.04 s_loc^2 none (128 chains x 4,000 steps, seed 0).
svgd                    step 0.1 s_loc with the default AdaGrad-with-momentum (whose
                        normalised steps move a particle about ``step`` per iteration:
                        a tenth of the local scale), RBF kernel, median bandwidth.
msvgd, svmd             step 0.1 (the Stein engineer's sparse-Dirichlet setting,
                        ``benchmarks/stein.py``), IMQ kernel, RMSProp (their defaults);
                        svmd eigen_threshold 0.998 as there.
======================  ===========================================================

Which targets a sampler applies to (``applies``) is read from what the sampler
declares (``Sampler.requires``, see :func:`fits`): a target has a nonsmooth term
iff the sampler requires one and a mirror domain iff it requires one. So the
Langevin/HMC family, rdMC and SNF get smooth targets on R^d; MYULA/MYMALA
nonsmooth terms on R^d; MLA, MSVGD and SVMD smooth targets on a mirror domain;
BMUMLA/BMMLA nonsmooth terms on a mirror domain.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import numpy as np

import stochflow

from ..samplers.base import Requirements, Sampler
from ..target import Target

__all__ = ["SamplerSpec", "Plan", "SAMPLER_TABLE", "SAMPLERS", "SCALE_OVERRIDES", "target_scales", "start_positions"]


class Plan(NamedTuple):
    """What a spec builds for one (target, budget): a sampler (or None for a
    trained method that the harness builds itself) and its settings."""

    sampler: Optional[Sampler]
    settings: dict
    grads_per_step: Optional[int] = None  # when it depends on the target (HMC's L); else the spec's


class SamplerSpec(NamedTuple):
    """One row of the sampler table.

    ``kind`` tells the harness how to spend the budget: ``"chain"`` (fixed
    ``grads_per_step``; warmup is the first fifth), ``"particles"`` (as a chain,
    for interacting particles: no ESS), ``"nuts"`` (variable cost
    per step, measured), ``"transport"`` (the sampler carries its schedule),
    ``"flow"`` (trained, then sampled once).
    """

    name: str
    factory: str  # attribute of ``stochflow`` the row needs; rows whose factory is missing are skipped
    build: Callable[[Target, tuple[float, float], int], Plan]
    applies: Callable[[Target], bool]
    kind: str = "chain"
    grads_per_step: int = 1
    rule: str = ""


# Targets whose global covariance hides a smaller local scale: (s_loc, s_glob, why).
SCALE_OVERRIDES: dict[str, tuple[float, float, str]] = {
    "funnel": (math.exp(-1.0), math.exp(2.25), "conditional std e^{x0/2} at x0 = -2; marginal std of x_i"),
    "banana": (1.0, 10.0, "conditional std of x2 given x1; std of x1"),
    "double-well": (0.2, 1.25, "1/sqrt(u''(1.75)) in the deep well; std of x1"),
    "many-well": (0.2, 1.25, "as the double well, per pair"),
}


def target_scales(target: Target, name: Optional[str] = None) -> tuple[float, float]:
    """``(s_loc, s_glob)`` of a target (see the module docstring)."""
    name = name or target.name
    if name in SCALE_OVERRIDES:
        return SCALE_OVERRIDES[name][:2]
    if target.truth.cov is None:
        raise ValueError(f"target {name!r} has no known covariance to set step sizes from; add it to SCALE_OVERRIDES.")
    eigenvalues = np.linalg.eigvalsh(target.truth.cov)
    s_loc, s_glob = float(np.sqrt(eigenvalues.min())), float(np.sqrt(eigenvalues.max()))
    components = target.truth.components
    if components is not None:
        s_loc = min(s_loc, float(np.sqrt(min(np.linalg.eigvalsh(c).min() for c in components[2]))))
    return s_loc, s_glob


# Starting boxes: chains start from Uniform(-r, r)^d. The 40-mode GMM's means were
# drawn from Uniform(-40, 40)^2, so its chains start spread over that box (the law of
# the construction, not the means); other targets use the driver's default starts.
START_RADIUS: dict[str, float] = {"gmm40": 40.0}


def start_positions(target_name: str, target: Target, key, num_particles: int):
    """Starting positions for chain samplers, or None for the driver's default."""
    import jax

    radius = START_RADIUS.get(target_name)
    if radius is None:
        return None
    return jax.random.uniform(key, (num_particles, target.dim), minval=-radius, maxval=radius)


# -- applicability -------------------------------------------------------------
def fits(requires: Requirements, target: Target) -> bool:
    """A sampler applies to a target whose structure is exactly what it declares it needs:
    a nonsmooth term iff it requires one, a mirror domain iff it requires one (a chain on
    R^d would leave a mirror domain; a smooth-target method would ignore a nonsmooth term)."""
    return (requires.nonsmooth == (target.nonsmooth is not None)
            and requires.mirror == (target.mirror is not None))


def _declared(requires: Requirements) -> Callable[[Target], bool]:
    """``applies`` from what a sampler declares it requires (``Sampler.requires``)."""

    def applies(target: Target) -> bool:
        return fits(requires, target)

    applies.__name__ = (f"{'nonsmooth' if requires.nonsmooth else 'smooth'} on "
                        f"{'a mirror domain' if requires.mirror else 'R^d'}")
    return applies


# -- builders ------------------------------------------------------------------
def _plan(sampler: Sampler) -> Plan:
    return Plan(sampler, dict(sampler.params))


def _ula(target, scales, budget):
    return _plan(stochflow.ula(0.1 * scales[0] ** 2))


def _mala(target, scales, budget):
    return _plan(stochflow.mala(scales[0] ** 2))


def _underdamped(scheme: str):
    def build(target, scales, budget):
        s_loc, s_glob = scales
        return _plan(stochflow.underdamped(0.5 * s_loc, friction=1.0 / s_glob, scheme=scheme))

    return build


def _nuts(target, scales, budget):
    return _plan(stochflow.from_blackjax("nuts", step_size=scales[0], max_num_doublings=7))


def _hmc_steps(scales) -> int:
    return int(np.clip(round(scales[1] / scales[0]), 4, 32))


def _hmc(target, scales, budget):
    steps = _hmc_steps(scales)
    sampler = stochflow.from_blackjax("hmc", step_size=scales[0], num_integration_steps=steps)
    return Plan(sampler, dict(sampler.params), grads_per_step=steps)


def _mclmc(target, scales, budget):
    root_d = math.sqrt(target.dim)
    return _plan(stochflow.from_blackjax("mclmc", step_size=0.25 * root_d * scales[0], L=root_d * scales[1]))


RDMC_INNER_PARTICLES, RDMC_PROPOSALS = 8, 32


def rdmc_outer_steps(budget: int) -> int:
    return 10 if budget <= 5_000 else 20


def _rdmc(target, scales, budget):
    outer = rdmc_outer_steps(budget)
    # cost of an outer step: proposals + inner starts + inner chains x steps + 1.
    inner_steps = max(2, (budget // outer - RDMC_PROPOSALS - RDMC_INNER_PARTICLES - 1) // RDMC_INNER_PARTICLES)
    lipschitz = 1.0 / scales[0] ** 2
    sampler = stochflow.rdmc(num_steps=outer, inner_steps=inner_steps, inner_particles=RDMC_INNER_PARTICLES,
                             importance_proposals=RDMC_PROPOSALS, lipschitz=lipschitz)
    return Plan(sampler, {"num_steps": outer, "inner_steps": inner_steps, "inner_particles": RDMC_INNER_PARTICLES,
                          "importance_proposals": RDMC_PROPOSALS, "lipschitz": lipschitz})


SNF_SETTINGS = {"num_transforms": 2, "width": 32, "num_steps": 5, "batch_size": 128, "learning_rate": 5e-3}


def _snf(target, scales, budget):
    return Plan(None, {**SNF_SETTINGS, "step_size": 0.25 * scales[1]})


def _myula(target, scales, budget):
    h = 0.1 * scales[0] ** 2
    return _plan(stochflow.myula(h, smoothing=h))


def _mymala(target, scales, budget):
    h = scales[0] ** 2
    return _plan(stochflow.mymala(h, smoothing=h))


def _mla(target, scales, budget):
    return _plan(stochflow.mla(0.1 * scales[0] ** 2))


def _bmumla(target, scales, budget):
    h = 0.04 * scales[0] ** 2
    return _plan(stochflow.bmumla(h, smoothing=h))


def _bmmla(target, scales, budget):
    h = 0.04 * scales[0] ** 2
    return _plan(stochflow.bmmla(h, smoothing=h, inner_steps=10))


def _svgd(target, scales, budget):
    return _plan(stochflow.svgd(0.1 * scales[0]))


def _msvgd(target, scales, budget):
    return _plan(stochflow.msvgd(0.1))


def _svmd(target, scales, budget):
    return _plan(stochflow.svmd(0.1, eigen_threshold=0.998))


_ROWS = [
    SamplerSpec("ula", "ula", _ula, _declared(stochflow.ula(1.0).requires), rule="h = 0.1 s_loc^2"),
    SamplerSpec("mala", "mala", _mala, _declared(stochflow.mala(1.0).requires), rule="h0 = s_loc^2, adapted to acc. 0.574"),
    SamplerSpec("underdamped-baoab", "underdamped", _underdamped("baoab"), _declared(stochflow.underdamped(1.0).requires), rule="h = 0.5 s_loc, friction 1/s_glob"),
    SamplerSpec("underdamped-obabo", "underdamped", _underdamped("obabo"), _declared(stochflow.underdamped(1.0, scheme="obabo").requires), rule="h = 0.5 s_loc, friction 1/s_glob"),
    SamplerSpec("underdamped-ubu", "underdamped", _underdamped("ubu"), _declared(stochflow.underdamped(1.0, scheme="ubu").requires), rule="h = 0.5 s_loc, friction 1/s_glob"),
    SamplerSpec("blackjax-nuts", "from_blackjax", _nuts, _declared(stochflow.from_blackjax("nuts", step_size=1.0).requires), kind="nuts",
                rule="h0 = s_loc, adapted to acc. 0.8, depth <= 7"),
    SamplerSpec("blackjax-hmc", "from_blackjax", _hmc, _declared(stochflow.from_blackjax("hmc", step_size=1.0, num_integration_steps=1).requires), rule="h0 = s_loc (acc. 0.8), L = clip(s_glob/s_loc, 4, 32)"),
    SamplerSpec("blackjax-mclmc", "from_blackjax", _mclmc, _declared(stochflow.from_blackjax("mclmc", step_size=1.0, L=1.0).requires), grads_per_step=2,
                rule="L = sqrt(d) s_glob, h = 0.25 sqrt(d) s_loc"),
    SamplerSpec("rdmc", "rdmc", _rdmc, _declared(stochflow.rdmc().requires), kind="transport", rule="K = 10/20, 8 inner chains, budget-fitted inner steps, L = 1/s_loc^2"),
    # sf.snf(flow) declares no requirement (its flow is fitted per target): smooth targets on R^d.
    SamplerSpec("snf", "fit_snf", _snf, _declared(Requirements()), kind="flow", rule="small RealNVP+Metropolis, budget-fitted training"),
    SamplerSpec("svgd", "svgd", _svgd, _declared(stochflow.svgd(1.0).requires), kind="particles", rule="step 0.1 s_loc (AdaGrad), RBF, median bandwidth"),
    SamplerSpec("msvgd", "msvgd", _msvgd, _declared(stochflow.msvgd(1.0).requires), kind="particles", rule="step 0.1, IMQ, RMSProp"),
    SamplerSpec("svmd", "svmd", _svmd, _declared(stochflow.svmd(1.0).requires), kind="particles", rule="step 0.1, IMQ, RMSProp, eig. 0.998"),
    SamplerSpec("myula", "myula", _myula, _declared(stochflow.myula(1.0, 1.0).requires), rule="h = 0.1 s_loc^2, lambda = h"),
    SamplerSpec("mymala", "mymala", _mymala, _declared(stochflow.mymala(1.0, 1.0).requires), rule="h = s_loc^2, lambda = h"),
    SamplerSpec("mla", "mla", _mla, _declared(stochflow.mla(1.0).requires), rule="h = 0.1 s_loc^2"),
    SamplerSpec("bmumla", "bmumla", _bmumla, _declared(stochflow.bmumla(1.0, 1.0).requires), rule="h = 0.04 s_loc^2, lambda = h"),
    SamplerSpec("bmmla", "bmmla", _bmmla, _declared(stochflow.bmmla(1.0, 1.0).requires), rule="h = 0.04 s_loc^2, lambda = h, 10 sub-steps"),
]

SAMPLER_TABLE: list[SamplerSpec] = [row for row in _ROWS if hasattr(stochflow, row.factory)]
SAMPLERS: dict[str, SamplerSpec] = {row.name: row for row in SAMPLER_TABLE}
MISSING: list[str] = [row.name for row in _ROWS if not hasattr(stochflow, row.factory)]


def applicable(spec: SamplerSpec, target: Target) -> bool:
    return bool(spec.applies(target))


def describe() -> list[tuple[str, str, str]]:
    """(sampler, applies to, rule) for the report."""
    return [(row.name, row.applies.__name__.replace("_", " "), row.rule) for row in SAMPLER_TABLE]
