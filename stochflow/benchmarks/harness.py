"""Run samplers on targets at equal gradient budgets and measure sample quality.

One cell of the grid is (sampler, target, budget, seed). ``budget`` is the
number of gradient (or density) evaluations per particle; ``num_particles``
particles run side by side (independent chains, or one interacting/transported
set). The sample a cell is judged on is the particles' positions at the end of
the run — N points whatever the method — and every metric is also computed for
N fresh exact samples (the floor row: what a perfect sampler scores at this N).

How each kind of sampler spends the budget (``SamplerSpec.kind``):

* ``chain`` — ``budget // grads_per_step`` steps, the first fifth warmup
  (step-size adaptation where the method has one; burn-in otherwise); the
  recorded part is thinned to at most 200 draws per chain for ESS (bulk ESS
  over the recorded draws after burn-in, per gradient of the whole run).
* ``particles`` (SVGD, MSVGD, SVMD) — as ``chain``, without ESS.
* ``nuts`` — a transition's cost varies. A pilot run with the same key (so the
  same warmup, bit for bit) measures the warmup's cost and the mean cost of a
  transition after it; the real run then takes as many transitions as the rest
  of the budget pays for. The reported ``n_grad`` is the real run's count.
* ``transport`` (rdMC) — the schedule fitted to the budget by the spec.
* ``flow`` (SNF) — trained, then N samples drawn once. Training gradients are
  shared by all N outputs, so ``n_grad`` per particle = per-path cost +
  (training iterations x batch x per-path cost) / N; the number of training
  iterations is what makes this equal the budget.

Metrics (see :mod:`stochflow.diagnostics.metrics`): moment errors against the
exact moments; W2 (exact OT), energy distance, MMD (RBF, median bandwidth) and
KSD (IMQ; smooth targets) against a reference batch of N exact samples drawn
with the seed; mode-weight TV, entropic mode coverage and modes visited for
targets with modes; ESS per 1000 gradients (chains); |log Z estimate - log Z|
for SNF (importance weights).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import pathlib
import time
import warnings
from typing import Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

import stochflow

from ..diagnostics import metrics
from ..diagnostics.importance import importance_log_z
from ..models import get as _build_target
from ..run import sample
from .specs import SAMPLERS, SamplerSpec, start_positions, target_scales

__all__ = ["moment_errors", "run_one", "run_grid", "floor_row", "check_names", "cell_key", "METRIC_KEYS"]

moment_errors = metrics.moment_errors

WARMUP_FRACTION = 5  # a fifth of a chain's steps are warmup
MAX_DRAWS = 200  # recorded draws per chain (for ESS)
def nuts_warmup(budget: int) -> int:
    """NUTS warmup transitions: budget / 100, between 10 and 100 (a transition costs tens of
    gradients on the harder targets, so a fixed 100 would eat a small budget whole)."""
    return int(np.clip(budget // 100, 10, 100))
CACHE_VERSION = 1  # bump when a metric's definition changes

METRIC_KEYS = ["mean_err", "cov_err", "w2", "energy", "mmd", "ksd", "mode_tv", "emc", "modes_visited",
               "ess_per_1k", "log_z_err"]


@functools.lru_cache(maxsize=None)
def get_target(name: str):
    """One Target instance per name, so jitted programs keyed on it are compiled once per grid."""
    return _build_target(name)


@functools.lru_cache(maxsize=None)
def get_plan(sampler_name: str, target_name: str, budget: int):
    """One Plan (hence one Sampler object) per cell settings: seeds reuse its compiled programs."""
    target = get_target(target_name)
    return SAMPLERS[sampler_name].build(target, target_scales(target, target_name), budget)


_moments = jax.jit(metrics.moment_errors)
_energy = jax.jit(metrics.energy_distance)


@jax.jit
def _mode_metrics(x, target):
    return metrics.mode_weight_tv(x, target), metrics.mode_coverage(x, target), metrics.modes_visited(x, target)


def _kernels():
    """Issue 5's MMD/KSD if this version has them."""
    try:
        from ..diagnostics import kernels
    except ImportError:  # pragma: no cover - depends on the version
        return None
    return kernels if hasattr(kernels, "mmd") and hasattr(kernels, "ksd") else None


def quality_metrics(samples: np.ndarray, reference: np.ndarray, target, target_name: str) -> dict:
    """Every sample-quality metric of ``samples`` (N, d) against the target and a reference batch."""
    samples = np.asarray(samples, np.float64)
    finite = np.all(np.isfinite(samples), axis=1)
    row = {key: float("nan") for key in METRIC_KEYS}
    row["nonfinite"] = int((~finite).sum())
    if finite.sum() < 2:
        return row
    samples = samples[finite]
    x = jnp.asarray(samples, jnp.float32)
    y = jnp.asarray(reference, jnp.float32)
    row.update({k: float(v) for k, v in _moments(x, jnp.asarray(target.truth.mean), jnp.asarray(target.truth.cov)).items()})
    row["w2"] = metrics.w2(samples, np.asarray(reference, np.float64)[: len(samples)])
    row["energy"] = float(_energy(x, y))
    kernels = _kernels()
    if kernels is not None:
        row["mmd"] = math.sqrt(max(float(kernels.mmd(x, y)), 0.0))  # V-statistic, RBF, median bandwidth
        if target.nonsmooth is None and target.mirror is None:
            row["ksd"] = math.sqrt(max(float(kernels.ksd(x, target)), 0.0))  # V-statistic, IMQ c=1, beta=-1/2
    if target.truth.modes is not None:
        row["mode_tv"], row["emc"], row["modes_visited"] = map(float, _mode_metrics(x, target))
    return row


def exact_batch(target, key, n: int) -> np.ndarray:
    return np.asarray(target.truth.sample(key, n), np.float64)


def _keys(seed: int):
    run_key, reference_key, floor_key = jax.random.split(jax.random.key(seed), 3)
    return run_key, reference_key, floor_key


def _run_chain(spec: SamplerSpec, plan, target, target_name, budget, key, num_particles, devices=None):
    steps = max(budget // (plan.grads_per_step or spec.grads_per_step), 2)
    # A sampler that adapts gets a warmup phase (the first fifth). One that does not runs
    # all its steps in one phase (one compiled program fewer); the first fifth of its
    # recorded draws is then left out of the ESS as burn-in.
    adapts = plan.sampler.warmup_step is not None
    warmup = steps // WARMUP_FRACTION if adapts else 0
    thin = max(1, (steps - warmup) // MAX_DRAWS)
    num_steps = max(((steps - warmup) // thin) * thin, 1)
    init_key, run_key = jax.random.split(key)
    init = start_positions(target_name, target, init_key, num_particles)
    trace = sample(plan.sampler, target, run_key, num_particles=num_particles, num_steps=num_steps,
                   warmup=warmup, thin=thin, init=init, progress=False, devices=devices)
    return trace, {"burn_in_draws": 0 if adapts else trace.num_draws // WARMUP_FRACTION}


NUTS_CHUNK = 10  # steps per compiled chunk, the same in the pilot and the real run (one program for both)


def _run_nuts(spec, plan, target, target_name, budget, key, num_particles, devices=None):
    init_key, run_key = jax.random.split(key)
    init = start_positions(target_name, target, init_key, num_particles)
    kwargs = dict(num_particles=num_particles, warmup=nuts_warmup(budget), init=init, progress=False,
                  chunk_size=NUTS_CHUNK, devices=devices)
    pilot = sample(plan.sampler, target, run_key, num_steps=NUTS_CHUNK, **kwargs)
    warmup_cost = pilot.metadata.get("n_grad_warmup", 0) / num_particles
    per_step = max(float(np.mean(pilot.stats["n_grad"])), 1.0)
    steps = max(int((budget - warmup_cost) / per_step), NUTS_CHUNK)  # at least one chunk, even over budget
    trace = sample(plan.sampler, target, run_key, num_steps=steps, **kwargs)
    return trace, {"pilot_grads_per_step": per_step, "burn_in_draws": 0}


def _run_transport(spec, plan, target, target_name, budget, key, num_particles, devices=None):
    trace = sample(plan.sampler, target, key, num_particles=num_particles, progress=False, devices=devices)
    return trace, {}


def snf_path_cost(settings: dict) -> int:
    """Target evaluations per SNF sample path for ``realnvp_snf_layers`` with these settings:
    ``num_steps + 1`` per stochastic block with lam > 0 (lam = i / (num_transforms - 1) after
    transform i < num_transforms - 1, and the final block at lam = 1), plus one for the weight."""
    blocks = max(settings["num_transforms"] - 2, 0) + 1
    return blocks * (settings["num_steps"] + 1) + 1


def _run_flow(spec, plan, target, target_name, budget, key, num_particles, devices=None):
    settings = plan.settings
    from ..flows import realnvp_snf_layers

    layers = realnvp_snf_layers(num_transforms=settings["num_transforms"], width=settings["width"],
                                num_steps=settings["num_steps"], step_size=settings["step_size"])
    train_key, sample_key = jax.random.split(key)
    batch = settings["batch_size"]
    per_path = snf_path_cost(settings)
    iterations = max(int((budget - per_path) * num_particles / (batch * per_path)), 1)
    flow = stochflow.fit_snf(target, train_key, layers, num_iterations=iterations, batch_size=batch,
                             learning_rate=settings["learning_rate"], progress=False)
    trace = sample(stochflow.snf(flow), target, sample_key, num_particles=num_particles, num_steps=1, progress=False,
                   devices=devices)
    measured = float(np.mean(trace.stats["n_grad"]))  # the flow's own count, reported
    return trace, {"train_iterations": iterations, "n_grad_training": iterations * batch * measured / num_particles}


_RUNNERS = {"chain": _run_chain, "particles": _run_chain, "nuts": _run_nuts, "transport": _run_transport, "flow": _run_flow}


def run_one(
    sampler_name: str,
    target_name: str,
    budget: int,
    seed: int,
    num_particles: int = 128,
    reference: Optional[np.ndarray] = None,
    devices=None,
) -> tuple[dict, np.ndarray]:
    """One cell: returns (CSV row, final positions (N, d)). ``devices`` goes to ``sf.sample``
    (the particles sharded over them; SNF trains on one device)."""
    spec = SAMPLERS[sampler_name]
    target = get_target(target_name)
    plan = get_plan(sampler_name, target_name, budget)
    run_key, reference_key, _ = _keys(seed)
    if reference is None:
        reference = exact_batch(target, reference_key, num_particles)
    start = time.perf_counter()
    with warnings.catch_warnings():  # divergences are counted in the row; the driver's warning would repeat it
        warnings.simplefilter("ignore", RuntimeWarning)
        trace, extra = _RUNNERS[spec.kind](spec, plan, target, target_name, budget, run_key, num_particles, devices)
    wall = time.perf_counter() - start
    final = np.asarray(trace.positions[:, -1, :], np.float64)
    n_grad = trace.n_grad_total / num_particles + extra.pop("n_grad_training", 0.0)
    burn_in = extra.pop("burn_in_draws", 0)
    row = {
        "sampler": sampler_name, "target": target_name, "dim": target.dim, "budget": budget, "seed": seed,
        "num_particles": num_particles, "n_grad": n_grad,
        **quality_metrics(final, reference, target, target_name),
        "divergent": int(trace.num_divergent + trace.num_divergent_warmup),
        "wall_s": wall,
        "settings": json.dumps({**plan.settings, **extra}, sort_keys=True, default=str),
    }
    if spec.kind in ("chain", "nuts") and trace.num_draws - burn_in >= 4:
        with warnings.catch_warnings():  # ArviZ warns when chains outnumber draws; the ESS is still right
            warnings.simplefilter("ignore", UserWarning)
            kept = np.asarray(trace.positions)[:, burn_in:]
            row["ess_per_1k"] = 1000.0 * metrics.ess_per_grad(kept, trace.n_grad_total)
    if "log_weight" in trace.stats and target.truth.log_z is not None:
        estimate = importance_log_z(np.asarray(trace.stats["log_weight"])[:, -1]).value
        row["log_z_err"] = float(metrics.log_z_error(estimate, target.truth.log_z))
    return row, final


def floor_row(target_name: str, seed: int, num_particles: int, reference: Optional[np.ndarray] = None) -> tuple[dict, np.ndarray]:
    """The metrics of N fresh exact samples (what a perfect sampler scores at this N)."""
    target = get_target(target_name)
    _, reference_key, floor_key = _keys(seed)
    if reference is None:
        reference = exact_batch(target, reference_key, num_particles)
    fresh = exact_batch(target, floor_key, num_particles)
    row = {
        "sampler": "exact (floor)", "target": target_name, "dim": target.dim, "budget": 0, "seed": seed,
        "num_particles": num_particles, "n_grad": 0.0, **quality_metrics(fresh, reference, target, target_name),
        "divergent": 0, "wall_s": 0.0, "settings": "{}",
    }
    return row, fresh


def cell_key(sampler_name: str, target_name: str, budget: int, seed: int, num_particles: int) -> str:
    """Cache key: sampler, its settings for this target and budget, target, budget, seed, N, version."""
    if sampler_name == "exact (floor)":
        settings = {}
    else:
        settings = get_plan(sampler_name, target_name, budget).settings
    blob = json.dumps([sampler_name, settings, target_name, budget, seed, num_particles,
                       stochflow.__version__, CACHE_VERSION], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _cached(cache: Optional[pathlib.Path], key: str):
    if cache is None:
        return None
    row_file, samples_file = cache / f"{key}.json", cache / f"{key}.npy"
    if row_file.exists() and samples_file.exists():
        return json.loads(row_file.read_text()), np.load(samples_file)
    return None


def _store(cache: Optional[pathlib.Path], key: str, row: dict, final: np.ndarray) -> None:
    if cache is None:
        return
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / f"{key}.npy", final)
    (cache / f"{key}.json").write_text(json.dumps(row, default=float))


def grid_cells(samplers: Iterable[str], targets: Iterable[str], budgets: Iterable[int], seeds: Iterable[int]):
    """The (sampler, target, budget, seed) cells where the sampler applies to the target."""
    cells, skipped = [], {}
    for target_name in targets:
        target = get_target(target_name)
        for sampler_name in samplers:
            if not SAMPLERS[sampler_name].applies(target):
                skipped.setdefault(target_name, []).append(sampler_name)
                continue
            cells += [(sampler_name, target_name, b, s) for b in budgets for s in seeds]
    return cells, skipped


@functools.lru_cache(maxsize=None)
def _reference(target_name: str, seed: int, num_particles: int) -> np.ndarray:
    _, reference_key, _ = _keys(seed)
    return exact_batch(get_target(target_name), reference_key, num_particles)


def run_cell(cell: tuple) -> tuple[dict, np.ndarray]:
    """Run one (sampler, target, budget, seed, N) cell; the floor row for sampler ``exact (floor)``."""
    sampler_name, target_name, budget, seed, num_particles, devices = cell
    reference = _reference(target_name, seed, num_particles)
    if sampler_name == "exact (floor)":
        return floor_row(target_name, seed, num_particles, reference)
    return run_one(sampler_name, target_name, budget, seed, num_particles, reference, devices)


def run_grid(
    samplers: Iterable[str],
    targets: Iterable[str],
    budgets: Iterable[int],
    seeds: Iterable[int],
    progress: bool = True,
    num_particles: int = 128,
    cache: Optional[pathlib.Path] = None,
    jobs: int = 1,
    devices=None,
) -> tuple[list[dict], dict, dict]:
    """Every applicable cell plus a floor row per (target, seed).

    Returns (rows, final samples of seed 0 at the largest budget keyed by
    (target, sampler), samplers skipped per target as not applicable).
    Rows found in ``cache`` (same cell key) are reused, not rerun. With
    ``jobs > 1`` the cells run in that many worker processes (XLA compiles on
    one core, so two workers keep two cores busy); results do not depend on it.
    ``devices`` goes to ``sf.sample`` in every run (see :func:`run_one`).
    """
    from tqdm.auto import tqdm

    samplers, targets, budgets, seeds = list(samplers), list(targets), list(budgets), list(seeds)
    cells, skipped = grid_cells(samplers, targets, budgets, seeds)
    cells = [("exact (floor)", t, 0, s) for t in targets for s in seeds] + cells
    results: dict[tuple, tuple[dict, np.ndarray]] = {}
    keys = {cell: cell_key(*cell, num_particles) for cell in cells}
    todo = []
    for cell in cells:
        found = _cached(cache, keys[cell])
        if found is None:
            todo.append(cell)
        else:
            found[0]["cached"] = True
            results[cell] = found
    with tqdm(total=len(cells), initial=len(results), disable=not progress, desc="bench", unit="run") as bar:
        def finish(cell, found):
            _store(cache, keys[cell], *found)
            found[0]["cached"] = False
            results[cell] = found
            bar.set_postfix_str(f"{cell[0]} on {cell[1]} ({cell[2]})", refresh=False)
            bar.update()

        if jobs > 1 and len(todo) > 1:
            import concurrent.futures
            import multiprocessing

            context = multiprocessing.get_context("spawn")  # JAX does not survive fork
            with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = {pool.submit(run_cell, (*cell, num_particles, devices)): cell for cell in todo}
                for future in concurrent.futures.as_completed(futures):
                    finish(futures[future], future.result())
        else:
            for cell in todo:
                finish(cell, run_cell((*cell, num_particles, devices)))
    rows, finals = [], {}
    for cell in cells:
        row, final = results[cell]
        rows.append(row)
        sampler_name, target_name, budget, seed = cell
        if seed == seeds[0] and budget in (0, max(budgets)):
            finals[(target_name, sampler_name)] = final
    return rows, finals, skipped


def check_names(requested: Optional[Iterable[str]], known: Iterable[str], what: str) -> list[str]:
    """The requested names, or a ValueError listing the known ones."""
    known = sorted(known)
    if requested is None:
        return known
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; available: {', '.join(known)}.")
    return list(requested)
