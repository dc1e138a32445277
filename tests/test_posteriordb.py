"""The posteriordb suite: every translation loads, names its Stan parameters as the reference
does, and (slow) NumPyro's NUTS on it recovers the reference posterior."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from stochflow.benchmarks import posteriordb as suite
from stochflow.models import posteriordb

POSTERIORS = posteriordb.names()
# Loading a model costs seconds of NumPyro tracing (measured 1-8 s each), so the default run
# loads two cheap ones and the slow run all of them.
DEFAULT_LOADED = {"eight_schools-eight_schools_noncentered", "kilpisjarvi_mod-kilpisjarvi"}
LOADED = [name if name in DEFAULT_LOADED else pytest.param(name, marks=pytest.mark.slow) for name in POSTERIORS]


def test_the_suite_has_eight_posteriors_none_of_the_held_out_ones():
    assert len(POSTERIORS) >= 8
    assert not {"sblrc-blr", "kidiq-kidscore_momiq", "mesquite-logmesquite_logvolume"} & set(POSTERIORS)


@pytest.mark.parametrize("name", LOADED)
def test_each_posterior_loads_with_the_reference_parameters(name):
    posterior = posteriordb.load(name)
    target = posteriordb.target(name)
    starts = target.init(jax.random.key(0), 2)  # NumPyro's init strategy: finite potential
    # Every reference parameter is one of the model's (constrained) coordinates, under ArviZ's
    # names: a misnamed or misshapen site fails here before any sampling.
    constrained = target.constrain(np.asarray(starts)[:, None, :])
    coordinates = set()
    for site, values in constrained.items():
        shape = np.shape(values)[2:]
        coordinates |= {site} if not shape else {f"{site}[{', '.join(map(str, i))}]" for i in np.ndindex(*shape)}
    missing = set(posterior.reference) - coordinates
    assert not missing, f"{name}: the model has no {sorted(missing)}"
    for stats in posterior.reference.values():
        assert stats["sd"] > 0 and stats["q05"] <= stats["q50"] <= stats["q95"]


def test_a_reference_recovered_is_right_and_a_shifted_one_is_not():
    # The suite's verdict, on made-up rows: right needs all three criteria.
    row = {"max_abs_z": 1.0, "max_sd_error": 0.05, "max_rhat": 1.01}
    assert suite.right(row)
    assert not suite.right({**row, "max_abs_z": 4.5})
    assert not suite.right({**row, "max_sd_error": 0.2})
    assert not suite.right({**row, "max_rhat": 1.1})


@pytest.mark.slow
@pytest.mark.parametrize("name", POSTERIORS)
def test_numpyro_nuts_recovers_each_reference(name):
    # The translation check: NumPyro's own NUTS (4 chains x 1,000 draws after 1,000 warmup,
    # float64) against posteriordb's 10,000 reference draws: every mean within 4 combined SEs.
    # Centered eight schools is the funnel NUTS itself does not sample well: it must at least
    # be flagged (divergences) rather than pass silently.
    (row,) = suite.run_suite([name], ["numpyro-nuts"], progress=lambda line: None)
    if name == "eight_schools-eight_schools_centered":
        assert row["flagged"]
    else:
        assert row["max_abs_z"] < suite.MAX_Z, row


def test_the_suite_command_writes_its_report(tmp_path, monkeypatch):
    # The command's plumbing on one cheap posterior and a short MALA run (the numbers are not
    # judged here; RESULTS.md has the full run): a row per sampler, the report and the CSV.
    from stochflow.benchmarks import cli

    monkeypatch.setattr(suite, "WARMUP", 200)
    monkeypatch.setattr(suite, "STEPS", 300)
    code = cli.main(["bench", "--suite", "posteriordb", "--targets", "kilpisjarvi_mod-kilpisjarvi", "--samplers",
                     "mala", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    report = (tmp_path / "posteriordb.md").read_text()
    assert "| kilpisjarvi_mod-kilpisjarvi | mala |" in report
    header, row = (tmp_path / "posteriordb.csv").read_text().splitlines()
    assert {"max_abs_z", "max_sd_error", "max_rhat", "ess_per_1k_grad", "flagged", "right"} <= set(header.split(","))
    assert row.split(",")[header.split(",").index("n_grad")] == str(4 * (200 + 300))
    with pytest.raises(SystemExit):
        cli.main(["bench", "--suite", "nothing"])
    assert cli.main(["bench", "--suite", "posteriordb", "--targets", "no-such-posterior"]) == 2
