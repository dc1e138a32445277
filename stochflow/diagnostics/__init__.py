"""Diagnostics: the ArviZ bridge (summary, ESS) and sample-quality metrics."""

from .arviz_bridge import ess, summary, to_inference_data

__all__ = ["summary", "ess", "to_inference_data"]
