"""One-chain building blocks, each written once, from which every sampler is assembled.

* :mod:`.checks` -- argument checks raised before anything compiles;
* :mod:`.finite` -- undo-and-flag of a step with a non-finite value;
* :mod:`.langevin` -- the Euler-Maruyama Langevin proposal;
* :mod:`.metropolis` -- Metropolis-Hastings acceptance and the (preconditioned) adjusted Langevin transition;
* :mod:`.integrators` -- B/A/O/U pieces of underdamped Langevin splittings;
* :mod:`.adaptation` -- dual averaging and Stan's windowed warmup (step size, diagonal or dense mass);
* :mod:`.particles` -- the explicit particle axis: per-particle keys, maps and gathers;
* :mod:`.stein` -- radial kernels, blocked pairwise sums and the median heuristic.
"""

from . import adaptation, checks, finite, integrators, langevin, metropolis, particles, stein

__all__ = ["adaptation", "checks", "finite", "integrators", "langevin", "metropolis", "particles", "stein"]
