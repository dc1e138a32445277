"""The run's progress bar (tqdm), moved between chunks; ``sample(..., progress=False)`` turns it off."""

from __future__ import annotations

from typing import Any

import jax
from tqdm.auto import tqdm

from ..store import Progress
from .plan import RunPlan

__all__ = ["ProgressBar"]


class ProgressBar:
    """A bar over the run's steps: ``warmup`` steps, then ``num_draws * thin``, with the
    divergence counts beside it. Shown if the plan asks for it, on process 0 only;
    a resumed run's bar starts where the committed run stopped."""

    def __init__(self, plan: RunPlan, done: Progress):
        self._thin = plan.thin
        self._steps = self._steps_done(done)
        self._bar = tqdm(total=plan.warmup + plan.num_draws * plan.thin, initial=self._steps,
                         disable=not plan.progress or jax.process_index() != 0, desc=plan.sampler.name,
                         unit="step")
        self._show_counts(done)

    def _steps_done(self, done: Progress) -> int:
        return done.warmup_done + done.draws_done * self._thin

    def _show_counts(self, done: Progress) -> None:
        self._bar.set_postfix(divergent=done.num_divergent, warmup_divergent=done.num_divergent_warmup,
                              refresh=False)

    def update(self, done: Progress) -> None:
        """Move the bar to ``done``."""
        steps = self._steps_done(done)
        self._bar.update(steps - self._steps)
        self._steps = steps
        self._show_counts(done)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._bar.close()
