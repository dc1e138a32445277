"""NumPyro both ways: a model as a stochflow Target, a stochflow sampler as a NumPyro kernel.

* :func:`from_numpyro` turns a model into a :class:`~stochflow.Target` on
  NumPyro's unconstrained space (the potential ``-log p`` with the change-of-
  variables Jacobian, from :func:`numpyro.infer.util.initialize_model`), with
  ``target.constrain(positions)`` giving each latent and deterministic site back
  by name in constrained space, and NumPyro's init strategies as default starts.
* :func:`numpyro_kernel` wraps any stochflow chain sampler as a
  :class:`numpyro.infer.mcmc.MCMCKernel`, so it runs under
  ``numpyro.infer.MCMC`` like ``NUTS(model)`` (``chain_method`` "sequential",
  "vectorized" or "parallel"), with ``get_samples``, ``print_summary``,
  ``get_extra_fields`` and ``arviz.from_numpyro``.

Discrete latent sites are refused with an error that names them: the
gradient-based samplers need continuous latents.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import constrain_fn, initialize_model
from numpyro.util import is_prng_key

from ..kernels.finite import all_finite
from ..samplers.base import Sampler
from ..target import Target

Array = jax.Array

__all__ = ["from_numpyro", "numpyro_kernel", "NumPyroKernelState"]


def _model_name(model: Callable) -> str:
    return getattr(model, "__name__", type(model).__name__)


def _started_trace(model: Callable, model_args: tuple, model_kwargs: dict, init_strategy: Callable) -> dict:
    """The model traced once with its latent sites set by ``init_strategy``, as NumPyro's
    ``initialize_model`` traces it: the prior is not sampled, so sites without a sampler
    (``ImproperUniform``, Stan's flat priors) and priors whose draws the likelihood refuses
    are fine. NumPyro's own errors for bad model arguments surface here."""
    started = handlers.substitute(handlers.seed(model, rng_seed=0), substitute_fn=init_strategy)
    return handlers.trace(started).get_trace(*model_args, **model_kwargs)


def _check_continuous(model: Callable, model_args: tuple, model_kwargs: dict, init_strategy: Callable) -> None:
    """Refuse discrete latent sites, naming them (before NumPyro would enumerate them).

    The model is traced abstractly (``jax.eval_shape``): evaluated eagerly, each of its
    operations would be compiled on its own the first time it is seen."""
    discrete: list[str] = []

    def find_discrete(_: Array) -> Array:
        trace = _started_trace(model, model_args, model_kwargs, init_strategy)
        discrete.extend(
            f"{name!r} ({type(site['fn']).__name__})"
            for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"] and site["fn"].support.is_discrete
        )
        return jnp.zeros(())

    try:
        jax.eval_shape(find_discrete, jnp.zeros(()))
    except jax.errors.JAXTypeError:  # a model that needs concrete values (subsampled plates): eagerly
        discrete.clear()
        find_discrete(jnp.zeros(()))
    if discrete:
        raise ValueError(
            f"model {_model_name(model)!r} has discrete latent site(s) {', '.join(discrete)}; "
            "stochflow's samplers move continuous latents by gradients. Marginalise the discrete "
            "site(s) out of the model (e.g. sum over their values with logsumexp, or NumPyro's "
            "enumeration with infer={'enumerate': 'parallel'} under funsor), or use NumPyro's "
            "mixed samplers (DiscreteHMCGibbs, MixedHMC)."
        )


def _nonfinite_sites(model: Callable, model_args: tuple, model_kwargs: dict) -> list[str]:
    """Sites whose log-density is not finite at a NumPyro uniform start."""
    trace = _started_trace(model, model_args, model_kwargs, init_to_uniform)
    bad = []
    for name, site in trace.items():
        if site["type"] == "sample":
            log_prob = jnp.sum(site["fn"].log_prob(site["value"]))
            if not np.isfinite(np.asarray(log_prob)):
                bad.append(name)
    return bad


class _CompiledInitialize(NamedTuple):
    """NumPyro's ``initialize_model`` for one model and its data, compiled as one program.

    Eagerly, its search for a valid start evaluates the model and its gradient operation by
    operation, each compiled on its own the first time it is seen (3-7 s on the posteriordb
    models). ``starts(keys)`` returns the ``ParamInfo`` (starts, potential energy and
    gradient there) for one key or a batch; ``traced`` holds the ``ModelInfo`` of its first
    trace, whose ``potential_fn`` is NumPyro's ``partial(potential_energy, model,
    model_args, model_kwargs)`` and holds no tracer."""

    starts: Callable[[Array], Any]
    traced: list


def _compile_initialize(model, model_args, model_kwargs, init_strategy) -> _CompiledInitialize:
    traced: list = []

    def initialize(key: Array) -> Any:
        info = initialize_model(key, model, init_strategy=init_strategy, model_args=model_args,
                                model_kwargs=model_kwargs)
        if not traced:  # the first trace's potential serves every later one (new batch sizes)
            traced.append(info)
        return info.param_info

    return _CompiledInitialize(jax.jit(initialize), traced)


def _initialize(model, model_args, model_kwargs, key, init_strategy, compiled: Optional[_CompiledInitialize] = None):
    """The ``ModelInfo`` of ``initialize_model`` at ``key``, by the compiled program. A model
    NumPyro finds no valid start for, or one with ``param``/``mutable`` sites (whose values
    the potential would close over), is initialised eagerly (NumPyro's own way, and its errors)."""
    compiled = compiled or _compile_initialize(model, model_args, model_kwargs, init_strategy)
    param_info = compiled.starts(key)
    info = compiled.traced[0]
    stateful = any(site["type"] in ("param", "mutable") for site in info.model_trace.values())
    # Under NumPyro's pmap/vmap of chains the key is traced: no concrete check, as NumPyro does.
    traced = isinstance(key, jax.core.Tracer)
    if not stateful and (traced or bool(all_finite(param_info.potential_energy, param_info.z_grad))):
        return info._replace(param_info=param_info, postprocess_fn=None, model_trace=None)
    return _initialize_eagerly(model, model_args, model_kwargs, key, init_strategy)


def _initialize_eagerly(model, model_args, model_kwargs, key, init_strategy):
    try:
        return initialize_model(
            key, model, init_strategy=init_strategy, model_args=model_args, model_kwargs=model_kwargs
        )
    except RuntimeError as err:
        if "Cannot find valid initial parameters" not in str(err):
            raise
        sites = _nonfinite_sites(model, model_args, model_kwargs)
        where = f" at site(s) {', '.join(map(repr, sites))}" if sites else ""
        raise ValueError(
            f"model {_model_name(model)!r}: the log-density (or its gradient) is NaN or infinite at "
            f"every start NumPyro tried{where}. Check those sites' parameters and observed values "
            "(e.g. a negative scale, data outside the likelihood's support)."
            + ("" if jax.config.jax_enable_x64 else
               " In float32 a Cholesky factor or an exp can overflow where float64 is fine: try "
               "jax.config.update('jax_enable_x64', True) before building the model's data.")
        ) from err


def from_numpyro(
    model: Callable,
    *model_args: Any,
    init_strategy: Callable = init_to_uniform,
    **model_kwargs: Any,
) -> Target:
    """A NumPyro model's posterior as a Target on the unconstrained space.

    Parameters
    ----------
    model
        A NumPyro model function.
    *model_args, **model_kwargs
        The model's arguments (data), as they would be given to ``MCMC.run``.
    init_strategy
        NumPyro init strategy for the default starts of ``sf.sample``
        (default ``init_to_uniform``: uniform on (-2, 2) in unconstrained space,
        retried until the density and gradient are finite).

    The returned target has, besides ``logdensity`` (``-potential_energy``):

    * ``constrain(positions)``: ``positions`` of shape ``(..., dim)`` to a dict
      site name -> constrained values of shape ``(..., *site_shape)``, the
      deterministic sites included;
    * ``init(key, n)``: ``n`` valid starts from ``init_strategy``;
    * ``unravel(x)``: the dict of unconstrained site values a flat ``x`` holds.
    """
    _check_continuous(model, model_args, model_kwargs, init_strategy)
    compiled = _compile_initialize(model, model_args, model_kwargs, init_strategy)
    info = _initialize(model, model_args, model_kwargs, jax.random.key(0), init_strategy, compiled)
    flat, unravel = ravel_pytree(info.param_info.z)
    if flat.shape[0] == 0:
        raise ValueError(
            f"the NumPyro model {_model_name(model)!r} has no latent sites to sample: every sample site is "
            "observed (obs=...) or fixed by a handler. Leave a site unobserved, or check the data passed "
            "as model arguments."
        )

    def logdensity(position: Array) -> Array:
        return -info.potential_fn(unravel(position))

    def constrain(positions: Any) -> dict[str, np.ndarray]:
        positions = jnp.asarray(positions)
        batch_shape = positions.shape[:-1]
        params = jax.vmap(unravel)(positions.reshape(-1, positions.shape[-1]))
        values = constrain_fn(model, model_args, model_kwargs, params, return_deterministic=True, batch_ndims=1)
        return {name: np.asarray(v).reshape(batch_shape + v.shape[1:]) for name, v in values.items()}

    def init(key: Array, num_particles: int) -> Array:
        starts = _initialize(
            model, model_args, model_kwargs, jax.random.split(key, num_particles), init_strategy, compiled
        )
        return jax.vmap(lambda z: ravel_pytree(z)[0])(starts.param_info.z)

    target = Target(logdensity, dim=int(flat.shape[0]), name=_model_name(model), init=init, constrain=constrain)
    target.unravel = unravel
    return target


class NumPyroKernelState(NamedTuple):
    """What NumPyro's MCMC carries between iterations (one chain, or a batch of them).

    ``z`` is the dict of unconstrained site values (the sample field); the
    stochflow sampler's own state for the chain is ``inner`` (one particle).
    """

    i: Array
    z: Any
    inner: Any
    potential_energy: Array
    accept_prob: Array
    mean_accept_prob: Array  # running mean over the current phase (warmup, then sampling)
    diverging: Array
    n_grad: Array
    rng_key: Array


class _StochflowKernel(MCMCKernel):
    """A stochflow chain sampler as a :class:`numpyro.infer.mcmc.MCMCKernel`."""

    sample_field = "z"
    default_fields = ("z", "diverging")

    def __init__(self, sampler: Sampler, model=None, potential_fn=None, init_strategy=init_to_uniform):
        self.sampler = sampler
        self.model = model
        self.potential_fn = potential_fn
        self.init_strategy = init_strategy
        self._num_warmup = 0
        self._target: Optional[Target] = None
        self._unravel: Optional[Callable] = None
        self._postprocess: Optional[Callable] = None

    # -- set-up ------------------------------------------------------------
    def _build_target(self, key, init_params, model_args, model_kwargs):
        """Target, unravel and the flat starting positions (one row per chain)."""
        if self.model is not None:
            _check_continuous(self.model, model_args, model_kwargs, self.init_strategy)
            info = _initialize(self.model, model_args, model_kwargs, key, self.init_strategy)
            potential_fn = info.potential_fn
            starts = info.param_info.z if init_params is None else init_params
            self._postprocess = lambda args, kwargs: (
                lambda z: constrain_fn(self.model, args, kwargs, z, return_deterministic=True)
            )
        else:
            if init_params is None:
                raise ValueError("numpyro_kernel(potential_fn=...) needs init_params in MCMC.run(...).")
            potential_fn = self.potential_fn
            starts = init_params
            self._postprocess = lambda args, kwargs: (lambda z: z)
        batched = not is_prng_key(key)
        first = jax.tree_util.tree_map(lambda leaf: leaf[0], starts) if batched else starts
        flat, unravel = ravel_pytree(first)
        positions = jax.vmap(lambda z: ravel_pytree(z)[0])(starts) if batched else flat[None]
        name = _model_name(self.model) if self.model is not None else "potential_fn"
        target = Target(lambda x: -potential_fn(unravel(x)), dim=int(flat.shape[0]), name=name)
        return target, unravel, positions

    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        self._num_warmup = int(num_warmup)
        batched = not is_prng_key(rng_key)
        if batched:
            init_keys, chain_keys = jnp.swapaxes(jax.vmap(jax.random.split)(rng_key), 0, 1)
            model_key = init_keys
        else:
            model_key, chain_keys = jax.random.split(rng_key)
        self._target, self._unravel, positions = self._build_target(model_key, init_params, model_args, model_kwargs)
        start = jax.vmap(self._init_one) if batched else self._init_one
        return start(positions if batched else positions[0], chain_keys)

    def _init_one(self, position: Array, key: Array) -> NumPyroKernelState:
        init_key, key = jax.random.split(key)
        inner = self.sampler.init(self._target, position[None], init_key)
        if self._num_warmup and self.sampler.warmup_step is not None and self.sampler.start_warmup is not None:
            inner = self.sampler.start_warmup(inner, self._num_warmup)
        logdensity = self._target.logdensity(position)
        return NumPyroKernelState(
            i=jnp.int32(0),
            z=self._unravel(position),
            inner=inner,
            potential_energy=-logdensity,
            accept_prob=jnp.ones((), position.dtype),
            mean_accept_prob=jnp.zeros((), position.dtype),
            diverging=jnp.zeros((), bool),
            n_grad=jnp.int32(0),
            rng_key=key,
        )

    # -- sampling ----------------------------------------------------------
    def _sample_one(self, state: NumPyroKernelState) -> NumPyroKernelState:
        key, step_key = jax.random.split(state.rng_key)
        target, sampler = self._target, self.sampler
        in_warmup = state.i < self._num_warmup
        if sampler.warmup_step is not None:
            inner, info = jax.lax.cond(
                in_warmup,
                lambda s: sampler.warmup_step(target, s, step_key),
                lambda s: sampler.step(target, s, step_key),
                state.inner,
            )
            if sampler.end_warmup is not None:
                inner = jax.lax.cond(state.i == self._num_warmup - 1, sampler.end_warmup, lambda s: s, inner)
        else:
            inner, info = sampler.step(target, state.inner, step_key)
        position = inner.position[0]
        info = info._asdict()
        accept_prob = info["accept_prob"][0] if "accept_prob" in info else jnp.ones((), position.dtype)
        steps_in_phase = jnp.where(in_warmup, state.i, state.i - self._num_warmup) + 1
        mean_accept_prob = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / steps_in_phase
        return NumPyroKernelState(
            i=state.i + 1,
            z=self._unravel(position),
            inner=inner,
            potential_energy=-info["logdensity"][0],
            accept_prob=accept_prob,
            mean_accept_prob=mean_accept_prob,
            diverging=info["diverging"][0],
            n_grad=info["n_grad"][0],
            rng_key=key,
        )

    def sample(self, state, model_args, model_kwargs):
        batched = not is_prng_key(state.rng_key)
        return (jax.vmap(self._sample_one) if batched else self._sample_one)(state)

    def postprocess_fn(self, model_args, model_kwargs):
        if self._postprocess is None:
            return lambda z: z
        return self._postprocess(model_args, model_kwargs)

    def get_diagnostics_str(self, state) -> str:
        return f"{self.sampler.name}, acc. prob={float(np.mean(state.mean_accept_prob)):.2f}"


def numpyro_kernel(
    model: Optional[Callable] = None,
    sampler: Optional[Sampler] = None,
    *,
    potential_fn: Optional[Callable] = None,
    init_strategy: Callable = init_to_uniform,
) -> MCMCKernel:
    """A stochflow chain sampler as a ``numpyro.infer.mcmc.MCMCKernel``.

    ``mcmc = MCMC(sf.numpyro_kernel(model, sf.mala(0.1)), num_warmup=1000, num_samples=1000)``
    then ``mcmc.run(key, *data)``, as with ``NUTS(model)``. Give either a
    ``model`` or a ``potential_fn`` (then ``init_params`` in ``MCMC.run``).
    Warmup is the sampler's own (Stan's windows: each chain's step size and diagonal
    mass; ``pooled=True`` pools nothing here, as NumPyro runs each chain on its own). The
    progress bar shows the running mean acceptance of the current phase, as NumPyro's NUTS
    does. Extra fields: ``accept_prob`` (1 for unadjusted samplers), ``mean_accept_prob``,
    ``diverging``, ``n_grad``, ``potential_energy``. NumPyro's ``MCMC`` has no end-of-run
    hook for a kernel: check the run with ``mcmc.print_summary()`` (R-hat, ESS, divergences)
    or ``sf.diagnostics.checks.run_checks`` on the samples.
    """
    if (model is None) == (potential_fn is None):
        raise ValueError("numpyro_kernel needs exactly one of model or potential_fn.")
    if not isinstance(sampler, Sampler):
        raise TypeError(
            f"sampler must be a stochflow Sampler (e.g. sf.mala(step_size=0.1)), got {type(sampler).__name__}."
        )
    if not sampler.chains:
        raise ValueError(
            f"numpyro_kernel runs each NumPyro chain as one particle of the sampler, so it needs a "
            f"method whose particles are independent Markov chains (sf.ula, sf.mala, sf.underdamped, "
            f"...; a hand-built Sampler says so with chains=True); {sampler.name!r} moves its particles "
            "together (one particle of it is an optimiser, not a sampler) or transports them on a fixed "
            "schedule. Run it with sf.sample on sf.from_numpyro(model)."
        )
    return _StochflowKernel(sampler, model=model, potential_fn=potential_fn, init_strategy=init_strategy)
