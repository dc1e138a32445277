"""What a NumPyro model costs before its first step: ``sf.from_numpyro`` (build) and the
default starts of a first and a later ``sf.sample`` (``target.init``), per posteriordb model.

Run: ``python benchmarks/numpyro_build.py`` (float64, every model of
``stochflow.models.posteriordb``); prints seconds per model and the log-density at a start.
"""

from __future__ import annotations

import time
import warnings

import jax

import stochflow as sf
from stochflow.models import posteriordb


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    warnings.simplefilter("ignore")
    print("| model | build s | first run's starts s | a later run's starts s |")
    print("|---|---|---|---|")
    for name in posteriordb.names():
        posterior = posteriordb.load(name)
        start = time.perf_counter()
        target = sf.from_numpyro(posterior.model, **posterior.data)
        built = time.perf_counter()
        jax.block_until_ready(target.init(jax.random.key(1), 4))
        first = time.perf_counter()
        jax.block_until_ready(target.init(jax.random.key(2), 4))
        later = time.perf_counter()
        print(f"| {name} | {built - start:.2f} | {first - built:.2f} | {later - first:.3f} |")


if __name__ == "__main__":
    main()
