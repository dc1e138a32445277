"""Other libraries' models and samplers in stochflow, and stochflow's samplers in them.

* :mod:`~stochflow.interop.numpyro`: :func:`from_numpyro` (a NumPyro model as a
  :class:`~stochflow.Target`) and :func:`numpyro_kernel` (a stochflow chain
  sampler as a NumPyro ``MCMCKernel``).
* :mod:`~stochflow.interop.blackjax`: :func:`from_blackjax` (BlackJAX's NUTS,
  HMC and MCLMC as stochflow samplers).
"""

from .blackjax import from_blackjax
from .numpyro import from_numpyro, numpyro_kernel

__all__ = ["from_numpyro", "numpyro_kernel", "from_blackjax"]
