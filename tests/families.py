"""One small sampler of every family with a target it applies to: shared by the sharded-families
child (tests/families_child.py) and the sample-stat name audit (tests/test_arviz_schema.py)."""

from __future__ import annotations

import blackjax
import jax
import jax.numpy as jnp

import stochflow as sf
from stochflow.flows import MALA, Langevin, RealNVP, build_flow
from stochflow.geometry import entropic_simplex, l1, log_barrier

KEY = jax.random.key(20261202)
SCALES = jnp.array([1.0, 2.0, 0.5])
GAUSSIAN = sf.Target(lambda x: -0.5 * jnp.sum((x / SCALES) ** 2), dim=3, name="gauss-3d")
LASSO = sf.Target(lambda x: -0.5 * jnp.sum(x**2), dim=3, nonsmooth=l1(1.0), name="lasso-3d")
BOX = sf.Target(lambda x: -0.5 * jnp.sum((x - 0.3) ** 2), dim=2, nonsmooth=l1(1.0), mirror=log_barrier(0.0, 1.0),
                name="box-2d")
SMOOTH_BOX = sf.Target(lambda x: -0.5 * jnp.sum((x - 0.3) ** 2), dim=2, mirror=log_barrier(0.0, 1.0), name="sbox-2d")
DIRICHLET = sf.Target(lambda x: jnp.sum(jnp.log(x)) + jnp.log1p(-jnp.sum(x)), dim=2, mirror=entropic_simplex(),
                      name="dirichlet-2")
FLOW = build_flow([RealNVP(8, 2), MALA(2, 0.1, 0.5), RealNVP(8, 2, flip=True), Langevin(2, 0.05, 1.0)], 3,
                  jax.random.key(1))

FAMILIES = {  # name: (sampler, target, steps, warmup)
    "ula": (sf.ula(0.1), GAUSSIAN, 30, 0),
    "mala": (sf.mala(0.5), GAUSSIAN, 30, 10),
    "baoab": (sf.underdamped(0.2), GAUSSIAN, 30, 0),
    "obabo": (sf.underdamped(0.2, scheme="obabo"), GAUSSIAN, 30, 0),
    "ubu": (sf.underdamped(0.2, scheme="ubu"), GAUSSIAN, 30, 0),
    "myula": (sf.myula(0.05, 0.1), LASSO, 30, 0),
    "mymala": (sf.mymala(0.1, 0.1), LASSO, 30, 0),
    "mla": (sf.mla(0.01), SMOOTH_BOX, 30, 0),
    "bmumla": (sf.bmumla(0.01, 0.1), BOX, 30, 0),
    "bmmla": (sf.bmmla(0.01, 0.1, inner_steps=3), BOX, 30, 0),
    "rdmc": (sf.rdmc(end_time=1.0, num_steps=5, inner_particles=4, inner_steps=4, importance_proposals=16),
             GAUSSIAN, None, 0),
    "snf": (sf.snf(FLOW), GAUSSIAN, 5, 0),
    "svgd": (sf.svgd(0.05), GAUSSIAN, 20, 0),
    "msvgd": (sf.msvgd(0.01), DIRICHLET, 20, 0),
    "svmd": (sf.svmd(0.01), DIRICHLET, 20, 0),
    "nuts": (sf.from_blackjax(blackjax.nuts, step_size=0.5), GAUSSIAN, 10, 5),
}
