"""The ``subprocess`` executor: each session runs as a child process of the server.

The task program (:mod:`.task`) applies the booked CPUs and memory limit, then runs the notebook
(nbclient) or becomes the script. The server waits without blocking (asyncio), and when the slot
ends, the user cancels, or the server stops, the whole process tree is stopped.

Runs are isolated (:mod:`.sandbox`, on by default): a clean environment, their own PID and
network namespaces, only their session folder visible and writable, an unprivileged user when the
server is root, and rlimits. A platform that serves several people and cannot isolate refuses to
start unless the provider wrote ``isolation: none``.

The run's handle is its process group (``pgid@start-time``): if the server is killed, an isolated
run dies with it (``--die-with-parent``); a run without isolation keeps running as an orphan, and the
next server :meth:`~SubprocessExecutor.adopt` s it only to stop it and say so (a notebook's state
cannot be followed by another process).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field

from .base import Executor, ExecutorContext, RunOutcome, RunReport, RunSpec, machine_capacity
from .procs import kill_descendants, task_command, terminate_tree
from .sandbox import Sandbox, choose_sandbox

__all__ = ["SubprocessExecutor", "describe_exit", "last_error_line"]

GIB = 1024**3


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _printable(text: str) -> str:
    """A line of a run's output fit for the database and every document: colour codes and other
    control characters (a NUL cannot be stored in PostgreSQL) removed."""
    return _CONTROL.sub("", _ANSI.sub("", text))


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
        text = _printable(line).strip()
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


class SubprocessOptions(BaseModel):
    """``hosted: {executor: subprocess, subprocess: {...}}``."""

    model_config = ConfigDict(extra="forbid")

    grace: float = Field(default=3.0, gt=0, le=60, description="Seconds a stopped run gets before it is killed")


class SubprocessExecutor(Executor):
    """Runs notebooks and Python scripts as local processes with CPU affinity and a memory limit."""

    Options = SubprocessOptions
    name = "subprocess"

    def __init__(self, options: SubprocessOptions, context: ExecutorContext) -> None:
        super().__init__(options, context)
        self.grace = options.grace
        self._offsets = itertools.count()
        hosted = context.options
        # IsolationUnavailable (a multi-user platform on a machine that cannot isolate) stops the platform
        self.sandbox: Sandbox = choose_sandbox(
            hosted.isolation, multi_user=hosted.serves_many, platform=context.platform
        )
        level = logging.INFO if self.sandbox.mode != "none" else logging.WARNING
        context.log.log(level, "platform %s: %s", context.platform, self.sandbox.describe())

    def known_capacity(self) -> tuple[int, int]:
        return machine_capacity()

    async def run(self, spec: RunSpec, stop: asyncio.Event, report: RunReport) -> RunOutcome:
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
        session_dir = spec.workdir.parent
        with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
            await asyncio.to_thread(self.sandbox.prepare, session_dir)  # the run's user owns its folder
            argv, environment = self.sandbox.command(
                task_command(str(task_file)),
                spec,
                session_dir=session_dir,
                file_size_bytes=max(1, self.context.options.storage) * GIB,
            )
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=str(spec.workdir),
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            await report.handle(process_handle(process.pid))
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

    async def adopt(self, spec: RunSpec, handle: str, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        """Stop what an earlier server left running for this session (its process group, and any
        process that carries the session in its environment, such as a notebook's kernel)."""
        killed = await asyncio.to_thread(stop_orphans, handle, spec.session, self.grace)
        what = f"its {killed} process(es) were stopped" if killed else "none of its processes was still running"
        return RunOutcome("failed", f"the server restarted during the run; {what}")


def process_handle(pid: int) -> str:
    """``pgid@create_time``: the process group, and when its leader started (pids are reused)."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        started = 0.0
    return f"{pid}@{started:.2f}"


def _orphans(handle: str, session: str) -> list[psutil.Process]:
    """The processes of the run ``handle`` of ``session`` that still exist (ours only)."""
    text, _, started = handle.partition("@")
    try:
        pgid, created = int(text), float(started or 0)
    except ValueError:
        pgid, created = -1, 0.0
    uid = os.getuid()
    found: list[psutil.Process] = []
    for process in psutil.process_iter(["pid", "uids", "create_time"]):
        try:
            # ours, or (a root server) any user's: isolated runs drop to an unprivileged user
            if (
                process.pid == os.getpid()
                or process.info["uids"] is None
                or (uid != 0 and process.info["uids"].real != uid)
            ):
                continue
            in_group = pgid > 0 and os.getpgid(process.pid) == pgid and process.info["create_time"] >= created - 1
            if in_group or process.environ().get("EXECPLANNER_SESSION") == session:
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (an orphan that ended may stay a zombie until its new parent reaps it)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            continue
    return alive


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = _alive(processes)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = _alive(alive)
    return alive


def stop_orphans(handle: str, session: str, grace: float) -> int:
    """SIGTERM every process of the run, SIGKILL what is left after ``grace`` seconds; how many there were."""
    processes = _alive(_orphans(handle, session))
    for process in processes:
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    for process in _wait_gone(processes, grace):
        try:
            process.kill()
        except psutil.Error:
            pass
    _wait_gone(processes, 5)
    return len(processes)
