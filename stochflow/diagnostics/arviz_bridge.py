"""The one module that talks to ArviZ.

stochflow codes against ArviZ 0.2x (``InferenceData``), which is what pip gives
Python 3.11; every ArviZ call lives here so moving to ArviZ 1.x (xarray
``DataTree``) touches this file only.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

with warnings.catch_warnings():
    # ArviZ 0.2x announces its 1.x refactor with a FutureWarning at import.
    warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
    import arviz as az

__all__ = ["to_inference_data", "open_inference_data", "summary", "ess", "SAMPLE_STATS_NAMES", "flat_attrs"]

# stochflow info field -> ArviZ sample_stats name (ArviZ schema conventions).
SAMPLE_STATS_NAMES = {
    "logdensity": "lp",
    "accept_prob": "acceptance_rate",
    "diverging": "diverging",
    "step_size": "step_size",
    "n_grad": "n_grad",
}


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


def to_inference_data(trace: Any, var_name: str = "x") -> az.InferenceData:
    """Convert a :class:`~stochflow.Trace` to ``arviz.InferenceData``.

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
    constrained = named is not None
    idata = az.from_dict(
        posterior=named if constrained else positions,
        sample_stats=sample_stats,
        dims=None if constrained else {var_name: ["dim"]},
        posterior_attrs=attrs,
        sample_stats_attrs=attrs,
    )
    if constrained:
        raw = az.dict_to_dataset(positions, dims={var_name: ["dim"]}, attrs=attrs)
        idata.add_groups(unconstrained_posterior=raw)
    return idata


def open_inference_data(path: Any) -> az.InferenceData:
    """An ``InferenceData`` over a stochflow NetCDF file or zarr store (a run
    store too, while it runs), read lazily.

    ArviZ 0.2x's own ``az.from_zarr`` refuses zarr-python 3; this goes through
    ``xarray.open_datatree`` and ``InferenceData.from_datatree`` instead. A run
    store shows the draws of its consolidated metadata, which is rewritten after
    each chunk's data: fully written chunks only."""
    import pathlib

    import xarray as xr

    engine = "zarr" if pathlib.Path(path).is_dir() else "h5netcdf"
    return az.InferenceData.from_datatree(xr.open_datatree(path, engine=engine))


def summary(trace: Any, **kwargs: Any):
    """``arviz.summary`` of a trace (a pandas DataFrame: mean, sd, HDI, MCSE, ESS, R-hat)."""
    return az.summary(trace.to_arviz(), **kwargs)


def ess(draws: np.ndarray, method: str = "bulk") -> np.ndarray:
    """ArviZ effective sample size of ``draws`` shaped ``(chain, draw, ...)``, per trailing entry."""
    draws = np.asarray(draws)
    dataset = az.convert_to_dataset(draws)
    return np.asarray(az.ess(dataset, method=method)["x"])
