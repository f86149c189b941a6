"""The ``slurm`` executor: Slurm behind a hosted platform (capacity, load, limits, reservations, jobs).

Registered as ``slurm`` in the ``execplanner.executors`` entry points; see :mod:`.executor`.
"""

from __future__ import annotations

from .executor import SlurmExecutor, SlurmOptions

__all__ = ["SlurmExecutor", "SlurmOptions"]
