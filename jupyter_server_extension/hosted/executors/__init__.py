"""Executors: what actually runs a booked session (local subprocesses or a Dask cluster).

Imported lazily by the platform: Dask is an optional extra, and the task program that runs user
code must not pay for imports it does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import EXECUTABLE_KINDS, Executor, RunOutcome, RunSpec

if TYPE_CHECKING:
    from ..options import HostedOptions

__all__ = ["EXECUTABLE_KINDS", "Executor", "RunOutcome", "RunSpec", "make_executor"]


def make_executor(options: HostedOptions) -> Executor:
    """The executor the options ask for."""
    if options.executor == "dask":
        from .dask_cluster import DaskExecutor

        return DaskExecutor(
            options.scheduler,
            workers=options.workers,
            threads_per_worker=options.threads_per_worker,
            processes=options.processes,
            transfer_limit_gib=options.transfer_limit,
        )
    from .local import SubprocessExecutor

    return SubprocessExecutor()
