"""The hosted platforms' tables (SQLAlchemy 2.0 ORM): offer sets, sessions, events, reservations.

Only the mapping lives here; transactions and queries are in :mod:`.store`, and what the rows
mean on the wire in :mod:`.documents` and :mod:`.jobs`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    and_,
    or_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from execplanner_widgets.model.phases import OFFERED_PHASES, RELEASED_PHASES, RUNNING_PHASES, SessionPhase, values

__all__ = [
    "Base",
    "EventRow",
    "LockRow",
    "OfferSetRow",
    "ReservationRow",
    "SessionRow",
    "SLOT_BOOKED",
    "SLOT_RELEASED",
    "holding_clause",
    "run_under_way",
    "run_under_way_clause",
]

#: ``SessionRow.slot_state`` once the executor holds the slot, and once it gave it back.
SLOT_BOOKED = "booked"
SLOT_RELEASED = "released"


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
    #: Bumped by every write transaction of the platform: a server whose in-memory calendar saw
    #: generation g and next sees g + 2 knows another process wrote, and reloads.
    generation: Mapped[int | None] = mapped_column(Integer, default=0)


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

    # the executor's part: its name for the booked slot and for the run (for a restart), where the
    # run's server lives, and the interactive connector a run reported (AVAILABLE)
    slot_state: Mapped[str | None] = mapped_column(String(16))
    slot_handle: Mapped[str | None] = mapped_column(String(255))
    run_handle: Mapped[str | None] = mapped_column(String(255))
    runner_host: Mapped[str | None] = mapped_column(String(255))
    runner_pid: Mapped[int | None] = mapped_column(Integer)
    connector: Mapped[dict[str, Any] | None] = mapped_column(JSON)


def run_under_way(row: SessionRow) -> bool:
    """A run of the session is under way: a running phase, or WAITING once a runner has handed it
    to an engine that queues it (a Slurm job PENDING). A WAITING session not claimed yet has no run
    (``run_started`` is set when a runner claims it)."""
    phase = SessionPhase(row.phase)
    return phase in RUNNING_PHASES or (phase is SessionPhase.WAITING and row.run_started is not None)


def holding_clause(now: datetime) -> ColumnElement[bool]:
    """The sessions that hold capacity at ``now``: not released, and not an offer whose time is up
    (:func:`~execplanner_widgets.model.phases.offer_expired`, in SQL)."""
    return and_(
        SessionRow.phase.not_in(values(RELEASED_PHASES)),
        or_(SessionRow.phase.not_in(values(OFFERED_PHASES)), SessionRow.expires > now),
    )


def run_under_way_clause() -> ColumnElement[bool]:
    """:func:`run_under_way` in SQL."""
    return or_(
        SessionRow.phase.in_(values(RUNNING_PHASES)),
        (SessionRow.phase == SessionPhase.WAITING.value) & SessionRow.run_started.is_not(None),
    )


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
