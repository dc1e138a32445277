"""Per-step overhead of stochflow's kernels and driver, side by side in one run.

Two targets, 64 particles each: a 100-d Gaussian with a dense precision
matrix (condition number 100), whose gradient is so cheap that drawing the
Gaussian noise of a Langevin step costs more than the gradient; and a 100-d
Bayesian logistic regression on 2,000 synthetic observations, whose gradient
dominates the step as in most real models. Each contender runs ``--steps``
steps; a table per target gives gradient evaluations per second
(post-compilation, best of ``--repeats`` rounds, each timing every contender once) and the ratio to the bare loop:

* ``bare loop``: a jitted ``lax.scan`` of vmapped ``value_and_grad`` with the
  smallest update that keeps the steps dependent (``x += 1e-4 * grad``);
* ``bare loop + noise``: the same plus one standard normal draw per coordinate
  (what any Langevin step must also do): the floor for ULA and BAOAB, so its
  ratio to a kernel is stochflow's own overhead;
* ``stochflow <m> kernel``: ``sampler.step`` in a jitted ``lax.scan``;
* ``stochflow <m> sample()``: the full driver (keys per step, chunks, every
  step recorded and copied to the host);
* ``blackjax mala``: ``blackjax.mala`` vmapped over chains in a jitted scan.

Run: ``python benchmarks/overhead.py`` (``--steps 5000 --repeats 5`` by default;
``--obs N`` sets the logistic target's observations, ``--only-logistic`` skips the Gaussian).

``--reuse`` instead times what a user pays per new sampler, wall clock including
compilation, on a 400-observation logistic target (64 chains, ``--steps`` steps,
the issue's setting with ``--steps 3000``): the first ``sf.sample`` of MALA on a
fresh target, the same sampler again (compiled), a MALA with a new step size
(no new compilation: its step size is state), and BlackJAX's first call of the
same MALA loop (a jitted scan of vmapped ``blackjax.mala`` steps recording
the log-density, built afresh; and recording every draw, as ``sf.sample`` does), and the
bare loop + noise (the floor of any Langevin step) first and compiled.
"""

from __future__ import annotations

import argparse
import platform
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

import stochflow as sf

DIM, PARTICLES = 100, 64


def gaussian_target() -> sf.Target:
    base = sf.models.anisotropic_gaussian(dim=DIM, condition_number=100.0)
    precision = jnp.asarray(np.linalg.inv(base.truth.cov), jnp.float32)
    return sf.Target(lambda x: -0.5 * x @ (precision @ x), dim=DIM, name="gaussian-100d")


def logistic_target(num_obs: int = 2_000) -> sf.Target:
    """Logistic regression, N(0, I) prior, data from a fixed NumPy stream."""
    rng = np.random.RandomState(0)
    features = rng.randn(num_obs, DIM).astype(np.float32) / np.sqrt(DIM)
    labels = (rng.rand(num_obs) < 1 / (1 + np.exp(-features @ rng.randn(DIM)))).astype(np.float32)
    features, labels = jnp.asarray(features), jnp.asarray(labels)

    def logdensity(x):
        logits = features @ x
        return jnp.sum(labels * logits - jnp.logaddexp(0.0, logits)) - 0.5 * x @ x

    return sf.Target(logdensity, dim=DIM, name=f"logistic-{num_obs}x{DIM}")


def best_times(contenders: dict, repeats: int) -> dict[str, float]:
    """Best wall-clock seconds of each contender (compiled and warmed up first), timed round
    robin, one call of each per round: a machine slowing down mid-run biases none of them."""
    for fn in contenders.values():
        jax.block_until_ready(fn())
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bare_loop(target, x0, steps):
    value_and_grad = jax.vmap(jax.value_and_grad(target.logdensity))

    @jax.jit
    def run(x):
        def body(x, _):
            value, grad = value_and_grad(x)
            return x + 1e-4 * grad, value

        return jax.lax.scan(body, x, None, length=steps)

    return lambda: run(x0)


def bare_noisy_loop(target, x0, steps, record=False):
    """The bare loop plus one normal draw per coordinate; ``record``: returning every draw's
    position too, copied to the host (what ``sf.sample`` keeps)."""
    value_and_grad = jax.vmap(jax.value_and_grad(target.logdensity))

    @jax.jit
    def run(x, key):
        def body(x, step_key):
            value, grad = value_and_grad(x)
            noise = jax.random.normal(step_key, x.shape, x.dtype)
            x = x + 1e-4 * grad + 1e-2 * noise
            return x, (x, value) if record else value

        return jax.lax.scan(body, x, jax.random.split(key, steps))

    if record:
        return lambda: np.asarray(run(x0, jax.random.key(5))[1][0])
    return lambda: run(x0, jax.random.key(5))


def kernel_loop(sampler, target, x0, steps):
    state = sampler.init(target, x0, jax.random.key(1))

    @jax.jit
    def run(state, key):
        def body(state, key):
            state, info = sampler.step(target, state, key)
            return state, info.logdensity

        return jax.lax.scan(body, state, jax.random.split(key, steps))

    return lambda: run(state, jax.random.key(2))


def driver(sampler, target, x0, steps):
    def run():
        return sf.sample(sampler, target, jax.random.key(3), init=x0, num_steps=steps,
                         progress=False, chunk_size=steps).positions

    return run


def blackjax_mala(target, x0, steps, step_size, record=False):
    """``blackjax.mala`` vmapped over chains in a jitted scan returning the log-densities, or
    with ``record`` every draw's position and acceptance too (what ``sf.sample`` records)."""
    algorithm = blackjax.mala(target.logdensity, step_size)
    states = jax.vmap(algorithm.init)(x0)

    @jax.jit
    def run(states, key):
        def body(states, key):
            keys = jax.random.split(key, PARTICLES)
            states, info = jax.vmap(algorithm.step)(keys, states)
            if record:
                return states, (states.position, states.logdensity, info.acceptance_rate, info.is_accepted)
            return states, states.logdensity

        return jax.lax.scan(body, states, jax.random.split(key, steps))

    if record:  # copied to the host, as sf.sample's draws are
        return lambda: jax.tree_util.tree_map(np.asarray, run(states, jax.random.key(4))[1])
    return lambda: run(states, jax.random.key(4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--obs", type=int, default=2_000,
                        help="observations of the logistic target (more: the gradient dominates more)")
    parser.add_argument("--only-logistic", action="store_true", help="skip the Gaussian target")
    parser.add_argument("--reuse", action="store_true", help="time first calls, compiled runs and a new step size")
    args = parser.parse_args()
    if args.reuse:
        reuse(args.steps, args.repeats)
        return

    targets = [(logistic_target(args.obs), 0.005)]
    if not args.only_logistic:
        targets.insert(0, (gaussian_target(), 0.01))
    for target, step in targets:
        compare(target, step, args.steps, args.repeats)


def compare(target: sf.Target, step: float, steps: int, repeats: int) -> None:
    """Time every contender on ``target`` and print the table of rates and ratios."""
    x0 = 0.1 * jax.random.normal(jax.random.key(0), (PARTICLES, DIM))
    contenders = {
        "bare loop (value_and_grad)": bare_loop(target, x0, steps),
        "bare loop + noise": bare_noisy_loop(target, x0, steps),
        "bare loop + noise, recording the draws": bare_noisy_loop(target, x0, steps, record=True),
        "stochflow ula kernel": kernel_loop(sf.ula(step), target, x0, steps),
        "stochflow mala kernel": kernel_loop(sf.mala(step), target, x0, steps),
        "stochflow underdamped-baoab kernel": kernel_loop(sf.underdamped(step), target, x0, steps),
        "stochflow underdamped-ubu kernel": kernel_loop(sf.underdamped(step, scheme="ubu"), target, x0, steps),
        "blackjax mala": blackjax_mala(target, x0, steps, step),
        "blackjax mala, recording the draws": blackjax_mala(target, x0, steps, step, record=True),
        "stochflow ula sample()": driver(sf.ula(step), target, x0, steps),
        "stochflow mala sample()": driver(sf.mala(step), target, x0, steps),
        "stochflow underdamped-baoab sample()": driver(sf.underdamped(step), target, x0, steps),
    }
    grads = steps * PARTICLES
    results = {name: grads / seconds for name, seconds in best_times(contenders, repeats).items()}
    bare = results["bare loop (value_and_grad)"]
    print(f"\n# overhead: {target.name}, {PARTICLES} particles, {steps} steps, "
          f"best of {repeats}; jax {jax.__version__}, {platform.machine()}, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s)\n")
    print("| contender | gradient evals / s | ratio to bare loop |")
    print("|---|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:,.0f} | {rate / bare:.2f} |")
    noisy = results["bare loop + noise"]
    print("\nratios to the bare loop + noise (stochflow's own overhead):")
    for name in ("stochflow ula kernel", "stochflow underdamped-baoab kernel"):
        print(f"  {name}: {results[name] / noisy:.2f}")
    recording = results["bare loop + noise, recording the draws"]
    print("ratios to the bare loop + noise recording the draws (goal for ULA: >= 0.95):")
    for name in ("stochflow ula sample()", "stochflow underdamped-baoab sample()"):
        print(f"  {name}: {results[name] / recording:.2f}")
    print(f"stochflow mala kernel / blackjax mala: "
          f"{results['stochflow mala kernel'] / results['blackjax mala']:.2f}")
    print(f"stochflow mala sample() / blackjax mala recording the draws (goal: >= 1.0): "
          f"{results['stochflow mala sample()'] / results['blackjax mala, recording the draws']:.2f}")


def wall(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def reuse(steps: int, repeats: int, step: float = 0.005) -> None:
    """Wall-clock seconds of first calls, compiled reruns and a new step size, side by side."""
    x0 = 0.1 * jax.random.normal(jax.random.key(0), (PARTICLES, DIM))
    rows: dict[str, list[float]] = {}
    for _ in range(repeats):
        target = logistic_target(400)  # a fresh Target: nothing compiled for it yet

        def run(sampler):
            return lambda: sf.sample(sampler, target, jax.random.key(1), init=x0, num_steps=steps,
                                     progress=False).positions

        blackjax_loop = blackjax_mala(target, x0, steps, step)
        noisy_loop = bare_noisy_loop(target, x0, steps)
        measured = {
            "stochflow mala sample(): first call": wall(run(sf.mala(step, adapt_step_size=False))),
            "stochflow mala sample(): compiled": wall(run(sf.mala(step, adapt_step_size=False))),
            "stochflow mala sample(): new step size": wall(run(sf.mala(1.1 * step, adapt_step_size=False))),
            "blackjax mala loop: first call": wall(blackjax_loop),
            "blackjax mala loop: compiled": wall(blackjax_loop),
            "blackjax mala loop recording the draws: first call": wall(blackjax_mala(target, x0, steps, step, True)),
            "bare loop + noise: first call": wall(noisy_loop),
            "bare loop + noise: compiled": wall(noisy_loop),
        }
        for name, seconds in measured.items():
            rows.setdefault(name, []).append(seconds)
    best = {name: min(values) for name, values in rows.items()}
    compiled = best["stochflow mala sample(): compiled"]
    print(f"\n# re-use: logistic-400x{DIM}, {PARTICLES} chains, {steps} steps, best of {repeats}; "
          f"jax {jax.__version__}, {platform.machine()}\n")
    print("| run | seconds | ratio to stochflow's compiled run |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {seconds / compiled:.2f} |")
    first = best["stochflow mala sample(): first call"]
    blackjax_first = best["blackjax mala loop: first call"]
    print(f"\nnew step size / compiled run: {best['stochflow mala sample(): new step size'] / compiled:.2f} (goal <= 1.1)")
    print(f"stochflow first call / blackjax first call: {first / blackjax_first:.2f} (goal <= 0.8); "
          f"/ blackjax recording the draws: {first / best['blackjax mala loop recording the draws: first call']:.2f}")
    print(f"compilation and set-up, first call minus compiled run: stochflow {first - compiled:.2f} s, "
          f"blackjax {blackjax_first - best['blackjax mala loop: compiled']:.2f} s, bare loop + noise "
          f"{best['bare loop + noise: first call'] - best['bare loop + noise: compiled']:.2f} s")
    print(f"the floor: the bare loop + noise's first call is {best['bare loop + noise: first call'] / blackjax_first:.2f}x "
          "blackjax's first call")


if __name__ == "__main__":
    main()
