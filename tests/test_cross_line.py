"""A trace written under one line (Python 3.11: ArviZ 0.2x, jax 0.10, zarr 3.1) is read by
``sf.load`` under the other (Python 3.12+: ArviZ 1.x, jax 0.12, zarr 3.4), exactly.

tests/data/cross_line/<line>/ holds NetCDF, zarr and CSV exports and a streamed run store
written by each line (``python tests/cross_line_child.py write tests/data/cross_line/py3XX``)
with the arrays they must give back; every line reads both folders. When
``STOCHFLOW_OTHER_PYTHON`` names the other line's interpreter (``.ci/run`` sets it for
the second run), fresh files go both ways through it too.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import cross_line_child
from stochflow.diagnostics import arviz_bridge

FIXTURES = pathlib.Path(__file__).parent / "data" / "cross_line"
CHILD = pathlib.Path(__file__).with_name("cross_line_child.py")
ROOT = CHILD.parent.parent


@pytest.mark.parametrize("line", ["py311", "py313"])
def test_committed_files_of_each_line_load_exactly(line):
    assert (FIXTURES / line / "expected.npz").exists()
    assert cross_line_child.differences(FIXTURES / line) == []


def run_child(python: str, mode: str, folder: pathlib.Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    done = subprocess.run([python, str(CHILD), mode, str(folder)], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{python} {mode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.skipif(not os.environ.get("STOCHFLOW_OTHER_PYTHON"),
                    reason="STOCHFLOW_OTHER_PYTHON (the other line's interpreter) is not set")
def test_fresh_files_go_both_ways(tmp_path):
    other = os.environ["STOCHFLOW_OTHER_PYTHON"]
    probe = subprocess.run([other, "-c", "import sys, arviz; print(sys.version_info[:2], arviz.__version__)"],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split(")")[-1].strip() != arviz_bridge.ARVIZ_VERSION, "the other interpreter has this ArviZ"
    run_child(other, "write", tmp_path / "theirs")
    assert cross_line_child.differences(tmp_path / "theirs") == []
    run_child(sys.executable, "write", tmp_path / "ours")
    run_child(other, "check", tmp_path / "ours")
