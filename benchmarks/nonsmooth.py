"""Nonsmooth and constrained sampling: one headline experiment of each paper.

A. Lau, Liu & Pock (2023), "Non-log-concave and nonsmooth sampling via Langevin
   Monte Carlo algorithms", the ``prox_lmc.py`` experiment of their code
   (github.com/192459/lmc-atomi, README command): a 2-D Gaussian-mixture
   likelihood (2 components) times a Laplace prior exp(-0.15 |x|_1), smoothing
   lambda = 0.25, step 8e-2 for every method, K = 50,000 iterations of one chain
   started from N(0, I), seed 0. Their metric: W2 between the chain's iterates
   and exact samples. Methods here: MYULA, MYMALA, LBMUMLA (= sf.bmumla, left
   Bregman-Moreau envelope, hyperbolic-entropy mirror map with beta = (0.7, 0.3)).
   (Their PGLD, PP-ULA, FBULA and ULPDA are not in stochflow.)

B. Lau & Liu (ICML 2022), Bregman-Moreau unadjusted mirror-Langevin: the
   constrained, nonsmooth sampling the method is built for. The paper's own
   experiment section could not be read from the stored corpora, so this is
   NOT a reproduction of one of its figures: BMUMLA vs BMMLA (4 dual sub-steps)
   vs MLA/MYULA where they apply, on (i) a Laplace truncated to the box
   [-1, 2]^2 (log-barrier map) and (ii) a Dirichlet(2, 3, 4) tilted by
   exp(-2 (x_1 + x_2)) on the simplex (entropic map); W2 to exact samples,
   moment errors, draws outside the domain.

W2 is the exact 2-Wasserstein distance between equal-size point sets (optimal
assignment, ``sf.diagnostics.w2``) on 1,000 points (thinned chain vs exact
draws), averaged over 3 subsample pairs; the noise floor (two independent exact
samples) is printed beside it.

A'. The same comparison with 32 independent chains (W2, weight of the second mode).

Run: ``python benchmarks/nonsmooth.py`` (about 5-10 minutes on the 2-core box).
"""

from __future__ import annotations

import time

import jax
import numpy as np

import stochflow as sf
from stochflow.geometry import hyperbolic_entropy
from stochflow.models.nonsmooth import LLP_MEANS_PROX

W2_POINTS, W2_REPEATS = 1000, 3


def w2_to_exact(draws: np.ndarray, exact: np.ndarray, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(W2_REPEATS):
        a = draws[rng.choice(draws.shape[0], W2_POINTS, replace=False)]
        b = exact[rng.choice(exact.shape[0], W2_POINTS, replace=False)]
        values.append(sf.diagnostics.w2(a, b))
    return float(np.mean(values))


def experiment_llp(num_steps: int = 50_000) -> list[dict]:
    target = sf.models.laplace_gmm(n_components=2, alpha=0.15)
    exact = np.asarray(target.truth.sample(jax.random.key(123), 200_000))
    floor = w2_to_exact(np.asarray(target.truth.sample(jax.random.key(7), 200_000)), exact)
    mirror_target = sf.Target(target.logdensity, 2, nonsmooth=target.nonsmooth,
                              mirror=hyperbolic_entropy(np.array([0.7, 0.3])), name="laplace-gmm2-hyp")
    step, lam = 8e-2, 0.25
    runs = [
        ("MYULA", sf.myula(step, lam), target),
        ("MYMALA", sf.mymala(step, lam), target),
        ("LBMUMLA (sf.bmumla, hyperbolic entropy)", sf.bmumla(step, lam), mirror_target),
    ]
    init = jax.random.normal(jax.random.key(0), (1, 2))
    rows = []
    for name, sampler, tgt in runs:
        start = time.perf_counter()
        trace = sf.sample(sampler, tgt, jax.random.key(0), num_steps=num_steps, init=init, progress=False)
        seconds = time.perf_counter() - start
        draws = trace.positions[0]
        row = {"method": name, "seconds": seconds, "floor": floor}
        for k in (5_000, 10_000, 25_000, num_steps):
            row[f"W2@{k}"] = w2_to_exact(draws[:k], exact)
        row["mean error"] = float(np.linalg.norm(draws.mean(0) - target.truth.mean))
        row["accept"] = float(trace.stats["accept_prob"].mean()) if "accept_prob" in trace.stats else float("nan")
        row["divergent"] = trace.num_divergent
        rows.append(row)
    return rows


def experiment_llp_chains(num_chains: int = 32, num_steps: int = 10_000) -> list[dict]:
    """The same target and methods, 32 independent chains from N(0, I): less of a one-chain lottery."""
    target = sf.models.laplace_gmm(n_components=2, alpha=0.15)
    exact = np.asarray(target.truth.sample(jax.random.key(123), 200_000))
    means = LLP_MEANS_PROX[:2]
    nearest = lambda x: np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)  # noqa: E731
    exact_weight = np.mean(nearest(exact) == 1)
    mirror_target = sf.Target(target.logdensity, 2, nonsmooth=target.nonsmooth,
                              mirror=hyperbolic_entropy(np.array([0.7, 0.3])), name="laplace-gmm2-hyp")
    step, lam = 8e-2, 0.25
    runs = [("MYULA", sf.myula(step, lam), target), ("MYMALA", sf.mymala(step, lam), target),
            ("LBMUMLA (sf.bmumla, hyperbolic entropy)", sf.bmumla(step, lam), mirror_target)]
    init = jax.random.normal(jax.random.key(0), (num_chains, 2))
    rows = []
    for name, sampler, tgt in runs:
        start = time.perf_counter()
        trace = sf.sample(sampler, tgt, jax.random.key(1), num_steps=num_steps, warmup=1_000, init=init, progress=False)
        seconds = time.perf_counter() - start
        draws = trace.positions.reshape(-1, 2)
        rows.append({
            "method": name, "W2": w2_to_exact(draws, exact), "weight": float(np.mean(nearest(draws) == 1)),
            "exact weight": float(exact_weight), "mean error": float(np.linalg.norm(draws.mean(0) - target.truth.mean)),
            "seconds": seconds,
        })
    return rows


def experiment_constrained(num_chains: int = 16, num_steps: int = 20_000) -> list[dict]:
    box = sf.models.get("truncated-laplace")
    simplex = sf.models.dirichlet(np.array([2.0, 3.0, 4.0]), tilt=2.0)
    smooth_simplex = sf.models.dirichlet(np.array([2.0, 3.0, 4.0]))
    cases = [
        ("box: truncated Laplace [-1,2]^2", box, [
            ("BMUMLA", sf.bmumla(0.01, 0.05)), ("BMMLA (4 sub-steps)", sf.bmmla(0.01, 0.05, inner_steps=4)),
        ], lambda x: np.all((x > -1) & (x < 2), axis=-1)),
        ("simplex: tilted Dirichlet(2,3,4)", simplex, [
            ("BMUMLA", sf.bmumla(5e-4, 0.05)), ("BMMLA (4 sub-steps)", sf.bmmla(5e-4, 0.05, inner_steps=4)),
        ], lambda x: np.all(x > 0, axis=-1) & (x.sum(-1) < 1)),
        ("simplex: Dirichlet(2,3,4), smooth", smooth_simplex, [("MLA", sf.mla(5e-4))],
         lambda x: np.all(x > 0, axis=-1) & (x.sum(-1) < 1)),
    ]
    rows = []
    for label, target, samplers, inside in cases:
        exact = np.asarray(target.truth.sample(jax.random.key(123), 100_000))
        floor = w2_to_exact(np.asarray(target.truth.sample(jax.random.key(7), 100_000)), exact)
        init = sf.default_init(target, jax.random.key(3), num_chains)
        for name, sampler in samplers:
            start = time.perf_counter()
            trace = sf.sample(sampler, target, jax.random.key(0), num_steps=num_steps, warmup=2_000, init=init,
                              progress=False)
            seconds = time.perf_counter() - start
            draws = trace.positions.reshape(-1, target.dim)
            rows.append({
                "case": label, "method": name, "seconds": seconds, "W2": w2_to_exact(draws, exact), "floor": floor,
                "mean error": float(np.abs(draws.mean(0) - target.truth.mean).max()),
                "var error": float(np.abs(draws.var(0) - np.diag(target.truth.cov)).max()),
                "outside": int((~inside(draws)).sum()), "draws": draws.shape[0], "divergent": trace.num_divergent,
            })
    return rows


def main() -> None:
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    print("\nA. Lau-Liu-Pock prox_lmc: GMM(2) x Laplace(0.15) prior, lambda 0.25, step 0.08, one chain")
    rows = experiment_llp()
    keys = [k for k in rows[0] if k.startswith("W2@")]
    print("| method | " + " | ".join(keys) + " | |mean err| | accept | divergent | seconds |")
    print("|---" * (len(keys) + 5) + "|")
    for r in rows:
        print(f"| {r['method']} | " + " | ".join(f"{r[k]:.3f}" for k in keys)
              + f" | {r['mean error']:.3f} | {r['accept']:.2f} | {r['divergent']} | {r['seconds']:.1f} |")
    print(f"W2 noise floor (two exact samples of {W2_POINTS}): {rows[0]['floor']:.3f}")

    print("\nA'. Same target and methods, 32 chains x 10,000 steps (after 1,000 warmup) from N(0, I)")
    print("| method | W2 | weight of mode (-4, 6) (exact) | |mean err| | seconds |")
    print("|---|---|---|---|---|")
    for r in experiment_llp_chains():
        print(f"| {r['method']} | {r['W2']:.3f} | {r['weight']:.3f} ({r['exact weight']:.3f}) | "
              f"{r['mean error']:.3f} | {r['seconds']:.1f} |")

    print("\nB. Bregman-Moreau mirror-Langevin on constrained targets (16 chains x 20,000 steps after 2,000 warmup)")
    print("| target | method | W2 | floor | max |mean err| | max |var err| | outside / draws | divergent | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in experiment_constrained():
        print(f"| {r['case']} | {r['method']} | {r['W2']:.4f} | {r['floor']:.4f} | {r['mean error']:.4f} | "
              f"{r['var error']:.4f} | {r['outside']} / {r['draws']} | {r['divergent']} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
