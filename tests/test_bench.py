"""The benchmark command line and its metrics."""

import numpy as np
import pytest

from stochflow.benchmarks import cli
from stochflow.benchmarks.harness import moment_errors


def test_moment_errors_against_hand_computation():
    draws = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    cov = np.diag([4.0, 1.0])
    errors = moment_errors(draws, mean=np.array([1.0, 3.0]), cov=cov)
    # sample mean (2, 3): standardised errors |2-1|/2 = 0.5 and 0; sample cov [[4,4],[4,4]].
    assert errors["mean_err"] == pytest.approx(0.5)
    assert errors["cov_err"] == pytest.approx(np.linalg.norm([[0, 4], [4, 3]]) / np.linalg.norm(cov))


def test_quick_bench_writes_report_and_csv(tmp_path, capsys):
    code = cli.main(["bench", "--quick", "--samplers", "ula", "mala", "--budget", "2000",
                     "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    report = (tmp_path / "report.md").read_text()
    assert "### gaussian-aniso (d = 20)" in report and "### llp-gmm5 (d = 2)" in report
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("sampler,target,dim,budget,seed")
    assert len(rows) == 1 + 2 * 2  # header + 2 samplers x 2 targets
    # Every chain got the budget: 4 chains x 2000 gradients.
    assert all(",8000," in row for row in rows[1:])


def test_unknown_names_list_the_known_ones(tmp_path, capsys):
    assert cli.main(["bench", "--targets", "no-such", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "unknown target 'no-such'; available: gaussian-aniso, llp-gmm5" in error
