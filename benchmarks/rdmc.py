"""rdMC against Langevin chains on separated Gaussian mixtures, at equal gradient budgets.

Usage::

    python benchmarks/rdmc.py            # 3 targets x 3 budgets (a few minutes on 2 cores)
    python benchmarks/rdmc.py --quick    # the two smaller budgets only
    python benchmarks/rdmc.py --samplers rdmc rdmc-tempered --targets mixture-10d

For each target and each rdMC configuration, the gradient budget per particle is
what rdMC spends (its warm start included, importance-sampling density
evaluations counted as gradients). rdMC runs with T = 2 on the uniform grid, an
inner ``sf.ula`` of step 0.5 / L (L = the largest component precision; the
step is rescaled by 1 - e^{-2t}) and importance-resampled inner starts; ``rdmc-tempered`` replaces those starts by
sequential Monte Carlo from the Gaussian factor of q_t through g pi^beta
(``inner_init="tempered"``, 4 stages of 2 moves), with its inner chains and
steps chosen so that an outer step costs exactly what the importance start's
does (``TEMPERED_CONFIGS``). ULA, MALA and underdamped Langevin
(BAOAB) then run one chain per particle for that many gradient evaluations,
all chains started in one region (around the mean of component 0), and the
last state of each chain is its sample. Metrics on the N final samples:
mode-weight total variation (``sf.diagnostics.mode_weight_tv``, Bayes-rule
mode labels) and the unbiased squared MMD (``sf.diagnostics.mmd``, Gaussian
kernel, median bandwidth) to N exact draws; "exact vs exact" is the MMD of two
independent exact samples (the noise floor).

Targets. The paper's own Gaussian-mixture settings could not be read (only its
abstract was available), so the 2-D target is the rdMC-baseline mixture of the
ZOD-MC benchmark (He, Rojas & Tao; config/density_parameters/2d_gmm.yaml):
weights 0.1, 0.2, 0.3, 0.4, means (0,0), (0,9), (7,7), (9,0). The
high-dimensional ones are ``sf.models.mixture_hd`` in d = 10 and 32 (4 modes,
weights 0.1-0.4, means 8 apart, stds 0.8-1.2).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import stochflow as sf

ZOD_WEIGHTS = [0.1, 0.2, 0.3, 0.4]
ZOD_MEANS = [[0.0, 0.0], [0.0, 9.0], [7.0, 7.0], [9.0, 0.0]]
ZOD_COVS = [
    [[1.0, 0.5], [0.5, 1.0]],
    [[0.3, -0.2], [-0.2, 0.3]],
    [[1.0, 0.3], [0.3, 1.0]],
    [[1.2, -1.0], [-1.0, 1.2]],
]

# (outer steps K, inner chains n, inner steps S, importance proposals M, warm-start steps)
RDMC_CONFIGS = [(16, 8, 5, 32, 4), (32, 16, 10, 128, 8), (48, 16, 10, 256, 8)]
# For each config above, (inner chains n, inner steps S) of the tempered start with J = 4 stages of
# 2 moves: J n densities + (J - 1) n (1 + 2) gradients + n + n S = M + n + n S of the importance start.
TEMPERING_STAGES, TEMPERING_STEPS = 4, 2
TEMPERED_CONFIGS = [(4, 6), (16, 5), (16, 13)]
SAMPLERS = ("rdmc", "rdmc-tempered", "ula", "mala", "underdamped")


def targets():
    zod = sf.models.gaussian_mixture(ZOD_WEIGHTS, ZOD_MEANS, ZOD_COVS, name="zod-gmm2d")
    return [zod, sf.models.get("mixture-10d"), sf.models.get("mixture-32d")]


def rdmc_cost(config) -> int:
    num_steps, chains, inner_steps, proposals, warm = config
    return (num_steps + warm) * (proposals + chains + chains * inner_steps + 1)


def tempered_cost(config, tempered) -> int:
    num_steps, _, _, _, warm = config
    chains, inner_steps = tempered
    stages, moves = TEMPERING_STAGES, TEMPERING_STEPS
    per_step = stages * chains + (stages - 1) * chains * (1 + moves) + chains + chains * inner_steps + 1
    return (num_steps + warm) * per_step


def smoothness(target) -> float:
    """An upper bound L on the curvature of -log p: 1 / (smallest component variance)."""
    _, _, covs = target.truth.components
    return float(max(1.0 / np.linalg.eigvalsh(c).min() for c in covs))


def run_rdmc(target, config, key, num_particles, tempered=None):
    num_steps, chains, inner_steps, proposals, warm = config
    inner = sf.ula(0.5 / smoothness(target))  # inner step h L = 1/2 (rescaled by 1 - e^{-2t})
    if tempered is None:
        start = dict(inner_particles=chains, inner_steps=inner_steps, importance_proposals=proposals)
    else:
        start = dict(inner_particles=tempered[0], inner_steps=tempered[1], inner_init="tempered",
                     tempering_stages=TEMPERING_STAGES, tempering_steps=TEMPERING_STEPS)
    sampler = sf.rdmc(inner, num_steps=num_steps, **start)
    trace = sf.sample(sampler, target, key, num_particles=num_particles, warmup=warm, progress=False)
    n_grad = (trace.stats["n_grad"].sum() + trace.metadata["n_grad_warmup"]) / num_particles
    return trace.positions[:, -1, :], n_grad, trace.num_divergent


def one_region_start(target, key, num_particles):
    _, means, covs = target.truth.components
    chol = np.linalg.cholesky(covs[0])
    noise = np.asarray(jax.random.normal(key, (num_particles, target.dim)))
    return jnp.asarray(means[0] + noise @ chol.T, jnp.float32)


def run_chain(name, target, budget, key, num_particles):
    init = one_region_start(target, jax.random.fold_in(key, 1), num_particles)
    if name == "ula":
        sampler, warmup = sf.ula(0.05), 0
    elif name == "mala":
        sampler, warmup = sf.mala(0.1), budget // 5
    else:
        sampler, warmup = sf.underdamped(0.1, friction=1.0), 0
    steps = budget - warmup
    trace = sf.sample(sampler, target, key, init=init, num_steps=steps, warmup=warmup, thin=steps,
                      progress=False)
    n_grad = (trace.stats["n_grad"].sum() + trace.metadata["n_grad_warmup"]) / num_particles
    return trace.positions[:, -1, :], n_grad, trace.num_divergent


def metrics(samples, target, exact):
    samples = jnp.asarray(samples, jnp.float32)
    tv = float(sf.diagnostics.mode_weight_tv(samples, target))
    mmd2 = float(sf.diagnostics.mmd(samples, exact, statistic="u"))
    weights = np.asarray(sf.diagnostics.mode_weights(samples, target))
    return tv, mmd2, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the two smaller budgets")
    parser.add_argument("--particles", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default="benchmarks/figures/rdmc_gmm2d.png")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--targets", nargs="+", help="target names (default: all three)")
    args = parser.parse_args()
    configs = RDMC_CONFIGS[:2] if args.quick else RDMC_CONFIGS
    key = jax.random.key(args.seed)
    scatter = {}
    print("| target | budget (grads/particle) | sampler | mode-weight TV | MMD^2 (u) | mode weights | div. | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for target_index, target in enumerate(targets()):
        if args.targets and target.name not in args.targets:
            continue
        target_key = jax.random.fold_in(key, target_index)
        exact = target.truth.sample(jax.random.fold_in(target_key, 0), args.particles)
        reference = target.truth.sample(jax.random.fold_in(target_key, 1), args.particles)
        floor = float(sf.diagnostics.mmd(jnp.asarray(exact), jnp.asarray(reference), statistic="u"))
        print(f"| {target.name} | - | exact vs exact | {float(sf.diagnostics.mode_weight_tv(reference, target)):.3f} "
              f"| {floor:.4f} | {[round(float(w), 2) for w in target.truth.modes.weights]} | - | - |")
        for config_index, config in enumerate(configs):
            run_key = jax.random.fold_in(target_key, 10 + config_index)
            budget = rdmc_cost(config)
            assert tempered_cost(config, TEMPERED_CONFIGS[config_index]) == budget
            for name in args.samplers:
                start = time.perf_counter()
                if name == "rdmc":
                    samples, n_grad, divergent = run_rdmc(target, config, run_key, args.particles)
                elif name == "rdmc-tempered":
                    samples, n_grad, divergent = run_rdmc(target, config, run_key, args.particles,
                                                          TEMPERED_CONFIGS[config_index])
                else:
                    samples, n_grad, divergent = run_chain(name, target, budget, run_key, args.particles)
                seconds = time.perf_counter() - start
                tv, mmd2, weights = metrics(samples, target, exact)
                print(f"| {target.name} | {n_grad:,.0f} | {name} | {tv:.3f} | {mmd2:.4f} | "
                      f"{[round(float(w), 2) for w in weights]} | {divergent} | {seconds:.0f} |", flush=True)
                if target.dim == 2 and config_index == len(configs) - 1:
                    scatter[name] = np.asarray(samples)
        if target.dim == 2 and set(SAMPLERS) <= set(scatter):
            scatter["exact"] = np.asarray(exact)
            save_figure(scatter, args.figure, budget)


def save_figure(scatter, path, budget) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the figure is optional (extra "bench")
        return
    names = ["exact", *SAMPLERS]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), sharex=True, sharey=True)
    for ax, name in zip(axes, names):
        points = scatter[name]
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.5)
        ax.set_title(name if name == "exact" else f"{name}, {budget:,} grads")
        ax.set_aspect("equal")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
