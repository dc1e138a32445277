r"""Nonsmooth and constrained targets with ground truth.

* :func:`laplace` -- :math:`\prod_i \exp(-|x_i|/b)` (smooth part 0, ``nonsmooth = l1(1/b)``);
  exact sampler, mean 0, covariance :math:`2b^2 I`.
* :func:`laplace_gmm` -- a 2-D Gaussian-mixture likelihood times a Laplace prior
  :math:`\exp(-\alpha\|x\|_1)` (Lau, Liu & Pock 2023, the ``prox_lmc`` experiment):
  non-log-concave and nonsmooth. Exact rejection sampler (propose from the
  mixture, accept with probability :math:`\exp(-\alpha\|x\|_1)`), mean and
  covariance by quadrature on a fine grid.
* :func:`laplace_mixture` -- :math:`\sum_i \omega_i (\alpha/2)^d \exp(-\alpha\|x - \mu_i\|_1)`
  (Lau, Liu & Pock 2023, the ``lmc_laplace`` experiment); exact sampler and moments.
  With ``smoothing=lam`` the log-density is their Moreau-Yosida smoothed mixture
  (each component's :math:`\alpha\|\cdot - \mu_i\|_1` replaced by its Moreau
  envelope, a Huber function); the ground truth stays the exact mixture.
* :func:`bayesian_lasso` -- :math:`\exp(-\|y - X\beta\|^2/(2\sigma^2) - \alpha\|\beta\|_1)`
  on synthetic data; exact rejection sampler (propose from the Gaussian
  likelihood in :math:`\beta`, accept with :math:`\exp(-\alpha\|\beta\|_1)`),
  moments by quadrature for ``dim <= 2``.
* :func:`truncated_laplace` -- :math:`\exp(-\|x\|_1/b)` on a box, with the
  box's log-barrier mirror map; closed-form moments, exact inverse-CDF sampler.
* :func:`dirichlet` -- Dirichlet on the simplex in reduced coordinates (the
  entropic mirror map's domain), optionally tilted by ``nonsmooth = l1(t)``
  (:math:`t\sum_{i<D} x_i = t(1 - x_D)` on the simplex); closed-form moments
  (tilted: one-dimensional quadrature), exact sampler.

Exact samplers built on rejection run a short host loop (they are ground
truth for benchmarks, not jitted).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate

from ..geometry import entropic_simplex, l1, log_barrier
from ..target import GroundTruth, Target
from .mixtures import gaussian_mixture

__all__ = [
    "laplace",
    "laplace_gmm",
    "laplace_mixture",
    "bayesian_lasso",
    "truncated_laplace",
    "dirichlet",
    "LLP_MEANS_PROX",
    "LLP_MEANS",
    "LLP_COVS",
]

# Lau, Liu & Pock (2023) reference scripts (github.com/192459/lmc-atomi).
LLP_MEANS = np.array([[0.0, 0.0], [-2.0, 3.0], [2.0, -3.0], [3.0, 3.0], [-2.0, -2.0]])
LLP_MEANS_PROX = np.array([[3.0, 3.0], [-4.0, 6.0], [4.0, -6.0], [5.0, 5.0], [-4.0, -4.0]])
LLP_COVS = np.array(
    [
        [[1.0, -0.5], [-0.5, 1.0]],
        [[0.5, 0.2], [0.2, 0.7]],
        [[0.5, 0.1], [0.1, 0.9]],
        [[0.8, 0.02], [0.02, 0.3]],
        [[1.2, 0.05], [0.05, 0.8]],
    ]
)


def _zero(x: jax.Array) -> jax.Array:
    return jnp.zeros((), x.dtype)


def _positive(name: str, value: Any) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}.")
    return value


def _components(n_components: int) -> np.ndarray:
    """Indices of the LLP components for ``n`` (their n = 4 uses components 2..5)."""
    if n_components not in (1, 2, 3, 4, 5):
        raise ValueError(f"n_components must be 1..5 (the LLP setup), got {n_components!r}.")
    return np.arange(1, 5) if n_components == 4 else np.arange(n_components)


def _rejection(key: jax.Array, n: int, propose, log_accept, batch_hint: int) -> jax.Array:
    """``n`` draws of ``propose`` accepted with probability ``exp(log_accept)`` (host loop)."""
    accepted, total = [], 0
    while total < n:
        key, propose_key, accept_key = jax.random.split(key, 3)
        draws = propose(propose_key, batch_hint)
        keep = jnp.log(jax.random.uniform(accept_key, (batch_hint,))) < log_accept(draws)
        kept = np.asarray(draws)[np.asarray(keep)]
        accepted.append(kept)
        total += kept.shape[0]
    return jnp.asarray(np.concatenate(accepted)[:n])


def _grid_moments(log_density_np, lows, highs, points: int = 1201) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a 1-D or 2-D density by the trapezoid rule on a grid."""
    axes = [np.linspace(lo, hi, points) for lo, hi in zip(lows, highs)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    log_p = log_density_np(mesh)
    weights = np.exp(log_p - log_p.max())

    def integral(values):
        out = values
        for axis in axes[::-1]:
            out = np.trapezoid(out, axis, axis=-1)
        return out

    z = integral(weights)
    mean = np.array([integral(weights * mesh[..., i]) for i in range(len(axes))]) / z
    centered = mesh - mean
    cov = np.array(
        [[integral(weights * centered[..., i] * centered[..., j]) for j in range(len(axes))] for i in range(len(axes))]
    ) / z
    return mean, cov


# ------------------------------------------------------------------ Laplace


def laplace(dim: int = 1, scale: float = 1.0) -> Target:
    r"""Laplace :math:`\prod_i \exp(-|x_i|/b)/(2b)` as ``nonsmooth = l1(1/b)`` (smooth part 0)."""
    b = _positive("scale", scale)

    def sample(key, n):
        return b * jax.random.laplace(key, (n, dim))

    return Target(
        _zero, dim, nonsmooth=l1(1.0 / b), name=f"laplace-{dim}d",
        truth=GroundTruth(sample=sample, mean=np.zeros(dim), cov=2 * b**2 * np.eye(dim)),
    )


# ------------------------------------------------------- LLP: GMM x Laplace


def laplace_gmm(n_components: int = 2, alpha: float = 0.15) -> Target:
    r"""Lau-Liu-Pock's ``prox_lmc`` target: :math:`\sum_k w_k N(x; \mu_k, \Sigma_k)\cdot\exp(-\alpha\|x\|_1)`.

    2-D, equal weights; means :data:`LLP_MEANS_PROX` (first ``n_components``; for
    ``n = 4`` components 2..5), covariances :data:`LLP_COVS`. Paper runs:
    ``alpha = 0.15``, smoothing ``0.25``, ``n = 2`` with step ``8e-2``.
    """
    alpha = _positive("alpha", alpha)
    picks = _components(n_components)
    likelihood = gaussian_mixture(np.ones(len(picks)), LLP_MEANS_PROX[picks], LLP_COVS[picks])

    def log_posterior_np(points):
        flat = points.reshape(-1, 2)
        values = np.asarray(jax.jit(jax.vmap(likelihood.logdensity))(jnp.asarray(flat)))
        return values.reshape(points.shape[:-1]) - alpha * np.abs(points).sum(-1)

    reach = np.abs(LLP_MEANS_PROX[picks]).max() + 6.0
    mean, cov = _grid_moments(log_posterior_np, [-reach, -reach], [reach, reach])

    def sample(key, n):
        return _rejection(
            key, n, likelihood.truth.sample, lambda x: -alpha * jnp.sum(jnp.abs(x), axis=-1), max(4 * n, 1024)
        )

    return Target(
        likelihood.logdensity, 2, nonsmooth=l1(alpha), name=f"laplace-gmm{n_components}",
        truth=GroundTruth(sample=sample, mean=mean, cov=cov),
    )


# ------------------------------------------------------- Laplacian mixture


def laplace_mixture(n_components: int = 5, alpha: float = 0.5, smoothing: Optional[float] = None) -> Target:
    r"""Lau-Liu-Pock's Laplacian mixture :math:`\sum_i \omega_i(\alpha/2)^2 e^{-\alpha\|x-\mu_i\|_1}` (2-D).

    Means :data:`LLP_MEANS`, equal weights. The log-density is nonsmooth
    (autodiff gives the a.e. gradient); with ``smoothing = lam`` it is the
    paper's Moreau-Yosida smoothed mixture, each :math:`\alpha|t|` replaced by
    its Huber envelope (:math:`t^2/(2\lambda)` for :math:`|t| \le \lambda\alpha`,
    :math:`\alpha|t| - \lambda\alpha^2/2` beyond). Ground truth (sampler,
    moments) is the exact, unsmoothed mixture.
    """
    alpha = _positive("alpha", alpha)
    picks = _components(n_components)
    means = LLP_MEANS[picks]
    weights = np.ones(len(picks)) / len(picks)
    log_norm = np.log(weights) + 2 * np.log(alpha / 2)
    means_j = jnp.asarray(means)
    lam = None if smoothing is None else _positive("smoothing", smoothing)

    def component_potential(x):
        t = jnp.abs(x - means_j)
        if lam is None:
            return alpha * jnp.sum(t, axis=-1)
        huber = jnp.where(t <= lam * alpha, t**2 / (2 * lam), alpha * t - lam * alpha**2 / 2)
        return jnp.sum(huber, axis=-1)

    def logdensity(x):
        return jax.scipy.special.logsumexp(jnp.asarray(log_norm) - component_potential(x))

    def sample(key, n):
        pick_key, noise_key = jax.random.split(key)
        component = jax.random.categorical(pick_key, jnp.log(jnp.asarray(weights)), shape=(n,))
        return means_j[component] + jax.random.laplace(noise_key, (n, 2)) / alpha

    mean = weights @ means
    second = (2 / alpha**2) * np.eye(2) + np.einsum("k,ki,kj->ij", weights, means, means)
    name = f"laplace-mixture{n_components}" + ("" if lam is None else f"-smoothed{lam:g}")
    return Target(
        logdensity, 2, name=name, truth=GroundTruth(sample=sample, mean=mean, cov=second - np.outer(mean, mean))
    )


# ---------------------------------------------------------- Bayesian lasso


def bayesian_lasso(dim: int = 2, num_observations: int = 20, alpha: float = 2.0, noise: float = 1.0, seed: int = 0) -> Target:
    r"""Bayesian lasso posterior :math:`\exp(-\|y - X\beta\|^2/(2\sigma^2) - \alpha\|\beta\|_1)`.

    Synthetic data from ``seed``: :math:`X_{ij} \sim N(0,1)`, true
    :math:`\beta = (1, 0, 1, 0, \dots)`, :math:`y = X\beta + \sigma\varepsilon`.
    Exact sampler: rejection from the Gaussian likelihood
    :math:`N(\hat\beta, \sigma^2(X^\top X)^{-1})` with acceptance
    :math:`\exp(-\alpha\|\beta\|_1)`. Mean and covariance by quadrature
    for ``dim <= 2`` (``None`` above).
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}.")
    if num_observations < dim:
        raise ValueError(f"num_observations ({num_observations}) must be >= dim ({dim}) for X^T X to be invertible.")
    alpha, sigma = _positive("alpha", alpha), _positive("noise", noise)
    rng = np.random.default_rng(seed)
    design = rng.normal(size=(num_observations, dim))
    beta_true = np.where(np.arange(dim) % 2 == 0, 1.0, 0.0)
    y = design @ beta_true + sigma * rng.normal(size=num_observations)
    precision = design.T @ design / sigma**2
    beta_hat = np.linalg.solve(design.T @ design, design.T @ y)
    chol_cov = np.linalg.cholesky(np.linalg.inv(precision))
    design_j, y_j = jnp.asarray(design), jnp.asarray(y)

    def logdensity(beta):
        residual = y_j - design_j @ beta
        return -0.5 * jnp.sum(residual**2) / sigma**2

    def propose(key, m):
        return jnp.asarray(beta_hat) + jax.random.normal(key, (m, dim)) @ jnp.asarray(chol_cov).T

    def sample(key, n):
        return _rejection(key, n, propose, lambda b: -alpha * jnp.sum(jnp.abs(b), axis=-1), max(4 * n, 1024))

    mean = cov = None
    if dim <= 2:
        spread = 8.0 * np.sqrt(np.diag(chol_cov @ chol_cov.T))

        gram, xty = design.T @ design, design.T @ y

        def log_posterior_np(points):
            # -||y - X b||^2 / (2 sigma^2) up to a constant, from X^T X and X^T y
            quadratic = np.einsum("...i,ij,...j->...", points, gram, points) - 2.0 * points @ xty
            return -0.5 * quadratic / sigma**2 - alpha * np.abs(points).sum(-1)

        mean, cov = _grid_moments(log_posterior_np, beta_hat - spread, beta_hat + spread, points=1201 if dim == 2 else 20001)
    return Target(
        logdensity, dim, nonsmooth=l1(alpha), name=f"bayesian-lasso-{dim}d",
        truth=GroundTruth(sample=sample, mean=mean, cov=cov),
    )


# -------------------------------------------------------- truncated Laplace


def _exp_moments(p: np.ndarray, q: np.ndarray, b: float) -> tuple[np.ndarray, ...]:
    """int_p^q x^k exp(-x/b) dx for k = 0, 1, 2 and 0 <= p <= q (elementwise)."""
    ep, eq = np.exp(-p / b), np.exp(-q / b)
    m0 = b * (ep - eq)
    m1 = b * ((p + b) * ep - (q + b) * eq)
    m2 = b * ((p**2 + 2 * b * p + 2 * b**2) * ep - (q**2 + 2 * b * q + 2 * b**2) * eq)
    return m0, m1, m2


def truncated_laplace_moments(lower: Any, upper: Any, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-coordinate mass split (negative side), mean and variance of exp(-|x|/b) on [lower, upper]."""
    low, high = np.asarray(lower, float), np.asarray(upper, float)
    pos = _exp_moments(np.maximum(low, 0.0), np.maximum(high, 0.0), scale)
    neg = _exp_moments(np.maximum(-high, 0.0), np.maximum(-low, 0.0), scale)  # mirrored: x -> -x
    z = pos[0] + neg[0]
    mean = (pos[1] - neg[1]) / z
    second = (pos[2] + neg[2]) / z
    return neg[0] / z, mean, second - mean**2


def truncated_laplace(lower: Any = -1.0, upper: Any = 2.0, scale: float = 1.0, dim: Optional[int] = None) -> Target:
    r"""Laplace :math:`\exp(-\|x\|_1/b)` restricted to the box :math:`[\ell, u]` (finite bounds).

    ``nonsmooth = l1(1/b)``, ``mirror = log_barrier(lower, upper)``; closed-form
    mean and (diagonal) covariance; exact sampler: pick the side of 0 with its
    mass, then invert the truncated exponential's CDF. ``dim`` broadcasts
    scalar bounds (default: the bounds' length, or 1).
    """
    b = _positive("scale", scale)
    low, high = np.asarray(lower, float), np.asarray(upper, float)
    if dim is None:
        dim = int(max(low.size, high.size))
    low, high = np.broadcast_to(low, (dim,)).copy(), np.broadcast_to(high, (dim,)).copy()
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ValueError(f"truncated_laplace needs finite bounds with lower < upper, got {lower!r}, {upper!r}.")
    negative_mass, mean, var = truncated_laplace_moments(low, high, b)
    pos_range = (np.maximum(low, 0.0), np.maximum(high, 0.0))
    neg_range = (np.maximum(-high, 0.0), np.maximum(-low, 0.0))

    def truncated_exponential(u, p, q):
        # inverse CDF of exp(-x/b) on [p, q]
        return p - b * jnp.log1p(-u * (-jnp.expm1(-(q - p) / b)))

    def sample(key, n):
        side_key, u_key = jax.random.split(key)
        negative = jax.random.uniform(side_key, (n, dim)) < negative_mass
        u = jax.random.uniform(u_key, (n, dim))
        positive_draw = truncated_exponential(u, *pos_range)
        negative_draw = -truncated_exponential(u, *neg_range)
        return jnp.clip(jnp.where(negative, negative_draw, positive_draw), low, high)

    def support(x):
        return jnp.all((x >= low) & (x <= high))

    return Target(
        _zero, dim, nonsmooth=l1(1.0 / b), mirror=log_barrier(low, high), support=support,
        name=f"truncated-laplace-{dim}d", truth=GroundTruth(sample=sample, mean=mean, cov=np.diag(var)),
    )


# ---------------------------------------------------------------- Dirichlet


def _tilted_s_moments(a_rest: float, a_last: float, tilt: float) -> tuple[float, float]:
    """E[s], E[s^2] for s ~ Beta(a_rest, a_last) tilted by exp(-tilt s) (quadrature)."""
    def moment(k):
        return integrate.quad(
            lambda s: s ** (a_rest - 1 + k) * (1 - s) ** (a_last - 1) * np.exp(-tilt * s), 0.0, 1.0,
            epsabs=0.0, epsrel=1e-12, limit=200,
        )[0]

    z = moment(0)
    return moment(1) / z, moment(2) / z


def dirichlet(alpha: Any = (2.0, 3.0, 4.0), tilt: float = 0.0) -> Target:
    r"""Dirichlet(alpha) on the D-simplex in reduced coordinates (``dim = D - 1``).

    :math:`\log p(x) = \sum_{i<D}(\alpha_i - 1)\log x_i + (\alpha_D - 1)\log x_D`,
    :math:`x_D = 1 - \sum_{i<D} x_i`; ``mirror = entropic_simplex()``. With
    ``tilt = t > 0`` the target also carries ``nonsmooth = l1(t)``: the density
    is multiplied by :math:`\exp(-t\sum_{i<D}x_i) = \exp(-t(1 - x_D))`. The tilt
    only involves :math:`s = 1 - x_D`, so :math:`x_{1..D-1}/s` stays
    Dirichlet(:math:`\alpha_{1..D-1}`) independent of :math:`s \sim`
    Beta(:math:`A', \alpha_D`) tilted by :math:`e^{-ts}` (:math:`A' = \sum_{i<D}\alpha_i`):
    moments from :math:`E[s], E[s^2]` (quadrature); exact sampler by rejection
    of :math:`s` (acceptance :math:`e^{-ts}`).
    """
    a = np.asarray(alpha, float)
    if a.ndim != 1 or a.size < 2 or np.any(a <= 0) or not np.all(np.isfinite(a)):
        raise ValueError(f"dirichlet alpha must be >= 2 positive numbers, got {alpha!r}.")
    tilt = float(tilt)
    if not np.isfinite(tilt) or tilt < 0:
        raise ValueError(f"tilt must be a finite number >= 0, got {tilt!r}.")
    dim = a.size - 1
    a_rest_vec, a_last = a[:-1], a[-1]
    a_rest = a_rest_vec.sum()
    exponents, last_exponent = jnp.asarray(a_rest_vec - 1.0), a_last - 1.0

    def logdensity(x):
        return jnp.sum(exponents * jnp.log(x)) + last_exponent * jnp.log1p(-jnp.sum(x))

    if tilt == 0.0:
        s1 = a_rest / a.sum()
        s2 = a_rest * (a_rest + 1) / (a.sum() * (a.sum() + 1))
    else:
        s1, s2 = _tilted_s_moments(a_rest, a_last, tilt)
    mean = s1 * a_rest_vec / a_rest
    second = s2 * (np.outer(a_rest_vec, a_rest_vec) + np.diag(a_rest_vec)) / (a_rest * (a_rest + 1))
    cov = second - np.outer(mean, mean)

    def sample_s(key, n):
        if tilt == 0.0:
            return jax.random.beta(key, a_rest, a_last, (n,))
        draw_s = lambda k, m: jax.random.beta(k, a_rest, a_last, (m,))  # noqa: E731
        return _rejection(key, n, draw_s, lambda s: -tilt * s, max(4 * n, 1024))

    def sample(key, n):
        s_key, u_key = jax.random.split(key)
        if dim == 1:
            return sample_s(s_key, n)[:, None]
        directions = jax.random.dirichlet(u_key, jnp.asarray(a_rest_vec), (n,))
        return sample_s(s_key, n)[:, None] * directions

    def support(x):
        return jnp.all(x > 0) & (jnp.sum(x) < 1)

    return Target(
        logdensity, dim, nonsmooth=l1(tilt) if tilt > 0 else None, mirror=entropic_simplex(), support=support,
        name=f"dirichlet-{a.size}" + (f"-tilt{tilt:g}" if tilt else ""),
        truth=GroundTruth(sample=sample, mean=mean, cov=cov),
    )
