"""Faults and bad inputs: what a user sees when a file, a store or an argument is wrong.

Every case checks the exact parts of the error a user reads and that nothing
written before was changed (the old file's bytes, the stored draws' values).
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

import stochflow as sf
from stochflow import store as sf_store
from stochflow.benchmarks.cli import main as cli_main
from stochflow.diagnostics.kernels import mmd
from stochflow.store import StoredArray
from stochflow.trace import Trace
from trace_counter import Counter

ROOT = pathlib.Path(__file__).parent.parent

# --- storage faults ---

TARGET = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=2, name="std-normal-2")
SAMPLER = sf.ula(0.1)  # one object: every run here reuses its compiled chunks
RUN = dict(num_particles=2, num_steps=20, chunk_size=5, progress=False)  # 2 chains x 20 draws x 2 dims
FORMATS = {"netcdf": ("run.nc", "to_netcdf"), "zarr": ("run.zarr", "to_zarr"), "csv": ("run.csv", "to_csv")}
FILE_TOO_LARGE = "[Errno 27] File too large"


def run(store=None, resume=False, key=0):
    return sf.sample(SAMPLER, TARGET, jax.random.key(key), store=store, resume=resume, **RUN)


@pytest.fixture(scope="module")
def trace():
    return run()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    path = tmp_path_factory.mktemp("stored") / "run.zarr"
    run(path)
    return path


@pytest.fixture
def store_copy(tmp_path, stored):
    return pathlib.Path(shutil.copytree(stored, tmp_path / "copy.zarr"))


def contents(path: pathlib.Path) -> dict:
    """Every byte under ``path`` (a file, or a directory's files by relative name)."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def written(tmp_path: pathlib.Path, fmt: str) -> dict:
    name = FORMATS[fmt][0]
    files = {name: contents(tmp_path / name)}
    if fmt == "csv":
        files["run.json"] = contents(tmp_path / "run.json")
    return files


def assert_same_draws(loaded, trace):
    np.testing.assert_array_equal(np.asarray(loaded.positions), trace.positions)
    for name, values in trace.stats.items():
        np.testing.assert_array_equal(np.asarray(loaded.stats[name]), values, err_msg=name)
        assert np.asarray(loaded.stats[name]).dtype == values.dtype, name


def export(trace, tmp_path, fmt, **kwargs) -> pathlib.Path:
    name, method = FORMATS[fmt]
    return getattr(trace, method)(tmp_path / name, **kwargs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_overwrite_leaves_the_old_file(tmp_path, trace, fmt):
    """A stat that cannot be saved (19 draws where the trace has 20) fails mid-write."""
    path = export(trace, tmp_path, fmt)
    before, listing = written(tmp_path, fmt), sorted(os.listdir(tmp_path))
    bad = Trace(positions=trace.positions, stats=dict(trace.stats, bad=np.zeros((2, 19))),
                metadata=trace.metadata)
    with pytest.raises(ValueError) as error:
        export(bad, tmp_path, fmt, overwrite=True)
    message = str(error.value)
    assert message.startswith(f"could not write {path}")
    unchanged = "the existing " + ("run.csv and run.json are" if fmt == "csv" else f"{path.name} is") + " unchanged"
    assert f"The new data went to a temporary copy beside it, now removed; {unchanged}." in message
    assert written(tmp_path, fmt) == before  # byte for byte
    assert sorted(os.listdir(tmp_path)) == listing  # no temporary left behind
    assert_same_draws(sf.load(path), trace)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_overwrite_replaces_the_old_file_whole(tmp_path, trace, fmt):
    path = export(run(key=1), tmp_path, fmt)
    export(trace, tmp_path, fmt, overwrite=True)
    assert_same_draws(sf.load(path), trace)
    assert sorted(os.listdir(tmp_path)) == sorted([path.name] + (["run.json"] if fmt == "csv" else []))


FULL_DISK_EXPORT = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np
    from stochflow.trace import Trace

    path, method = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    big = Trace(positions=rng.normal(size=(2, 5000, 2)).astype(np.float32),
                stats={"logdensity": rng.normal(size=(2, 5000)).astype(np.float32)}, metadata={"num_particles": 2})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit raises OSError (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, resource.RLIM_INFINITY))
    try:
        getattr(big, method)(path, overwrite=True)
    except OSError as error:
        print(error.errno, error)
    else:
        print("written")
""")


def child(script: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_full_disk_leaves_the_old_file(tmp_path, trace, fmt):
    path = export(trace, tmp_path, fmt)
    before, listing = written(tmp_path, fmt), sorted(os.listdir(tmp_path))
    out = child(FULL_DISK_EXPORT, str(path), FORMATS[fmt][1])
    names = f"{path} and {path.with_suffix('.json')}" if fmt == "csv" else str(path)
    kept = "run.csv and run.json are" if fmt == "csv" else f"{path.name} is"
    assert out == (f"27 [Errno 27] could not write {names}: OSError: {FILE_TOO_LARGE}. The new data went to a "
                   f"temporary copy beside it, now removed; the existing {kept} unchanged. Free some space "
                   "(or raise the file size limit) and write again.")
    assert written(tmp_path, fmt) == before
    assert sorted(os.listdir(tmp_path)) == listing
    assert_same_draws(sf.load(path), trace)


FULL_DISK_RUN = textwrap.dedent("""
    import resource, signal, sys
    import jax
    from stochflow.store import RunStore
    import test_faults

    commit, commits = RunStore.commit, []

    def commit_then_fill_the_disk(self, progress, state):
        commit(self, progress, state)
        commits.append(progress.draws_done)
        if len(commits) == 2:  # after draws 0..9 are committed, every write fails
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))

    RunStore.commit = commit_then_fill_the_disk
    try:
        test_faults.run(sys.argv[1])
    except OSError as error:
        print(error.errno, error)
    else:
        print("finished")
""")


def test_a_full_disk_in_a_streamed_run_keeps_its_commits_and_resumes(tmp_path, trace):
    store = tmp_path / "run.zarr"
    script = f"import sys; sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})\n" + FULL_DISK_RUN
    out = child(script, str(store))
    assert out == (f"27 [Errno 27] store={str(store)!r}: could not write draws 10..14: File too large. The store "
                   "keeps the 10 draws of its last commit, intact; free some space (or raise the file size limit), "
                   "then run again with resume=True to go on from there.")
    partial = sf.load(store)
    assert partial.num_draws == 10
    np.testing.assert_array_equal(partial.positions, trace.positions[:, :10])
    assert_same_draws(run(store, resume=True), trace)  # bit-identical to the uninterrupted run
    assert_same_draws(sf.load(store), trace)


# CSV: (edit of the written table, error parts). Line numbers count the header as line 1.
CSV_FAULTS = {
    "one-chain-cell-out-of-the-grid": (
        lambda t: t.assign(chain=t["chain"].where(t.index != 3, 7)),
        "run.csv: 1 row with a (chain, draw) outside the grid of 2 chains x 20 draws that run.json states: "
        "line 5 (7, 3). Was a cell edited?"),
    "one-chain-cell-edited": (
        lambda t: t.assign(chain=t["chain"].where(t.index != 3, 1)),
        "run.csv does not hold each (chain, draw) of the grid of 2 chains x 20 draws that run.json states once: "
        "missing 1 (chain, draw): (0, 3); duplicated 1: (1, 3). Rows were deleted, repeated or edited; "
        "write the trace again with trace.to_csv."),
    "rows-deleted": (
        lambda t: t.drop(index=[5, 30]),
        "missing 2 (chain, draw): (0, 5), (1, 10)."),
    "row-duplicated": (
        lambda t: pd.concat([t, t.iloc[[4]]]),
        "does not hold each (chain, draw) of the grid of 2 chains x 20 draws that run.json states once: "
        "duplicated 1: (0, 4)."),
    "no-lp-column": (
        lambda t: t.drop(columns=["lp"]),
        "run.csv has no column 'lp', which run.json lists (to_csv writes them all): the CSV was edited, or "
        "belongs to another JSON. Write the trace again with trace.to_csv."),
    "text-in-a-float-column": (
        lambda t: t.assign(**{"x[1]": t["x[1]"].where(t.index != 6, "abc")}),
        "run.csv: column 'x[1]' holds numbers (float32), but line 8 has 'abc'."),
    "fraction-in-an-int-column": (
        lambda t: t.assign(n_grad=t["n_grad"].where(t.index != 6, "1.5")),
        "run.csv: column 'n_grad' holds integers (int32), but line 8 has 1.5."),
    "empty-int-cell": (
        lambda t: t.assign(n_grad=t["n_grad"].where(t.index != 6, "")),
        "run.csv: column 'n_grad' holds integers (int32), but line 8 has an empty cell."),
    "not-a-bool": (
        lambda t: t.assign(diverging=t["diverging"].where(t.index != 6, "maybe")),
        "run.csv: column 'diverging' holds True or False (bool), but line 8 has 'maybe'."),
    "int-overflow": (
        lambda t: t.assign(n_grad=t["n_grad"].where(t.index != 6, "99999999999")),
        "run.csv: column 'n_grad' holds int32, but line 8 has 99999999999, which does not fit."),
}


@pytest.mark.parametrize("fault", CSV_FAULTS)
def test_a_damaged_csv_is_refused_with_the_rows_named(tmp_path, trace, fault):
    edit, message = CSV_FAULTS[fault]
    path = export(trace, tmp_path, "csv")
    edit(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)
    with pytest.raises(ValueError, match=re.escape(message)):
        sf.load(path)


def test_csv_rows_are_placed_by_chain_and_draw_not_by_order(tmp_path, trace):
    path = export(trace, tmp_path, "csv")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.sample(frac=1, random_state=3).to_csv(path, index=False)
    assert_same_draws(sf.load(path), trace)


def test_an_empty_csv_or_a_damaged_sidecar_is_refused(tmp_path, trace):
    path = export(trace, tmp_path, "csv")
    path.write_text("")
    with pytest.raises(ValueError, match=re.escape(f"{path} is empty: no header, no rows.")):
        sf.load(path)
    export(trace, tmp_path, "csv", overwrite=True)
    path.with_suffix(".json").write_text("{")
    with pytest.raises(ValueError, match=re.escape(f"{path.with_suffix('.json')} (the metadata beside run.csv) "
                                                   "is not valid JSON")):
        sf.load(path)
    path.with_suffix(".json").write_text("[]")
    with pytest.raises(ValueError, match="is not the metadata stochflow writes beside a CSV trace"):
        sf.load(path)


def zarr_sources(tmp_path, trace, store_copy):
    """An exported zarr trace and a run store, both 2 chains x 20 draws in chunks."""
    return {"export": export(trace, tmp_path, "zarr"), "store": store_copy}


def chunk_of_draw(path: pathlib.Path, draw: int) -> tuple[pathlib.Path, int, int]:
    """The chunk file of ``posterior/x`` holding ``draw``, and that chunk's draws."""
    import zarr

    array = zarr.open_group(str(path), mode="r")["posterior"]["x"]
    step = array.chunks[1]
    number = draw // step
    return (path / "posterior" / "x" / array.metadata.encode_chunk_key((0, number, 0)),
            number * step, min((number + 1) * step, array.shape[1]) - 1)


def draws(first: int, last: int) -> str:
    return f"{first}..{last}" if last > first else str(first)


@pytest.mark.parametrize("source", ["export", "store"])
def test_a_missing_chunk_is_an_error_naming_its_draws(tmp_path, trace, store_copy, source):
    path = zarr_sources(tmp_path, trace, store_copy)[source]
    chunk, first, last = chunk_of_draw(path, 7)
    chunk.unlink()
    message = (f"{path}: chunk files are missing (deleted, or a copy cut short), so these draws are lost: "
               f"posterior/x: draws {draws(first, last)}. The other draws are intact; restore the store from a "
               "copy, or rerun.")
    for lazy in (None, True, False):
        with pytest.raises(ValueError, match=re.escape(message)):
            sf.load(path, lazy=lazy)


def test_resume_refuses_a_store_that_lost_committed_chunks(store_copy, trace):
    chunk, first, last = chunk_of_draw(store_copy, 7)
    chunk.unlink()
    before = contents(store_copy)
    with pytest.raises(ValueError, match=re.escape(
            f"store={str(store_copy)!r} cannot be resumed: chunk files of committed draws are missing "
            f"(posterior/x: draws {draws(first, last)}). A resume goes on from the last commit and cannot redo "
            "draws before it; restore the store from a copy, or rerun at a new path.")):
        run(store_copy, resume=True)
    assert contents(store_copy) == before  # refused before touching anything


def test_a_store_whose_chunks_hold_only_the_fill_value_is_complete(store_copy, trace):
    """``diverging`` is False everywhere (the fill value): its chunks are written all the same."""
    assert not trace.stats["diverging"].any()
    assert len(list((store_copy / "sample_stats" / "diverging").rglob("c/*/*"))) == 4
    assert_same_draws(sf.load(store_copy), trace)


@pytest.mark.parametrize("source", ["export", "store"])
def test_a_damaged_chunk_is_an_error_naming_its_draws(tmp_path, trace, store_copy, source):
    path = zarr_sources(tmp_path, trace, store_copy)[source]
    chunk, first, last = chunk_of_draw(path, 12)
    damaged = bytearray(chunk.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # one bit: still a zstd frame, but not the data written
    chunk.write_bytes(bytes(damaged))
    message = (f"posterior/x: the chunks holding draws {draws(first, last)} cannot be decoded (RuntimeError: "
               "Zstd decompression error")
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        sf.load(path)
    assert "the files were damaged after they were written" in str(error.value)
    lazy = sf.load(path, lazy=True)
    with pytest.raises(ValueError, match=re.escape(message)):
        lazy.positions[:, first]
    if first > 0:  # the draws of other chunks still read
        np.testing.assert_array_equal(lazy.positions[:, : first], trace.positions[:, : first])


def refused_by_load_and_resume(store: pathlib.Path, message: str) -> None:
    """``sf.load`` and a resume of ``store`` both raise a ValueError saying ``message`` (a regex)."""
    for action in (lambda: sf.load(store), lambda: run(store, resume=True)):
        with pytest.raises(ValueError, match=message):
            action()


def test_a_damaged_checkpoint_is_refused_by_load_and_resume(store_copy):
    checkpoint = store_copy / "stochflow_run" / "checkpoint.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # a copy cut short
    message = (f"store={str(store_copy)!r}: its checkpoint {checkpoint} is damaged (BadZipFile: File is not a "
               "zip file). Checkpoints are replaced atomically, so it was cut short or overwritten from outside")
    refused_by_load_and_resume(store_copy, re.escape(message))


def test_an_empty_directory_or_a_store_without_its_root(tmp_path, trace, store_copy):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=re.escape(f"{empty} is an empty directory, not a trace: nothing was "
                                                   "written there.")):
        sf.load(empty)
    exported = export(trace, tmp_path, "zarr")
    (exported / "zarr.json").unlink()
    with pytest.raises(ValueError, match=re.escape(f"{exported} is a directory but not a zarr store (no zarr.json "
                                                   "at its root), so not a stochflow trace.")):
        sf.load(exported)
    (store_copy / "zarr.json").unlink()
    message = (f"{store_copy} is a run store that lost its zarr root metadata ({store_copy / 'zarr.json'}): the "
               "draws cannot be located without it. Restore the store from a copy, or rerun.")
    refused_by_load_and_resume(store_copy, re.escape(message))


def test_a_large_store_loads_lazily_by_default(stored, trace, monkeypatch):
    draw_bytes = 2 * 20 * (2 * 4 + 4 + 1 + 4)  # x float32 x2, lp float32, diverging bool, n_grad int32
    assert {name: np.asarray(v).dtype.itemsize for name, v in trace.stats.items()} == \
        {"logdensity": 4, "diverging": 1, "n_grad": 4}
    monkeypatch.setattr(sf_store, "LAZY_ABOVE_BYTES", draw_bytes)
    assert isinstance(sf.load(stored).positions, np.ndarray)  # not above: read
    monkeypatch.setattr(sf_store, "LAZY_ABOVE_BYTES", draw_bytes - 1)
    lazy = sf.load(stored)
    assert isinstance(lazy.positions, StoredArray)
    assert_same_draws(lazy, trace)
    assert isinstance(sf.load(stored, lazy=False).positions, np.ndarray)  # explicit values win
    assert isinstance(sf.load(stored, lazy=True).positions, StoredArray)
    with pytest.raises(TypeError, match=re.escape("lazy must be True, False or None")):
        sf.load(stored, lazy="no")


# --- bad inputs ---

KEY = jax.random.key(0)


def sample_briefly(target=TARGET, sampler=None, **kwargs):
    kwargs.setdefault("num_steps", 5)
    return sf.sample(sampler or sf.ula(0.1), target, KEY, progress=False, checks=False, **kwargs)


@pytest.mark.parametrize("factory, kwargs, message", [
    (sf.ula, {"step_size": "0.1"}, "step_size must be a positive number (an int or float), got '0.1' of type str"),
    (sf.ula, {"step_size": True}, "step_size must be a positive number (an int or float), got True of type bool"),
    (sf.mala, {"step_size": 0.1, "target_accept": "0.6"}, "target_accept must be a number in (0, 1)"),
    (sf.mala, {"step_size": 0.1, "adapt_step_size": "no"}, "adapt_step_size must be True or False, got 'no'"),
    (sf.underdamped, {"step_size": np.array([0.1, 0.2])}, "step_size must be a positive number"),
])
def test_numbers_and_bools_must_be_what_they_say(factory, kwargs, message):
    with pytest.raises(TypeError) as err:
        factory(**kwargs)
    assert message in str(err.value)


def test_numbers_of_numpy_and_jax_types_are_accepted():
    assert sf.ula(np.float32(0.1)).params["step_size"] == pytest.approx(0.1)
    assert sf.ula(jnp.asarray(0.25)).params["step_size"] == 0.25
    assert sf.ula(1).params["step_size"] == 1.0


def test_progress_must_be_a_bool():
    with pytest.raises(TypeError, match="progress must be True or False, got 'no'"):
        sf.sample(sf.ula(0.1), TARGET, KEY, num_particles=2, num_steps=5, progress="no")


def test_a_complex_init_is_refused_not_cast():
    with pytest.raises(TypeError, match="init must be real numbers, got dtype complex128"):
        sample_briefly(init=np.ones((2, 2)) + 1j)


def test_a_list_init_gives_the_number_of_particles():
    trace = sample_briefly(init=[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    assert trace.positions.shape == (3, 5, 2)
    with pytest.raises(ValueError, match=r"init has 3 particles \(rows\) but num_particles=4; leave num_particles out"):
        sample_briefly(init=[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], num_particles=4)
    with pytest.raises(ValueError, match="ragged sequence"):
        sample_briefly(init=[[0.0, 0.0], [1.0]])


def test_a_start_with_a_nan_gradient_is_refused():
    # sqrt(|x|) has a finite value at 0 and an infinite gradient there: every step from it diverges.
    target = sf.Target(lambda x: -jnp.sum(jnp.sqrt(jnp.abs(x))), 2)
    with pytest.raises(ValueError, match=r"the gradient of the log-density is not finite at 1 starting position\(s\) "
                                         r"\(particles \[1\]\)"):
        sample_briefly(target, init=np.array([[0.5, 0.5], [0.0, 0.5]]))


@pytest.mark.parametrize("num_particles", [10**12, 4 * 10**9])
def test_a_run_that_cannot_fit_in_memory_is_refused_before_allocating(num_particles):
    counter = Counter()
    target = sf.Target(counter, 2)
    traces_at_build = counter.traces
    with pytest.raises(MemoryError, match=r"this run needs about .* GB of memory .* are available\. Use fewer "
                                          r"particles or steps, record fewer draws with thin=, or stream"):
        sample_briefly(target, num_particles=num_particles)
    # The exact estimate traces init abstractly (eval_shape) once; nothing is compiled or run.
    assert counter.traces - traces_at_build <= 1


def test_the_memory_check_counts_the_in_memory_trace():
    # 10^6 particles x 2 dims: the state is a few tens of MB, but 20,000 draws of them kept in
    # memory (1e6 x 2e4 x (2 + 8) x 4 bytes = 800 GB) cannot be.
    with pytest.raises(MemoryError, match="the recorded draws: 745 GB"):
        sample_briefly(num_particles=10**6, num_steps=20_000)


def test_interacting_samplers_are_refused_where_independent_chains_are_needed():
    def model():
        numpyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="numpyro_kernel runs each NumPyro chain as one particle .* 'svgd' moves "
                                         "its particles together"):
        sf.numpyro_kernel(model, sf.svgd(0.1))
    with pytest.raises(ValueError, match="inner sampler 'svgd' is not a set of independent Markov chains"):
        sf.rdmc(inner=sf.svgd(0.1))
    sf.numpyro_kernel(model, sf.mala(0.1))  # chain methods stay accepted
    sf.rdmc(inner=sf.mala(0.1))


def test_a_numpyro_model_without_latent_sites_is_named():
    def all_observed(y):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match="the NumPyro model 'all_observed' has no latent sites to sample"):
        sf.from_numpyro(all_observed, jnp.ones(3))


def test_bmumla_on_a_target_without_a_nonsmooth_term_says_so():
    with pytest.raises(ValueError, match=r"bmumla needs a nonsmooth term \(sf.Target\(..., nonsmooth=g\)\)"):
        sample_briefly(sampler=sf.bmumla(0.01, 0.1), num_particles=2)


def test_mmd_of_a_collapsed_sample_says_why_instead_of_nan():
    with pytest.raises(ValueError, match="the median heuristic gives bandwidth 0"):
        mmd(np.zeros((3, 2)), np.zeros((3, 2)))
    assert np.isfinite(mmd(np.zeros((3, 2)), np.zeros((3, 2)), bandwidth=1.0))
    rng = np.random.default_rng(0)
    assert np.isfinite(mmd(rng.normal(size=(1, 2)), rng.normal(size=(5, 2))))  # one point is a sample


@pytest.mark.parametrize("argv, message", [
    (["bench", "--quick", "--seeds", "0"], "--seeds must be at least 1 (the number of seeds per cell), got 0"),
    (["bench", "--quick", "--particles", "0"], "--particles must be at least 8, got 0"),
    (["bench", "--quick", "--out", "/proc/no-such-dir/out"], "cannot write the report to --out /proc/no-such-dir/out (/proc/no-such-dir: No such file"),
])
def test_cli_counts_and_paths_are_checked(argv, message, capsys):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_resume_with_other_data_is_refused_even_where_the_starts_agree(tmp_path):
    # A logistic regression started at beta = 0 has log-density -n log 2 whatever its labels, so
    # the log-density at the starts cannot tell flipped labels apart; its gradient X^T (y - 1/2)
    # there, and the probe points near the starts, can.
    features = jax.random.normal(jax.random.key(1), (50, 3))
    labels = (features[:, 0] > 0).astype(jnp.float32)

    def logistic(y):
        def logdensity(beta):
            logits = features @ beta
            return jnp.sum(y * logits - jnp.logaddexp(0.0, logits))
        return sf.Target(logdensity, 3, name="logistic")

    settings = dict(num_particles=2, num_steps=20, chunk_size=5, init=np.zeros((2, 3)), progress=False)
    store = tmp_path / "run.zarr"
    first = sf.sample(sf.ula(0.01), logistic(labels), KEY, store=store, resume=True, **settings)
    assert np.allclose(logistic(labels).logdensity(jnp.zeros(3)), logistic(1 - labels).logdensity(jnp.zeros(3)))
    with pytest.raises(ValueError, match=r"belongs to another target: start_grad, probe_logdensity, probe_grad "
                                         r"differ .* Resume with the same target and data"):
        sf.sample(sf.ula(0.01), logistic(1 - labels), KEY, store=store, resume=True, **settings)
    again = sf.sample(sf.ula(0.01), logistic(labels), KEY, store=store, resume=True, **settings)
    np.testing.assert_array_equal(np.asarray(again.positions), np.asarray(first.positions))


SHIFT = {"mean": 0.0}  # a global the next test's log-density reads


def test_a_global_read_by_the_log_density_gets_fresh_programs_never_a_mix():
    target = sf.Target(lambda x: -0.5 * jnp.sum((x - SHIFT["mean"]) ** 2), 2, name="shifted")
    settings = dict(num_particles=4, num_steps=200, init=np.zeros((4, 2)))
    before = sample_briefly(target, sampler=sf.ula(0.1), warmup=0, **settings)
    SHIFT["mean"] = 3.0
    try:
        # The warmup's chunk program, compiled now, beside the sampling program compiled before
        # would mix the two means; both must be the new one's, as on a Target built afresh.
        after = sample_briefly(target, sampler=sf.ula(0.1), warmup=50, **settings)
        fresh = sample_briefly(sf.Target(lambda x: -0.5 * jnp.sum((x - 3.0) ** 2), 2, name="shifted"),
                               sampler=sf.ula(0.1), warmup=50, **settings)
    finally:
        SHIFT["mean"] = 0.0
    np.testing.assert_array_equal(np.asarray(after.positions), np.asarray(fresh.positions))
    np.testing.assert_array_equal(np.asarray(after.stats["logdensity"]), np.asarray(fresh.stats["logdensity"]))
    assert not np.array_equal(np.asarray(before.positions), np.asarray(after.positions))


def test_a_damaged_run_metadata_file_is_named(tmp_path):
    store = tmp_path / "run.zarr"
    sf.sample(SAMPLER, TARGET, jax.random.key(0), store=store, warmup=10, **dict(RUN, num_steps=10))
    (store / "stochflow_run" / "checkpoint.npz").unlink()  # as if killed before the first commit
    (store / "stochflow_run" / "metadata.json").write_text('{"sampler": "ula", ')
    refused_by_load_and_resume(store, r"metadata.json is damaged \(JSONDecodeError: .*Restore the store")



def test_probe_comparison_needs_the_same_non_finite_values_and_close_finite_ones():
    from stochflow.store import _close

    stored = np.array([-np.inf, -3.0, -4.0, -5.0])
    assert _close(stored, stored.copy())
    assert _close(stored, stored * (1 + 1e-7))  # float32 rounding of the finite values
    assert not _close(stored, np.array([-np.inf, 100.0, 7.0, 1e9]))  # an infinity must not excuse the rest
    assert not _close(stored, np.array([np.inf, -3.0, -4.0, -5.0]))
    assert not _close(stored, np.array([np.nan, -3.0, -4.0, -5.0]))


def test_a_csv_whose_integers_were_resaved_as_floats_loads(tmp_path, trace):
    path = tmp_path / "run.csv"
    trace.to_csv(path)
    table = pd.read_csv(path)
    table["chain"] = table["chain"].astype(float)  # what a spreadsheet round trip does
    table.to_csv(path, index=False)
    np.testing.assert_array_equal(sf.load(path).positions, trace.positions)


def test_bfloat16_numbers_are_numbers():
    assert sf.ula(jnp.bfloat16(0.125)).params["step_size"] == 0.125


def test_numpyro_kernel_inits_under_numpyros_pmap_of_chains():
    def model():
        numpyro.sample("x", dist.Normal(1.0, 2.0))

    kernel = sf.numpyro_kernel(model, sf.mala(0.5))
    # chain_method="parallel" calls the kernel's init under pmap (and a callable chain_method
    # under that map): its key is traced there, so no check may ask for its concrete values.
    states = jax.vmap(lambda key: kernel.init(key, 10, None, (), {}))(jax.random.split(jax.random.key(0), 2))
    assert states.z["x"].shape == (2,)
