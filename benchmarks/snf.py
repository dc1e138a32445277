"""The 2-D double-well experiment of Wu, Köhler & Noé (NeurIPS 2020), Sec. 5 / Fig. 3.

Target: u(x) = x1^4 - 6 x1^2 - 0.5 x1 + 0.5 x2^2 (``sf.models.double_well()``).
Compared, with the same RealNVP part (3 transforms = 6 affine couplings,
shift and scale MLPs [64, 64]):

* RNVP       : the couplings only;
* RNVP + MC  : the same plus 4 Metropolis blocks of 20 steps (proposal std 0.25)
               toward u_lam, lam = 0 (before the flow), 0, 0.5 (between
               transforms) and 1 (at the end), as the reference notebook
               ``experiment1_doublewell.ipynb`` (``diffuse_at_0=True``).

Training as in the notebook: Adam (lr 5e-3), batch 128, 300 iterations of pure
maximum likelihood, then 300 with ML and energy-based KL weighted 1/2 each,
on 10,000 target samples (here exact draws from the model's rejection sampler;
the notebook used every 10th state of a 100,000-step Metropolis chain).

Metrics:
* the notebook's free-energy-profile metric (``bias_uncertainty`` of the
  notebook, re-implemented literally): 20 repeats of 100,000 samples, 30-bin
  histograms of x1, -log histogram aligned, "bias" = |mean over bins in
  (-2.25, 2.25) of (u(x1, 0) - profile)| (both shifted to min 0), "uncertainty" =
  mean over those bins of the std across repeats; unweighted and reweighted;
* the deep-well weight P(x1 > 0) and the free-energy difference
  dF = -log(P(x1 > 0) / P(x1 < 0)), reweighted and not, against the exact
  values (quadrature): error of one 100,000-sample estimate, mean over the 20;
* Kish ESS / n of the importance weights and the log Z error.

Run: ``python benchmarks/snf.py [--repeats 3] [--samples 100000] [--hist-repeats 20]``.
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import stochflow as sf
from stochflow.flows import realnvp_snf_layers
from stochflow.models.wells import double_well_energy

# The notebook's outputs (10 trainings each, mean ± std over trainings), units kT.
PAPER = {
    "RNVP": dict(bias=(1.37, 0.55), unc=(0.42, 0.09), bias_w=(0.26, 0.21), unc_w=(1.11, 0.39)),
    "RNVP + MC": dict(bias=(1.48, 0.19), unc=(0.26, 0.06), bias_w=(0.15, 0.08), unc_w=(0.61, 0.10)),
}


def notebook_profile_metric(x1_batches, log_weight_batches, nbins=30):
    """The notebook's sample_energy + bias_uncertainty (snf_code/analysis.py and the notebook)."""
    hists, whists = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for x1, log_w in zip(x1_batches, log_weight_batches):
            hist, edges = np.histogram(x1, bins=nbins, density=True)
            hists.append(-np.log(hist))
            weights = np.exp(log_w - log_w.max())  # the notebook subtracts the mean; density=True normalises
            whist, _ = np.histogram(x1, bins=nbins, density=True, weights=weights)
            whists.append(-np.log(whist))
            centres = 0.5 * (edges[1:] + edges[:-1])  # the notebook uses the last repeat's centres
        for h in hists + whists:
            h -= np.mean(h[np.isfinite(h)])
        e_target = np.array([float(double_well_energy(jnp.array([c, 0.0]))) for c in centres])
        e_target -= e_target.min()
        inside = (centres > -2.25) & (centres < 2.25)
        out = {}
        for name, profiles in (("", hists), ("_w", whists)):
            mean = np.mean(profiles, axis=0)
            mean -= mean.min()
            diff = e_target - mean
            finite = np.isfinite(diff)
            out["bias" + name] = float(np.abs(diff[inside & finite].mean()))
            # (the notebook's std uses the reweighted finite mask for both; so do we)
            out["_finite" + name] = finite
        for name, profiles in (("", hists), ("_w", whists)):
            out["unc" + name] = float(np.array(profiles)[:, inside & out["_finite_w"]].std(axis=0).mean())
    return {k: v for k, v in out.items() if not k.startswith("_")}


def evaluate(flow, target, key, num_samples, hist_repeats):
    draw = eqx.filter_jit(lambda flow, key: flow.sample(key, num_samples, target))
    exact_p = float(target.truth.modes.weights[1])
    exact_df = -np.log(exact_p / (1.0 - exact_p))
    x1s, log_ws, ess, p_err, p_err_w, df_err, df_err_w, logz = [], [], [], [], [], [], [], []
    for k in jax.random.split(key, hist_repeats):
        x, log_w = draw(flow, k)
        x1 = np.asarray(x[:, 0], np.float64)
        log_w = np.asarray(log_w, np.float64)
        x1s.append(x1)
        log_ws.append(log_w)
        deep = (x1 > 0).astype(float)
        p = deep.mean()
        p_w = float(sf.diagnostics.importance_expectation(deep, log_w).value)
        ess.append(float(sf.diagnostics.importance_ess(log_w)) / num_samples)
        p_err.append(abs(p - exact_p))
        p_err_w.append(abs(p_w - exact_p))
        df_err.append(abs(-np.log(p / (1 - p)) - exact_df))
        df_err_w.append(abs(-np.log(p_w / (1 - p_w)) - exact_df))
        logz.append(float(sf.diagnostics.importance_log_z(log_w).value) - target.truth.log_z)
    result = notebook_profile_metric(x1s, log_ws)
    result.update(
        ess=np.mean(ess), p_err=np.mean(p_err), p_err_w=np.mean(p_err_w),
        df_err=np.mean(df_err), df_err_w=np.mean(df_err_w), logz_err=np.mean(np.abs(logz)),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="independent trainings per method (paper: 10)")
    parser.add_argument("--samples", type=int, default=100_000, help="samples per histogram repeat")
    parser.add_argument("--hist-repeats", type=int, default=20, help="histogram repeats per trained flow")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    target = sf.models.double_well()
    key = jax.random.key(args.seed)
    data = target.truth.sample(jax.random.fold_in(key, 10**6), 10_000)
    optimizer = optax.adam(5e-3)  # one object for all trainings: the compiled trainer is reused

    def schedule(i):
        return jnp.where(i < 300, 1.0, 0.5)

    methods = {
        "RNVP": realnvp_snf_layers(3, 64, 2, stochastic=False),
        "RNVP + MC": realnvp_snf_layers(3, 64, 2, stochastic=True, num_steps=20, step_size=0.25, diffuse_at_0=True),
    }
    print(f"double well, exact dF = {-np.log(target.truth.modes.weights[1] / target.truth.modes.weights[0]):.4f} kT, "
          f"P(x1 > 0) = {target.truth.modes.weights[1]:.5f}, log Z = {target.truth.log_z:.4f}")
    rows = {}
    for name, layers in methods.items():
        results, train_times, eval_times = [], [], []
        for r in range(args.repeats):
            train_key, eval_key = jax.random.split(jax.random.fold_in(key, 1000 * r + len(rows)))
            start = time.perf_counter()
            flow = sf.fit_snf(target, train_key, layers, num_iterations=600, optimizer=optimizer,
                              batch_size=128, samples=data, ml_weight=schedule, progress=False)
            jax.block_until_ready(jax.tree_util.tree_leaves(flow))
            train_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            results.append(evaluate(flow, target, eval_key, args.samples, args.hist_repeats))
            eval_times.append(time.perf_counter() - start)
            print(name, r, {k: round(v, 3) for k, v in results[-1].items()},
                  f"train {train_times[-1]:.1f}s eval {eval_times[-1]:.1f}s", flush=True)
        stats = {k: (np.mean([res[k] for res in results]), np.std([res[k] for res in results])) for k in results[0]}
        stats["err_w"] = (
            np.mean([np.hypot(res["bias_w"], res["unc_w"]) for res in results]),
            np.std([np.hypot(res["bias_w"], res["unc_w"]) for res in results]),
        )
        # The first training compiles (the trainer is cached for the later ones).
        stats["train_s"] = (train_times[0], np.mean(train_times[1:]) if len(train_times) > 1 else np.nan)
        stats["eval_s"] = (np.mean(eval_times), np.std(eval_times))
        rows[name] = stats

    fmt = lambda pair: f"{pair[0]:.2f} ± {pair[1]:.2f}"
    print(f"\n{args.repeats} trainings per method; {args.hist_repeats} x {args.samples} samples per flow\n")
    print("| method | bias | unc. | bias rew. | unc. rew. | sqrt(b²+u²) rew. | paper bias rew. | paper unc. rew. |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s in rows.items():
        p = PAPER[name]
        print(f"| {name} | {fmt(s['bias'])} | {fmt(s['unc'])} | {fmt(s['bias_w'])} | {fmt(s['unc_w'])} | "
              f"{fmt(s['err_w'])} | {fmt(p['bias_w'])} | {fmt(p['unc_w'])} |")
    print("\n| method | Kish ESS / n | abs. error P(x1>0) | rew. | abs. error dF (kT) | rew. | abs. error log Z | train: 1st incl. compile / later (s) | sample + metrics (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | {s['ess'][0]:.3f} ± {s['ess'][1]:.3f} | {fmt(s['p_err'])} | {s['p_err_w'][0]:.4f} ± {s['p_err_w'][1]:.4f} | "
              f"{fmt(s['df_err'])} | {fmt(s['df_err_w'])} | {s['logz_err'][0]:.3f} ± {s['logz_err'][1]:.3f} | "
              f"{s['train_s'][0]:.0f} / {s['train_s'][1]:.1f} | {fmt(s['eval_s'])} |")


if __name__ == "__main__":
    main()
