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
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    select,
)
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

__all__ = [
    "Base",
    "EventRow",
    "LockRow",
    "OfferSetRow",
    "ReservationRow",
    "SessionRow",
    "Store",
    "default_db_url",
]

_WRITE = "execplanner_write"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the database keeps."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


class Base(DeclarativeBase):
    """Declarative base of the hosted platforms' tables (all prefixed ``hosted_``)."""


class LockRow(Base):
    """One row per platform: writers lock it to take their turn on that platform's calendar."""

    __tablename__ = "hosted_locks"

    platform: Mapped[str] = mapped_column(String(64), primary_key=True)


class OfferSetRow(Base):
    """An answer to ``POST requests``: YES with offers (the sessions that point here) or NO."""

    __tablename__ = "hosted_offersets"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    platform: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str | None] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    result: Mapped[str] = mapped_column(String(3))
    description: Mapped[str | None] = mapped_column(Text)
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    options: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SessionRow(Base):
    """An offer, and the session it becomes once accepted.

    The calendar reads only the hold columns: ``start`` to ``compute_end`` for cores and memory,
    ``start`` to ``storage_end`` for storage; ``hold_end`` (the later of the two) is indexed so that
    a question about the next days never reads the bookings of last year.
    """

    __tablename__ = "hosted_sessions"
    __table_args__ = (
        Index("ix_hosted_sessions_calendar", "platform", "hold_end"),
        Index("ix_hosted_sessions_jobs", "platform", "owner", "accepted"),
        Index("ix_hosted_sessions_phase", "platform", "phase"),
    )

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    platform: Mapped[str] = mapped_column(String(64))
    offerset: Mapped[str] = mapped_column(String(36), ForeignKey("hosted_offersets.uuid"), index=True)
    owner: Mapped[str | None] = mapped_column(String(255))
    phase: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    modified: Mapped[datetime] = mapped_column(UtcDateTime)
    expires: Mapped[datetime | None] = mapped_column(UtcDateTime)
    accepted: Mapped[datetime | None] = mapped_column(UtcDateTime)

    start: Mapped[datetime] = mapped_column(UtcDateTime)
    available_start: Mapped[datetime] = mapped_column(UtcDateTime)
    available_end: Mapped[datetime] = mapped_column(UtcDateTime)
    compute_end: Mapped[datetime] = mapped_column(UtcDateTime)
    storage_end: Mapped[datetime] = mapped_column(UtcDateTime)
    hold_end: Mapped[datetime] = mapped_column(UtcDateTime)
    cores: Mapped[int] = mapped_column(Integer)
    memory: Mapped[int] = mapped_column(Integer)
    storage: Mapped[int] = mapped_column(Integer, default=0)

    document: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(String(255))
    run_started: Mapped[datetime | None] = mapped_column(UtcDateTime)
    run_ended: Mapped[datetime | None] = mapped_column(UtcDateTime)
    runner: Mapped[str | None] = mapped_column(String(64))
    heartbeat: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    storage_removed: Mapped[bool] = mapped_column(Boolean, default=False)
    destruction: Mapped[datetime | None] = mapped_column(UtcDateTime)
    destroyed: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class EventRow(Base):
    """One step in a session's life: when, how serious, in which phase, and what happened."""

    __tablename__ = "hosted_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session: Mapped[str] = mapped_column(String(36), ForeignKey("hosted_sessions.uuid"), index=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    level: Mapped[str] = mapped_column(String(8))
    phase: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class ReservationRow(Base):
    """Capacity the provider keeps back (``reservations:`` in the options), by name."""

    __tablename__ = "hosted_reservations"
    __table_args__ = (Index("ix_hosted_reservations_calendar", "platform", "end"),)

    platform: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    start: Mapped[datetime] = mapped_column(UtcDateTime)
    end: Mapped[datetime] = mapped_column(UtcDateTime)
    cores: Mapped[int] = mapped_column(Integer, default=0)
    memory: Mapped[int] = mapped_column(Integer, default=0)
    storage: Mapped[int] = mapped_column(Integer, default=0)


def default_db_url(data_dir: Path) -> str:
    """The SQLite file the hosted platforms share when no URL is configured."""
    return f"sqlite:///{Path(data_dir) / 'hosted.sqlite'}"


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

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            _use_wal(cursor)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Store:
    """An engine and two kinds of transactions: :meth:`read` and the serialised :meth:`write`."""

    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            if ":memory:" in url or url in ("sqlite://", "sqlite:///"):
                raise ValueError("hosted platforms need a database file or server, not an in-memory SQLite database")
            path = url.split("///", 1)[-1].split("?", 1)[0]
            if path:
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 16
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine = create_engine(url, **kwargs)
        except Exception as error:  # a bad URL or a missing driver: say which, not a traceback
            raise ValueError(f"cannot use the database {self.safe_url}: {error}") from None
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)

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
        with self._reader.begin() as session:
            if session.get(LockRow, platform) is not None:
                return
        try:
            with self._writer.begin() as session:
                if session.get(LockRow, platform) is None:
                    session.add(LockRow(platform=platform))
        except IntegrityError:  # another process added it first: that is all we wanted
            pass

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (a consistent snapshot; never blocks writers on WAL/MVCC)."""
        with self._reader.begin() as session:
            yield session

    @contextmanager
    def write(self, platform: str) -> Iterator[Session]:
        """A transaction that holds the platform's calendar until it commits or rolls back."""
        with self._writer.begin() as session:
            session.execute(select(LockRow.platform).where(LockRow.platform == platform).with_for_update())
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
