"""One booked session's run: stage it, hand it to the executor, record what it reports, collect results.

The runner (:mod:`.runner`) decides *when* a session runs and claims it; this module does the run
itself, on the engine loop. Every step is written as an event (time, level, phase, message), and the
executor reports through a :class:`StoredReport`, which writes its handle (for a later server to
:meth:`~.executors.Executor.adopt` the run), its interactive connector and its progress to the session.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import shutil
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from execplanner_widgets.model import canonical_kind, format_instant, short_kind
from execplanner_widgets.model.phases import SessionPhase, can_move

from .executors import Executor, RunOutcome, RunReport, RunSpec
from .options import HostedOptions
from .plan import precise_now
from .service import release_hold
from .staging import StagingError, stage
from .store import SessionRow, Store, add_event

__all__ = ["ERROR_FATAL", "ERROR_TRANSIENT", "SessionRun", "StoredReport", "collect_results", "run_spec"]

log = logging.getLogger(__name__)

DB = Callable[..., Awaitable[Any]]

ERROR_FATAL = "fatal"
ERROR_TRANSIENT = "transient"
#: Where this server runs, written with every run so a restarted server can tell a dead runner at once.
HOST = socket.gethostname()


def _short(value: Any) -> str:
    return format_instant(value.replace(microsecond=0))


def run_spec(row: SessionRow, folder: Path, entry: Path) -> RunSpec:
    """The executor's view of the booked session ``row`` whose files are staged in ``folder``."""
    document = row.document or {}
    executable = document.get("executable") or {}
    kind = short_kind(canonical_kind(str(executable.get("kind", "")), "executable"))
    environment = {"EXECPLANNER_SESSION": row.uuid, "EXECPLANNER_OUTPUTS": str(folder / "work" / "outputs")}
    if document.get("storage_names"):
        environment["EXECPLANNER_STORAGE"] = str(folder / "storage")
    return RunSpec(
        session=row.uuid,
        kind=kind,  # type: ignore[arg-type]
        entry=entry,
        workdir=folder / "work",
        results=folder / "results",
        cores=row.cores,
        memory_gib=row.memory,
        deadline=row.available_end,
        arguments=[str(arg) for arg in executable.get("arguments") or []],
        environment=environment,
        user=row.owner,
        start=row.available_start,
    )


class StoredReport(RunReport):
    """A :class:`RunReport` that writes to the session's row."""

    def __init__(self, run: SessionRun) -> None:
        self.run = run

    async def handle(self, text: str) -> None:
        self.run.handle = text[:255]
        await self.run.write(None, None, run_handle=text[:255], runner_host=HOST, runner_pid=os.getpid())

    async def available(self, url: str, title: str | None = None) -> None:
        where = f"{title} at {url}" if title else url
        await self.run.write(SessionPhase.AVAILABLE, f"available: {where}", connector={"url": url, "title": title})

    async def progress(self, text: str) -> None:
        await self.run.write(None, text)

    async def phase(self, phase: SessionPhase, text: str) -> None:
        if SessionPhase(phase) not in REPORTED_PHASES:
            raise ValueError(f"an executor reports WAITING, RUNNING or RELEASING, not {phase}")
        await self.run.write(SessionPhase(phase), text, only_if_allowed=True)


#: The phases an executor may report (AVAILABLE has its own call, final phases are the run's outcome).
REPORTED_PHASES = frozenset({SessionPhase.WAITING, SessionPhase.RUNNING, SessionPhase.RELEASING})


class SessionRun:
    """Runs (or adopts) one claimed session from staging to its final phase."""

    def __init__(
        self,
        row: SessionRow,
        *,
        store: Store,
        platform: str,
        options: HostedOptions,
        executor: Executor,
        folder: Path,
        stop: asyncio.Event,
        db: DB,
        on_change: Callable[[], None],
        closing: Callable[[], bool],
    ) -> None:
        self.row = row
        self.uuid = row.uuid
        self.store = store
        self.platform = platform
        self.options = options
        self.executor = executor
        self.folder = folder
        self.stop = stop
        self._db = db
        self._on_change = on_change
        self._closing = closing
        self.report = StoredReport(self)
        #: the engine's id of the run, once reported (or the earlier server's, when adopting)
        self.handle: str | None = row.run_handle
        #: the executor has the run (between handing it over and its outcome)
        self.in_executor = False
        #: set by the runner before it cancels the task: the run goes on in the engine without us
        self.detaching = False

    @property
    def detachable(self) -> bool:
        """The run can be left to the engine and taken over by the next server: its executor
        survives a restart, it is in the executor's hands and the engine's id for it is stored."""
        return self.executor.survives_restart and self.in_executor and bool(self.handle)

    # ----------------------------------------------------------------------- writing

    async def write(
        self,
        phase: SessionPhase | None,
        message: str | None,
        level: str = "INFO",
        *,
        only_if_allowed: bool = False,
        **fields: Any,
    ) -> None:
        """Move the session to ``phase`` (or keep it), set ``fields`` and record ``message``, in one
        transaction; with ``only_if_allowed`` the phase changes only where the phases module allows
        that move (the message is recorded either way)."""

        def write() -> None:
            with self.store.write(self.platform) as session:
                row = session.get(SessionRow, self.uuid)
                if row is None:
                    return
                if phase is not None and (
                    not only_if_allowed or row.phase == phase.value or can_move(row.phase, phase)
                ):
                    row.phase = phase.value
                for name, value in fields.items():
                    setattr(row, name, value)
                row.modified = precise_now()
                if message is not None:
                    add_event(session, row, message, level)

        await self._db(write)
        self._on_change()

    # --------------------------------------------------------------------------- run

    async def run(self) -> None:
        """Stage, run and finish; whatever happens, the session ends in a final phase."""
        await self._guarded(self._prepare_and_run())

    async def adopt(self) -> None:
        """Take over a run an earlier server started (its handle is on the row)."""
        spec = run_spec(self.row, self.folder, self._staged_entry())
        self.in_executor = True
        work = self.executor.adopt(spec, self.row.run_handle or "", self.stop, self.report)
        await self._guarded(work, ERROR_TRANSIENT)  # a failure here is the restart's, not the user's code's

    async def _guarded(self, work: Awaitable[RunOutcome], error_type: str = ERROR_FATAL) -> None:
        try:
            outcome = await work
        except StagingError as error:
            self.in_executor = False
            await self.finish(RunOutcome("failed", f"preparing failed: {error}"), ERROR_FATAL)
            return
        except asyncio.CancelledError:
            self.in_executor = False
            if self.detaching:
                await asyncio.shield(self._detach())
                raise
            shutdown = RunOutcome("failed", "the platform shut down during the run")
            await asyncio.shield(self.finish(shutdown, ERROR_TRANSIENT))
            raise
        except Exception as error:
            self.in_executor = False
            log.exception("hosted platform %s: session %s failed", self.platform, self.uuid)
            await self.finish(RunOutcome("failed", f"internal error: {type(error).__name__}: {error}"), ERROR_FATAL)
            return
        self.in_executor = False
        if outcome.status == "cancelled" and self._closing():
            outcome = RunOutcome("failed", "the platform shut down during the run", outcome.exit_code)
            await self.finish(outcome, ERROR_TRANSIENT)
            return
        await self.finish(outcome, error_type)

    async def _detach(self) -> None:
        """The server shuts down cleanly and leaves the run to the engine: the session keeps its phase
        and handle, and has no runner any more, which tells the next server to take it over at once."""
        await self.write(
            None,
            f"this server shut down; the run goes on in the {self.executor.name} executor's engine "
            f"({self.handle}) and the next server follows it",
            runner=None,
            runner_host=None,
            runner_pid=None,
        )

    def _staged_entry(self) -> Path:
        """The staged executable of an earlier run (the first file in the work folder, else a placeholder)."""
        work = self.folder / "work"
        for name in sorted(os.listdir(work)) if work.is_dir() else []:
            if name.endswith((".ipynb", ".py")):
                return work / name
        return work / "executable"

    async def _prepare_and_run(self) -> RunOutcome:
        row, document = self.row, self.row.document or {}
        executable = document.get("executable") or {}
        kind = short_kind(canonical_kind(str(executable.get("kind", "")), "executable"))
        location = executable.get("location")
        if not location:
            raise StagingError("the executable has no location")
        default_name = "notebook.ipynb" if kind == "jupyter-notebook" else "script.py"
        data = [
            (str(item["location"]), str(item.get("name") or f"data-{index + 1}"))
            for index, item in enumerate(document.get("fetch") or [])
        ]
        staged = await stage(
            (str(location), default_name),
            data,
            list(document.get("storage_names") or []),
            self.folder,
            local_roots=self.options.local_roots,
            limit=self.options.download_limit * 1024**3,
            total_limit=max(row.storage, self.options.download_limit) * 1024**3,
            private_urls=self.options.private_urls,
            multi_user=self.options.serves_many,
        )
        for note in staged.notes:
            await self.write(None, note)
        if await self._stopped_before(row):
            return RunOutcome("cancelled", "stopped on request before it ran")
        limits = (
            f"with {row.cores} core(s) and at most {row.memory} GiB of memory, "
            f"until the slot ends at {_short(row.available_end)}"
        )
        if self.executor.reports_phases:  # the executor writes RUNNING when the engine starts the job
            await self.write(None, f"handing the run to the {self.executor.name} executor {limits}")
        else:
            await self.write(SessionPhase.RUNNING, f"running on the {self.executor.name} executor {limits}")
        self.in_executor = True
        return await self.executor.run(run_spec(row, self.folder, staged.entry), self.stop, self.report)

    async def _stopped_before(self, row: SessionRow) -> bool:
        """Wait for the booked start (after preparation); True if stopped meanwhile."""
        if self.stop.is_set():
            return True
        wait = (row.available_start - precise_now()).total_seconds()
        if wait <= 0:
            return False
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=wait)
        except asyncio.TimeoutError:
            return False
        return True

    async def finish(self, outcome: RunOutcome, error_type: str) -> None:
        """RELEASING (collect results, remove the working folder), then the final phase."""
        level = "INFO" if outcome.status == "completed" else "WARN"
        await self.write(SessionPhase.RELEASING, f"releasing: {outcome.message}", level)
        results = await asyncio.to_thread(collect_results, self.folder)
        final = {"completed": SessionPhase.COMPLETED, "cancelled": SessionPhase.CANCELLED}.get(
            outcome.status, SessionPhase.FAILED
        )
        error = None if final is not SessionPhase.FAILED else {"type": error_type, "message": outcome.message}
        levels = {SessionPhase.COMPLETED: "INFO", SessionPhase.CANCELLED: "WARN"}
        now = precise_now()

        def write() -> None:
            with self.store.write(self.platform) as session:
                row = session.get(SessionRow, self.uuid)
                if row is None:
                    return
                row.phase, row.modified, row.run_ended = final.value, now, now
                row.results, row.error = results, error
                row.cancel_requested = False
                release_hold(row, now, storage_too=not (row.document or {}).get("storage_names"))
                names = ", ".join(item["id"] for item in results) or "none"
                text = f"{final.value.lower()}: {outcome.message}; results: {names}"
                add_event(session, row, text, levels.get(final, "ERROR"))

        await self._db(write)
        self._on_change()


def collect_results(folder: Path) -> list[dict[str, Any]]:
    """Move the run's outputs next to its logs and list every non-empty file as a result;
    then remove the working folder (inputs are not results)."""
    results = folder / "results"
    outputs = folder / "work" / "outputs"
    results.mkdir(parents=True, exist_ok=True)
    if outputs.is_dir():
        for item in sorted(outputs.rglob("*")):
            if item.is_file() and not item.is_symlink():
                target = results / "outputs" / item.relative_to(outputs)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(item), target)
    found = []
    for item in sorted(results.rglob("*")):
        if not item.is_file() or item.is_symlink():
            continue
        size = item.stat().st_size
        if size == 0 and item.name in ("stdout.txt", "stderr.txt"):
            item.unlink()
            continue
        relative = item.relative_to(results).as_posix()
        mime = (
            "application/x-ipynb+json"
            if item.suffix == ".ipynb"
            else (mimetypes.guess_type(item.name)[0] or "application/octet-stream")
        )
        found.append({"id": relative, "path": relative, "size": size, "mime-type": mime})
    shutil.rmtree(folder / "work", ignore_errors=True)
    shutil.rmtree(folder / "runtime", ignore_errors=True)
    (folder / "task.json").unlink(missing_ok=True)
    return found
