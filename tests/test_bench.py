"""The benchmark harness: the command line, its outputs, the cache, the sampler table and the BlackJAX adapter."""

import csv

import blackjax
import jax
import numpy as np
import pytest

import stochflow as sf
from stochflow.benchmarks import cli, specs
from stochflow.benchmarks.harness import grid_cells


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_small_bench_writes_report_csv_plots_and_reuses_its_cache(tmp_path, capsys):
    argv = ["bench", "--samplers", "ula", "--targets", "grid-gmm9", "--budget", "100", "200", "--seeds", "1", "--jobs", "1",
            "--particles", "16", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    report = (tmp_path / "report.md").read_text()
    assert "## grid-gmm9 (d = 2)" in report and "budget 200 gradients per particle" in report
    assert "| *exact (floor)* |" in report and "| ula | 100 |" in report
    rows = _rows(tmp_path / "results.csv")
    assert len(rows) == 1 + 2  # the floor + 1 sampler x 2 budgets
    for row in rows[1:]:
        assert int(float(row["n_grad"])) == int(row["budget"])  # ULA: one gradient per step, all spent
        assert float(row["w2"]) > 0 and 0 <= float(row["mode_tv"]) <= 1
    assert (tmp_path / "samples-grid-gmm9.png").stat().st_size > 0
    assert (tmp_path / "curves-grid-gmm9.png").stat().st_size > 0
    # A rerun with the same settings reuses every cell, with identical results.
    assert cli.main(argv) == 0
    assert "(0 runs, 3 reused from the cache)" in (tmp_path / "report.md").read_text()
    assert _rows(tmp_path / "results.csv") == rows


def test_unknown_names_list_the_known_ones(tmp_path, capsys):
    assert cli.main(["bench", "--targets", "no-such", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "unknown target 'no-such'; available: " in error and "gmm40" in error and "many-well" in error
    assert cli.main(["bench", "--samplers", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown sampler 'nope'; available: " in capsys.readouterr().err


def test_quick_grid_covers_every_sampler_on_the_required_targets():
    cells, skipped = grid_cells(list(specs.SAMPLERS), cli.QUICK_TARGETS, cli.QUICK_BUDGETS, [0])
    covered = {sampler for sampler, *_ in cells}
    assert covered == set(specs.SAMPLERS)
    smooth = {s for s, spec in specs.SAMPLERS.items() if spec.applies.__name__ == "smooth on R^d"}
    assert {"ula", "mala", "rdmc", "snf", "svgd"} <= smooth
    for target in ("gmm40", "mixture-10d"):
        assert smooth <= {s for s, t, *_ in cells if t == target}
    assert {"myula", "mymala"} <= {s for s, t, *_ in cells if t == "laplace-gmm2"}
    assert "ula" in skipped["laplace-gmm2"]  # the Langevin family needs a smooth log-density


def test_every_table_row_builds_on_the_targets_it_applies_to():
    for target_name in cli.QUICK_TARGETS:
        target = sf.models.get(target_name)
        scales = specs.target_scales(target, target_name)
        for spec in specs.SAMPLER_TABLE:
            if spec.applies(target):
                plan = spec.build(target, scales, 1000)
                assert plan.settings, spec.name
                assert plan.sampler is not None or spec.kind == "flow"


@pytest.mark.slow
def test_quick_bench_end_to_end(tmp_path):
    # The README's command; on an idle 2-core machine it takes under 3 minutes.
    assert cli.main(["bench", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    rows = _rows(tmp_path / "results.csv")
    assert {r["sampler"] for r in rows} == set(specs.SAMPLERS) | {"exact (floor)"}
    assert {r["target"] for r in rows} == set(cli.QUICK_TARGETS)
    assert (tmp_path / "samples-gmm40.png").exists() and (tmp_path / "curves-mixture-10d.png").exists()
    report = (tmp_path / "report.md").read_text()
    assert all(f"## {t} " in report for t in cli.QUICK_TARGETS)


def test_from_blackjax_reports_honest_gradient_counts():
    # HMC with L leapfrog steps spends exactly L gradients per transition; NUTS reports its
    # tree's leapfrog count (between 1 and 2^depth - 1, varying); MCLMC two per step.
    target = sf.models.gaussian(np.zeros(2), np.diag([1.0, 4.0]))
    hmc = sf.from_blackjax(blackjax.hmc, step_size=0.3, num_integration_steps=7)
    trace = sf.sample(hmc, target, jax.random.key(0), num_particles=2, num_steps=20, warmup=10, progress=False)
    assert np.all(np.asarray(trace.stats["n_grad"]) == 7) and trace.n_grad_total == 2 * 30 * 7
    nuts = sf.from_blackjax("nuts", step_size=0.5, max_num_doublings=4)
    trace = sf.sample(nuts, target, jax.random.key(1), num_particles=2, num_steps=40, progress=False)
    steps = np.asarray(trace.stats["n_grad"])
    assert steps.min() >= 1 and steps.max() <= 2**4 - 1 and len(np.unique(steps)) > 1
    mclmc = sf.from_blackjax(blackjax.mclmc, step_size=0.5, L=2.0)
    trace = sf.sample(mclmc, target, jax.random.key(2), num_particles=2, num_steps=20, progress=False)
    assert np.all(np.asarray(trace.stats["n_grad"]) == 2)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["hmc", "nuts", "mclmc"])
def test_from_blackjax_samples_a_gaussian(algorithm):
    # N(0, diag(1, 4)), 8 chains x 2000 draws after warmup. Each chain's ESS is at least
    # ~200 here, so the variance estimates' relative MC error is about sqrt(2 / 1600) = 3.5%;
    # 20% is more than 5 of those.
    target = sf.models.gaussian(np.zeros(2), np.diag([1.0, 4.0]))
    params = {"hmc": dict(step_size=0.3, num_integration_steps=7), "nuts": dict(step_size=0.5),
              "mclmc": dict(step_size=0.6, L=3.0)}[algorithm]
    sampler = sf.from_blackjax(algorithm, **params)
    trace = sf.sample(sampler, target, jax.random.key(0), num_particles=8, num_steps=2000, warmup=500, progress=False)
    draws = np.asarray(trace.positions).reshape(-1, 2)
    np.testing.assert_allclose(draws.mean(0), [0.0, 0.0], atol=0.2)
    np.testing.assert_allclose(draws.var(0), [1.0, 4.0], rtol=0.2)


def test_from_blackjax_refuses_bad_input_before_compiling():
    with pytest.raises(ValueError, match="blackjax.nuts, blackjax.hmc and blackjax.mclmc"):
        sf.from_blackjax(blackjax.mala, step_size=0.1)
    with pytest.raises(ValueError, match="num_integration_steps"):
        sf.from_blackjax("hmc", step_size=0.1)
    with pytest.raises(ValueError, match="L must be"):
        sf.from_blackjax("mclmc", step_size=0.1)
    with pytest.raises(ValueError, match="step_size"):
        sf.from_blackjax("nuts", step_size=-1.0)
