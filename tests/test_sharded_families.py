"""Every sampler family on 2 host devices against 1 device with the same key.

The runs happen in one child process (tests/families_child.py): the device count must be
set before jax is imported. Nothing in a sampler reads how its particles are laid out
except the ``ParticleAxis`` the driver passes, so a sampler nested in another (rdMC's
inner chains) runs the same sharded or not.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

CHILD = pathlib.Path(__file__).with_name("families_child.py")
ROOT = CHILD.parent.parent
UNIT_ROUNDOFF = 2.0**-24  # float32
# Steps per run that round (rdMC: 5 outer steps, each after 4 inner ULA steps and a resampled start).
ROUNDED_STEPS = {"rdmc": 5 * (4 + 1), "snf": 1}
# tests/test_sharding.py already runs ULA, MALA, the three underdamped schemes and SVGD on 1, 2
# and 8 devices (both modes) in the default suite; the families here are the others. Every
# family in both modes on 2 devices is the slow-marked run (python -m pytest -m slow).
COVERED_BY_TEST_SHARDING = ["ula", "mala", "baoab", "obabo", "ubu", "svgd"]
OTHERS = ["myula", "mymala", "mla", "bmumla", "bmmla", "rdmc", "snf", "msvgd", "svmd", "nuts"]
FAMILIES = COVERED_BY_TEST_SHARDING + OTHERS
REPRODUCIBLE = [n for n in FAMILIES if n not in ("rdmc", "snf", "msvgd", "svmd")]


def run_child(directory: pathlib.Path, modes: str, names: list[str]) -> dict:
    out = directory / "families.npz"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(CHILD), str(out), modes, *names], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with np.load(out) as data:
        return dict(data)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The families test_sharding does not run, by default, on 1 and 2 devices."""
    return run_child(tmp_path_factory.mktemp("families"), "default", OTHERS)


@pytest.fixture(scope="module")
def all_runs(tmp_path_factory) -> dict:
    """Every family, by default and (shard-local ones) with reproducible=True."""
    return run_child(tmp_path_factory.mktemp("all_families"), "both", FAMILIES)


def fields(runs: dict, prefix: str) -> list[str]:
    names = sorted(k[len(prefix):] for k in runs if k.startswith(prefix))
    assert names, prefix
    return names


def assert_within_rounding(runs: dict, name: str) -> None:
    # The default (vectorised) programs may round differently at another number of particles
    # per device (XLA fuses them differently and contracts other multiply-adds into FMAs). Each
    # step rounds a handful of times, at most 4 roundings of u |x| per coordinate for the
    # Langevin-type updates; on these contracting targets the differences do not compound, so
    # after T rounded steps |diff| <= T * 4u * max|x|. Counts (n_grad, diverging) agree exactly.
    # A wrong key, a shard reading another shard's noise, or an inner sampler told the outer
    # device axis (rdMC before the explicit ParticleAxis: off by 0.52) differs by O(1).
    one, two = f"{name}/default/one/", f"{name}/default/two/"
    x = runs[one + "positions"]
    steps = ROUNDED_STEPS.get(name, x.shape[1])
    if name == "nuts":  # every leapfrog step of a trajectory rounds: count gradient evaluations
        steps = int(runs[one + "stats/n_grad"].sum(axis=1).max())
    bound = steps * 4 * UNIT_ROUNDOFF * np.abs(x).max()
    assert np.abs(x - runs[two + "positions"]).max() <= bound
    for field in fields(runs, one + "stats/"):
        if field in ("n_grad", "diverging", "is_accepted"):
            np.testing.assert_array_equal(runs[one + "stats/" + field], runs[two + "stats/" + field], err_msg=field)


@pytest.mark.parametrize("name", OTHERS)
def test_two_devices_give_the_one_device_draws_to_float32_rounding(runs, name):
    assert_within_rounding(runs, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_on_two_devices_to_float32_rounding(all_runs, name):
    assert_within_rounding(all_runs, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", REPRODUCIBLE)
def test_reproducible_shard_local_runs_are_bit_identical(all_runs, name):
    # reproducible=True compiles each particle's step for one particle, whatever the number of
    # particles a device holds: every draw and every stat, bit for bit.
    assert bool(all_runs[f"{name}/shard_local"])
    one, two = f"{name}/reproducible/one/", f"{name}/reproducible/two/"
    for field in fields(all_runs, one):
        np.testing.assert_array_equal(all_runs[one + field], all_runs[two + field], err_msg=field)


@pytest.mark.slow
def test_rdmc_reproducible_within_float32_rounding(all_runs):
    # rdMC is shard-local, but reproducible=True does not make it bit-identical (measured 1-2
    # ulps): the loop compiles the outer particle's step for one particle, yet its inner chains
    # and importance proposals are vectorised batches inside that step, fused differently in the
    # one- and two-device programs. The default bound above holds.
    one, two = "rdmc/reproducible/one/positions", "rdmc/reproducible/two/positions"
    bound = ROUNDED_STEPS["rdmc"] * 4 * UNIT_ROUNDOFF * np.abs(all_runs[one]).max()
    assert np.abs(all_runs[one] - all_runs[two]).max() <= bound
