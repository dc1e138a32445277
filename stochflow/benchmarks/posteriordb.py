"""``stochflow bench --suite posteriordb``: chain samplers on real posteriors, beside NumPyro NUTS.

The protocol (issue 17's): every posterior of :mod:`stochflow.models.posteriordb`, float64,
4 chains, each sampler run as documented with warmup:

* one-gradient-per-step samplers (MALA with a diagonal or dense mass, underdamped BAOAB with
  its step adapted): :data:`WARMUP` warmup steps then
  :data:`STEPS` steps a chain, 100,000 gradients in all;
* NUTS (NumPyro's own, and BlackJAX's through ``sf.from_blackjax``): 1,000 warmup
  transitions and 1,000 draws a chain, what NumPyro's examples run; its gradients are
  counted (leapfrog steps, warmup included).

Per posterior and sampler the row holds: max |z| over the parameters, with
``z = (mean - mean_ref) / sqrt(mcse^2 + sd_ref^2 / N_ref)`` (the reference draws are
thinned to near independence, N_ref = 10,000); the largest relative sd error; the largest
rank R-hat; the smallest bulk ESS per 1,000 gradients (all chains, warmup included); the wall
time (compilation included); and whether the sampler's own end-of-run check flagged the run
(NumPyro: divergences or R-hat above 1.01). A row is *right* when max |z| < 4, every sd is
within 10% and R-hat < 1.05; a row that is neither right nor flagged is a silent failure.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from ..diagnostics import arviz_bridge
from ..models import posteriordb

__all__ = ["SAMPLERS", "run_suite", "markdown_table", "right", "protocol"]

CHAINS = 4
WARMUP, STEPS = 5_000, 20_000  # a chain of a one-gradient sampler: 25,000 gradients
NUTS_WARMUP, NUTS_DRAWS = 1_000, 1_000
MAX_Z, MAX_SD_ERROR, MAX_RHAT = 4.0, 0.10, 1.05


def protocol() -> str:
    """The protocol, in markdown, for the report's head."""
    return (f"Every posterior of `stochflow.models.posteriordb`, float64, {CHAINS} chains, seed 0. MALA (diagonal "
            f"or dense mass) and underdamped BAOAB: {WARMUP:,} warmup steps then {STEPS:,} steps a chain "
            f"({CHAINS * (WARMUP + STEPS):,} gradients in all). NUTS (NumPyro's own; BlackJAX's through "
            f"`sf.from_blackjax`): {NUTS_WARMUP:,} warmup transitions and {NUTS_DRAWS:,} draws a chain, its leapfrog "
            "steps counted. z = (mean - mean_ref) / sqrt(mcse^2 + sd_ref^2 / 10,000) per parameter against "
            "posteriordb's 10,000 reference draws; sd error = |sd / sd_ref - 1|; ESS / 1k grad = min bulk ESS per "
            "1,000 gradients (all chains, warmup included). *right*: max |z| < 4, sd error < 10%, R-hat < 1.05; "
            "*flagged*: the sampler's own end-of-run warning fired (NumPyro: divergences or R-hat > 1.01).")


def _stochflow_sampler(make: Callable[[], Any], warmup: int, steps: int) -> Callable:
    def run(posterior: posteriordb.Posterior, key: jax.Array) -> tuple[Any, int, bool]:
        from ..interop.numpyro import from_numpyro
        from ..run.driver import sample

        target = from_numpyro(posterior.model, **posterior.data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the flag is read from trace.checks
            trace = sample(make(), target, key, num_particles=CHAINS, num_steps=steps, warmup=warmup, progress=False)
        return trace.to_arviz(), trace.n_grad_total, bool(trace.checks.problems())

    return run


def _numpyro_nuts(posterior: posteriordb.Posterior, key: jax.Array) -> tuple[Any, int, bool]:
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(NUTS(posterior.model), num_warmup=NUTS_WARMUP, num_samples=NUTS_DRAWS, num_chains=CHAINS,
                chain_method="vectorized", progress_bar=False)
    warmup_key, sample_key = jax.random.split(key)
    mcmc.warmup(warmup_key, collect_warmup=True, extra_fields=("num_steps",), **posterior.data)
    warmup_grads = int(np.sum(mcmc.get_extra_fields()["num_steps"]))
    mcmc.run(sample_key, extra_fields=("num_steps", "diverging"), **posterior.data)
    extra = mcmc.get_extra_fields()
    idata = arviz_bridge.from_numpyro(mcmc)
    rhat = arviz_bridge.summary(idata, round_to="none")["r_hat"].max()
    return idata, warmup_grads + int(np.sum(extra["num_steps"])), bool(np.sum(extra["diverging"]) or rhat > 1.01)


def _make_samplers() -> dict[str, Callable]:
    from .. import samplers
    from ..interop.blackjax import from_blackjax

    return {
        "numpyro-nuts": _numpyro_nuts,
        "blackjax-nuts": _stochflow_sampler(lambda: from_blackjax("nuts"), NUTS_WARMUP, NUTS_DRAWS),
        "mala": _stochflow_sampler(lambda: samplers.mala(0.1), WARMUP, STEPS),
        "mala-dense": _stochflow_sampler(lambda: samplers.mala(0.1, dense_mass=True), WARMUP, STEPS),
        "underdamped-baoab": _stochflow_sampler(lambda: samplers.underdamped(0.1), WARMUP, STEPS),
    }


SAMPLERS = ("numpyro-nuts", "blackjax-nuts", "mala", "mala-dense", "underdamped-baoab")


def _score(posterior: posteriordb.Posterior, idata: Any) -> dict[str, float]:
    with warnings.catch_warnings():  # a run that blew up overflows ArviZ's sums; its row says so
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = arviz_bridge.summary(idata, round_to="none")
    z, sd_error = [], []
    for name, ref in posterior.reference.items():
        if name not in summary.index:
            raise KeyError(f"{posterior.name}: the run has no {name!r} (it has {', '.join(summary.index[:8])}...).")
        row = summary.loc[name]
        z.append((row["mean"] - ref["mean"]) / np.hypot(row["mcse_mean"], ref["sd"] / np.sqrt(posterior.num_reference_draws)))
        sd_error.append(row["sd"] / ref["sd"] - 1.0)
    names = list(posterior.reference)
    return {
        "max_abs_z": float(np.max(np.abs(z))),
        "worst_z_at": names[int(np.argmax(np.abs(z)))],
        "max_sd_error": float(np.max(np.abs(sd_error))),
        "max_rhat": float(summary.loc[names, "r_hat"].max()),
        "min_ess_bulk": float(summary.loc[names, "ess_bulk"].min()),
    }


def right(row: dict[str, Any]) -> bool:
    """The posterior's reference is recovered: max |z| < 4, sds within 10%, R-hat < 1.05."""
    return row["max_abs_z"] < MAX_Z and row["max_sd_error"] < MAX_SD_ERROR and row["max_rhat"] < MAX_RHAT


def run_suite(posteriors: Optional[Sequence[str]] = None, samplers: Optional[Sequence[str]] = None, seed: int = 0,
              progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (posterior, sampler); see the module docstring for the columns. Runs in
    float64 (the reference posteriors are float64 Stan runs), whatever the caller's setting."""
    with jax.enable_x64(True):
        return _run_suite(posteriors, samplers, seed, progress)


def _run_suite(posteriors: Optional[Sequence[str]], samplers: Optional[Sequence[str]], seed: int,
               progress: Callable[[str], None]) -> list[dict[str, Any]]:
    runners = _make_samplers()
    rows = []
    for name in posteriors or posteriordb.names():
        posterior = posteriordb.load(name)
        for sampler in samplers or SAMPLERS:
            start = time.perf_counter()
            idata, n_grad, flagged = runners[sampler](posterior, jax.random.key(seed))
            seconds = time.perf_counter() - start
            row = {"posterior": name, "sampler": sampler, **_score(posterior, idata), "n_grad": n_grad,
                   "flagged": flagged, "seconds": seconds}
            row["ess_per_1k_grad"] = 1000.0 * row["min_ess_bulk"] / n_grad
            row["right"] = right(row)
            rows.append(row)
            progress(f"{name:45s} {sampler:18s} max|z| {row['max_abs_z']:6.2f}  sd err {row['max_sd_error']:.3f}  "
                     f"R-hat {row['max_rhat']:.3f}  ESS/1k grad {row['ess_per_1k_grad']:7.2f}  "
                     f"{'right' if row['right'] else ('flagged' if flagged else 'WRONG, NOT FLAGGED')}  "
                     f"{seconds:.0f} s")
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table, with each sampler's ESS per gradient relative to NumPyro NUTS's."""
    nuts = {row["posterior"]: row["ess_per_1k_grad"] for row in rows if row["sampler"] == "numpyro-nuts"}
    lines = ["| posterior | sampler | max abs z (at) | max sd error | max R-hat | ESS / 1k grad | vs NumPyro NUTS "
             "| gradients | verdict | s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = row["ess_per_1k_grad"] / nuts[row["posterior"]] if row["posterior"] in nuts else float("nan")
        verdict = "right" if row["right"] else ("flagged" if row["flagged"] else "**wrong, not flagged**")
        if row["right"] and row["flagged"]:
            verdict = "right (flagged)"
        lines.append(f"| {row['posterior']} | {row['sampler']} | {row['max_abs_z']:.2f} ({row['worst_z_at']}) | "
                     f"{row['max_sd_error']:.3f} | {row['max_rhat']:.3f} | {row['ess_per_1k_grad']:.2f} | "
                     f"{ratio:.2f}x | {row['n_grad']:,} | {verdict} | {row['seconds']:.0f} |")
    return "\n".join(lines)
