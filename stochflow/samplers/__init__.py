"""Sampler factories, one module per method family."""

from .base import Sampler
from .langevin import mala, ula
from .proximal import bmmla, bmumla, mla, mymala, myula
from .rdmc import rdmc, rdmc_score
from .snf import fit_snf, load_snf, save_snf, snf
from .stein import msvgd, svgd, svmd
from .underdamped import underdamped

__all__ = ["Sampler", "ula", "mala", "underdamped", "rdmc", "rdmc_score", "myula", "mymala", "mla", "bmumla", "bmmla",
           "snf", "fit_snf", "save_snf", "load_snf",
           "svgd", "msvgd", "svmd"]
