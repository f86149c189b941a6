"""Where hosted platforms keep their state: offer sets, sessions (offers and bookings), their
events, and the provider's reservations, in a real database through SQLAlchemy 2.0.

The default is one SQLite file (``data_dir/hosted.sqlite``) shared by every hosted platform of
the host; any SQLAlchemy URL works, PostgreSQL included (``postgresql+psycopg://...``).

No overbooking depends on one rule: every change to a platform's calendar happens in a
:meth:`Store.write` transaction, and those are serialised *by the database*, so that two
servers, two processes or two threads can never both see the same free capacity:

* SQLite: write transactions start with ``BEGIN IMMEDIATE``, which takes the database's write
  lock before the first read (readers keep going thanks to WAL);
* other databases: the transaction first locks the platform's row in ``hosted_locks``
  (``SELECT ... FOR UPDATE``), which queues every writer of the same platform behind it.

Where the driver has an asyncio side (psycopg), the write transactions of the requests a server
answers also run on its event loop (:meth:`Store.on_loop`): a transaction is a handful of round
trips to the database server, and waiting for them in a thread means waiting, after each one, for
the interpreter lock held by the thread that answers HTTP; on the loop the wait costs nothing and
the loop answers other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, bindparam, create_engine, func, insert, inspect, select, text, update
from sqlalchemy import event as event_module
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Select

from execplanner_widgets.model.phases import FINAL_PHASES, SessionPhase, values

from .calendar import Hold, session_holds, to_seconds
from .plan import precise_now
from .tables import (
    SLOT_BOOKED,
    SLOT_RELEASED,
    Base,
    EventRow,
    LockRow,
    OfferSetRow,
    ReservationRow,
    SessionRow,
    holding_clause,
)

if TYPE_CHECKING:  # the asyncio extension needs greenlet, which only the postgres extra brings
    from sqlalchemy.ext.asyncio import AsyncEngine


__all__ = [
    "Base",
    "EventRow",
    "LockRow",
    "OfferSetRow",
    "ReservationRow",
    "SessionRow",
    "StaleCalendar",
    "Store",
    "add_event",
    "add_events",
    "default_db_url",
    "events_of",
    "sessions_with_histories",
    "select_holds",
]

T = TypeVar("T")

_WRITE = "execplanner_write"
#: One lock per SQLite file in this process: writers queue here, first come first served, instead
#: of in SQLite's busy handler, which sleeps and retries (up to 100 ms a time) and so gives
#: seconds-long tails when a few threads want the write lock at once. Other processes still
#: queue on the database's own lock (BEGIN IMMEDIATE).
_FILE_LOCKS: dict[str, threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: str) -> threading.Lock:
    key = str(Path(path).expanduser().resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.Lock())


_PLATFORM = "execplanner_platform"
#: Taking a platform's turn: bump its generation (built once; the statement is the same every time).
_BUMP = (
    update(LockRow)
    .where(LockRow.platform == bindparam("locked"))
    .values(generation=func.coalesce(LockRow.generation, 0) + 1)
    .returning(LockRow.generation)
)


class Watcher(Protocol):
    """Told about a platform's write transactions while they hold its lock (see :mod:`.calendar_live`)."""

    #: It must reload from the database before it can answer (it missed or undid something).
    stale: bool

    def begin(self, generation: int | None) -> None: ...

    def changed(self, row: SessionRow | ReservationRow, deleted: bool = False) -> None: ...

    def invalidate(self) -> None: ...


#: Parents before children, for inserts of several tables in one go.
_TABLE_ORDER = list(Base.metadata.sorted_tables)


def _column_values(row: Any) -> dict[str, Any]:
    """Every column of ``row`` (a transient mapped object) as an insert wants it: the value set on
    it, else the column's default (``default=list`` gives a new list)."""
    values: dict[str, Any] = {}
    state = row.__dict__
    for column in row.__table__.columns:
        if column.key in state:
            values[column.key] = state[column.key]
        elif column.default is not None and column.default.is_scalar:
            values[column.key] = column.default.arg
        elif column.default is not None and column.default.is_callable:
            values[column.key] = column.default.arg(None)
        elif column.autoincrement is not True:
            values[column.key] = None
    return values


def _has_async_driver(url: str) -> bool:
    """Whether SQLAlchemy has an asyncio variant of ``url``'s driver (psycopg has; psycopg2 has
    not), and greenlet, which that needs, is installed."""
    try:
        import greenlet  # noqa: F401

        parsed = make_url(url)
        return bool(parsed.get_dialect().get_async_dialect_cls(parsed).is_async)
    except Exception:  # no such driver, or no greenlet: the writes stay in threads
        return False


def default_db_url(data_dir: Path) -> str:
    """The SQLite file the hosted platforms share when no URL is configured."""
    return f"sqlite:///{Path(data_dir) / 'hosted.sqlite'}"


#: Page cache of each SQLite connection (SQLite's default is 2 MiB): the calendar answers from
#: memory and the operating system caches the file, so a small cache per pooled connection
#: costs little time and keeps the server's memory flat as the database grows.
SQLITE_CACHE_KIB = 512


def _use_wal(cursor: Any, attempts: int = 400) -> None:
    """Put the file in WAL mode (once: it stays so). Switching needs the file to itself, and
    SQLite answers "locked" at once rather than waiting when another server is busy with it, so
    try again for a while."""
    for _ in range(attempts):
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
        time.sleep(0.05)
    raise sqlite3.OperationalError("could not switch the database to WAL mode: it stayed locked")


def _configure_sqlite(engine: Engine) -> None:
    """Take transaction control from the sqlite3 module: WAL, a long busy timeout, and
    ``BEGIN IMMEDIATE`` for write transactions."""

    @event_module.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            _use_wal(cursor)
        finally:
            cursor.close()

    @event_module.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class StaleCalendar(Exception):
    """A write transaction on the loop found the platform's calendar in need of a reload (another
    server wrote, or a transaction rolled back): reloading reads and sorts every booking, which
    must not hold up the loop, so the transaction is given up before any step ran, and its batch
    taken in a database thread."""


class Store:
    """An engine and two kinds of transactions: :meth:`read` and the serialised :meth:`write`."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        self._queue: threading.Lock | None = None  # writers of this process queue here first (SQLite)
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            if ":memory:" in url or url in ("sqlite://", "sqlite:///"):
                raise ValueError("hosted platforms need a database file or server, not an in-memory SQLite database")
            path = url.split("///", 1)[-1].split("?", 1)[0]
            if path:
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
                self._queue = _file_lock(path)
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 16
            kwargs["pool_use_lifo"] = True  # the warm connections serve; idle ones stay cold
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine = create_engine(url, **kwargs)
        except Exception as error:  # a bad URL or a missing driver: say which, not a traceback
            raise ValueError(f"cannot use the database {self.safe_url}: {error}") from None
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        self._reader = sessionmaker(self.engine, expire_on_commit=False, info={_DEFERS_EVENTS: True})
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False, info={_DEFERS_EVENTS: True})
        for maker in (self._reader, self._writer):
            event_module.listen(maker, "before_commit", _write_events)
        self._watchers: dict[str, Watcher] = {}
        # the asyncio twin of the engine, on the first loop that writes through it (see on_loop)
        self._loop_engine: tuple[asyncio.AbstractEventLoop, AsyncEngine] | None = None
        self._async_driver = not self.is_sqlite and _has_async_driver(url)
        event_module.listen(self._writer, "after_flush", self._after_flush)
        event_module.listen(self._writer, "do_orm_execute", self._on_statement)

    def watch(self, platform: str, watcher: Watcher) -> None:
        """Tell ``watcher`` about every row of ``platform`` that this store's write transactions flush."""
        self._watchers[platform] = watcher

    def _after_flush(self, session: Session, _context: Any) -> None:
        if not self._watchers:
            return
        for rows, deleted in ((session.new, False), (session.dirty, False), (session.deleted, True)):
            for row in rows:
                self._tell(session, row, deleted)

    def _tell(self, session: Session, row: object, deleted: bool = False) -> None:
        """Tell the watcher of ``row``'s platform that this transaction wrote it (a session or a
        reservation); written without that platform's lock, it cannot follow: it reloads."""
        if not isinstance(row, (SessionRow, ReservationRow)):
            return
        target = self._watchers.get(row.platform)
        if target is None:
            return
        if row.platform == session.info.get(_PLATFORM):
            target.changed(row, deleted)
        else:
            target.invalidate()

    def _on_statement(self, state: Any) -> None:
        """Bulk statements on the calendar's tables bypass the flush: the calendar cannot follow them."""
        if state.is_insert or state.is_update or state.is_delete:
            target = getattr(getattr(state.statement, "table", None), "name", None)
            if target in (SessionRow.__tablename__, ReservationRow.__tablename__):
                for watcher in self._watchers.values():
                    watcher.invalidate()

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "<invalid database URL>"

    def create_all(self, platform: str) -> None:
        """Create the tables if needed, and the platform's lock row."""
        # in a write transaction: on SQLite a read transaction that turns into a write one fails
        # at once ("database is locked") when another server creates the tables at the same time
        try:
            Base.metadata.create_all(self._write_engine)
        except (IntegrityError, ProgrammingError):  # another server created them at the same moment
            Base.metadata.create_all(self._write_engine)
        self._add_missing_columns()
        with self._reader.begin() as session:
            if session.get(LockRow, platform) is not None:
                return
        try:
            with self._writer.begin() as session:
                if session.get(LockRow, platform) is None:
                    session.add(LockRow(platform=platform))
        except IntegrityError:  # another process added it first: that is all we wanted
            pass

    def _add_missing_columns(self) -> None:
        """Columns added since a database was made are added to it (no migration tool needed):
        ``ALTER TABLE ... ADD COLUMN`` for each, nullable; sessions booked before the executor kept
        its slots count as booked (those that ended, as released)."""
        for table in Base.metadata.sorted_tables:
            present = {column["name"] for column in inspect(self.engine).get_columns(table.name)}
            missing = [column for column in table.columns if column.name not in present]
            for column in missing:
                kind = column.type.compile(dialect=self.engine.dialect)
                try:
                    with self._write_engine.begin() as connection:
                        connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
                except (OperationalError, ProgrammingError):  # another server added it at the same moment
                    continue
            if table.name == SessionRow.__tablename__ and any(column.name == "slot_state" for column in missing):
                with self._write_engine.begin() as connection:
                    booked = SessionRow.accepted.is_not(None) & SessionRow.slot_state.is_(None)
                    final = SessionRow.phase.in_(values(FINAL_PHASES))
                    connection.execute(update(SessionRow).where(booked & final).values(slot_state=SLOT_RELEASED))
                    connection.execute(update(SessionRow).where(booked).values(slot_state=SLOT_BOOKED))

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (a consistent snapshot; never blocks writers on WAL/MVCC)."""
        with self._reader.begin() as session:
            yield session

    @contextmanager
    def write(self, platform: str, connection: Connection | None = None) -> Iterator[Session]:
        """A transaction that holds the platform's calendar until it commits or rolls back (on
        ``connection`` when given: one :meth:`on_loop` lends, where a calendar that needs reloading
        raises :class:`StaleCalendar` instead).

        Taking the turn bumps the platform's generation (an ``UPDATE`` of its lock row, which is
        what queues the other writers on every database), so a watcher can tell its own writes
        from another process's."""
        watcher = self._watchers.get(platform)
        queue = self._queue
        if queue is not None:
            queue.acquire()
        try:
            with (
                self._writer(bind=connection) if connection is not None else self._writer() as session,
                session.begin(),
            ):
                session.info[_PLATFORM] = platform
                # on the connection, not through the ORM: the lock row is never loaded as an object
                generation = session.connection().execute(_BUMP, {"locked": platform}).scalar()
                if watcher is not None:
                    watcher.begin(generation)
                    if connection is not None and watcher.stale:
                        raise StaleCalendar(platform)
                yield session
        except BaseException:
            if watcher is not None:
                watcher.invalidate()
            raise
        finally:
            if queue is not None:
                queue.release()

    def add_rows(self, session: Session, rows: Sequence[OfferSetRow | SessionRow]) -> None:
        """Insert new rows in plain SQL, one statement per table, on the transaction's connection.

        The ORM's unit of work is the dearest part of answering a request; new offers need none of
        it (they are only inserted here, and read back as they are). The rows stay transient
        objects, and the platform's calendar is told about the sessions as a flush would tell it."""
        by_table: dict[Any, list[dict[str, Any]]] = {}
        for row in rows:
            by_table.setdefault(row.__table__, []).append(_column_values(row))
        connection = session.connection()
        for table in sorted(by_table, key=_TABLE_ORDER.index):
            connection.execute(insert(table), by_table[table])
        for row in rows:
            self._tell(session, row)

    def writes_on(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether :meth:`on_loop` may run on ``loop``: the driver has an asyncio side, and no
        other loop (still open) uses it; an asyncio connection belongs to the loop that opened it."""
        if not self._async_driver:
            return False
        return self._loop_engine is None or self._loop_engine[0] is loop or self._loop_engine[0].is_closed()

    async def on_loop(self, function: Callable[[Connection], T]) -> T:
        """Run ``function(connection)`` on the running loop: its statements are awaited there (the
        synchronous ORM code runs in a greenlet, as SQLAlchemy's asyncio extension does it), with
        no thread in between. Only where :meth:`writes_on` says so."""
        loop = asyncio.get_running_loop()
        if self._loop_engine is None or self._loop_engine[0] is not loop:
            if not self.writes_on(loop):
                raise RuntimeError(f"{self.safe_url} already writes on another event loop")
            # a closed loop's connections cannot be closed any more: the server sees them go. No
            # check before each use (a round trip): a connection the server dropped fails the first
            # statement, and the group commit takes that batch again on a new one
            from sqlalchemy.ext.asyncio import create_async_engine

            self._loop_engine = (loop, create_async_engine(self.url))
        async with self._loop_engine[1].connect() as connection:
            return await connection.run_sync(function)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Close every connection: the pool's, and those of the asyncio engine on its own loop
        (waited for at most ``timeout`` s there; a loop that has closed took them with it)."""
        paired, self._loop_engine = self._loop_engine, None
        if paired is not None:
            loop, engine = paired
            try:
                if loop is asyncio.get_running_loop():
                    await asyncio.wait_for(engine.dispose(), timeout)
                elif loop.is_running():
                    closing = asyncio.run_coroutine_threadsafe(engine.dispose(), loop)
                    await asyncio.wait_for(asyncio.wrap_future(closing), timeout)
            except (asyncio.TimeoutError, RuntimeError, OSError):  # closing must never hang the host
                pass
        self.dispose()

    def dispose(self) -> None:
        self.engine.dispose()


# ------------------------------------------------------------------------------------ queries


def select_holds(
    session: Session,
    platform: str,
    low: datetime,
    high: datetime,
    now: datetime,
    *,
    owner: str | None = None,
    by_owner: bool = False,
    exclude: str | None = None,
) -> list[Hold]:
    """Everything that holds capacity somewhere in ``[low, high)``: bookings, live offers and (for
    the whole platform) reservations. Reads only rows that overlap the window."""
    query = select(
        SessionRow.start,
        SessionRow.compute_end,
        SessionRow.storage_end,
        SessionRow.cores,
        SessionRow.memory,
        SessionRow.storage,
    ).where(
        SessionRow.platform == platform,
        SessionRow.hold_end > low,
        SessionRow.start < high,
        holding_clause(now),
    )
    if by_owner:
        query = query.where(SessionRow.owner.is_(None) if owner is None else SessionRow.owner == owner)
    if exclude is not None:
        query = query.where(SessionRow.uuid != exclude)
    holds: list[Hold] = []
    for start, compute_end, storage_end, cores, memory, storage in session.execute(query):
        holds.extend(session_holds(start, compute_end, storage_end, cores, memory, storage or 0))
    if not by_owner:
        reserved = select(
            ReservationRow.start,
            ReservationRow.end,
            ReservationRow.cores,
            ReservationRow.memory,
            ReservationRow.storage,
        ).where(ReservationRow.platform == platform, ReservationRow.end > low, ReservationRow.start < high)
        for start, end, cores, memory, storage in session.execute(reserved):
            holds.append(Hold(to_seconds(start), to_seconds(end), cores, memory, storage))
    return holds


def add_event(
    session: Session, row: SessionRow, message: str, level: str = "INFO", phase: SessionPhase | str | None = None
) -> EventRow:
    """Record one step of ``row``'s history (``phase`` defaults to its current phase).

    Events are only ever inserted, so they skip the ORM's unit of work: they wait in the session
    and are written in one plain-SQL statement when it commits (after the rows they refer to), and
    :func:`events_of` reads them with the stored ones meanwhile."""
    event = EventRow(
        session=row.uuid,
        time=precise_now().replace(microsecond=0),
        level=level,
        phase=str(phase or row.phase),
        message=message,
    )
    _pending_events(session).append(event)
    return event


def add_events(session: Session, items: Sequence[tuple[str, str, str, str]]) -> None:
    """Record one step each of many sessions' histories, ``(session uuid, message, level, phase)``
    (sessions moved on together by the scheduler)."""
    time = precise_now().replace(microsecond=0)
    _pending_events(session).extend(
        EventRow(session=uuid, time=time, level=level, phase=phase, message=message)
        for uuid, message, level, phase in items
    )


def _pending_events(session: Session) -> list[EventRow]:
    """The events ``session`` will write when it commits (only a :class:`Store`'s sessions do)."""
    if not session.info.get(_DEFERS_EVENTS):
        raise ValueError("events are written by the sessions of a Store (Store.read or Store.write)")
    pending: list[EventRow] = session.info.setdefault(_EVENTS, [])
    return pending


def _write_events(session: Session) -> None:
    """Write the events waiting in ``session`` (its ``before_commit``): the rows first, then one
    insert of every event."""
    pending = session.info.pop(_EVENTS, None)
    if pending:
        session.flush()
        values = [{key: getattr(event, key) for key in _EVENT_COLUMNS} for event in pending]
        session.connection().execute(_INSERT_EVENT, values)


_EVENTS = "execplanner_events"
#: Histories read ahead for a batch (:func:`prefetch_events`), as they were stored.
_PREFETCHED = "execplanner_prefetched_events"
#: Set in the ``info`` of every session a :class:`Store` makes: its events wait for the commit.
_DEFERS_EVENTS = "execplanner_defers_events"
_EVENT_COLUMNS = ("session", "time", "level", "phase", "message")
_INSERT_EVENT = insert(EventRow.__table__)
_SELECT_EVENTS = select(*(EventRow.__table__.c[key] for key in ("id", *_EVENT_COLUMNS)))
_SELECT_EVENTS_OF_ONE = _SELECT_EVENTS.where(EventRow.session == bindparam("one"))


def sessions_with_histories(
    session: Session, rows: Select[tuple[SessionRow]], params: dict[str, Any], asked: set[str]
) -> list[SessionRow]:
    """The sessions ``rows`` selects, with the histories of the ``asked`` ones joined in (one
    statement, one round trip), kept for the rest of this transaction: :func:`events_of` then reads
    none of them again. Without flushing: what is pending stays so."""
    table = EventRow.__table__
    joined = table.c.session == SessionRow.uuid
    query = rows.add_columns(*_SELECT_EVENTS.selected_columns).outerjoin(
        table, joined & SessionRow.uuid.in_(sorted(asked))
    )
    found: dict[str, SessionRow] = {}
    histories: dict[str, list[EventRow]] = {uuid: [] for uuid in asked}
    with session.no_autoflush:
        for row, *event in session.execute(query.order_by(table.c.id), params):
            found.setdefault(row.uuid, row)
            if event[0] is not None:
                histories[row.uuid].append(_event(*event))
    session.info.setdefault(_PREFETCHED, {}).update({uuid: items for uuid, items in histories.items() if uuid in found})
    return list(found.values())


def _event(id: int, session: str, time: datetime, level: str, phase: str | None, message: str) -> EventRow:
    return EventRow(id=id, session=session, time=time, level=level, phase=phase, message=message)


def _stored_events(session: Session, uuids: list[str]) -> dict[str, list[EventRow]]:
    found: dict[str, list[EventRow]] = {uuid: [] for uuid in uuids}
    if not uuids:
        return found
    query = _SELECT_EVENTS_OF_ONE if len(uuids) == 1 else _SELECT_EVENTS.where(EventRow.session.in_(uuids))
    for item in session.connection().execute(query.order_by(EventRow.id), {"one": uuids[0]}):
        found[item.session].append(_event(*item))
    return found


def events_of(session: Session, uuids: list[str]) -> dict[str, list[EventRow]]:
    """The history of each of ``uuids``, oldest first: the stored events (read in plain SQL,
    without flushing the session, or read ahead by :func:`sessions_with_histories`) and those
    :func:`add_event` keeps for the commit."""
    prefetched = session.info.get(_PREFETCHED) or {}
    found = {uuid: list(prefetched[uuid]) for uuid in uuids if uuid in prefetched}
    found.update(_stored_events(session, [uuid for uuid in uuids if uuid not in prefetched]))
    found = {uuid: found[uuid] for uuid in uuids}
    for event in session.info.get(_EVENTS) or ():  # written at the commit; newer than any stored
        if event.session in found:
            found[event.session].append(event)
    return found
