"""Sampler factories, one module per method family (modules are named for the family, so no factory shadows its module)."""

from .base import Sampler
from .langevin import mala, ula
from .proximal import bmmla, bmumla, mla, mymala, myula
from .diffusion import rdmc, rdmc_score
from .normalizing_flow import fit_snf, load_snf, save_snf, snf
from .stein import msvgd, svgd, svmd
from .kinetic import underdamped

__all__ = ["Sampler", "ula", "mala", "underdamped", "rdmc", "rdmc_score", "myula", "mymala", "mla", "bmumla", "bmmla",
           "snf", "fit_snf", "save_snf", "load_snf",
           "svgd", "msvgd", "svmd"]
