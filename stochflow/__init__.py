"""stochflow: composable JAX samplers for unnormalised densities.

>>> import stochflow as sf
>>> target = sf.Target(logdensity=lambda x: -0.5 * (x @ x), dim=2)
>>> trace = sf.sample(sf.mala(step_size=0.5), target, jax.random.key(0),
...                   num_particles=4, num_steps=1000, warmup=500)
"""

from ._version import __version__
from . import diagnostics, flows, geometry, interop, models, samplers
from .run import default_init, sample
from .samplers import *  # noqa: F401,F403  (every factory: samplers.__all__ is the registry)
from .interop import from_blackjax, from_numpyro, numpyro_kernel
from .target import GroundTruth, Target
from .trace import Trace, load

__all__ = [
    "Target",
    "GroundTruth",
    "Trace",
    "sample",
    "load",
    "default_init",
    "flows",
    "from_numpyro",
    "numpyro_kernel",
    "from_blackjax",
    "samplers",
    "geometry",
    "interop",
    "models",
    "diagnostics",
] + samplers.__all__
