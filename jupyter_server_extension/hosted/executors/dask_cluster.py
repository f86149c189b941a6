"""The ``dask`` executor: sessions run on a Dask cluster, for users who outgrow one machine.

With ``scheduler: tcp://...`` it joins that cluster; with none it starts a local one (threads in
this process by default, ``processes: true`` for worker processes). The platform's capacity is
read from the workers (threads and memory limits) unless the options fix it. Each session is one
Dask task (:func:`.dask_task.run_on_worker`) that carries its staged files there and its results
back, so workers need no shared file system and not even this project installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from datetime import timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from execplanner_widgets.core.platform import PlatformError
from execplanner_widgets.model.types import GiB

from .base import Executor, ExecutorContext, RunOutcome, RunReport, RunSpec
from .local import describe_exit

__all__ = ["DaskExecutor"]

GIB = 1024**3
#: How long after the deadline we still wait for the worker to report back before giving up.
REPORT_MARGIN = 30.0


class DaskOptions(BaseModel):
    """``hosted: {executor: dask, dask: {...}}``."""

    model_config = ConfigDict(extra="forbid")

    scheduler: str | None = Field(default=None, description="Dask scheduler address; none starts a local cluster")
    workers: int = Field(default=1, ge=1, le=64, description="Workers of the local Dask cluster")
    threads_per_worker: int | None = Field(
        default=None, ge=1, description="Threads per local Dask worker (default: CPUs / workers)"
    )
    processes: bool = Field(
        default=False, description="Local Dask workers in their own processes (else threads in this one)"
    )
    transfer_limit: GiB = Field(
        default=1, description="Most input and output (GiB) shipped to and from a Dask worker per session"
    )


class DaskExecutor(Executor):
    """Runs sessions as tasks on a Dask cluster (at an address, or a local cluster)."""

    Options = DaskOptions

    def __init__(self, options: DaskOptions, context: ExecutorContext) -> None:
        super().__init__(options, context)
        self.scheduler = options.scheduler
        self.workers = options.workers
        self.threads_per_worker = options.threads_per_worker
        self.processes = options.processes
        self.transfer_limit = options.transfer_limit * GIB
        self.name = f"dask at {self.scheduler}" if self.scheduler else "dask (local cluster)"
        self._client: Any = None
        self._cluster: Any = None
        self._lock = asyncio.Lock()
        self._offsets = itertools.count()

    async def start(self) -> None:
        async with self._lock:
            if self._client is not None:
                return
            try:
                import cloudpickle
                from distributed import Client, LocalCluster
            except ImportError:
                raise PlatformError(
                    "this platform runs on Dask, which is not installed on the server: pip install 'execplanner-widgets[dask]'",
                    status=503,
                ) from None
            from . import dask_task, procs

            for module in (dask_task, procs):
                cloudpickle.register_pickle_by_value(module)
            if self.scheduler:
                self._client = await Client(self.scheduler, asynchronous=True, timeout="20s")
            else:
                threads = self.threads_per_worker or max(1, (os.cpu_count() or 1) // self.workers)
                # threads in this process talk in-process; worker processes over TCP on loopback
                # only; the HTTP endpoints Dask always opens listen on loopback too (no dashboard)
                network = {"host": "127.0.0.1"} if self.processes else {}
                loopback = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
                self._cluster = await LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=threads,
                    processes=self.processes,
                    dashboard_address=None,
                    scheduler_kwargs=loopback,
                    worker_dashboard_address="127.0.0.1:0",
                    asynchronous=True,
                    **network,
                )
                self._client = await Client(self._cluster, asynchronous=True)

    async def capacity(self) -> tuple[int, int]:
        await self.start()
        info = await self._client.scheduler.identity()
        workers = info.get("workers", {}).values()
        cores = sum(int(worker.get("nthreads") or 0) for worker in workers)
        memory = sum(int(worker.get("memory_limit") or 0) for worker in workers) // GIB
        return max(cores, 0), max(memory, 0)

    async def run(self, spec: RunSpec, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        from distributed import Event

        from .dask_task import pack_folder, run_on_worker
        from .procs import TASK_PROGRAM

        await self.start()
        files: dict[str, bytes] = {}
        too_big: list[str] = []
        await asyncio.to_thread(pack_folder, str(spec.workdir), "", self.transfer_limit, files, too_big)
        if too_big:
            return RunOutcome(
                "failed",
                f"the staged files are larger than the {self.transfer_limit // GIB} GiB a Dask worker may receive: {', '.join(too_big[:3])}",
            )
        task = {
            "kind": spec.kind,
            "session": spec.session,
            "entry": spec.entry.relative_to(spec.workdir).as_posix(),
            "arguments": spec.arguments,
            "notebook_out": spec.executed_notebook,
            "cores": spec.cores,
            "cpu_offset": spec.cpu_offset or next(self._offsets),
            "memory_bytes": spec.memory_gib * GIB,
        }
        stop_name = f"execplanner-stop-{spec.session}"
        deadline = spec.deadline.astimezone(timezone.utc).timestamp()
        future = self._client.submit(
            run_on_worker,
            task,
            files,
            TASK_PROGRAM,
            stop_name,
            deadline,
            self.transfer_limit,
            key=f"execplanner-{spec.session}",
            pure=False,
        )
        await report.handle(f"execplanner-{spec.session}")
        waiting = asyncio.ensure_future(self._result(future))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            remaining = deadline - time.time()
            await asyncio.wait(
                {waiting, stopped}, timeout=max(0.0, remaining) + REPORT_MARGIN, return_when=asyncio.FIRST_COMPLETED
            )
            if not waiting.done() and stop.is_set():
                await Event(stop_name, client=self._client).set()
                await asyncio.wait({waiting}, timeout=REPORT_MARGIN)
            if not waiting.done():
                await future.cancel()
                waiting.cancel()
                return RunOutcome(
                    "failed", "the Dask worker did not report back after the end of the slot; the task was cancelled"
                )
            report = waiting.result()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(Event(stop_name, client=self._client).set(), 5)
                await future.cancel()
            raise
        except Exception as error:  # the worker raised: the task program could not even start
            return RunOutcome("failed", f"the Dask worker failed: {type(error).__name__}: {error}")
        finally:
            stopped.cancel()
        return self._outcome(spec, report, stop)

    @staticmethod
    async def _result(future: Any) -> dict[str, Any]:
        return await future

    def _outcome(self, spec: RunSpec, report: dict[str, Any], stop: asyncio.Event) -> RunOutcome:
        spec.results.mkdir(parents=True, exist_ok=True)
        for name, content in report.get("files", {}).items():
            from .dask_task import safe_relative

            target = spec.results / safe_relative(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        skipped = report.get("skipped") or []
        note = f"; {len(skipped)} output file(s) exceeded the transfer limit and were not returned" if skipped else ""
        reason = report.get("reason")
        if reason == "cancelled" or (reason and stop.is_set()):
            return RunOutcome("cancelled", "stopped on request" + note, report.get("code"))
        if reason == "timeout":
            end = spec.deadline.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
            return RunOutcome("timeout", f"stopped at the end of its booked slot ({end})" + note, report.get("code"))
        outcome = describe_exit(spec, int(report.get("code") or 0), spec.results / "stderr.txt")
        outcome.message += note
        return outcome

    async def adopt(self, spec: RunSpec, handle: str, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        """A task an earlier server submitted: a local cluster died with that server; on a shared
        scheduler the task is told to stop (its results went to a client that no longer exists)."""
        if not self.scheduler:
            return RunOutcome("failed", "the server restarted during the run; its local Dask cluster stopped with it")
        from distributed import Event

        with contextlib.suppress(Exception):
            await self.start()
            await asyncio.wait_for(Event(f"execplanner-stop-{spec.session}", client=self._client).set(), 5)
        return RunOutcome("failed", f"the server restarted during the run; the Dask task {handle} was told to stop")

    async def aclose(self) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                await cluster.close()
