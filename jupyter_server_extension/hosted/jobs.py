"""UWS job operations on the store: list, delete, change destruction or execution duration.

A UWS job is a booked session seen through UWS (see :mod:`.uws`), so these are small transactions
on the same rows the calendar uses; a change that would give capacity back (a shorter execution
duration, a deleted job) releases it in the same transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from execplanner_widgets.model import SessionPhase, format_instant
from execplanner_widgets.core.platform import PlatformError, SessionNotFound

from .booking import Bookings, precise_now, whole_seconds
from .store import EventRow, SessionRow
from .uws import UwsPhase, uws_phase

__all__ = ["ActionNotAllowed", "JobStore"]

QUEUED = (SessionPhase.ACCEPTED.value, SessionPhase.WAITING.value)


class ActionNotAllowed(PlatformError):
    """The UWS action is not allowed in the job's phase (HTTP 403)."""

    status = 403


class JobStore:
    """The UWS side of a hosted platform's sessions."""

    def __init__(self, bookings: Bookings) -> None:
        self.bookings = bookings
        self.store = bookings.store
        self.platform = bookings.platform

    def _job(self, session: object, uuid: str, user: str | None) -> SessionRow:
        row = session.get(SessionRow, uuid)  # type: ignore[attr-defined]
        if row is None or row.platform != self.platform or row.owner != user or row.accepted is None or row.deleted:
            raise SessionNotFound(f"no job {uuid} on {self.platform}")
        return row

    def job(self, uuid: str, user: str | None) -> tuple[SessionRow, list[EventRow]]:
        with self.store.read() as session:
            row = self._job(session, uuid, user)
            events = list(session.scalars(select(EventRow).where(EventRow.session == uuid).order_by(EventRow.id)))
            return row, events

    def jobs(
        self, user: str | None, phases: set[UwsPhase] | None, after: datetime | None, last: int | None
    ) -> list[SessionRow]:
        """The user's jobs, most recently created first; filtered as UWS ``PHASE``/``AFTER``/``LAST`` ask."""
        query = select(SessionRow).where(
            SessionRow.platform == self.platform,
            SessionRow.accepted.is_not(None),
            SessionRow.deleted.is_(False),
            SessionRow.owner.is_(None) if user is None else SessionRow.owner == user,
        )
        if after is not None:
            query = query.where(SessionRow.accepted > after)
        query = query.order_by(SessionRow.accepted.desc(), SessionRow.uuid)
        with self.store.read() as session:
            rows = list(session.scalars(query))
        if phases:
            rows = [row for row in rows if uws_phase(SessionPhase(row.phase), row.destroyed) in phases]
        if last is not None:
            rows = rows[:last]
        return rows

    def delete(self, uuid: str, user: str | None) -> bool:
        """Hide the job from UWS for good; release what it still holds. True if a run must stop."""
        with self.store.write(self.platform) as session:
            row = self._job(session, uuid, user)
            now = precise_now()
            stop = row.phase in ("PREPARING", "AVAILABLE", "RUNNING", "RELEASING")
            if row.phase in QUEUED:
                row.phase = SessionPhase.CANCELLED.value
            if stop:
                row.cancel_requested = True
            row.deleted = True
            row.destruction = now
            row.modified = now
            if not stop:
                self.bookings.release(row, now, storage_too=True)
            self.bookings.event(session, row, "deleted (UWS DELETE): the job and its results are removed", "WARN")
            return stop

    def set_destruction(self, uuid: str, user: str | None, when: datetime) -> None:
        """Move the destruction time (not into the past, not beyond the platform's retention)."""
        with self.store.write(self.platform) as session:
            row = self._job(session, uuid, user)
            if row.destroyed:
                raise ActionNotAllowed(f"the job {uuid} is ARCHIVED: its results are already deleted")
            now = precise_now()
            latest = row.available_end + self.bookings.options.retention
            chosen = min(max(when, now), latest)
            row.destruction = chosen.replace(microsecond=0)
            row.modified = now
            note = (
                ""
                if chosen == when
                else f" (asked for {format_instant(when)}; results are kept at most until {format_instant(latest)})"
            )
            self.bookings.event(session, row, f"destruction time set to {format_instant(row.destruction)}{note}")

    def set_execution_duration(self, uuid: str, user: str | None, seconds: int) -> None:
        """Shorten a queued job's booked run (giving the rest back); a longer run needs a new booking."""
        with self.store.write(self.platform) as session:
            row = self._job(session, uuid, user)
            current = row.available_end - row.available_start
            wanted = whole_seconds(timedelta(seconds=seconds))
            if row.phase not in QUEUED:
                raise ActionNotAllowed(
                    f"the job {uuid} is {uws_phase(SessionPhase(row.phase), row.destroyed).value}: "
                    "the execution duration can only change while it is QUEUED"
                )
            if seconds <= 0 or wanted > current:
                raise ActionNotAllowed(
                    f"the job {uuid} is booked for {int(current.total_seconds())} s; it can be shortened but not extended "
                    "(ask for new offers for a longer run)"
                )
            shorter = current - wanted
            now = precise_now()
            old_compute_end = row.compute_end
            row.available_end -= shorter
            row.compute_end -= shorter
            if row.storage_end <= old_compute_end:  # storage held as long as compute, not for its own lifetime
                row.storage_end = row.compute_end
            row.hold_end = max(row.compute_end, row.storage_end)
            if row.destruction is not None:
                row.destruction -= shorter
            row.modified = now
            self.bookings.event(
                session,
                row,
                f"execution duration shortened to {int(wanted.total_seconds())} s; the rest of the slot is free again",
            )

    def set_run_id(self, uuid: str, user: str | None, run_id: str) -> None:
        """Keep the client's ``RUNID`` (UWS returns it unchanged)."""
        with self.store.write(self.platform) as session:
            row = self._job(session, uuid, user)
            row.run_id = run_id[:255]
