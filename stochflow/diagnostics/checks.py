"""End-of-run checks: what makes a run untrustworthy, as data and as one warning.

:func:`run_checks` looks at a finished run of independent chains (each particle a Markov
chain) and reports, per :class:`RunChecks` field:

* ``max_rhat``: the largest rank-normalised split R-hat over the coordinates (Vehtari et al.
  2021), flagged above :data:`RHAT_LIMIT` = 1.01 (their recommendation);
* ``min_ess_bulk``: the smallest bulk effective sample size, flagged below
  :data:`MIN_ESS_BULK` = 100 (Vehtari et al.: a hundred draws' worth per parameter before
  R-hat and MCSE can be relied on);
* ``accept_rate`` against ``target_accept``: flagged when the mean acceptance after warmup
  is more than :data:`ACCEPT_TOLERANCE` = 0.15 from the rate the warmup aimed at (the step
  did not adapt: warmup too short, or a target the step size alone cannot fit);
* ``num_divergent`` / ``num_divergent_warmup``: diverging steps (non-finite values, or
  what the method itself calls a divergence, e.g. BlackJAX NUTS's energy error); those
  after warmup are flagged, those of warmup only counted (adaptation tries steps that are
  too large on purpose; Stan and NumPyro report the same split);
* ``frozen_chains``: chains whose position did not change over the last half of their
  draws (every step undone or rejected: a chain that is stuck is not a sample);
* ``unadapted``: an adaptive sampler run with ``warmup=0``.

R-hat and ESS are ArviZ's estimators, vectorised (:mod:`stochflow.diagnostics.convergence`,
tested equal to ArviZ), computed on at most :data:`MAX_CHECKED_DRAWS` draws in all
(evenly spaced within each chain) and the first :data:`MAX_CHECKED_DIMS` coordinates, so that
a large run pays well under a second for them; an ESS of spaced-out draws is not above the
whole run's, so a large run may be flagged where the full check passes
(``sf.diagnostics.summary(trace)``).
For particle methods (SVGD, SNF, rdMC) the particles are not chains, and only the
divergence counts apply.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional

import numpy as np

from .convergence import rhat_and_bulk_ess

__all__ = ["RunChecks", "run_checks", "DrawSummary", "RHAT_LIMIT", "MIN_ESS_BULK", "ACCEPT_TOLERANCE"]

RHAT_LIMIT = 1.01
MIN_ESS_BULK = 100.0
ACCEPT_TOLERANCE = 0.15
MAX_CHECKED_DRAWS = 20_000  # chains x draws per coordinate
MAX_CHECKED_DIMS = 128
BLOCK_BYTES = 8 * 2**20  # the most of a stored trace read at once


class RunChecks(NamedTuple):
    """The facts the end-of-run warning is made of (``None``: not applicable or not computed)."""

    max_rhat: Optional[float]
    min_ess_bulk: Optional[float]
    accept_rate: Optional[float]
    target_accept: Optional[float]
    num_divergent: int
    num_divergent_warmup: int
    num_steps: int
    num_warmup_steps: int
    frozen_chains: tuple[int, ...]
    unadapted: bool
    divergence_kind: str = "non-finite values"

    def problems(self) -> list[str]:
        """What makes the run untrustworthy, one phrase each (empty: nothing found)."""
        found = []
        if self.unadapted:
            found.append("an adaptive sampler ran with warmup=0, so nothing adapted (give warmup=, e.g. 1000)")
        if self.num_divergent:  # warmup's are counted, not flagged: adaptation tries steps too large
            found.append(
                f"{self.num_divergent} of {self.num_steps} sampling steps and {self.num_divergent_warmup} of "
                f"{self.num_warmup_steps} warmup steps diverged ({self.divergence_kind}; "
                "see trace.stats['diverging']; a smaller step size usually helps)")
        if self.frozen_chains:
            shown = ", ".join(map(str, self.frozen_chains[:10])) + (", ..." if len(self.frozen_chains) > 10 else "")
            found.append(f"{len(self.frozen_chains)} chain(s) did not move in the second half of the run "
                         f"(chains {shown})")
        if self.max_rhat is not None and not self.max_rhat <= RHAT_LIMIT:
            found.append(f"R-hat up to {self.max_rhat:.3f} (> {RHAT_LIMIT}: the chains disagree)")
        if self.min_ess_bulk is not None and not self.min_ess_bulk >= MIN_ESS_BULK:
            found.append(f"bulk ESS down to {self.min_ess_bulk:.0f} (< {MIN_ESS_BULK:.0f}: run longer or "
                         "with more chains)")
        if self.accept_rate is not None and self.target_accept is not None \
                and abs(self.accept_rate - self.target_accept) > ACCEPT_TOLERANCE:
            found.append(f"mean acceptance {self.accept_rate:.2f}, far from the target {self.target_accept:.3f} "
                         "(the step size did not adapt: a longer warmup, or a preconditioned sampler)")
        return found

    def line(self) -> str:
        """One line for a repr: ``ok`` or the problems' short names."""
        short = []
        if self.max_rhat is not None:
            short.append(f"rhat={self.max_rhat:.3f}")
        if self.min_ess_bulk is not None:
            short.append(f"ess_bulk={self.min_ess_bulk:.0f}")
        if self.accept_rate is not None:
            short.append(f"accept={self.accept_rate:.2f}")
        short.append(f"divergent={self.num_divergent}")
        if self.frozen_chains:
            short.append(f"frozen={len(self.frozen_chains)}")
        if self.unadapted:
            short.append("warmup=0")
        return ("ok" if not self.problems() else "UNTRUSTED") + " (" + ", ".join(short) + ")"


def _draw_blocks(positions: Any, stop: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(begin, positions[:, begin:end])`` for consecutive blocks of draws up to ``stop``,
    each at most :data:`BLOCK_BYTES` of the trace (or one of a store's chunks, if larger) and
    cut at the store's chunk boundaries (``chunk_draws``), so each read decodes only whole
    chunks it needs: a stored trace is never loaded whole."""
    num_particles, _, dim = positions.shape
    block = max(1, BLOCK_BYTES // max(1, num_particles * dim * np.dtype(positions.dtype).itemsize))
    stored = getattr(positions, "chunk_draws", None)
    if stored:
        block = stored * max(1, block // stored)
    for begin in range(0, stop, block):
        yield begin, np.asarray(positions[:, begin:min(stop, begin + block)])


class DrawSummary:
    """What the checks need from a run's draws ``(particles, draws, dim)``, taken from blocks of
    draws in any order as they pass by (the driver adds each chunk as it records it, so the
    trace is not read again): every ``every``-th draw of the first :data:`MAX_CHECKED_DIMS`
    coordinates (at most :data:`MAX_CHECKED_DRAWS` per coordinate, for R-hat and ESS), and per
    chain the smallest and largest value of each coordinate over the second half (a chain
    whose largest equals its smallest everywhere did not move)."""

    def __init__(self, shape: tuple[int, int, int], dtype: Any):
        num_particles, num_draws, dim = shape
        self.shape = shape
        self.every = max(1, -(-num_draws // max(4, MAX_CHECKED_DRAWS // max(1, num_particles))))
        dtype = dtype if np.issubdtype(dtype, np.floating) else np.float64
        self.spaced = np.empty((num_particles, -(-num_draws // self.every), min(dim, MAX_CHECKED_DIMS)), dtype)
        self._half = num_draws // 2 if num_draws >= 8 else num_draws  # fewer than 8 draws: no frozen check
        self._low = np.full((num_particles, dim), np.inf, dtype)
        self._high = np.full((num_particles, dim), -np.inf, dtype)
        self._moved = np.zeros(num_particles, bool)

    def add(self, begin: int, block: np.ndarray) -> None:
        """Take draws ``begin .. begin + block.shape[1] - 1`` (``block``: ``(particles, n, dim)``)."""
        first = -(-begin // self.every)  # the first spaced draw at or after begin
        rows = block[:, first * self.every - begin::self.every, :self.spaced.shape[2]]
        self.spaced[:, first:first + rows.shape[1]] = rows
        late = block[:, max(0, self._half - begin):]
        if late.shape[1] and not self._moved.all():
            np.minimum(self._low, late.min(axis=1), out=self._low)
            np.maximum(self._high, late.max(axis=1), out=self._high)
            self._moved = ~np.all(self._high == self._low, axis=1)  # NaN: never equal, so moved

    def add_stored(self, positions: Any, stop: Optional[int] = None) -> "DrawSummary":
        """Take draws ``0 .. stop - 1`` of ``positions`` (a stored trace: block by block)."""
        for begin, block in _draw_blocks(positions, positions.shape[1] if stop is None else stop):
            self.add(begin, block)
        return self

    @property
    def frozen_chains(self) -> tuple[int, ...]:
        """Chains whose position is the same over the second half of their draws (at least 4)."""
        if self._half == self.shape[1]:
            return ()
        return tuple(int(i) for i in np.flatnonzero(~self._moved))


def run_checks(positions: Any, stats: dict[str, Any], *, chains: bool, adaptive: bool, warmup: int, thin: int,
               target_accept: Optional[float], num_divergent: int, num_divergent_warmup: int,
               divergence_kind: str = "non-finite values", summary: Optional[DrawSummary] = None) -> RunChecks:
    """The :class:`RunChecks` of a run: ``positions`` ``(particles, draws, dim)`` and the
    per-draw ``stats`` (numpy or stored arrays); ``chains`` says the particles are
    independent Markov chains (R-hat, ESS, acceptance and frozen chains apply). ``summary``:
    the :class:`DrawSummary` of every draw, if taken while they were recorded (otherwise
    ``positions`` is read for it)."""
    num_particles, num_draws, dim = positions.shape
    max_rhat = min_ess = accept = None
    frozen: tuple[int, ...] = ()
    if chains:
        if summary is None:
            summary = DrawSummary(positions.shape, positions.dtype).add_stored(positions)
        checked = summary.spaced
        if checked.shape[1] >= 4 and np.all(np.isfinite(checked)):
            # A constant coordinate has no R-hat or ESS (max > min: no temporary the size of the draws).
            moving = checked.max(axis=(0, 1)) > checked.min(axis=(0, 1))
            if moving.any():
                rhat, ess = rhat_and_bulk_ess(checked if moving.all() else checked[..., moving])
                max_rhat = float(np.max(rhat)) if num_particles >= 2 else None
                min_ess = float(np.min(ess))
        if "accept_prob" in stats and num_draws:
            accept = float(np.mean(np.asarray(stats["accept_prob"][:, ::summary.every])))
        frozen = summary.frozen_chains
    return RunChecks(
        max_rhat=max_rhat, min_ess_bulk=min_ess, accept_rate=accept,
        target_accept=target_accept if (chains and adaptive and warmup > 0) else None,
        num_divergent=int(num_divergent), num_divergent_warmup=int(num_divergent_warmup),
        num_steps=int(num_particles * num_draws * thin), num_warmup_steps=int(num_particles * warmup),
        frozen_chains=frozen, unadapted=bool(chains and adaptive and warmup == 0),
        divergence_kind=divergence_kind)
