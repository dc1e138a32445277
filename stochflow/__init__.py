"""stochflow: composable JAX samplers for unnormalised densities.

>>> import stochflow as sf
>>> target = sf.Target(logdensity=lambda x: -0.5 * (x @ x), dim=2)
>>> trace = sf.sample(sf.mala(step_size=0.5), target, jax.random.key(0),
...                   num_particles=4, num_steps=1000, warmup=500)
"""

__version__ = "0.1.0"

from . import diagnostics, geometry, models, samplers
from . import flows  # after samplers: the flows build on its Langevin kernels
from .models.numpyro_adapter import from_numpyro, numpyro_kernel
from .run import default_init, sample
from .samplers import Sampler, bmmla, bmumla, mala, mla, mymala, myula, rdmc, ula, underdamped
from .samplers import fit_snf, load_snf, save_snf, snf
from .samplers import from_blackjax
from .samplers import msvgd, svgd, svmd
from .store import load
from .target import GroundTruth, Target
from .trace import Trace

__all__ = [
    "Target",
    "GroundTruth",
    "Sampler",
    "Trace",
    "sample",
    "load",
    "default_init",
    "ula",
    "mala",
    "underdamped",
    "rdmc",
    "myula",
    "mymala",
    "mla",
    "bmumla",
    "bmmla",
    "snf",
    "fit_snf",
    "save_snf",
    "load_snf",
    "flows",
    "from_numpyro",
    "numpyro_kernel",
    "from_blackjax",
    "svgd",
    "msvgd",
    "svmd",
    "samplers",
    "geometry",
    "models",
    "diagnostics",
]
