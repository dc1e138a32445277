"""A run that tests/test_store.py starts in a subprocess, kills and resumes.

``python store_child.py STORE [--progress] [--pause]`` runs :data:`SETTINGS`
with ``store=STORE, resume=True``. It prints ``appended <draws>`` after each
chunk's draws are written (before they are committed) and ``committed <draws>``
after each commit. With ``--pause`` it then waits for a line on stdin before
committing, so the parent can SIGKILL it at a known point: a torn chunk on disk.
"""

import sys

import jax
import jax.numpy as jnp

import stochflow as sf
from stochflow.store import RunStore

SCALES = jnp.array([1.0, 2.0, 0.5, 1.5, 1.0])


def logdensity(x):
    """A Gaussian whose log-density is NaN for x[0] > 1.5, so MALA meets (and counts)
    divergences there."""
    return jnp.where(x[0] > 1.5, jnp.nan, -0.5 * jnp.sum(x**2 / SCALES))


TARGET = sf.Target(logdensity, dim=5, name="gaussian-with-a-hole")
SETTINGS = dict(num_particles=4, num_steps=6_000, warmup=200, thin=3, chunk_size=300,
                init=jnp.full((4, 5), 0.1))
KEY = 7


def run(store=None, progress=False, **overrides):
    settings = dict(SETTINGS, **overrides)
    return sf.sample(sf.mala(0.8), TARGET, jax.random.key(KEY), progress=progress, store=store,
                     resume=store is not None, **settings)


def main() -> None:
    append, commit = RunStore.append, RunStore.commit

    def append_and_tell(self, positions, stats, first_draw):
        append(self, positions, stats, first_draw)
        print(f"appended {first_draw + positions.shape[1]}", flush=True)
        if "--pause" in sys.argv:
            sys.stdin.readline()

    def commit_and_tell(self, progress, state):
        commit(self, progress, state)
        print(f"committed {progress.draws_done}", flush=True)

    RunStore.append, RunStore.commit = append_and_tell, commit_and_tell
    run(sys.argv[1], progress="--progress" in sys.argv)
    print("done", flush=True)


if __name__ == "__main__":
    main()
