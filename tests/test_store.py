"""sample(store=...): streaming to zarr, reading while running, crash-safe resume, refusals, memory.

Every comparison here is exact (``assert_array_equal``): a stored run, a run
resumed after a crash or a SIGKILL, and the uninterrupted in-memory run with
the same key must agree bit for bit, stats and counts included.
"""

import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import stochflow as sf
import store_child
from trace_counter import Counter
from stochflow.diagnostics.arviz_bridge import open_inference_data
from stochflow.store import RunStore, StoredArray

SAMPLER = sf.mala(0.8)  # one sampler object: repeated runs reuse the compiled chunks
SMALL = dict(num_particles=3, num_steps=240, warmup=50, thin=2, chunk_size=20,
             init=jnp.full((3, 5), 0.1), progress=False)
NUM_DRAWS = 240 // 2
# The target has a hole where MALA diverges (on purpose: the counts must survive a resume).
pytestmark = pytest.mark.filterwarnings("ignore:mala.*diverged:RuntimeWarning")
TOTAL_STEPS = 50 + 240


def run(store=None, resume=False, sampler=SAMPLER, target=store_child.TARGET, key=3, **overrides):
    settings = dict(SMALL, **overrides)
    return sf.sample(sampler, target, jax.random.key(key), store=store, resume=resume, **settings)


@pytest.fixture(scope="module")
def reference():
    trace = run()
    assert trace.num_divergent > 0 and trace.num_divergent_warmup > 0  # counts worth preserving
    return trace


def without_time(metadata):
    return {name: value for name, value in metadata.items() if name != "created_at"}


def assert_same_run(trace, reference):
    assert trace.positions.shape == reference.positions.shape
    np.testing.assert_array_equal(np.asarray(trace.positions), reference.positions)
    assert np.asarray(trace.positions).dtype == reference.positions.dtype
    assert set(trace.stats) == set(reference.stats)
    for name, values in reference.stats.items():
        np.testing.assert_array_equal(np.asarray(trace.stats[name]), values, err_msg=name)
        assert np.asarray(trace.stats[name]).dtype == values.dtype, name
    assert trace.num_divergent == reference.num_divergent
    assert trace.num_divergent_warmup == reference.num_divergent_warmup
    assert trace.n_grad_total == reference.n_grad_total
    assert without_time(trace.metadata) == without_time(reference.metadata)


class Crash(Exception):
    """Stands for the process dying between writing a chunk and committing it."""


def crash_at_commit(monkeypatch, number):
    """Make the ``number``-th commit fail before it commits: its chunk is then torn."""
    commit = RunStore.commit
    calls = []

    def failing_commit(self, progress, state):
        calls.append(progress)
        if len(calls) == number:
            raise Crash(progress)
        commit(self, progress, state)

    monkeypatch.setattr(RunStore, "commit", failing_commit)
    return calls


def test_a_stored_run_is_the_in_memory_run(tmp_path, reference):
    store = tmp_path / "run.zarr"
    trace = run(store)
    assert isinstance(trace.positions, StoredArray)  # backed by the store, not held in memory
    assert_same_run(trace, reference)
    assert_same_run(sf.load(store), reference)
    np.testing.assert_array_equal(trace.positions[1, 5:17:3, -1], reference.positions[1, 5:17:3, -1])
    posterior = xr.open_zarr(store, group="posterior")
    assert posterior["x"].dims == ("chain", "draw", "dim")
    np.testing.assert_array_equal(posterior["x"].values, reference.positions)
    idata = open_inference_data(store)
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, reference.stats["logdensity"])
    assert idata.posterior.attrs["sampler"] == "mala" and idata.posterior.attrs["num_divergent"] == reference.num_divergent


def test_the_store_opens_while_the_run_goes_on(tmp_path, reference, monkeypatch):
    store = tmp_path / "run.zarr"
    commit = RunStore.commit
    seen = []

    def commit_then_read(self, progress, state):
        commit(self, progress, state)
        partial = sf.load(store)
        seen.append(partial.num_draws)
        np.testing.assert_array_equal(partial.positions, reference.positions[:, : partial.num_draws])
        posterior = xr.open_zarr(store, group="posterior")  # what an analyst sees mid-run
        if partial.num_draws:
            np.testing.assert_array_equal(posterior["x"].values, reference.positions[:, : partial.num_draws])
        else:
            assert "x" not in posterior and posterior.sizes["chain"] == 3

    monkeypatch.setattr(RunStore, "commit", commit_then_read)
    run(store)
    # Three warmup commits (after 20 and 40 steps, then after end_warmup at 50) hold no
    # draws; then come twelve chunks of 10 draws (chunk_size 20 steps at thin 2).
    assert seen == [0, 0, 0] + list(range(10, NUM_DRAWS + 1, 10))


# Commits: warmup after 20 and 40 steps, end of warmup (50), then one per chunk of 10 draws.
# crash_at: (draws committed, steps committed, chunk_size of the resumed run).
CRASHES = {
    "before-any-commit": (1, 0, 0, 20),
    "in-warmup": (2, 0, 20, 20),
    "in-sampling": (5, 10, 50 + 10 * 2, 20),
    "in-sampling-resumed-with-other-chunks": (5, 10, 50 + 10 * 2, 14),
}


@pytest.mark.parametrize("crash", CRASHES)
def test_resume_after_a_crash_is_the_uninterrupted_run(tmp_path, reference, monkeypatch, capsys, crash):
    crash_at, committed_draws, committed_steps, resume_chunk_size = CRASHES[crash]
    store = tmp_path / "run.zarr"
    crash_at_commit(monkeypatch, crash_at)
    with pytest.raises(Crash):
        run(store)
    monkeypatch.undo()
    partial = sf.load(store)
    assert partial.num_draws == committed_draws
    if crash_at == 5:  # the torn chunk (draws 10..19) is on disk, past the commit
        assert xr.open_zarr(store, group="posterior", consolidated=False).sizes["draw"] == 20
    capsys.readouterr()
    resumed = run(store, resume=True, progress=True, chunk_size=resume_chunk_size)
    assert_same_run(resumed, reference)
    assert resumed.checks == reference.checks  # the stored part's draws are checked too
    assert_same_run(sf.load(store), reference)
    # The progress bar starts where the committed run stopped (warmup steps, then draws * thin).
    first_bar = re.search(r"(\d+)/(\d+)", capsys.readouterr().err)
    assert first_bar.groups() == (str(committed_steps), str(TOTAL_STEPS))


def test_a_sampler_state_with_a_prng_key_survives_a_commit(tmp_path):
    """States may carry typed PRNG keys (stored as key data, restored with their impl)."""
    state = {"key": jax.random.split(jax.random.key(4), 3), "x": jnp.arange(6.0).reshape(3, 2),
             "count": jnp.array([1, 2, 3])}
    metadata = dict(num_particles=3, sampler="test", key=[0, 4])
    store = RunStore.open(tmp_path / "run.zarr", metadata, resume=False, chunk_draws=5,
                          start_positions=np.zeros((3, 2)), start_logdensity=np.zeros(3))
    store.commit(store.progress._replace(warmup_done=7), state)
    store.close()
    reopened = RunStore.open(tmp_path / "run.zarr", metadata, resume=True, chunk_draws=5,
                             start_positions=np.zeros((3, 2)), start_logdensity=np.zeros(3))
    fresh = {"key": jax.random.split(jax.random.key(0), 3), "x": jnp.zeros((3, 2)), "count": jnp.zeros(3, int)}
    restored = reopened.restore_state(fresh)
    reopened.close()
    assert reopened.progress.warmup_done == 7
    np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(state["key"]))
    assert jax.random.key_impl(restored["key"]) == jax.random.key_impl(state["key"])
    np.testing.assert_array_equal(restored["x"], state["x"])
    np.testing.assert_array_equal(restored["count"], state["count"])


def test_resume_with_no_store_starts_fresh(tmp_path, reference):
    assert_same_run(run(tmp_path / "run.zarr", resume=True), reference)


def test_resuming_a_finished_store_returns_it(stored_copy, reference, monkeypatch):
    calls = crash_at_commit(monkeypatch, number=10**9)
    assert_same_run(run(stored_copy, resume=True), reference)
    assert calls == []  # nothing was run again


REFUSED = [
    (dict(sampler=sf.ula(0.8)), "sampler: store has 'mala', this run 'ula'"),
    (dict(sampler=sf.mala(0.5)), "sampler_params"),
    (dict(key=4), "key: store has"),
    (dict(num_particles=2, init=jnp.full((2, 5), 0.1)), "num_particles"),
    (dict(thin=3), "thin"),
    (dict(num_steps=200), "num_steps"),
    (dict(warmup=10), "warmup"),
    (dict(target=sf.Target(store_child.logdensity, dim=5, name="another")), "target: store has"),
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory, reference):
    """A finished store of the reference run, copied by each test that may spoil it."""
    store = tmp_path_factory.mktemp("stored") / "run.zarr"
    run(store)
    return store


@pytest.fixture
def stored_copy(tmp_path, stored):
    copy = tmp_path / "run.zarr"
    shutil.copytree(stored, copy)
    return copy


@pytest.mark.parametrize("overrides, message", REFUSED, ids=[m.split(":")[0] for _, m in REFUSED])
def test_a_store_of_another_run_is_refused(stored_copy, reference, overrides, message):
    overrides = dict(overrides)
    with pytest.raises(ValueError, match=re.escape(message)):
        sf.sample(overrides.pop("sampler", SAMPLER), overrides.pop("target", store_child.TARGET),
                  jax.random.key(overrides.pop("key", 3)), store=stored_copy, resume=True,
                  **dict(SMALL, **overrides))
    assert_same_run(sf.load(stored_copy), reference)  # untouched


def test_same_names_but_another_init_or_density_is_refused(stored_copy, reference):
    with pytest.raises(ValueError, match="started from other positions"):
        sf.sample(SAMPLER, store_child.TARGET, jax.random.key(3), store=stored_copy, resume=True,
                  **dict(SMALL, init=jnp.full((3, 5), 0.2)))
    impostor = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=5, name=store_child.TARGET.name)
    with pytest.raises(ValueError, match="belongs to another target"):
        sf.sample(SAMPLER, impostor, jax.random.key(3), store=stored_copy, resume=True, **SMALL)
    assert_same_run(sf.load(stored_copy), reference)


def test_bad_store_settings_fail_before_compiling(tmp_path):
    logdensity = Counter()
    target = sf.Target(logdensity, dim=2, name="counted")
    traced_by_validation = logdensity.traces
    settings = dict(num_particles=2, num_steps=10, progress=False)
    existing = tmp_path / "existing.zarr"
    sf.sample(sf.ula(0.1), sf.Target(lambda x: -jnp.sum(x**2), dim=2, name="counted"),
              jax.random.key(0), store=existing, **settings)
    (tmp_path / "not-a-store").mkdir()
    cases = [
        (dict(store=existing), FileExistsError, "already exists. Pass resume=True"),
        (dict(store=tmp_path / "missing" / "run.zarr"), FileNotFoundError, "does not exist; create it first"),
        (dict(store=tmp_path / "not-a-store", resume=True), ValueError, "is not a stochflow run store"),
        (dict(store=existing, resume=True, num_steps=20), ValueError, "belongs to another run"),
        (dict(resume=True), ValueError, "resume=True needs store=path"),
        (dict(store=3), TypeError, "store must be a path"),
    ]
    for overrides, error, message in cases:
        with pytest.raises(error, match=message):
            sf.sample(sf.ula(0.1), target, jax.random.key(0), **dict(settings, **overrides))
    assert logdensity.traces == traced_by_validation  # nothing was traced or compiled
    assert not (tmp_path / "missing").exists()
    # A start refused by the target leaves no store behind (the path stays free for the fixed run).
    fresh = tmp_path / "fresh.zarr"
    with pytest.raises(ValueError, match="log-density is not finite"):
        sf.sample(sf.mala(0.8), store_child.TARGET, jax.random.key(0), store=fresh, **dict(SMALL, init=jnp.full((3, 5), 2.0)))
    assert not fresh.exists()


def test_one_store_one_writer(tmp_path, reference):
    store = tmp_path / "run.zarr"
    crash_at_commit_calls = []

    def second_writer(self, progress, state):
        crash_at_commit_calls.append(progress)
        with pytest.raises(RuntimeError, match="being written by another process"):
            RunStore.open(store, self.metadata, resume=True, chunk_draws=20,
                          start_positions=SMALL["init"], start_logdensity=np.zeros(3))
        raise Crash

    original = RunStore.commit
    RunStore.commit = second_writer
    try:
        with pytest.raises(Crash):
            run(store)
    finally:
        RunStore.commit = original
    assert crash_at_commit_calls
    assert_same_run(run(store, resume=True), reference)  # the lock went with the failed run


def _child(store, *args):
    return subprocess.Popen([sys.executable, store_child.__file__, str(store), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=pathlib.Path(store_child.__file__).parent)


@pytest.mark.slow
def test_sigkill_then_resume_in_another_process_is_the_uninterrupted_run(tmp_path):
    """The child writes its third chunk of draws, then is SIGKILLed before committing it."""
    store = tmp_path / "run.zarr"
    settings = store_child.SETTINGS
    chunk_draws = settings["chunk_size"] // settings["thin"]
    child = _child(store, "--pause")
    for line in child.stdout:
        if line == f"appended {3 * chunk_draws}\n":
            child.send_signal(signal.SIGKILL)
            break
        if line.startswith("appended"):
            child.stdin.write("go\n")
            child.stdin.flush()
    child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL
    assert sf.load(store).num_draws == 2 * chunk_draws  # committed: two chunks
    torn = xr.open_zarr(store, group="posterior", consolidated=False).sizes["draw"]
    assert torn == 3 * chunk_draws  # on disk: the third chunk, written but not committed

    resumer = _child(store, "--progress")
    out, err = resumer.communicate(timeout=300)
    assert resumer.returncode == 0, err
    assert out.splitlines()[-1] == "done"
    assert out.splitlines()[0] == f"appended {3 * chunk_draws}"  # the torn chunk is redone first
    first_bar = re.search(r"(\d+)/(\d+)", err)
    resumed_at = settings["warmup"] + 2 * chunk_draws * settings["thin"]
    assert first_bar.groups() == (str(resumed_at), str(settings["warmup"] + settings["num_steps"]))

    reference = store_child.run()
    assert reference.num_divergent > 0
    assert_same_run(sf.load(store), reference)


MEMORY_CHILD = textwrap.dedent("""
    import json, resource, sys
    import jax, jax.numpy as jnp
    import stochflow as sf

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    target = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=1000, name="std-normal-1000")
    settings = dict(num_particles=4, progress=False)
    # Everything but the draws: imports, JAX runtime, a compiled chunk, zarr.
    sf.sample(sf.ula(0.1), target, jax.random.key(0), num_steps=500, chunk_size=500, store=sys.argv[1] + "-small", **settings)
    before = peak_mib()
    trace = sf.sample(sf.ula(0.1), target, jax.random.key(0), num_steps=10_000, chunk_size=500, store=sys.argv[1], **settings)
    print(json.dumps({"before": before, "after": peak_mib(), "num_draws": trace.num_draws}))
""")


def test_streaming_holds_one_chunk_not_the_run(tmp_path):
    """4 x 10,000 draws x 1,000 dims of float32 are 153 MiB; held in memory they would
    raise the peak by at least that (the chunks, then their concatenation). Streamed
    in chunks of 500 draws (7.6 MiB), the peak may rise by a few chunk copies (device
    buffer, host copy, the zarr encoder's): far under half the run."""
    trace_mib = 4 * 10_000 * 1000 * 4 / 2**20
    child = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(tmp_path / "run.zarr")],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    peaks = json.loads(child.stdout.splitlines()[-1])
    assert peaks["num_draws"] == 10_000
    assert peaks["after"] - peaks["before"] < trace_mib / 2, peaks
    on_disk = sum(f.stat().st_size for f in (tmp_path / "run.zarr").rglob("*") if f.is_file())
    assert on_disk > 0.9 * trace_mib * 2**20  # the draws went to disk (random floats barely compress)
