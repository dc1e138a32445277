"""rdMC's inner sampler on the many-well target (d = 32): the diagnosis behind the grid's rdMC row.

The benchmark grid's rdMC setting (K = 10 outer steps, 8 inner chains, 32
importance proposals, inner steps fitted to the budget, N = 128 particles,
seed 0) with several inner samplers, step sizes and curvature bounds ``L``.
Each line gives the flagged (diverging) score estimates, their count per outer
step, the largest |x| of the final particles, and the grid's quality metrics
against exact samples. See "The 1,280 diverging rdMC score estimates on
many-well" in ``benchmarks/RESULTS.md``.

Run: ``python benchmarks/rdmc_manywell.py [--budget 1000]`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import stochflow as sf
from stochflow.benchmarks import harness

OUTER_STEPS, INNER_CHAINS, PROPOSALS, PARTICLES = 10, 8, 32, 128

CONFIGS = {
    "ULA h=0.5, L=1 (the old default)": dict(inner=sf.ula(0.5)),
    "ULA h=0.5, L=25 (the grid now)": dict(inner=sf.ula(0.5), lipschitz=25.0),
    "ULA h=0.1, L=25": dict(inner=sf.ula(0.1), lipschitz=25.0),
    "ULA h=0.25, L=25": dict(inner=sf.ula(0.25), lipschitz=25.0),
    "ULA h=1, L=25": dict(inner=sf.ula(1.0), lipschitz=25.0),
    "MALA h=0.5, L=1": dict(inner=sf.mala(0.5)),
    "MALA h=0.5, L=25": dict(inner=sf.mala(0.5), lipschitz=25.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=1000, help="gradient evaluations per particle")
    args = parser.parse_args()

    target = harness.get_target("many-well")
    # The grid's budget rule: each outer step pays the proposals, the chains' starts, one density.
    inner_steps = max(2, (args.budget // OUTER_STEPS - PROPOSALS - INNER_CHAINS - 1) // INNER_CHAINS)
    run_key, reference_key, _ = harness._keys(0)
    reference = harness.exact_batch(target, reference_key, PARTICLES)
    print(f"# many-well d=32, budget {args.budget}: K={OUTER_STEPS}, {INNER_CHAINS} chains x {inner_steps} "
          f"inner steps, {PROPOSALS} proposals, N={PARTICLES}, seed 0\n")
    for name, options in CONFIGS.items():
        sampler = sf.rdmc(num_steps=OUTER_STEPS, inner_steps=inner_steps, inner_particles=INNER_CHAINS,
                          importance_proposals=PROPOSALS, **options)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the divergences are the point; they are printed
            trace = sf.sample(sampler, target, run_key, num_particles=PARTICLES, progress=False)
        final = np.asarray(trace.positions[:, -1])
        row = harness.quality_metrics(final, reference, target, "many-well")
        per_step = np.asarray(trace.stats["diverging"]).sum(axis=0).tolist()
        print(f"{name:34s} diverging {trace.num_divergent:5d} per outer step {per_step} "
              f"max|x| {np.abs(final).max():.3g} mean err {row['mean_err']:.3f} cov err {row['cov_err']:.3f} "
              f"W2 {row['w2']:.2f} MMD {row['mmd']:.3f} mode TV {row['mode_tv']:.3f} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
