"""sf.sample(..., devices=...): particles sharded over devices and processes.

The runs happen in child processes (tests/sharding_child.py), since
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before jax
is imported. Chain methods run shard-locally (``shard_map``). By default
(vectorised programs) the unadjusted chain methods stay within a derived float32 rounding
bound of the one-device run (bit identity there is XLA codegen, which depends on the jax
version and the CPU), MALA within float32 rounding chain by chain; SVGD stays within its own rounding bound (XLA:CPU's matrix kernels may
round the same pairwise sums differently in two programs). With
``reproducible=True`` every chain method and SVGD is bit-identical on both jax
lines, and two processes joined by ``jax.distributed`` give the one-process trace.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import stochflow as sf

CHILD = pathlib.Path(__file__).with_name("sharding_child.py")
ROOT = CHILD.parent.parent
FLOAT32_UNIT_ROUNDOFF = 2.0**-24


def run_child(args: list[str], device_count: int, extra_flags: str = "") -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={device_count} {extra_flags}",
               PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, str(CHILD), *args], env=env, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait(process: subprocess.Popen, timeout: float = 240) -> None:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"child timed out after {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]


def assert_same_run(a: dict, b: dict, prefix_a: str, prefix_b: str) -> None:
    """Positions, every stat and the counters, bit for bit."""
    names = sorted(k[len(prefix_a):] for k in a if k.startswith(prefix_a + "/"))
    assert names, prefix_a
    for name in names:
        left, right = a[prefix_a + name], b[prefix_b + name]
        assert left.dtype == right.dtype and left.shape == right.shape, (prefix_a, name)
        np.testing.assert_array_equal(left, right, err_msg=f"{prefix_a}{name} vs {prefix_b}{name}")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("sharding")
    out = folder / "layouts.npz"
    wait(run_child(["layouts", str(out), str(folder / "run.zarr")], device_count=8))
    with np.load(out) as data:
        return dict(data)


# Default (vectorised) mode promises the one-device draws up to float32 rounding, not bit for
# bit: XLA may fuse a vectorised step differently at another batch size and contract other
# multiply-adds into FMA instructions, and what it does depends on the jax version and on the
# CPU (runs bit-identical on one machine differed by 1 ulp on another). Every unadjusted chain
# method is held to its derived rounding bound; MALA to the rounding class, chain by chain.
DEFAULT_RUNS = ["ula/two", "ula/all", "ula/mesh_1d", "ula/mesh_2d", "underdamped_baoab/all",
                "underdamped_obabo/all", "underdamped_ubu/all"]

# The child's runs: step h, friction gamma, and the target N(0, diag(SCALES^2)).
STEP = {"ula": 0.1, "underdamped_baoab": 0.2, "underdamped_obabo": 0.2, "underdamped_ubu": 0.2}
FRICTION, SCALES = 1.0, np.array([1.0, 2.0, 0.5])
# Rounded float32 operations per step and coordinate on the update path, counted from the
# kernels (samplers/langevin.py, samplers/kinetic.py, kernels/integrators.py); unit mass, so /m and sqrt(m) are exact.
# The gradient -(x / s) / s: 2. A Gaussian draw: about 22 (the uniform's scaling, x * x, log1p,
# the shift and a degree-8 Horner polynomial of erf^-1 with 2 roundings a degree, sqrt(2) *).
# ULA, x + h g + sqrt(2h) xi: gradient 2, h g 1, add 1, scaling of xi 1, add 1, draw 22 -> 28.
# B, p + (h/2) g: 4. A, x + t p: 2. O, e^{-gt} p + c xi: 2 products, 1 add, draw 22 -> 25.
# U (ou_stream), two draws 44; x + d v + (a xi_v + b xi_x) / sqrt(m): 3 products, 3 adds -> 6;
# decay v + c xi_v: 2 products, 1 add -> 3: 53.
ROUNDINGS = {"ula": 28, "underdamped_baoab": 4 + 2 + 25 + 2 + 4, "underdamped_obabo": 25 + 4 + 2 + 4 + 25,
             "underdamped_ubu": 4 + 53}


def _linear_parts(name: str, s: float) -> list[np.ndarray]:
    """The deterministic sub-steps of one step for the coordinate of scale s, as matrices on
    (x, p) (the noise is additive, the same in both programs up to rounding)."""
    h, w2 = STEP[name], 1.0 / s**2
    B = lambda t: np.array([[1.0, 0.0], [-t * w2, 1.0]])  # p += t grad = -t x / s^2
    A = lambda t: np.array([[1.0, t], [0.0, 1.0]])  # x += t p
    O = lambda t: np.array([[1.0, 0.0], [0.0, np.exp(-FRICTION * t)]])  # p decays; noise added
    U = lambda t: np.array([[1.0, -np.expm1(-FRICTION * t) / FRICTION], [0.0, np.exp(-FRICTION * t)]])
    if name == "ula":
        return [np.array([[1.0 - h * w2]])]
    if name == "underdamped_baoab":
        return [B(h / 2), A(h / 2), O(h), A(h / 2), B(h / 2)]
    if name == "underdamped_ubu":  # recorded at its force evaluations: B(h) then U(h)
        return [B(h), U(h)]
    return [O(h / 2), B(h / 2), A(h), B(h / 2), O(h / 2)]


def rounding_bound(name: str, num_steps: int, scale: float) -> float:
    """How far two float32 programs computing the same chain (same keys, same arithmetic up to
    fusion and FMA contraction) can drift apart in position after num_steps steps.

    Each program's step is within k u S of the exact step per coordinate (k roundings on the
    update path, ROUNDINGS; u the float32 unit roundoff; S = scale, the largest |x| of the
    run, which here also bounds |p| and the Gaussian draws, standard normal against the widest
    coordinate's sd 2), carried to the end of the step by at most the product of the sub-steps'
    inf-norms (c): two programs differ by delta <= 2 c k u S per step. The step is linear on
    this Gaussian, e_{t+1} = A e_t + delta_t, so |e_T| <= sum_{j<T} ||A^j||_inf * delta,
    computed here per coordinate (A contracts eventually, spectral radius 0.90 for the
    underdamped schemes, 0.6-0.975 for ULA, but its powers may first grow to 1.6)."""
    worst = 0.0
    for s in SCALES:
        parts = _linear_parts(name, s)
        carry = float(np.prod([np.abs(m).sum(axis=1).max() for m in parts]))
        step = np.linalg.multi_dot(parts[::-1]) if len(parts) > 1 else parts[0]
        power, growth = np.eye(len(step)), 0.0
        for _ in range(num_steps):
            growth += np.abs(power).sum(axis=1).max()
            power = step @ power
        worst = max(worst, growth * carry)
    return worst * 2 * ROUNDINGS[name] * FLOAT32_UNIT_ROUNDOFF * scale


@pytest.mark.parametrize("run", DEFAULT_RUNS)
def test_chain_methods_across_devices_by_default(layouts, run):
    name, layout = run.split("/")
    one, other = f"{name}/one", f"{name}/{layout}"
    # Float32 rounding only: a wrong key or wrong noise would differ by O(1).
    left, right = layouts[one + "/positions"], layouts[other + "/positions"]
    scale = max(np.abs(left).max(), np.abs(right).max())
    bound = rounding_bound(name, left.shape[1], scale)
    assert np.abs(left - right).max() <= bound, (run, np.abs(left - right).max(), bound)
    for stat in ("n_grad", "diverging"):
        np.testing.assert_array_equal(layouts[f"{one}/stats/{stat}"], layouts[f"{other}/stats/{stat}"])
    np.testing.assert_array_equal(layouts[one + "/counts"], layouts[other + "/counts"])


# MALA with warmup has no useful a-priori pointwise bound: the per-chain dual averaging turns
# a rounding eps of the acceptance probability into a rounding of log h amplified by up to
# sqrt(t) / gamma = 100, and a Metropolis decision flips when log u falls within eps of log
# alpha, after which the chain follows another path. So the test screens, chain by chain: the
# one-device run and the sharded run differ by float32 rounding (measured 0 to 5e-7 after 65
# steps on two CPUs) unless a decision flipped; a wrong key moves every chain by O(1) from its
# first step (checked below). ROUNDING_CLASS = 1e-2 is four orders above the measured drift and
# two below a wrong run. Flips: eps <= 30 roundings x |terms| <= 10 x u = 2e-5 per step, the
# density of log u is at most 1, so P(flip) <= 4e-5 per step, < 3e-3 per chain over 65 steps;
# even at 10x that (the warmup's first steps have |log pi| up to 1e2) P(> 4 of 16 chains) < 1e-4.
ROUNDING_CLASS, MAX_FLIPPED_CHAINS = 1e-2, 4


def chains_agreeing(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.sum(np.abs(a - b).max(axis=(1, 2)) <= ROUNDING_CLASS))


def test_mala_across_devices_by_default(layouts):
    one = layouts["mala/one/positions"]
    assert chains_agreeing(one, layouts["mala/all/positions"]) >= len(one) - MAX_FLIPPED_CHAINS
    assert chains_agreeing(one, layouts["mala/other_key/positions"]) == 0  # the test can fail
    for stat in ("n_grad", "diverging"):
        np.testing.assert_array_equal(layouts[f"mala/one/stats/{stat}"], layouts[f"mala/all/stats/{stat}"])


def test_rounding_bound_is_far_below_a_wrong_run(layouts):
    # The bound must be able to fail: a run with another key moves the particles by O(1).
    for name in ("ula", "underdamped_baoab", "underdamped_obabo", "underdamped_ubu"):
        one = layouts[f"{name}/one/positions"]
        other_key = layouts[f"{name}/other_key/positions"]
        bound = rounding_bound(name, one.shape[1], max(np.abs(one).max(), np.abs(other_key).max()))
        assert bound < 1e-2 and np.abs(one - other_key).max() > 100 * bound, name


def test_sharded_run_streamed_to_a_store_matches_memory(layouts):
    # Streamed to a store, the sharded run is the in-memory run to float32 rounding, chain by
    # chain as above. Not bit for bit: on one CI machine (jax 0.12) the streamed 8-device run
    # differed from the in-memory 8-device run by 2e-6 at its first draw (bit-identical on
    # another machine; the cause was not found). On one device a stored run is the in-memory
    # run bit for bit, and a run resumed in another process too (tests/test_store.py).
    one = layouts["mala/one/positions"]
    for layout in ("all", "all_store"):
        assert chains_agreeing(one, layouts[f"mala/{layout}/positions"]) >= len(one) - MAX_FLIPPED_CHAINS
    for stat in ("n_grad", "diverging"):
        np.testing.assert_array_equal(layouts["mala/all/stats/" + stat], layouts["mala/all_store/stats/" + stat])
    np.testing.assert_array_equal(layouts["mala/all/counts"], layouts["mala/all_store/counts"])


@pytest.mark.parametrize("name", ["ula", "mala", "underdamped_baoab", "underdamped_obabo", "underdamped_ubu", "svgd"])
def test_reproducible_runs_bit_identical_on_8_devices(layouts, name):
    # reproducible=True compiles each particle's step on its own (a loop over particles), so
    # the arithmetic is the same code whatever the number of particles per device: every
    # draw and stat, log-densities included, bit for bit, for the chain methods and SVGD.
    assert_same_run(layouts, layouts, f"reproducible/{name}/one", f"reproducible/{name}/all")


def test_reproducible_svgd_bit_identical_on_a_2d_mesh(layouts):
    assert_same_run(layouts, layouts, "reproducible/svgd/one", "reproducible/svgd/mesh_2d")


def test_svgd_matches_within_float32_rounding(layouts):
    # SVGD's direction is a sum over all n particles. Sharded, each device all-gathers the
    # particles and computes its own rows with the same code, but XLA:CPU's matrix kernels give
    # no promise to round the same product alike in two programs (measured: the same
    # (16 x 16) @ (16 x 3) product differs in the last bit), so each step's direction may differ
    # by up to n * u * sum|terms| (Higham's bound for recursive summation).
    # AdaGrad normalises the step to ~step_size per coordinate; over T steps the SVGD map on
    # a Gaussian is non-expansive at this step size, so |diff| <= T * step * n * u * C with
    # C = 64 bounding sum|terms| / |sum| here. Shard-local sums (the wrong answer) move the
    # particles by O(step * T) = O(1).
    one = layouts["svgd/one/positions"]
    num_particles, num_steps = one.shape[:2]
    bound = num_steps * 0.05 * num_particles * FLOAT32_UNIT_ROUNDOFF * 64
    for layout in ("all", "two", "mesh_1d", "mesh_2d"):
        diff = np.abs(one - layouts[f"svgd/{layout}/positions"]).max()
        assert diff <= bound, (layout, diff, bound)
        np.testing.assert_array_equal(layouts["svgd/one/stats/n_grad"], layouts[f"svgd/{layout}/stats/n_grad"])


def test_chunks_reuse_one_sharded_program(layouts):
    # The log-density is traced as often for the sharded run as for the one-device run
    # (8 chunks each): the sharded state keeps its layout from chunk to chunk.
    assert layouts["traces_per_run/all"] == layouts["traces_per_run/None"]


def test_bad_devices_refused_before_compiling(layouts):
    errors = list(layouts["errors"])
    assert errors[0].startswith("ValueError") and "12" in errors[0] and "8 devices" in errors[0] \
        and "multiple of 8" in errors[0]
    assert errors[1].startswith("ValueError") and "3 devices" in errors[1]
    assert errors[2].startswith("ValueError") and "'gpu'" in errors[2]
    assert errors[3].startswith("TypeError") and "jax.Device" in errors[3]
    assert errors[4].startswith("ValueError") and "no device" in errors[4]
    assert errors[5].startswith("ValueError") and "twice" in errors[5]
    assert errors[6].startswith("TypeError")
    assert errors[7].startswith("ValueError") and "'particles'" in errors[7]
    assert layouts["traced_by_refusals"] == 0


def test_unknown_devices_value_in_process():
    target = sf.Target(lambda x: -0.5 * (x @ x), dim=2)
    import jax

    with pytest.raises(ValueError, match="not understood"):
        sf.sample(sf.ula(0.1), target, jax.random.key(0), 4, 5, progress=False, devices="everything")
    with pytest.raises(TypeError, match="jax.Device"):
        sf.sample(sf.ula(0.1), target, jax.random.key(0), 4, 5, progress=False, devices=["cpu:0"])


def test_one_device_mesh_is_the_unsharded_run():
    # In this (one-device) test process "all" is a 1-device mesh: the sharded code path,
    # which must give the devices=None trace bit for bit.
    import jax
    import jax.numpy as jnp

    target = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=2, name="gauss-2d")
    run = dict(num_particles=4, num_steps=12, warmup=6, chunk_size=5, progress=False)
    plain = sf.sample(sf.mala(0.5), target, jax.random.key(1), **run)
    for devices in ("all", jax.devices()[:1]):
        sharded = sf.sample(sf.mala(0.5), target, jax.random.key(1), devices=devices, **run)
        np.testing.assert_array_equal(plain.positions, sharded.positions)
        for name in plain.stats:
            np.testing.assert_array_equal(plain.stats[name], sharded.stats[name])


def test_reproducible_is_the_same_algorithm():
    # One device: the loop over particles (reproducible=True) and the vectorised program run the
    # same kernel with the same keys, so they differ only by float32 rounding. Underdamped
    # BAOAB and ULA on this Gaussian contract; per step and coordinate the two programs may round its
    # four updates differently, so after T steps |diff| <= T * 4u * max|x|. A different key or
    # kernel would differ by O(1).
    import jax
    import jax.numpy as jnp

    target = sf.Target(lambda x: -0.5 * jnp.sum((x / jnp.array([1.0, 2.0])) ** 2), dim=2, name="gauss-2d")
    run = dict(num_particles=8, num_steps=50, chunk_size=20, progress=False)
    for sampler in (sf.underdamped(0.2, 1.0), sf.ula(0.1)):
        vectorised = sf.sample(sampler, target, jax.random.key(3), **run)
        looped = sf.sample(sampler, target, jax.random.key(3), reproducible=True, **run)
        bound = run["num_steps"] * 4 * FLOAT32_UNIT_ROUNDOFF * np.abs(vectorised.positions).max()
        assert np.abs(vectorised.positions - looped.positions).max() <= bound
        np.testing.assert_array_equal(vectorised.stats["n_grad"], looped.stats["n_grad"])
    with pytest.raises(TypeError, match="reproducible"):
        sf.sample(sf.ula(0.1), target, jax.random.key(0), 4, 5, progress=False, reproducible="yes")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_one_process_trace(tmp_path):
    # The one-process reference also leaves two stores of the run crashed (in warmup and
    # in sampling), which the two processes resume: process 0 reads the checkpoint and
    # broadcasts the state; the resumed traces must be the uninterrupted one.
    store = str(tmp_path / "run.zarr")
    wait(run_child(["single", str(tmp_path / "single.npz"), store], 1))
    port = str(free_port())
    children = [run_child(["distributed", str(tmp_path / "dist.npz"), str(i), port, store], 2) for i in (0, 1)]
    for child in children:
        wait(child, timeout=300)
    with np.load(tmp_path / "single.npz") as data:
        single = dict(data)
    for process in (0, 1):
        with np.load(tmp_path / f"dist.npz.{process}.npz") as data:
            distributed = dict(data)
        assert distributed["num_devices"] == 4
        assert_same_run(single, distributed, "mala", "mala")
        assert_same_run(single, distributed, "mala", "mala_store")
        for after in (2, 5):
            assert_same_run(single, distributed, "mala", f"mala_resumed_{after}")
    stored = sf.load(f"{store}.distributed")
    np.testing.assert_array_equal(stored.positions, single["mala/positions"])
