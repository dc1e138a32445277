r"""Kernel discrepancies (KSD, MMD), on the radial kernels and blocked pairwise sums of
:mod:`stochflow.kernels.stein` (shared with SVGD).

Kernels
-------
Both kernels are radial, :math:`k(x, y) = \phi(r)` with :math:`r = \|x - y\|^2`:

* ``"rbf"``: :math:`\phi(r) = \exp(-r / (2h^2))`, bandwidth (length scale) :math:`h`.
* ``"imq"``: :math:`\phi(r) = (c^2 + r / h^2)^\beta` with :math:`c > 0`, :math:`\beta < 0`;
  with :math:`h = 1, c = 1, \beta = -1/2` it is the inverse multiquadric kernel of
  Gorham & Mackey (2017), whose KSD detects non-convergence.

Kernel Stein discrepancy (Liu, Lee & Jordan 2016; Chwialkowski et al. 2016; Gorham & Mackey 2017)
------------------------------------------------------------------------------------------------
With the score :math:`s = \nabla \log p` and the Langevin Stein kernel

.. math::

    k_p(x, y) = s(x)^\top s(y)\,k(x, y) + s(x)^\top \nabla_y k(x, y)
                + s(y)^\top \nabla_x k(x, y) + \operatorname{tr} \nabla_x \nabla_y k(x, y),

:func:`ksd` returns an estimate of the *squared* discrepancy :math:`\mathrm{KSD}^2 =
E_{x, y \sim q}[k_p(x, y)]` from samples :math:`x_1..x_n` of :math:`q`:

* ``statistic="v"`` (default): the V-statistic :math:`n^{-2}\sum_{i,j} k_p(x_i, x_j)
  \ge 0`; its square root is the KSD of Gorham & Mackey. It is biased upward by
  :math:`O(1/n)`, even when :math:`q = p`.
* ``statistic="u"``: the U-statistic :math:`(n(n-1))^{-1}\sum_{i \ne j} k_p(x_i, x_j)`,
  unbiased: its expectation is exactly 0 when :math:`q = p`, so it can be negative.

For a radial kernel the Stein kernel is, with :math:`u = x - y`,
:math:`k_p = s_x^\top s_y\,\phi + 2\phi'\,(s_y - s_x)^\top u - 2d\,\phi' - 4\phi''\,r`;
every term is a matrix product of a row block with all samples.

Maximum mean discrepancy (Gretton et al. 2012)
----------------------------------------------
:func:`mmd` estimates :math:`\mathrm{MMD}^2(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y)`;
``"v"`` averages over all pairs (:math:`\ge 0`), ``"u"`` leaves out the :math:`i = j` terms of the
two within-sample sums (unbiased; can be negative). The default bandwidth is the median heuristic
(the median distance between distinct points of the pooled sample).

Memory
------
Pairwise terms are never stored whole: rows are cut into blocks of ``block_size`` points and a
``lax.map`` over blocks forms one ``(block_size, n)`` matrix at a time, so memory is
:math:`O(\text{block} \cdot n + n d)`, not :math:`O(n^2)`. Everything is jit-able.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.stein import (
    KERNELS,
    KernelParams,
    default_block_size,
    map_row_blocks,
    median_distance,
    radial_profile,
    squared_distances,
)

Array = jax.Array

__all__ = [
    "KernelParams",
    "KERNELS",
    "ksd",
    "mmd",
    "median_distance",
    "check_kernel",
    "radial_profile",
    "squared_distances",
    "map_row_blocks",
    "default_block_size",
]

STATISTICS = ("u", "v")


def _check_samples(name: str, samples: Any, dim: Optional[int] = None) -> Array:
    shape = getattr(samples, "shape", None)
    if shape is None:
        samples = jnp.asarray(samples)
        shape = samples.shape
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, dim), got {shape}; pass one point per row.")
    if dim is not None and shape[1] != dim:
        raise ValueError(f"{name} has dimension {shape[1]}, expected {dim} (the other sample's).")
    array = jnp.asarray(samples)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.zeros(()).dtype)
    return array


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return value


def _check_number(name: str, value: Any, *, positive: bool = False, negative: bool = False) -> None:
    """Check a concrete number's sign; traced values (inside jit) are left to the caller."""
    if isinstance(value, jax.core.Tracer):
        return
    number = float(np.asarray(value))
    if not math.isfinite(number) or (positive and number <= 0.0) or (negative and number >= 0.0):
        sign = "> 0" if positive else "< 0"
        raise ValueError(f"{name} must be a finite number {sign}, got {value!r}.")


def check_kernel(
    kernel: str,
    bandwidth: Any,
    c: Any = 1.0,
    beta: Any = -0.5,
) -> None:
    """Validate a kernel's name and concrete parameters (``bandwidth=None`` means the median heuristic)."""
    _check_choice("kernel", kernel, KERNELS)
    if bandwidth is not None:
        _check_number("bandwidth", bandwidth, positive=True)
    if kernel == "imq":
        _check_number("c", c, positive=True)
        _check_number("beta", beta, negative=True)


def _params(bandwidth: Any, c: Any, beta: Any, dtype: Any) -> KernelParams:
    return KernelParams(*(jnp.asarray(v, dtype) for v in (bandwidth, c, beta)))


def _stein_kernel_row_sums(
    kernel: str,
    statistic: str,
    samples: Array,
    scores: Array,
    params: KernelParams,
    block_size: int,
) -> Array:
    """``sum_j k_p(x_i, x_j)`` for every ``i`` (``j != i`` for the U-statistic)."""
    n, dim = samples.shape
    x = samples - jnp.mean(samples, axis=0)
    scores_dot_x = jnp.sum(scores * x, axis=-1)  # s_j . x_j

    def block(index, x_rows, s_rows):
        sq = squared_distances(x_rows, x)
        value, first, second = radial_profile(kernel, sq, params)
        ss = s_rows @ scores.T  # s_i . s_j
        # (s_j - s_i) . (x_i - x_j) = s_j.x_i - s_j.x_j - s_i.x_i + s_i.x_j
        drift = x_rows @ scores.T - scores_dot_x[None, :] - jnp.sum(s_rows * x_rows, -1)[:, None] + s_rows @ x.T
        stein = ss * value + 2.0 * first * drift - 2.0 * dim * first - 4.0 * second * sq
        if statistic == "u":
            stein = jnp.where(index[:, None] == jnp.arange(n)[None, :], 0.0, stein)
        return jnp.sum(stein, axis=1)

    return map_row_blocks(block, (x, scores), block_size)


@functools.partial(jax.jit, static_argnums=0)
def _vmapped(fn: Callable[[Array], Array], points: Array) -> Array:
    return jax.vmap(fn)(points)


@functools.partial(jax.jit, static_argnums=0)
def _vmapped_grad(logdensity: Callable[[Array], Array], points: Array) -> Array:
    return jax.vmap(jax.grad(logdensity))(points)


def _scores_of(score_fn: Any, samples: Array) -> Array:
    if hasattr(score_fn, "logdensity") and hasattr(score_fn, "dim"):  # a stochflow Target
        if score_fn.dim != samples.shape[1]:
            raise ValueError(f"samples have dimension {samples.shape[1]} but the target has dim {score_fn.dim}.")
        return _vmapped_grad(score_fn.logdensity, samples)
    if callable(score_fn):
        probe = jax.eval_shape(score_fn, jax.ShapeDtypeStruct(samples.shape[1:], samples.dtype))
        if getattr(probe, "shape", None) != samples.shape[1:]:
            raise ValueError(
                f"score_fn must map one point of shape {samples.shape[1:]} to its score of the same "
                f"shape, got {getattr(probe, 'shape', probe)}."
            )
        return _vmapped(score_fn, samples)
    scores = jnp.asarray(score_fn)
    if scores.shape != samples.shape:
        raise ValueError(
            f"precomputed scores must have the samples' shape {samples.shape}, got {scores.shape}."
        )
    return scores


def _median_bandwidth(points: Array) -> Array:
    """The median heuristic's bandwidth, refused when it is 0 (at least half the pairs of
    points coincide: a collapsed sample), where every kernel value would be 0/0."""
    h = median_distance(points)
    if not isinstance(h, jax.core.Tracer) and float(h) == 0.0:
        raise ValueError("the median heuristic gives bandwidth 0: at least half of the pairwise distances "
                         "are 0 (the points are mostly copies of a few; a collapsed sample?). Pass "
                         "bandwidth= explicitly.")
    return h


def ksd(
    samples: Array,
    score_fn: Union[Callable[[Array], Array], Array, Any],
    kernel: str = "imq",
    *,
    statistic: str = "v",
    bandwidth: Optional[Any] = 1.0,
    c: Any = 1.0,
    beta: Any = -0.5,
    block_size: Optional[int] = None,
) -> Array:
    r"""Squared kernel Stein discrepancy of ``samples`` to the density whose score is ``score_fn``.

    Parameters
    ----------
    samples
        ``(n, d)`` points.
    score_fn
        The target's score :math:`\nabla \log p`: a function of one point ``(d,) -> (d,)``, a
        stochflow ``Target`` (its log-density is differentiated), or the ``(n, d)`` array of
        scores at ``samples`` already computed. Scores are computed by a program compiled per
        function object: pass the same function (or target) again to reuse it.
    kernel
        ``"imq"`` (default; Gorham & Mackey 2017 with ``c=1, beta=-1/2, bandwidth=1``) or ``"rbf"``.
    statistic
        ``"v"`` (default): V-statistic, ``>= 0``, biased up by O(1/n); ``sqrt`` of it is the KSD of
        Gorham & Mackey. ``"u"``: U-statistic, unbiased (mean 0 for exact samples), may be < 0.
    bandwidth
        Kernel bandwidth ``h`` (see the module docstring); ``None`` uses the median heuristic.
    c, beta
        IMQ parameters, ``c > 0``, ``beta < 0``.
    block_size
        Rows per block (default: so that a block matrix has at most 2^22 entries).

    Returns
    -------
    The scalar estimate of :math:`\mathrm{KSD}^2`.
    """
    kernel = _check_choice("kernel", kernel, KERNELS)
    statistic = _check_choice("statistic", statistic, STATISTICS)
    check_kernel(kernel, bandwidth, c, beta)
    samples = _check_samples("samples", samples)
    n = samples.shape[0]
    if statistic == "u" and n < 2:
        raise ValueError("the U-statistic needs at least 2 samples.")
    scores = _scores_of(score_fn, samples)
    block_size = _check_block(block_size, n, n)
    h = _median_bandwidth(samples) if bandwidth is None else bandwidth
    return _ksd_core(samples, scores, _params(h, c, beta, samples.dtype), kernel, statistic, block_size)


def _check_block(block_size: Optional[int], num_rows: int, num_cols: int) -> int:
    if block_size is None:
        return default_block_size(num_rows, num_cols)
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}.")
    return int(min(block_size, num_rows))


def _ksd_core_impl(samples, scores, params, kernel, statistic, block_size):
    n = samples.shape[0]
    total = jnp.sum(_stein_kernel_row_sums(kernel, statistic, samples, scores, params, block_size))
    pairs = n * (n - 1) if statistic == "u" else n * n
    return total / pairs


_ksd_core = jax.jit(_ksd_core_impl, static_argnums=(3, 4, 5))


def _kernel_row_sums(kernel, rows, cols, params, block_size, exclude_diagonal):
    def block(index, rows_block):
        value, _, _ = radial_profile(kernel, squared_distances(rows_block, cols), params)
        if exclude_diagonal:
            value = jnp.where(index[:, None] == jnp.arange(cols.shape[0])[None, :], 0.0, value)
        return jnp.sum(value, axis=1)

    return map_row_blocks(block, (rows,), block_size)


def _mmd_core_impl(x, y, params, kernel, statistic, block_size):
    n, m = x.shape[0], y.shape[0]
    centre = (jnp.sum(x, 0) + jnp.sum(y, 0)) / (n + m)
    x, y = x - centre, y - centre
    unbiased = statistic == "u"
    xx = jnp.sum(_kernel_row_sums(kernel, x, x, params, block_size, unbiased))
    yy = jnp.sum(_kernel_row_sums(kernel, y, y, params, block_size, unbiased))
    xy = jnp.sum(_kernel_row_sums(kernel, x, y, params, block_size, False))
    if unbiased:
        return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (n * m)
    return xx / n**2 + yy / m**2 - 2.0 * xy / (n * m)


_mmd_core = jax.jit(_mmd_core_impl, static_argnums=(3, 4, 5))


def mmd(
    x: Array,
    y: Array,
    kernel: str = "rbf",
    *,
    statistic: str = "v",
    bandwidth: Optional[Any] = None,
    c: Any = 1.0,
    beta: Any = -0.5,
    block_size: Optional[int] = None,
) -> Array:
    r"""Squared maximum mean discrepancy between the samples ``x (n, d)`` and ``y (m, d)``.

    Parameters
    ----------
    kernel
        ``"rbf"`` (default) or ``"imq"`` (see the module docstring).
    statistic
        ``"v"`` (default): all pairs, ``>= 0``, biased up. ``"u"``: the unbiased estimate of
        Gretton et al. (2012, eq. 3), within-sample diagonals left out; may be < 0.
    bandwidth
        ``h``; ``None`` (default) uses the median heuristic on the pooled sample
        (:func:`median_distance`: exact up to 1000 points, a fixed evenly spaced subset above).
    c, beta
        IMQ parameters.
    block_size
        Rows per block (default: at most 2^22 entries per block matrix).

    Returns
    -------
    The scalar estimate of :math:`\mathrm{MMD}^2`.
    """
    kernel = _check_choice("kernel", kernel, KERNELS)
    statistic = _check_choice("statistic", statistic, STATISTICS)
    check_kernel(kernel, bandwidth, c, beta)
    x = _check_samples("x", x)
    y = _check_samples("y", y, dim=x.shape[1])
    if statistic == "u" and min(x.shape[0], y.shape[0]) < 2:
        raise ValueError("the U-statistic needs at least 2 points in each sample.")
    y = y.astype(x.dtype)
    block_size = _check_block(block_size, max(x.shape[0], y.shape[0]), max(x.shape[0], y.shape[0]))
    h = _median_bandwidth(jnp.concatenate([x, y])) if bandwidth is None else bandwidth
    return _mmd_core(x, y, _params(h, c, beta, x.dtype), kernel, statistic, block_size)
