"""Running a sampler: ``sample(sampler, target, key, ...)`` -> :class:`~stochflow.Trace`.

* :mod:`~stochflow.run.plan`: every argument checked before anything compiles,
  resolved into a :class:`RunPlan` (chunks, starting positions, metadata, keys).
* :mod:`~stochflow.run.driver`: :func:`sample`, the phases (warmup, sampling)
  run chunk by chunk as compiled programs.
* :mod:`~stochflow.run.sinks`: where the draws go, one :class:`Sink` protocol
  (memory, a store on disk, a follower process).
* :mod:`~stochflow.run.progress`: the progress bar.
* :mod:`~stochflow.run.sharding`: the particle layout over devices (``devices=``).
* :mod:`~stochflow.run.distributed`: several processes (process 0, broadcast,
  gathers, barrier).
"""

from .driver import sample
from .plan import RunPlan, default_init, plan_run
from .sinks import Sink

__all__ = ["sample", "default_init", "plan_run", "RunPlan", "Sink"]
