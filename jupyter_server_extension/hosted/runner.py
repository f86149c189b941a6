"""The scheduler loop: booked sessions move WAITING -> PREPARING -> RUNNING -> RELEASING -> a final
phase at their booked times, offers expire, storage and results go when their time is up.

The loop wakes at the next due time (or when woken by an accept or a cancel, and at least every
couple of seconds), looks in the database for what is due, and acts. Claiming a session is a
conditional update in a serialised transaction, so when two servers share a database each session
runs exactly once; a heartbeat marks the sessions this runner is running. A session whose runner
died (its heartbeat stopped, or its process on this host is gone) is handed to the executor's
``adopt`` when the run had reported a handle, else failed with a message instead of hanging forever.
On a clean shutdown, runs of an executor whose engine keeps them going (``survives_restart``) are
detached rather than stopped: the session loses its runner, which the next server takes as a sign
to adopt it at once.

The runner also keeps the executor's slots in step with the calendar: a booked session runs only
once the executor holds its slot (``booked``; retried here if the server died right after an
accept), and every booked slot that is over is given back (``released``) exactly once.

Every step is recorded as an event (time, level, phase, message): the session's history. One
session's run is :mod:`.run`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from execplanner_widgets.model import format_instant
from execplanner_widgets.model.phases import (
    FINAL_PHASES,
    FINISHED_PHASES,
    QUEUED_PHASES,
    RUNNING_PHASES,
    SessionPhase,
    values,
)

from .executors import Executor
from .plan import precise_now
from .run import ERROR_TRANSIENT, HOST, SessionRun
from .service import BookingService, release_hold
from .store import SessionRow, add_event, add_events
from .tables import SLOT_BOOKED, run_under_way, run_under_way_clause

__all__ = ["Runner"]

log = logging.getLogger(__name__)

DB = Callable[..., Awaitable[Any]]

#: Longest sleep between looks at the database (cancel requests from other servers, heartbeats).
MAX_SLEEP = 2.0
#: A running session's runner writes a heartbeat this often ...
HEARTBEAT = timedelta(seconds=5)
#: ... and a session whose heartbeat is older than this is taken to have lost its runner.
STALE = timedelta(seconds=45)

_RUNNING = values(RUNNING_PHASES)
_FINAL = values(FINAL_PHASES)


def _runner_gone(
    heartbeat: datetime | None, runner: str | None, host: str | None, pid: int | None, now: datetime
) -> bool:
    """The runner of a session under way is gone: it detached on a clean shutdown (no runner), its
    heartbeat stopped, or its process on this host no longer exists."""
    if runner is None or heartbeat is None or heartbeat < now - STALE:
        return True
    return host == HOST and pid is not None and pid != os.getpid() and not psutil.pid_exists(pid)


def _short(value: datetime) -> str:
    return format_instant(value.replace(microsecond=0))


@dataclass
class Sweep:
    """What one look at the database found to do."""

    claimed: list[SessionRow] = field(default_factory=list)
    adopted: list[SessionRow] = field(default_factory=list)
    to_book: list[str] = field(default_factory=list)
    to_release: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    storage_due: list[str] = field(default_factory=list)
    destruction_due: list[str] = field(default_factory=list)
    next_due: datetime | None = None
    changed: bool = False


class Runner:
    """Runs one hosted platform's booked sessions."""

    def __init__(
        self,
        service: BookingService,
        executor: Executor,
        workdir: Path,
        runner_id: str,
        db: DB,
        on_change: Callable[[], None],
    ) -> None:
        self.service = service
        self.store = service.store
        self.platform = service.platform
        self.options = service.options
        self.executor = executor
        self.workdir = workdir
        self.runner_id = runner_id
        self._db = db
        self._on_change = on_change
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._sessions: dict[str, SessionRun] = {}
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
        """Stop the loop and every run (their processes are stopped too); record why.

        A run the engine keeps going without this server (:attr:`Executor.survives_restart`, once it
        has a handle) is detached instead: its task is cancelled without a stop, the session keeps
        its phase and handle and loses its runner, and the next server takes it over at once."""
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
        for uuid, task in self._runs.items():
            run = self._sessions.get(uuid)
            if not task.done() and run is not None and run.detachable:
                run.detaching = True
                task.cancel()
            elif uuid in self._stops:
                self._stops[uuid].set()
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
                self._launch(row, adopt=False)
            for row in sweep.adopted:
                self._launch(row, adopt=True)
            await self._keep_slots(sweep)
            for uuid in sweep.stop:
                self.stop_session(uuid)
            for uuid in sweep.storage_due:
                await self._remove_storage(uuid)
            for uuid in sweep.destruction_due:
                await self._destroy(uuid)
            for uuid in [uuid for uuid, task in self._runs.items() if task.done()]:
                self._runs.pop(uuid)
                self._stops.pop(uuid, None)
                self._sessions.pop(uuid, None)
            delay = MAX_SLEEP
            if sweep.next_due is not None:
                delay = min(delay, max(0.0, (sweep.next_due - precise_now()).total_seconds()))
            if self._closing:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    def _launch(self, row: SessionRow, *, adopt: bool) -> None:
        """Start (or take over) the run of a claimed session as a task of its own."""
        stop = self._stops[row.uuid] = asyncio.Event()
        run = SessionRun(
            row,
            store=self.store,
            platform=self.platform,
            options=self.options,
            executor=self.executor,
            folder=self.session_dir(row.uuid),
            stop=stop,
            db=self._db,
            on_change=self._on_change,
            closing=lambda: self._closing,
        )
        self._sessions[row.uuid] = run
        work = run.adopt() if adopt else run.run()
        self._runs[row.uuid] = asyncio.get_running_loop().create_task(work, name=f"execplanner-session-{row.uuid}")

    async def _keep_slots(self, sweep: Sweep) -> None:
        """The executor holds what is booked and gives back what is over (never fatal to the loop)."""
        for uuid in sweep.to_book:
            try:
                await self.service.book(uuid)
            except Exception as error:  # refused (the session is REJECTED now) or failed: logged, next one
                log.warning("hosted platform %s: booking the slot of %s: %s", self.platform, uuid, error)
        for uuid in sweep.to_release:
            await self.service.release_slot(uuid)
        if sweep.to_book or sweep.to_release:
            self._on_change()

    def _dead_runners(self, session: Session, now: datetime) -> list[str]:
        """Sessions run by another runner that is gone: its heartbeat stopped, or its process on this
        host no longer exists (a killed server is noticed at once, not after :data:`STALE`), or it
        shut down cleanly and left the run to the engine (no runner: taken over at once)."""
        query = select(
            SessionRow.uuid, SessionRow.heartbeat, SessionRow.runner, SessionRow.runner_host, SessionRow.runner_pid
        ).where(
            SessionRow.platform == self.platform,
            run_under_way_clause(),
            or_(SessionRow.runner != self.runner_id, SessionRow.runner.is_(None)),
        )
        return [uuid for uuid, *runner in session.execute(query) if _runner_gone(*runner, now)]

    def _slot_work(self, session: Session, now: datetime) -> tuple[list[str], list[str]]:
        """Booked sessions whose executor slot was never confirmed (older than :data:`STALE`), and
        ended sessions whose slot is still held."""
        unbooked = select(SessionRow.uuid).where(
            SessionRow.platform == self.platform,
            SessionRow.phase.in_(values(QUEUED_PHASES)),
            SessionRow.slot_state.is_(None),
            SessionRow.accepted < now - STALE,
        )
        held = select(SessionRow.uuid).where(
            SessionRow.platform == self.platform,
            SessionRow.phase.in_(values(FINISHED_PHASES)),
            SessionRow.slot_state == SLOT_BOOKED,
        )
        return list(session.scalars(unbooked)), list(session.scalars(held))

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
                        (SessionRow.phase == SessionPhase.ACCEPTED.value) & (SessionRow.slot_state == SLOT_BOOKED),
                        (SessionRow.phase == SessionPhase.WAITING.value)
                        & (SessionRow.start <= now)
                        & (SessionRow.slot_state == SLOT_BOOKED)
                        & SessionRow.run_started.is_(None),
                    ),
                )
                .limit(1)
            )
            dead = self._dead_runners(session, now)
            sweep.to_book, sweep.to_release = self._slot_work(session, now)
            heartbeat_due = now - self._last_heartbeat >= HEARTBEAT and bool(self.running)
        if due is not None or dead or heartbeat_due:
            with self.store.write(self.platform) as session:
                now = precise_now()
                sweep.changed = self._advance(session, now, sweep) or sweep.changed
                sweep.changed = self._reap(session, now, dead, sweep) or sweep.changed
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
            SessionRow.platform == self.platform, done.is_(False), when <= now, SessionRow.phase.in_(_FINAL)
        )
        return list(session.scalars(query))

    def _mine(self) -> Any:
        return select(SessionRow).where(
            SessionRow.platform == self.platform,
            SessionRow.runner == self.runner_id,
            run_under_way_clause(),
        )

    def _advance(self, session: Any, now: datetime, sweep: Sweep) -> bool:
        changed = False
        event = add_event
        offered = select(SessionRow).where(
            SessionRow.platform == self.platform,
            SessionRow.phase == SessionPhase.OFFERED.value,
            SessionRow.expires <= now,
        )
        for row in session.scalars(offered):
            row.phase, row.modified = SessionPhase.EXPIRED.value, now
            event(session, row, f"expired at {_short(row.expires)} without being accepted; its capacity is free again")
            changed = True
        changed = self._queue_accepted(session, now) or changed
        waiting = select(SessionRow).where(
            SessionRow.platform == self.platform,
            SessionRow.phase == SessionPhase.WAITING.value,
            SessionRow.start <= now,
            SessionRow.slot_state == SLOT_BOOKED,
            SessionRow.run_started.is_(None),  # WAITING in the engine's queue is a run under way
        )
        for row in session.scalars(waiting):
            changed = True
            if row.available_end <= now:
                row.phase, row.modified = SessionPhase.FAILED.value, now
                row.error = {"type": ERROR_TRANSIENT, "message": "the platform was not running during the booked slot"}
                release_hold(row, now, storage_too=True)
                event(
                    session,
                    row,
                    f"missed its booked slot ({_short(row.available_start)} to {_short(row.available_end)}): the platform was not running",
                    "ERROR",
                )
                continue
            row.phase, row.modified = SessionPhase.PREPARING.value, now
            row.runner, row.heartbeat, row.run_started = self.runner_id, now, now
            row.runner_host, row.runner_pid, row.run_handle = HOST, os.getpid(), None
            event(
                session,
                row,
                f"preparing: fetching the executable and {len((row.document or {}).get('fetch') or [])} data item(s)",
            )
            sweep.claimed.append(row)
        return changed

    def _queue_accepted(self, session: Session, now: datetime) -> bool:
        """ACCEPTED -> WAITING once the executor holds the slot, in two plain-SQL statements and one
        batch of events however many were accepted since the last look: this transaction holds the
        platform's turn, and a burst of accepts must not wait behind a row-by-row unit of work.
        The calendar is not told: a booked session holds the same slot in both phases."""
        connection = session.connection()
        found = connection.execute(self._accepted, {"platform": self.platform}).all()
        if not found:
            return False
        uuids = [uuid for uuid, _ in found]
        waiting = SessionPhase.WAITING.value
        connection.execute(
            update(SessionRow.__table__)
            .where(SessionRow.uuid.in_(uuids), SessionRow.phase == SessionPhase.ACCEPTED.value)
            .values(phase=waiting, modified=now)
        )
        add_events(
            session,
            [(uuid, f"waiting for its booked start at {_short(start)}", "INFO", waiting) for uuid, start in found],
        )
        return True

    #: Booked sessions whose slot the executor holds and that are still ACCEPTED.
    _accepted = select(SessionRow.uuid, SessionRow.start).where(
        SessionRow.platform == bindparam("platform"),
        SessionRow.phase == SessionPhase.ACCEPTED.value,
        SessionRow.slot_state == SLOT_BOOKED,
    )

    def _reap(self, session: Session, now: datetime, dead: list[str], sweep: Sweep) -> bool:
        """Sessions whose runner is gone: the executor adopts a run that had started (it reported a
        handle); anything else is failed with a message (book it again)."""
        for uuid in dead:
            row = session.get(SessionRow, uuid)
            if row is None or not run_under_way(row) or row.runner == self.runner_id:
                continue
            if not _runner_gone(row.heartbeat, row.runner, row.runner_host, row.runner_pid, now):
                continue  # another server took it over since this one looked
            row.modified = now
            if row.run_handle:  # the executor had started the user's code: it takes the run over
                row.runner, row.heartbeat, row.runner_host, row.runner_pid = self.runner_id, now, HOST, os.getpid()
                add_event(
                    session, row, "the server running this session stopped; this server takes the run over", "WARN"
                )
                sweep.adopted.append(row)
                continue
            row.phase, row.run_ended = SessionPhase.FAILED.value, now
            row.error = {
                "type": ERROR_TRANSIENT,
                "message": "interrupted: the server running it stopped (restart or crash)",
            }
            release_hold(row, now, storage_too=False)
            add_event(
                session,
                row,
                "interrupted: the server running this session stopped before it finished; book it again",
                "ERROR",
            )
        return bool(dead)

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
                base.where(
                    SessionRow.phase.in_((SessionPhase.ACCEPTED.value, SessionPhase.WAITING.value)),
                    SessionRow.run_started.is_(None),
                )
                .with_only_columns(SessionRow.start)
                .order_by(SessionRow.start)
                .limit(1)
            ),
            session.scalar(
                base.where(SessionRow.storage_removed.is_(False), SessionRow.phase.in_(_FINAL))
                .with_only_columns(SessionRow.storage_end)
                .order_by(SessionRow.storage_end)
                .limit(1)
            ),
            session.scalar(
                base.where(SessionRow.destroyed.is_(False), SessionRow.phase.in_(_FINAL))
                .with_only_columns(SessionRow.destruction)
                .order_by(SessionRow.destruction)
                .limit(1)
            ),
        ]
        found = [value for value in candidates if value is not None]
        return min(found) if found else None

    # ----------------------------------------------------------------------- clean-up

    async def _remove_storage(self, uuid: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.session_dir(uuid) / "storage", True)

        def write() -> None:
            with self.store.write(self.platform) as session:
                row = session.get(SessionRow, uuid)
                if row is not None and not row.storage_removed:
                    row.storage_removed = True
                    add_event(session, row, f"storage removed at the end of its lifetime ({_short(row.storage_end)})")

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
                    add_event(
                        session, row, f"results deleted at the job's destruction time ({_short(row.destruction)})"
                    )

        await self._db(write)
        self._on_change()
