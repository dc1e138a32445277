r"""Stochastic normalizing flows (Wu, Köhler & Noé, NeurIPS 2020): training and sampling.

An SNF (:mod:`stochflow.flows`) moves :math:`z \sim N(0, I)` through RealNVP
couplings and stochastic blocks (Metropolis, MALA, Langevin steps toward
:math:`u_\lambda = (1-\lambda) u_Z + \lambda u_X`); each sample carries the log
path weight :math:`\log w = u_Z(z) - u_X(x) + \sum_t \Delta S_t`.

Training (:func:`fit_snf`) minimises, with Adam by default,

.. math::

    L = \beta\, E_{x \sim \text{data}}\big[u_Z(z) - \textstyle\sum_t \Delta S^{inv}_t\big]
        + (1 - \beta)\, E_{z \sim N(0,I)}\big[-\log w\big],

the maximum-likelihood loss on given samples (backward path) and the
energy-based loss, :math:`KL(\text{forward path} \,\|\, \text{backward path}) - \log Z_X`
(forward path; gradients by reparameterisation through every block, as in the
reference code). :math:`\beta` is ``ml_weight`` (the reference's
:math:`w_{ML} / (w_{ML} + w_{KL})`), a number or a schedule over iterations.

Sampling (:func:`snf`): a stochflow :class:`~stochflow.samplers.base.Sampler`
whose every step draws a fresh, independent batch (one sample per particle);
``info.log_weight`` is the log importance weight, to use with
``sf.diagnostics.importance_*``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import warnings
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ..flows.flow import StochasticFlow, build_flow
from ..flows.layers import MALA, Langevin, Metropolis, RealNVP, spec_from_dict
from ..target import Target
from ..kernels.checks import check_int, check_key, check_positions, check_positive
from ..kernels.finite import all_finite, finite_rows, keep_if
from ..kernels.particles import ALL_PARTICLES, ParticleAxis
from .base import Sampler

Array = jax.Array
MLWeight = Union[float, Callable[[Array], Array]]

__all__ = ["SNFState", "SNFInfo", "snf", "fit_snf", "save_snf", "load_snf"]

_SPEC_TYPES = (RealNVP, Metropolis, MALA, Langevin)
_FILE_FORMAT = "stochflow-snf-1"


class SNFState(NamedTuple):
    """The current batch: one independent flow sample per particle."""

    position: Array
    logdensity: Array
    log_weight: Array


class SNFInfo(NamedTuple):
    logdensity: Array
    log_weight: Array
    n_grad: Array
    diverging: Array


def _check_flow(flow: Any) -> StochasticFlow:
    if not isinstance(flow, StochasticFlow):
        raise TypeError(
            f"expected a StochasticFlow (from sf.fit_snf or sf.load_snf), got {type(flow).__name__}."
        )
    return flow


def _check_target(target: Any, dim: Optional[int] = None) -> Target:
    if not isinstance(target, Target):
        raise TypeError(f"target must be a stochflow Target, got {type(target).__name__}.")
    if dim is not None and target.dim != dim:
        raise ValueError(
            f"the flow is built for dim={dim} but the target has dim={target.dim}; "
            "train a flow for this target with sf.fit_snf."
        )
    return target


def _draw(flow: StochasticFlow, target: Target, key: Array, num: int) -> tuple[SNFState, SNFInfo]:
    position, log_weight, logdensity = jax.vmap(flow.sample_one, in_axes=(0, None))(
        jax.random.split(key, num), target
    )
    finite = finite_rows(position, log_weight, logdensity)
    # A path that met a non-finite value gets weight zero and is flagged.
    log_weight = jnp.where(finite, log_weight, -jnp.inf)
    n_grad = jnp.full((num,), flow.target_evaluations, jnp.int32)
    return SNFState(position, logdensity, log_weight), SNFInfo(logdensity, log_weight, n_grad, ~finite)


def snf(flow: StochasticFlow) -> Sampler:
    """A trained SNF as a stochflow sampler: every step draws a fresh batch.

    ``init`` ignores the positions it is given (except their number): the
    state is a first batch of flow samples. ``step`` draws a new independent
    batch. ``info`` (hence ``Trace.stats``) has ``logdensity``, ``log_weight``
    (the SNF log importance weight; ``-inf`` for a path that met a non-finite
    value, which is then flagged ``diverging``), ``n_grad`` (target log-density
    or gradient evaluations per sample: every stochastic block with lam > 0
    spends ``num_steps + 1``, plus one for the weight) and ``diverging``.
    """
    flow = _check_flow(flow)

    def init(target: Target, positions: Array, key: Array) -> SNFState:
        _check_target(target, flow.dim)
        positions = check_positions(target, positions)
        return _draw(flow, target, key, positions.shape[0])[0]

    def step(target: Target, state: SNFState, key: Array, axis: ParticleAxis = ALL_PARTICLES) -> tuple[SNFState, SNFInfo]:
        del axis  # a fresh batch each step; XLA partitions it when sharded
        return _draw(flow, target, key, state.position.shape[0])

    params = {"dim": flow.dim, "layers": flow.hyperparameters()["layers"]}
    return Sampler(init=init, step=step, name="snf", params=params)


# --------------------------------------------------------------------------- training


def _initial_flow(layers: Any, target: Target, key: Array) -> StochasticFlow:
    if isinstance(layers, StochasticFlow):
        _check_target(target, layers.dim)
        return layers
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise TypeError(
            "layers must be a list of layer specs (sf.flows.RealNVP, Metropolis, MALA, Langevin) "
            f"or a StochasticFlow to train further, got {type(layers).__name__}."
        )
    if len(layers) == 0:
        raise ValueError(
            "layers is empty: give at least one layer, e.g. sf.flows.realnvp_snf_layers() "
            "or [sf.flows.RealNVP(), sf.flows.RealNVP(flip=True), sf.flows.Metropolis(20, 0.25, 1.0)]."
        )
    bad = [type(layer).__name__ for layer in layers if not isinstance(layer, _SPEC_TYPES + (dict,))]
    if bad:
        raise TypeError(f"layers must be layer specs (sf.flows.RealNVP, Metropolis, MALA, Langevin); got {bad}.")
    specs = [spec_from_dict(layer) if isinstance(layer, dict) else layer for layer in layers]
    for spec in specs:
        if isinstance(spec, RealNVP):
            spec.condition_mask(target.dim)  # raises on a mask that does not fit the target
    return build_flow(specs, target.dim, key)


def _check_samples(samples: Any, dim: int) -> Optional[Array]:
    if samples is None:
        return None
    samples = jnp.asarray(samples)
    if samples.ndim != 2 or samples.shape[1] != dim or samples.shape[0] < 1:
        raise ValueError(f"samples must have shape (n, dim) = (n, {dim}), got {samples.shape}.")
    if not bool(jnp.all(jnp.isfinite(samples))):
        raise ValueError("samples contain non-finite values; drop them before training.")
    return samples


@dataclasses.dataclass(frozen=True)
class _ConstantWeight:
    """A constant ML weight (hashable, so the trainer cache can reuse compiled runs)."""

    beta: float

    def __call__(self, step: Array) -> Array:
        return jnp.asarray(self.beta)


def _ml_schedule(ml_weight: MLWeight, has_samples: bool) -> tuple[Callable[[Array], Array], Any]:
    if callable(ml_weight):
        if not has_samples:
            raise ValueError("an ml_weight schedule needs samples= (data for the maximum-likelihood loss).")
        return ml_weight, "schedule"
    try:
        beta = float(ml_weight)
    except (TypeError, ValueError):
        raise TypeError(f"ml_weight must be a number in [0, 1] or a schedule step -> weight, got {ml_weight!r}.") from None
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"ml_weight must lie in [0, 1], got {beta}.")
    if beta > 0.0 and not has_samples:
        raise ValueError(
            f"ml_weight={beta} asks for maximum likelihood but samples=None; pass samples= "
            "(an (n, dim) array of target draws) or set ml_weight=0."
        )
    return _ConstantWeight(beta), beta


def _check_optimizer(optimizer: Any, learning_rate: Optional[float]) -> tuple[optax.GradientTransformation, Any]:
    if optimizer is None:
        rate = 5e-3 if learning_rate is None else check_positive("learning_rate", learning_rate)
        return optax.adam(rate), rate
    if learning_rate is not None:
        raise ValueError("pass either learning_rate= (Adam is built) or optimizer=, not both.")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer must be an optax GradientTransformation, got {type(optimizer).__name__}.")
    return optimizer, "custom"


def _losses(params, static, target, key, data, batch_size, beta):
    """(loss, (kl, nll)) of one iteration: energy-based KL and ML on a data batch."""
    flow = eqx.combine(params, static)
    kl_key, data_key, path_key = jax.random.split(key, 3)
    _, log_weight, _ = jax.vmap(flow.sample_one, in_axes=(0, None))(jax.random.split(kl_key, batch_size), target)
    kl = -jnp.mean(log_weight)
    if data is None:
        return kl, (kl, jnp.zeros_like(kl))
    batch = data[jax.random.randint(data_key, (batch_size,), 0, data.shape[0])]  # with replacement, as the reference
    path_ll = jax.vmap(flow.path_log_likelihood, in_axes=(0, 0, None))(
        batch, jax.random.split(path_key, batch_size), target
    )
    nll = -jnp.mean(path_ll)
    return beta * nll + (1.0 - beta) * kl, (kl, nll)


@functools.lru_cache(maxsize=16)
def _make_trainer(static, target, optimizer, batch_size, schedule, chunk):
    """The jitted runner of ``chunk`` iterations; cached, so retraining the same
    architecture with the same optimizer and schedule objects does not recompile."""
    grad_fn = jax.value_and_grad(_losses, has_aux=True)

    def one_iteration(carry, index):
        params, opt_state, key, data = carry
        beta = schedule(index)
        (loss, (kl, nll)), grads = grad_fn(params, static, target, jax.random.fold_in(key, index), data, batch_size, beta)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = all_finite(loss, grads)
        # A non-finite loss or gradient skips the update (counted and reported).
        params, opt_state = keep_if(finite, (new_params, new_opt_state), (params, opt_state))
        carry = (params, opt_state, key, data)
        return carry, jnp.stack([loss, kl, nll, (~finite).astype(loss.dtype)])

    @jax.jit
    def run(params, opt_state, key, data, first):
        (params, opt_state, _, _), records = jax.lax.scan(
            one_iteration, (params, opt_state, key, data), first + jnp.arange(chunk)
        )
        return params, opt_state, records

    return run


def fit_snf(
    target: Target,
    key: Array,
    layers: Union[Sequence[Any], StochasticFlow],
    num_iterations: int = 1000,
    *,
    learning_rate: Optional[float] = None,
    optimizer: Optional[optax.GradientTransformation] = None,
    batch_size: int = 128,
    samples: Optional[Any] = None,
    ml_weight: MLWeight = 0.0,
    progress: bool = True,
    return_history: bool = False,
) -> Union[StochasticFlow, tuple[StochasticFlow, dict]]:
    """Train a stochastic normalizing flow for ``target``.

    Parameters
    ----------
    target
        The :class:`~stochflow.Target` (its ``logdensity`` is ``-u_X`` up to a constant).
    key
        JAX PRNG key: initial weights, prior draws, stochastic blocks, data batches.
    layers
        Layer specs (``sf.flows.RealNVP``, ``Metropolis``, ``MALA``, ``Langevin``,
        e.g. ``sf.flows.realnvp_snf_layers()``), or a :class:`StochasticFlow` to
        train further.
    num_iterations
        Optimiser steps.
    learning_rate
        Adam's learning rate (default 5e-3, the reference's); or give
        ``optimizer`` (any optax transformation) instead.
    batch_size
        Prior draws per iteration for the energy-based loss, and data points
        for the ML loss.
    samples
        Optional ``(n, dim)`` target draws for maximum likelihood (backward path).
    ml_weight
        Weight beta of the ML loss in ``beta ML + (1 - beta) KL``: a number in
        [0, 1] or a schedule ``iteration -> beta`` (e.g. the paper's 300
        iterations of pure ML then 300 at 0.5:
        ``lambda i: jnp.where(i < 300, 1.0, 0.5)``).
    progress
        Show a tqdm bar with the running loss.
    return_history
        Also return ``{"loss", "kl", "nll"}`` arrays of shape ``(num_iterations,)``.

    Returns the trained :class:`StochasticFlow` (its ``training`` records these
    settings; save it with :func:`save_snf`). Iterations whose loss or
    gradient is not finite are skipped, counted and reported in a warning.
    """
    target = _check_target(target)

    key = check_key(key)
    num_iterations = check_int("num_iterations", num_iterations, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    optimizer, rate = _check_optimizer(optimizer, learning_rate)
    data = _check_samples(samples, target.dim)
    schedule, beta_record = _ml_schedule(ml_weight, data is not None)
    init_key, train_key = jax.random.split(key)
    flow = _initial_flow(layers, target, init_key)

    params, static = eqx.partition(flow, eqx.is_inexact_array)
    if not jax.tree_util.tree_leaves(params):
        raise ValueError(
            "the flow has no trainable layer (stochastic blocks have fixed hyperparameters); add "
            "sf.flows.RealNVP layers, or use sf.flows.build_flow to sample with stochastic blocks alone."
        )
    opt_state = optimizer.init(params)
    chunk = max(1, math.ceil(num_iterations / 50))
    runners: dict[int, Callable] = {}
    history = np.zeros((num_iterations, 4))
    bar = tqdm(total=num_iterations, disable=not progress, desc="fit_snf", unit="it")
    try:
        for first in range(0, num_iterations, chunk):
            size = min(chunk, num_iterations - first)
            if size not in runners:
                runners[size] = _make_trainer(static, target, optimizer, batch_size, schedule, size)
            params, opt_state, records = runners[size](params, opt_state, train_key, data, first)
            history[first : first + size] = np.asarray(records)
            bar.update(size)
            bar.set_postfix(loss=f"{history[first:first + size, 0].mean():.4g}", refresh=False)
    finally:
        bar.close()

    skipped = int(history[:, 3].sum())
    if skipped:
        warnings.warn(
            f"fit_snf: {skipped} of {num_iterations} iterations had a non-finite loss or gradient "
            "and were skipped; a smaller learning rate or stochastic step size usually helps.",
            RuntimeWarning,
            stacklevel=2,
        )
    settings = dict(flow.training)
    settings.update(
        target=target.name,
        iterations=settings.get("iterations", 0) + num_iterations,
        batch_size=batch_size,
        learning_rate=rate,
        ml_weight=beta_record,
        num_samples=0 if data is None else int(data.shape[0]),
        skipped_iterations=settings.get("skipped_iterations", 0) + skipped,
    )
    trained = eqx.combine(params, static)
    trained = StochasticFlow(trained.layers, trained.dim, trained.specs, tuple(sorted(settings.items())))
    if return_history:
        names = ("loss", "kl", "nll")
        return trained, {name: history[:, i] for i, name in enumerate(names)}
    return trained


# --------------------------------------------------------------------------- save / load


def save_snf(path: str, flow: StochasticFlow) -> None:
    """Write ``flow`` to ``path``: one JSON line of hyperparameters, then equinox-serialised weights."""
    flow = _check_flow(flow)
    header = {"format": _FILE_FORMAT, **flow.hyperparameters()}
    with open(path, "wb") as file:
        file.write((json.dumps(header) + "\n").encode())
        eqx.tree_serialise_leaves(file, flow)


def load_snf(path: str) -> StochasticFlow:
    """Read a flow written by :func:`save_snf` (hyperparameters rebuild the modules, then the weights)."""
    with open(path, "rb") as file:
        header = json.loads(file.readline().decode())
        if header.get("format") != _FILE_FORMAT:
            raise ValueError(f"{path} is not a stochflow SNF file (format {header.get('format')!r}).")
        skeleton = build_flow([spec_from_dict(s) for s in header["layers"]], header["dim"], jax.random.key(0))
        skeleton = StochasticFlow(
            skeleton.layers, skeleton.dim, skeleton.specs, tuple(sorted(header.get("training", {}).items()))
        )
        return eqx.tree_deserialise_leaves(file, skeleton)
