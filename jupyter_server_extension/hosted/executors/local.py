"""The ``subprocess`` executor: each session runs as a child process of the server.

The task program (:mod:`.task`) applies the booked CPUs and memory limit, then runs the notebook
(nbclient) or becomes the script. The server waits without blocking (asyncio), and when the slot
ends, the user cancels, or the server stops, the whole process tree is stopped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import psutil

from .base import Executor, RunOutcome, RunSpec
from .procs import kill_descendants, task_command, task_environment, terminate_tree

__all__ = ["SubprocessExecutor", "describe_exit", "last_error_line"]

GIB = 1024**3


def last_error_line(path: Path, limit: int = 8192) -> str | None:
    """The last meaningful line a run wrote to ``path`` (its stderr), for the failure message."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        text = line.strip()
        if text and not text.startswith("[") and not text.startswith("execplanner:") and set(text) != {"-"}:
            return text[:300]
    return None


def describe_exit(spec: RunSpec, code: int, stderr: Path) -> RunOutcome:
    """Turn an exit code into an outcome with a sentence a scientist can act on."""
    what = "notebook" if spec.kind == "jupyter-notebook" else "script"
    if code == 0:
        return RunOutcome("completed", f"the {what} finished successfully", 0)
    detail = last_error_line(stderr)
    message = f"the {what} failed (exit code {code})"
    if detail:
        message += f": {detail}"
    if detail and "MemoryError" in detail:
        message += f" (the booked memory limit is {spec.memory_gib} GiB)"
    return RunOutcome("failed", message, code)


def _deadline_seconds(deadline: datetime) -> float:
    return max(0.0, (deadline - datetime.now(timezone.utc)).total_seconds())


class SubprocessExecutor(Executor):
    """Runs notebooks and Python scripts as local processes with CPU affinity and a memory limit."""

    name = "subprocess"

    def __init__(self, grace: float = 3.0) -> None:
        self.grace = grace
        self._offsets = itertools.count()

    async def capacity(self) -> tuple[int, int]:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return cores, max(1, psutil.virtual_memory().total // GIB)

    async def run(self, spec: RunSpec, stop: asyncio.Event) -> RunOutcome:
        spec.results.mkdir(parents=True, exist_ok=True)
        runtime = spec.workdir.parent / "runtime"
        runtime.mkdir(parents=True, exist_ok=True)
        task_file = spec.workdir.parent / "task.json"
        task_file.write_text(
            json.dumps(
                {
                    "kind": spec.kind,
                    "entry": str(spec.entry),
                    "arguments": spec.arguments,
                    "notebook_out": str(spec.results / spec.executed_notebook),
                    "cores": spec.cores,
                    "cpu_offset": spec.cpu_offset or next(self._offsets),
                    "memory_bytes": spec.memory_gib * GIB,
                }
            ),
            encoding="utf-8",
        )
        stdout_path, stderr_path = spec.results / "stdout.txt", spec.results / "stderr.txt"
        with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *task_command(str(task_file)),
                cwd=str(spec.workdir),
                env=task_environment(spec.environment, spec.cores, str(runtime)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            return await self._wait(process, spec, stop, stderr_path)
        except BaseException:
            # cancelled (server shutting down) or failed while waiting: leave nothing running
            descendants = terminate_tree(process.pid)
            if process.returncode is None:
                process.kill()
            kill_descendants(descendants, grace=0.5)
            raise

    async def _wait(
        self, process: asyncio.subprocess.Process, spec: RunSpec, stop: asyncio.Event, stderr: Path
    ) -> RunOutcome:
        exited = asyncio.ensure_future(process.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {exited, stopped}, timeout=_deadline_seconds(spec.deadline), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
        if exited.done():
            return describe_exit(spec, exited.result(), stderr)
        descendants = terminate_tree(process.pid)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.grace)
        except asyncio.TimeoutError:
            process.kill()
            await exited
        killed = await asyncio.to_thread(kill_descendants, descendants, self.grace)
        note = f" ({killed} process(es) had to be killed)" if killed else ""
        if stop.is_set():
            return RunOutcome("cancelled", f"stopped on request{note}", process.returncode)
        end = spec.deadline.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        return RunOutcome("timeout", f"stopped at the end of its booked slot ({end}){note}", process.returncode)
