"""Diagnostics: the ArviZ bridge (summary, ESS, R-hat; ArviZ 0.2x and 1.x) and sample-quality metrics."""

from .arviz_bridge import ess, open_inference_data, rhat, summary, to_inference_data
from .kernels import ksd, median_distance, mmd
from . import metrics
from .metrics import (
    energy_distance,
    ess_per_grad,
    log_z_error,
    mode_coverage,
    mode_weight_tv,
    mode_weights,
    modes_visited,
    moment_errors,
    w2,
)
from .modes import Modes
from .importance import (
    ImportanceEstimate,
    importance_ess,
    importance_expectation,
    importance_log_z,
    normalized_weights,
)

__all__ = [
    "summary", "ess", "rhat", "to_inference_data", "open_inference_data", "ksd", "mmd", "median_distance", "metrics", "Modes", "moment_errors", "mode_weights",
    "mode_weight_tv", "mode_coverage", "modes_visited", "energy_distance", "w2", "ess_per_grad",
    "log_z_error",
    "ImportanceEstimate", "importance_ess", "importance_expectation", "importance_log_z", "normalized_weights",
]
