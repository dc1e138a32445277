"""The benchmark harness: samplers x targets x gradient budgets, and its report."""

from .harness import moment_errors, run_grid, run_one
from .specs import SAMPLER_TABLE, SAMPLERS, SamplerSpec

__all__ = ["run_grid", "run_one", "moment_errors", "SAMPLERS", "SAMPLER_TABLE", "SamplerSpec"]
