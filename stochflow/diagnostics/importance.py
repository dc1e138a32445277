r"""Importance-sampling diagnostics for weighted samples (SNF, other flows).

Given draws :math:`x_i` with log weights :math:`\log w_i` (``Trace.stats["log_weight"]``),
:math:`\bar w_i = w_i / \sum_j w_j`:

* Kish effective sample size :math:`ESS = (\sum w_i)^2 / \sum w_i^2 = 1/\sum \bar w_i^2`.
* Self-normalised estimate :math:`\hat\mu = \sum \bar w_i f(x_i)` of :math:`E_\pi[f]`,
  with the delta-method standard error
  :math:`\widehat{se}^2 = \sum \bar w_i^2 (f(x_i) - \hat\mu)^2` (Owen 2013,
  *Monte Carlo theory, methods and examples*, Sec. 9.2); for weights of a
  perfect proposal it is ``sd / sqrt(n)``.
* :math:`\log \hat Z = \operatorname{logmeanexp}(\log w)`, unbiased for :math:`Z`
  on the linear scale when :math:`E[w] = Z`; its delta-method standard error
  is :math:`\sqrt{\widehat{Var}(w)/n}\,/\,\bar w = \sqrt{1/ESS - 1/n}`.

Everything is computed from ``log w - max log w`` (no overflow) and is
jit-able. Weights of ``-inf`` (failed paths) count as zero. Leading axes of
``log_weights`` are flattened together with the same axes of ``values``, so
``(positions (P, D, d), stats["log_weight"] (P, D))`` of a trace go in as they are.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["ImportanceEstimate", "normalized_weights", "importance_ess", "importance_expectation", "importance_log_z"]


class ImportanceEstimate(NamedTuple):
    """An estimate, its standard error and the Kish ESS of the weights it used."""

    value: Array
    standard_error: Array
    ess: Array


def _flat_log_weights(log_weights: Any) -> Array:
    log_weights = jnp.ravel(jnp.asarray(log_weights))
    if log_weights.size == 0:
        raise ValueError("log_weights is empty.")
    return log_weights


def normalized_weights(log_weights: Any) -> Array:
    """Self-normalised weights ``w_i / sum_j w_j`` of the flattened ``log_weights``."""
    return jax.nn.softmax(_flat_log_weights(log_weights))


def importance_ess(log_weights: Any) -> Array:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` (between 1 and n)."""
    weights = normalized_weights(log_weights)
    return 1.0 / jnp.sum(weights**2)


def importance_expectation(values: Any, log_weights: Any) -> ImportanceEstimate:
    """Self-normalised estimate of ``E[f]`` from ``values = f(x_i)`` and their log weights.

    ``values`` has shape ``log_weights.shape + event_shape``; the estimate and
    its standard error have ``event_shape``.
    """
    log_weights = jnp.asarray(log_weights)
    values = jnp.asarray(values)
    if values.shape[: log_weights.ndim] != log_weights.shape:
        raise ValueError(
            f"values of shape {values.shape} do not start with the log weights' shape {log_weights.shape}."
        )
    weights = normalized_weights(log_weights)
    values = values.reshape((weights.shape[0],) + values.shape[log_weights.ndim :])
    expand = (slice(None),) + (None,) * (values.ndim - 1)
    estimate = jnp.sum(weights[expand] * values, axis=0)
    variance = jnp.sum(weights[expand] ** 2 * (values - estimate) ** 2, axis=0)
    return ImportanceEstimate(estimate, jnp.sqrt(variance), 1.0 / jnp.sum(weights**2))


def importance_log_z(log_weights: Any) -> ImportanceEstimate:
    """``log Z`` estimate ``logmeanexp(log w)`` (for weights with ``E[w] = Z``) and its standard error."""
    log_weights = _flat_log_weights(log_weights)
    n = log_weights.shape[0]
    ess = importance_ess(log_weights)
    value = jax.scipy.special.logsumexp(log_weights) - jnp.log(n)
    return ImportanceEstimate(value, jnp.sqrt(jnp.maximum(1.0 / ess - 1.0 / n, 0.0)), ess)
