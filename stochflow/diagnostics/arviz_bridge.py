"""The one module that talks to ArviZ, on both of its lines.

* ArviZ 0.2x (what pip gives Python 3.11): ``arviz.InferenceData``, converters
  that take one keyword per group (``from_dict(posterior=..., sample_stats=...)``).
* ArviZ 1.x (Python 3.12+): a metapackage over ``arviz_base``/``arviz_stats``/
  ``arviz_plots``; data live in an ``xarray.DataTree``, ``from_dict`` takes one
  nested dict ``{group: {variable: array}}``, summaries default to a 89% ETI.

Everything else in stochflow goes through the functions here, which give the
same groups, dims, dtypes and ``sample_stats`` names on both lines (checked by
``tests/test_arviz_schema.py`` against one committed schema): :func:`schema`
says what a converted trace holds, whichever container it is in.
"""

from __future__ import annotations

import json
import pathlib
import sys
import warnings
from typing import Any

import numpy as np

with warnings.catch_warnings():
    # ArviZ 0.2x announces its 1.x refactor with a FutureWarning at import.
    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    import arviz as az


def _load_lazy_numpyro() -> None:
    """Load the NumPyro that ArviZ 1.x registered lazily, before anyone imports a submodule.

    ``arviz_base.io_numpyro`` runs ``lazy_loader.load("numpyro")`` at import: a
    module object for ``numpyro`` sits in ``sys.modules`` and runs
    ``numpyro/__init__.py`` on its first attribute access. If the first access
    is the import system's own, in ``import numpyro.distributions`` (which
    stochflow.models does), the package body runs while that statement is
    already past its "is it loaded?" check: it imports
    ``numpyro.distributions`` (and with it ``numpyro.distributions.distribution``),
    then the statement loads ``numpyro.distributions`` a second time, as a new
    module. The submodules are found in ``sys.modules`` by then, so they are
    never set as attributes of the new package, and ``numpyro.factor`` (which
    reads ``numpyro.distributions.distribution.Unit``) fails with
    ``AttributeError: module 'numpyro.distributions' has no attribute
    'distribution'`` the first time a model's potential meets a factor (the
    log-Jacobian of a constrained site). Touching an attribute here runs the
    package body once, as a plain ``import numpyro`` would.
    """
    module = sys.modules.get("numpyro")
    if module is not None:
        getattr(module, "__name__")


_load_lazy_numpyro()

ARVIZ_VERSION: str = az.__version__
#: 0 for the 0.2x line (``InferenceData``), 1 for the 1.x line (``DataTree``).
ARVIZ_MAJOR: int = int(ARVIZ_VERSION.split(".")[0])

__all__ = [
    "to_inference_data", "open_inference_data", "group_names", "group", "schema", "summary", "ess", "rhat",
    "from_numpyro", "plot_trace", "SAMPLE_STATS_NAMES", "ARVIZ_SAMPLE_STATS", "STOCHFLOW_SAMPLE_STATS", "SUMMARY_INTERVAL", "flat_attrs",
    "ARVIZ_VERSION", "ARVIZ_MAJOR",
]

#: stochflow info field -> ArviZ ``sample_stats`` name, where the two differ or coincide by
#: meaning: the one place internal stat names meet ArviZ's schema.
SAMPLE_STATS_NAMES = {
    "logdensity": "lp",
    "accept_prob": "acceptance_rate",
    "diverging": "diverging",
    "step_size": "step_size",
    "energy_error": "energy_error",
}

#: The ``sample_stats`` names ArviZ's schema specifies ("InferenceData schema specification").
ARVIZ_SAMPLE_STATS = frozenset({
    "lp", "acceptance_rate", "step_size", "step_size_bar", "tree_depth", "n_steps", "diverging", "energy",
    "energy_error", "max_energy_error", "index_in_trajectory", "largest_eigval", "smallest_eigval",
})

#: Stats stochflow records that ArviZ's schema has no name for, kept under their own names.
#: (``n_grad`` is not ArviZ's ``n_steps``: it counts gradient evaluations of any method,
#: one a step for MALA, the leapfrog steps for NUTS, one a particle a step for SVGD.)
STOCHFLOW_SAMPLE_STATS = {
    "n_grad": "gradient evaluations of the log-density since the previous draw",
    "is_accepted": "the Metropolis-Hastings proposal was accepted",
    "time": "rdMC: the forward time t the particle is at after the step",
    "log_weight": "SNF: the particle's log importance weight",
    "bandwidth": "Stein methods: the kernel bandwidth of the step",
}

#: The credible interval :func:`summary` reports on both lines: ArviZ 0.2x's
#: default, a 94% HDI (columns ``hdi_3%``/``hdi_97%`` on 0.2x, ``hdi94_lb``/``hdi94_ub``
#: on 1.x, whose own default would be an 89% ETI).
SUMMARY_INTERVAL = {"ci_kind": "hdi", "ci_prob": 0.94}


def flat_attrs(metadata: dict[str, Any]) -> dict[str, Any]:
    """Flat, netCDF-safe attributes: scalars and strings as they are, the rest as JSON."""
    from .. import __version__

    attrs: dict[str, Any] = {"inference_library": "stochflow", "inference_library_version": __version__}
    for name, value in metadata.items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            attrs[name] = value
        else:
            attrs[name] = json.dumps(value)
    return attrs


def _from_dict(groups: dict[str, dict[str, np.ndarray]], dims: dict[str, list[str]], attrs: dict[str, Any]) -> Any:
    """ArviZ's ``from_dict`` of ``{group: {variable: (chain, draw, ...) array}}``, every group
    carrying ``attrs``, in the installed line's calling convention."""
    if ARVIZ_MAJOR >= 1:
        return az.from_dict(groups, dims=dims, attrs={name: dict(attrs) for name in groups})
    main = {name: groups[name] for name in ("posterior", "sample_stats") if name in groups}
    idata = az.from_dict(**main, dims=dims, **{f"{name}_attrs": attrs for name in main})
    extra = {name: az.dict_to_dataset(values, dims=dims, attrs=attrs)
             for name, values in groups.items() if name not in main}
    if extra:
        idata.add_groups(**extra)
    return idata


def to_inference_data(trace: Any, var_name: str = "x") -> Any:
    """Convert a :class:`~stochflow.Trace` to what the installed ArviZ works on:
    ``arviz.InferenceData`` on ArviZ 0.2x, ``xarray.DataTree`` on 1.x, with the
    same groups, dims, dtypes and variable names on both.

    Particles are chains. For interacting-particle methods (SVGD) the chains
    are not independent Markov chains; R-hat and ESS then do not apply.
    """
    sample_stats = {
        SAMPLE_STATS_NAMES.get(name, name): np.asarray(values)
        for name, values in trace.stats.items()
    }
    attrs = flat_attrs(trace.metadata)
    positions = {var_name: np.asarray(trace.positions)}
    if trace.constrain is not None:
        named = trace.constrain(positions[var_name])
    elif trace.constrained is not None:  # a trace loaded from a file
        named = {name: np.asarray(values) for name, values in trace.constrained.items()}
    else:
        named = None
    if named is None:
        groups = {"posterior": positions, "sample_stats": sample_stats}
    else:
        named = {name: np.asarray(values) for name, values in named.items()}
        groups = {"posterior": named, "unconstrained_posterior": positions, "sample_stats": sample_stats}
    return _from_dict(groups, dims={var_name: ["dim"]}, attrs=attrs)


def open_inference_data(path: Any) -> Any:
    """What the installed ArviZ works on (``InferenceData`` / ``DataTree``) over a
    stochflow NetCDF file or zarr store (a run store too, while it runs), read lazily.

    Both lines go through ``xarray.open_datatree`` (ArviZ 0.2x's own
    ``az.from_zarr`` refuses zarr-python 3; 1.x's readers are that function).
    A run store shows the draws of its consolidated metadata, which is
    rewritten after each chunk's data: fully written chunks only."""
    import xarray as xr

    engine = "zarr" if pathlib.Path(path).is_dir() else "h5netcdf"
    tree = xr.open_datatree(path, engine=engine)
    if ARVIZ_MAJOR >= 1:
        return tree
    return az.InferenceData.from_datatree(tree)


def group_names(data: Any) -> list[str]:
    """The groups of an ``InferenceData`` or ``DataTree`` (``posterior``, ``sample_stats``...),
    in their stored order, without the root."""
    if ARVIZ_MAJOR >= 1 or not isinstance(data, az.InferenceData):
        return list(data.children)
    return list(data.groups())


def group(data: Any, name: str) -> Any:
    """Group ``name`` of an ``InferenceData`` or ``DataTree`` as an ``xarray.Dataset``."""
    node = data[name]
    return node.to_dataset() if hasattr(node, "to_dataset") else node


def schema(data: Any) -> dict[str, Any]:
    """What a converted trace holds, independent of the container: per group, each
    variable and coordinate with its dims and dtype, and the sizes of the dims.

    Attributes are left out (creation times and library versions differ by design)."""
    out: dict[str, Any] = {}
    for name in group_names(data):
        dataset = group(data, name)
        out[name] = {
            "data_vars": {var: {"dims": list(dataset[var].dims), "dtype": str(dataset[var].dtype)}
                          for var in sorted(dataset.data_vars)},
            "coords": {var: {"dims": list(dataset[var].dims), "dtype": str(dataset[var].dtype)}
                       for var in sorted(dataset.coords)},
            "sizes": {dim: int(size) for dim, size in sorted(dataset.sizes.items())},
        }
    return out


def _as_arviz(data: Any) -> Any:
    return data.to_arviz() if hasattr(data, "to_arviz") else data


def summary(data: Any, **kwargs: Any):
    """``arviz.summary`` of a trace (or of an ``InferenceData``/``DataTree``): a pandas
    DataFrame with mean, sd, a 94% HDI, MCSE, ESS and R-hat, one row per coordinate
    (``x[0]``, ``theta[3]``...).

    The columns ``mean, sd, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat`` are
    named alike on both lines; the interval columns are ArviZ's own (see
    :data:`SUMMARY_INTERVAL`). Keywords go to ``arviz.summary``."""
    if ARVIZ_MAJOR >= 1:
        kwargs = {**SUMMARY_INTERVAL, **kwargs}
    elif "ci_prob" in kwargs or "ci_kind" in kwargs:  # the 1.x spelling, on 0.2x
        if kwargs.pop("ci_kind", "hdi") != "hdi":
            raise ValueError("ArviZ 0.2x summaries report HDIs only (ci_kind='hdi').")
        kwargs["hdi_prob"] = kwargs.pop("ci_prob", SUMMARY_INTERVAL["ci_prob"])
    return az.summary(_as_arviz(data), **kwargs)


def ess(draws: np.ndarray, method: str = "bulk", prob: Any = None) -> np.ndarray:
    """ArviZ effective sample size of ``draws`` shaped ``(chain, draw, ...)``, per trailing entry.

    ``method="tail"`` is the smaller ESS of the 5% and 95% quantiles (both lines'
    default; ArviZ 1.x's array functions need it spelled out)."""
    draws = np.asarray(draws)
    if ARVIZ_MAJOR >= 1:
        if method == "tail" and prob is None:
            prob = (0.05, 0.95)
        return np.asarray(az.ess(draws, method=method, prob=prob, chain_axis=0, draw_axis=1))
    return np.asarray(az.ess(az.convert_to_dataset(draws), method=method, prob=prob)["x"])


def rhat(draws: np.ndarray, method: str = "rank") -> np.ndarray:
    """ArviZ R-hat of ``draws`` shaped ``(chain, draw, ...)``, per trailing entry."""
    draws = np.asarray(draws)
    if ARVIZ_MAJOR >= 1:
        return np.asarray(az.rhat(draws, method=method, chain_axis=0, draw_axis=1))
    return np.asarray(az.rhat(az.convert_to_dataset(draws), method=method)["x"])


def from_numpyro(mcmc: Any, **kwargs: Any) -> Any:
    """ArviZ's converter of a finished ``numpyro.infer.MCMC`` (``lp``, ``diverging``,
    ``acceptance_rate`` and the other extra fields in ``sample_stats``)."""
    return az.from_numpyro(mcmc, **kwargs)


def plot_trace(data: Any, var_names: Any = None, **kwargs: Any) -> Any:
    """ArviZ's trace plot (marginal densities and draws per chain) of a trace or of
    an ``InferenceData``/``DataTree``, with matplotlib: ``az.plot_trace`` on 0.2x
    (returns its axes), ``az.plot_trace_dist`` on 1.x (returns its
    ``PlotCollection``)."""
    data = _as_arviz(data)
    if ARVIZ_MAJOR >= 1:
        kwargs.setdefault("backend", "matplotlib")
        return az.plot_trace_dist(data, var_names=var_names, **kwargs)
    return az.plot_trace(data, var_names=var_names, **kwargs)
