"""A run that tests/test_store.py starts in a subprocess, kills and resumes.

``python store_child.py STORE [--progress]`` runs :data:`SETTINGS` with
``store=STORE, resume=True`` and prints ``committed <draws>`` after every
commit, so the parent knows the run is under way before it kills it.
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
    commit = RunStore.commit

    def commit_and_tell(self, progress, state):
        commit(self, progress, state)
        print(f"committed {progress.draws_done}", flush=True)

    RunStore.commit = commit_and_tell
    run(sys.argv[1], progress="--progress" in sys.argv)
    print("done", flush=True)


if __name__ == "__main__":
    main()
