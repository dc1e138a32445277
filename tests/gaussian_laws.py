"""Exact stationary laws of Langevin discretisations on a 1-D Gaussian target.

On N(0, sigma^2) every splitting step is a linear map plus Gaussian noise,
z -> F z + N(0, Q) with z = (x, p). Composing the sub-steps gives (F, Q) of a
whole step; its stationary covariance S solves S = F S F^T + Q. These are
derived here from the schemes' definitions, independently of the kernels, so a
kernel that implements a scheme wrongly disagrees with its law.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm, solve_discrete_lyapunov


def compose(*steps):
    """(F, Q) of applying ``steps`` in order (each a pair (F_i, Q_i))."""
    F, Q = np.eye(2), np.zeros((2, 2))
    for M, R in steps:
        F, Q = M @ F, M @ Q @ M.T + R
    return F, Q


def kick(t, sigma2):
    return np.array([[1.0, 0.0], [-t / sigma2, 1.0]]), np.zeros((2, 2))


def drift(t, mass):
    return np.array([[1.0, t / mass], [0.0, 1.0]]), np.zeros((2, 2))


def ou_momentum(t, friction, mass):
    c = np.exp(-friction * t)
    return np.diag([1.0, c]), np.diag([0.0, (1.0 - c**2) * mass])


def ou_stream(t, friction, mass):
    """Exact law of dx = p/m dt, dp = -gamma p dt + sqrt(2 gamma m) dW by Van Loan's method."""
    A = np.array([[0.0, 1.0 / mass], [0.0, -friction]])
    diffusion = np.diag([0.0, 2.0 * friction * mass])
    block = np.block([[-A, diffusion], [np.zeros((2, 2)), A.T]]) * t
    E = expm(block)
    F = E[2:, 2:].T
    return F, F @ E[:2, 2:]


def underdamped_law(scheme, step_size, friction, sigma2, mass=1.0):
    """Stationary covariance of (x, p) for the scheme as stochflow records it."""
    h = step_size
    if scheme == "baoab":
        steps = [kick(h / 2, sigma2), drift(h / 2, mass), ou_momentum(h, friction, mass),
                 drift(h / 2, mass), kick(h / 2, sigma2)]
    elif scheme == "obabo":
        steps = [ou_momentum(h / 2, friction, mass), kick(h / 2, sigma2), drift(h, mass),
                 kick(h / 2, sigma2), ou_momentum(h / 2, friction, mass)]
    elif scheme == "ubu":  # recorded at the force evaluations: B(h) then U(h)
        steps = [kick(h, sigma2), ou_stream(h, friction, mass)]
    else:
        raise ValueError(scheme)
    return solve_discrete_lyapunov(*compose(*steps))


def ula_variance(step_size, sigma2):
    """ULA on N(0, sigma^2): x' = (1 - h / sigma^2) x + sqrt(2h) xi."""
    a = 1.0 - step_size / sigma2
    return 2.0 * step_size / (1.0 - a**2)
