"""The scheduler loop: booked sessions move WAITING -> PREPARING -> RUNNING -> RELEASING -> a final
phase at their booked times, offers expire, storage and results go when their time is up.

The loop wakes at the next due time (or when woken by an accept or a cancel, and at least every
couple of seconds), looks in the database for what is due, and acts. Claiming a session is a
conditional update in a serialised transaction, so when two servers share a database each session
runs exactly once; a heartbeat marks the sessions this runner is running, and a session whose
runner stopped beating (the server died) is failed with a message instead of hanging forever.

Every step is recorded as an event (time, level, phase, message): the session's history.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from execplanner_widgets.model import SessionPhase, canonical_kind, format_instant, short_kind

from .booking import FINAL, RUNNING_PHASES, Bookings, precise_now
from .executors import Executor, RunOutcome, RunSpec
from .staging import StagingError, stage
from .store import SessionRow

__all__ = ["Runner"]

log = logging.getLogger(__name__)

DB = Callable[..., Awaitable[Any]]

#: Longest sleep between looks at the database (cancel requests from other servers, heartbeats).
MAX_SLEEP = 2.0
#: A running session's runner writes a heartbeat this often ...
HEARTBEAT = timedelta(seconds=5)
#: ... and a session whose heartbeat is older than this is taken to have lost its runner.
STALE = timedelta(seconds=45)

ERROR_FATAL = "fatal"
ERROR_TRANSIENT = "transient"


def _short(value: datetime) -> str:
    return format_instant(value.replace(microsecond=0))


@dataclass
class Sweep:
    """What one look at the database found to do."""

    claimed: list[SessionRow] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    storage_due: list[str] = field(default_factory=list)
    destruction_due: list[str] = field(default_factory=list)
    next_due: datetime | None = None
    changed: bool = False


class Runner:
    """Runs one hosted platform's booked sessions."""

    def __init__(
        self,
        bookings: Bookings,
        executor: Executor,
        workdir: Path,
        runner_id: str,
        db: DB,
        on_change: Callable[[], None],
    ) -> None:
        self.bookings = bookings
        self.store = bookings.store
        self.platform = bookings.platform
        self.options = bookings.options
        self.executor = executor
        self.workdir = workdir
        self.runner_id = runner_id
        self._db = db
        self._on_change = on_change
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._closing = False
        self._last_heartbeat = datetime.min.replace(tzinfo=precise_now().tzinfo)

    # --------------------------------------------------------------------------- control

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(
                self._forever(), name=f"execplanner-runner-{self.platform}"
            )

    def wake(self) -> None:
        """Look at the database now (an accept or cancel just happened)."""
        self._wake.set()

    def stop_session(self, uuid: str) -> None:
        """Stop the run of ``uuid`` if it runs here (a cancel from this process)."""
        stop = self._stops.get(uuid)
        if stop is not None:
            stop.set()
        self.wake()

    def session_dir(self, uuid: str) -> Path:
        return self.workdir / uuid

    @property
    def running(self) -> list[str]:
        return [uuid for uuid, task in self._runs.items() if not task.done()]

    async def aclose(self, grace: float = 15.0) -> None:
        """Stop the loop and every run (their processes are stopped too); record why."""
        self._closing = True
        self._wake.set()
        if self._loop is not None:
            # the loop ends by itself once it sees _closing; cancelling is the fallback (on Python
            # 3.11 wait_for can swallow a cancellation that meets a wake-up, so it is not relied on)
            done, _ = await asyncio.wait({self._loop}, timeout=10)
            if not done:
                self._loop.cancel()
                await asyncio.wait({self._loop}, timeout=10)
            self._loop = None
        for stop in self._stops.values():
            stop.set()
        runs = [task for task in self._runs.values() if not task.done()]
        if runs:
            _, pending = await asyncio.wait(runs, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*runs, return_exceptions=True)

    # ------------------------------------------------------------------------------ loop

    async def _forever(self) -> None:
        while not self._closing:
            self._wake.clear()  # a wake-up from here on (an accept during the sweep) is not lost
            try:
                sweep = await self._db(self._sweep)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not kill the scheduler
                log.exception("hosted platform %s: the scheduler could not read the database", self.platform)
                sweep = Sweep()
            if sweep.changed:
                self._on_change()
            for row in sweep.claimed:
                self._stops[row.uuid] = asyncio.Event()
                self._runs[row.uuid] = asyncio.get_running_loop().create_task(
                    self._run(row), name=f"execplanner-session-{row.uuid}"
                )
            for uuid in sweep.stop:
                self.stop_session(uuid)
            for uuid in sweep.storage_due:
                await self._remove_storage(uuid)
            for uuid in sweep.destruction_due:
                await self._destroy(uuid)
            for uuid in [uuid for uuid, task in self._runs.items() if task.done()]:
                self._runs.pop(uuid)
                self._stops.pop(uuid, None)
            delay = MAX_SLEEP
            if sweep.next_due is not None:
                delay = min(delay, max(0.0, (sweep.next_due - precise_now()).total_seconds()))
            if self._closing:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    def _sweep(self) -> Sweep:
        """One look at the database (in a database thread): expire, queue, claim, heartbeat, reap."""
        sweep = Sweep()
        now = precise_now()
        with self.store.read() as session:
            due = session.scalar(
                select(SessionRow.uuid)
                .where(
                    SessionRow.platform == self.platform,
                    or_(
                        (SessionRow.phase == SessionPhase.OFFERED.value) & (SessionRow.expires <= now),
                        SessionRow.phase == SessionPhase.ACCEPTED.value,
                        (SessionRow.phase == SessionPhase.WAITING.value) & (SessionRow.start <= now),
                        SessionRow.phase.in_(RUNNING_PHASES)
                        & ((SessionRow.runner != self.runner_id) | SessionRow.runner.is_(None))
                        & (SessionRow.heartbeat < now - STALE),
                    ),
                )
                .limit(1)
            )
            heartbeat_due = now - self._last_heartbeat >= HEARTBEAT and bool(self.running)
        if due is not None or heartbeat_due:
            with self.store.write(self.platform) as session:
                now = precise_now()
                sweep.changed = self._advance(session, now, sweep) or sweep.changed
                if heartbeat_due:
                    for row in session.scalars(self._mine()):
                        row.heartbeat = now
                    self._last_heartbeat = now
        with self.store.read() as session:
            now = precise_now()
            sweep.stop = list(
                session.scalars(
                    self._mine().where(SessionRow.cancel_requested.is_(True)).with_only_columns(SessionRow.uuid)
                )
            )
            sweep.storage_due = self._finished_due(session, SessionRow.storage_removed, SessionRow.storage_end, now)
            sweep.destruction_due = self._finished_due(session, SessionRow.destroyed, SessionRow.destruction, now)
            sweep.next_due = self._next_due(session)
        return sweep

    def _finished_due(self, session: Any, done: Any, when: Any, now: datetime) -> list[str]:
        """Finished sessions whose ``when`` has come and whose clean-up (``done``) has not happened."""
        query = select(SessionRow.uuid).where(
            SessionRow.platform == self.platform, done.is_(False), when <= now, SessionRow.phase.in_(FINAL)
        )
        return list(session.scalars(query))

    def _mine(self) -> Any:
        return select(SessionRow).where(
            SessionRow.platform == self.platform,
            SessionRow.runner == self.runner_id,
            SessionRow.phase.in_(RUNNING_PHASES),
        )

    def _advance(self, session: Any, now: datetime, sweep: Sweep) -> bool:
        changed = False
        event = self.bookings.event
        offered = select(SessionRow).where(
            SessionRow.platform == self.platform,
            SessionRow.phase == SessionPhase.OFFERED.value,
            SessionRow.expires <= now,
        )
        for row in session.scalars(offered):
            row.phase, row.modified = SessionPhase.EXPIRED.value, now
            event(session, row, f"expired at {_short(row.expires)} without being accepted; its capacity is free again")
            changed = True
        accepted = select(SessionRow).where(
            SessionRow.platform == self.platform, SessionRow.phase == SessionPhase.ACCEPTED.value
        )
        for row in session.scalars(accepted):
            row.phase, row.modified = SessionPhase.WAITING.value, now
            event(session, row, f"waiting for its booked start at {_short(row.start)}")
            changed = True
        waiting = select(SessionRow).where(
            SessionRow.platform == self.platform,
            SessionRow.phase == SessionPhase.WAITING.value,
            SessionRow.start <= now,
        )
        for row in session.scalars(waiting):
            changed = True
            if row.available_end <= now:
                row.phase, row.modified = SessionPhase.FAILED.value, now
                row.error = {"type": ERROR_TRANSIENT, "message": "the platform was not running during the booked slot"}
                self.bookings.release(row, now, storage_too=True)
                event(
                    session,
                    row,
                    f"missed its booked slot ({_short(row.available_start)} to {_short(row.available_end)}): the platform was not running",
                    "ERROR",
                )
                continue
            row.phase, row.modified = SessionPhase.PREPARING.value, now
            row.runner, row.heartbeat, row.run_started = self.runner_id, now, now
            event(
                session,
                row,
                f"preparing: fetching the executable and {len((row.document or {}).get('fetch') or [])} data item(s)",
            )
            sweep.claimed.append(row)
        stale = select(SessionRow).where(
            SessionRow.platform == self.platform,
            SessionRow.phase.in_(RUNNING_PHASES),
            or_(SessionRow.runner != self.runner_id, SessionRow.runner.is_(None)),
            SessionRow.heartbeat < now - STALE,
        )
        for row in session.scalars(stale):
            row.phase, row.modified, row.run_ended = SessionPhase.FAILED.value, now, now
            row.error = {
                "type": ERROR_TRANSIENT,
                "message": "interrupted: the server running it stopped (restart or crash)",
            }
            self.bookings.release(row, now, storage_too=False)
            event(
                session,
                row,
                "interrupted: the server running this session stopped before it finished; book it again",
                "ERROR",
            )
            changed = True
        return changed

    def _next_due(self, session: Any) -> datetime | None:
        base = select(SessionRow).where(SessionRow.platform == self.platform)
        candidates = [
            session.scalar(
                base.where(SessionRow.phase == SessionPhase.OFFERED.value)
                .with_only_columns(SessionRow.expires)
                .order_by(SessionRow.expires)
                .limit(1)
            ),
            session.scalar(
                base.where(SessionRow.phase.in_((SessionPhase.ACCEPTED.value, SessionPhase.WAITING.value)))
                .with_only_columns(SessionRow.start)
                .order_by(SessionRow.start)
                .limit(1)
            ),
            session.scalar(
                base.where(SessionRow.storage_removed.is_(False), SessionRow.phase.in_(FINAL))
                .with_only_columns(SessionRow.storage_end)
                .order_by(SessionRow.storage_end)
                .limit(1)
            ),
            session.scalar(
                base.where(SessionRow.destroyed.is_(False), SessionRow.phase.in_(FINAL))
                .with_only_columns(SessionRow.destruction)
                .order_by(SessionRow.destruction)
                .limit(1)
            ),
        ]
        found = [value for value in candidates if value is not None]
        return min(found) if found else None

    # --------------------------------------------------------------------------- one run

    async def _step(
        self, uuid: str, phase: SessionPhase | None, message: str, level: str = "INFO", **fields: Any
    ) -> None:
        """Move ``uuid`` to ``phase`` (or keep it) and record why, in one transaction."""

        def write() -> None:
            with self.store.write(self.platform) as session:
                row = session.get(SessionRow, uuid)
                if row is None:
                    return
                now = precise_now()
                if phase is not None:
                    row.phase = phase.value
                for name, value in fields.items():
                    setattr(row, name, value)
                row.modified = now
                self.bookings.event(session, row, message, level)

        await self._db(write)
        self._on_change()

    async def _notes(self, uuid: str, notes: list[str]) -> None:
        for note in notes:
            await self._step(uuid, None, note)

    async def _run(self, row: SessionRow) -> None:
        uuid = row.uuid
        stop = self._stops[uuid]
        folder = self.session_dir(uuid)
        document = row.document or {}
        try:
            outcome = await self._prepare_and_run(row, folder, document, stop)
        except StagingError as error:
            await self._finish(uuid, folder, RunOutcome("failed", f"preparing failed: {error}"), ERROR_FATAL)
            return
        except asyncio.CancelledError:
            await asyncio.shield(
                self._finish(
                    uuid, folder, RunOutcome("failed", "the platform shut down during the run"), ERROR_TRANSIENT
                )
            )
            raise
        except Exception as error:
            log.exception("hosted platform %s: session %s failed", self.platform, uuid)
            await self._finish(
                uuid, folder, RunOutcome("failed", f"internal error: {type(error).__name__}: {error}"), ERROR_FATAL
            )
            return
        if outcome.status == "cancelled" and self._closing:
            outcome = RunOutcome("failed", "the platform shut down during the run", outcome.exit_code)
            await self._finish(uuid, folder, outcome, ERROR_TRANSIENT)
            return
        await self._finish(uuid, folder, outcome, ERROR_FATAL)

    async def _prepare_and_run(
        self, row: SessionRow, folder: Path, document: dict[str, Any], stop: asyncio.Event
    ) -> RunOutcome:
        uuid = row.uuid
        executable = document.get("executable") or {}
        kind = short_kind(canonical_kind(str(executable.get("kind", "")), "executable"))
        location = executable.get("location")
        if not location:
            raise StagingError("the executable has no location")
        default_name = "notebook.ipynb" if kind == "jupyter-notebook" else "script.py"
        data = [
            (item["location"], item.get("name") or f"data-{index + 1}")
            for index, item in enumerate(document.get("fetch") or [])
        ]
        storage_names = list(document.get("storage_names") or [])
        staged = await stage(
            (str(location), default_name),
            [(str(where), str(name)) for where, name in data],
            storage_names,
            folder,
            local_roots=self.options.local_roots,
            limit=self.options.download_limit * 1024**3,
        )
        await self._notes(uuid, staged.notes)
        if stop.is_set():
            return RunOutcome("cancelled", "stopped on request before it ran")
        wait = (row.available_start - precise_now()).total_seconds()
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
                return RunOutcome("cancelled", "stopped on request before it ran")
            except asyncio.TimeoutError:
                pass
        environment = {"EXECPLANNER_SESSION": uuid, "EXECPLANNER_OUTPUTS": str(folder / "work" / "outputs")}
        if storage_names:
            environment["EXECPLANNER_STORAGE"] = str(folder / "storage")
        spec = RunSpec(
            session=uuid,
            kind=kind,  # type: ignore[arg-type]
            entry=staged.entry,
            workdir=folder / "work",
            results=folder / "results",
            cores=row.cores,
            memory_gib=row.memory,
            deadline=row.available_end,
            arguments=[str(arg) for arg in executable.get("arguments") or []],
            environment=environment,
        )
        await self._step(
            uuid,
            SessionPhase.RUNNING,
            f"running on the {self.executor.name} executor with {row.cores} core(s) and at most {row.memory} GiB of memory, "
            f"until the slot ends at {_short(row.available_end)}",
        )
        return await self.executor.run(spec, stop)

    async def _finish(self, uuid: str, folder: Path, outcome: RunOutcome, error_type: str) -> None:
        """RELEASING (collect results, remove the working folder), then the final phase."""
        await self._step(
            uuid,
            SessionPhase.RELEASING,
            f"releasing: {outcome.message}",
            "INFO" if outcome.status == "completed" else "WARN",
        )
        results = await asyncio.to_thread(collect_results, folder)
        final = {"completed": SessionPhase.COMPLETED, "cancelled": SessionPhase.CANCELLED}.get(
            outcome.status, SessionPhase.FAILED
        )
        error = None if final is not SessionPhase.FAILED else {"type": error_type, "message": outcome.message}
        now = precise_now()

        def write() -> None:
            with self.store.write(self.platform) as session:
                row = session.get(SessionRow, uuid)
                if row is None:
                    return
                row.phase, row.modified, row.run_ended = final.value, now, now
                row.results, row.error = results, error
                row.cancel_requested = False
                self.bookings.release(row, now, storage_too=not (row.document or {}).get("storage_names"))
                names = ", ".join(item["id"] for item in results) or "none"
                level = (
                    "INFO"
                    if final is SessionPhase.COMPLETED
                    else ("WARN" if final is SessionPhase.CANCELLED else "ERROR")
                )
                self.bookings.event(session, row, f"{final.value.lower()}: {outcome.message}; results: {names}", level)

        await self._db(write)
        self._on_change()

    # ----------------------------------------------------------------------- clean-up

    async def _remove_storage(self, uuid: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.session_dir(uuid) / "storage", True)

        def write() -> None:
            with self.store.write(self.platform) as session:
                row = session.get(SessionRow, uuid)
                if row is not None and not row.storage_removed:
                    row.storage_removed = True
                    self.bookings.event(
                        session, row, f"storage removed at the end of its lifetime ({_short(row.storage_end)})"
                    )

        await self._db(write)

    async def _destroy(self, uuid: str) -> None:
        folder = self.session_dir(uuid)
        for part in ("results", "work", "runtime"):
            await asyncio.to_thread(shutil.rmtree, folder / part, True)

        def write() -> None:
            with self.store.write(self.platform) as session:
                row = session.get(SessionRow, uuid)
                if row is not None and not row.destroyed:
                    row.destroyed, row.results = True, []
                    self.bookings.event(
                        session, row, f"results deleted at the job's destruction time ({_short(row.destruction)})"
                    )

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
