"""posteriordb reference posteriors, translated to NumPyro: the real-model suite.

Each module here holds one posterior of posteriordb (github.com/stan-dev/posteriordb;
BSD 3-Clause licence, as are the data and reference draws it distributes): ``POSTERIOR``,
its name there, and ``model(**data)``, the Stan model written as a NumPyro model with the
Stan parameters as its sites. ``stochflow/models/data/posteriordb/<name>.json`` holds the
data and a summary of posteriordb's reference draws (long Stan NUTS runs, thinned: mean,
sd and 5/50/95% quantiles per parameter, ArviZ's 0-based names).

``load(name)`` gives a :class:`Posterior`; ``target(name)`` its
:func:`~stochflow.interop.from_numpyro` target. Run them in float64
(``jax.config.update("jax_enable_x64", True)``): the reference runs were.
"""

from __future__ import annotations

import functools
import importlib
import json
import pathlib
import re
from typing import Any, Callable, NamedTuple

import numpy as np

from ...target import Target

__all__ = ["Posterior", "names", "load", "target"]

_DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "posteriordb"
_MODULES = ("eight_schools_noncentered", "eight_schools_centered", "arK", "garch11", "earn_height", "kilpisjarvi",
            "gp_pois_regr", "low_dim_gauss_mix")


class Posterior(NamedTuple):
    """A posteriordb posterior: its NumPyro model, data and reference summary."""

    name: str
    model: Callable
    data: dict[str, Any]
    reference: dict[str, dict[str, float]]  # parameter -> mean, sd, q05, q50, q95
    num_reference_draws: int
    model_url: str


@functools.lru_cache(maxsize=None)
def _modules() -> dict[str, Any]:
    found = {}
    for module_name in _MODULES:
        module = importlib.import_module(f"{__name__}.{module_name}")
        found[module.POSTERIOR] = module
    return found


def names() -> list[str]:
    """The posteriors of the suite, by their posteriordb names."""
    return list(_modules())


def _array(value: Any) -> Any:
    return np.asarray(value) if isinstance(value, list) else value


def load(name: str) -> Posterior:
    """The posterior called ``name`` (a posteriordb name, e.g. ``"arK-arK"``)."""
    modules = _modules()
    if name not in modules:
        raise ValueError(f"unknown posterior {name!r}; the suite has {', '.join(modules)}.")
    record = json.loads((_DATA / f"{name}.json").read_text())
    draws = max(int(count) for count in re.findall(r"(\d+) draws", record["reference_draws"]))
    return Posterior(name, modules[name].model, {key: _array(value) for key, value in record["data"].items()},
                     record["reference"], draws, record["model_url"])


def target(name: str) -> Target:
    """``name``'s model and data as a stochflow target (unconstrained coordinates)."""
    from ...interop.numpyro import from_numpyro

    posterior = load(name)
    return from_numpyro(posterior.model, **posterior.data)
