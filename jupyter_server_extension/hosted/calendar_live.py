"""The platform's calendar kept in step with its database, so a question never re-reads the bookings.

The database stays the source of truth. :class:`LiveCalendar` is a :class:`~.calendar_index.BookingCalendar`
that the :class:`~.store.Store` tells about every session and reservation row a write transaction of
its platform flushes (``changed``), *while that transaction still holds the platform's lock*: another
decision can never read the calendar between a change and its arrival here.

It can only be wrong in ways it notices, and then it reloads from the database (inside the write
transaction that asks, so the reload is a consistent snapshot):

* a write transaction rolled back after it flushed (its changes were applied here): ``invalidate``;
* another process (a second server on the same database) wrote in between: every write transaction
  bumps the platform's generation in ``hosted_locks``, and a gap between the generation this
  calendar last saw and the next one means someone else wrote;
* rows changed without the ORM (bulk statements): the store marks the calendar stale.

Accepting re-checks the booking against this calendar too (``BookingService._still_fits``), inside the
accept's write transaction and after the checks above, so a capacity made smaller since the offer
was made is still caught.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from execplanner_widgets.model.phases import OFFERED_PHASES, RELEASED_PHASES, SessionPhase, values

from .calendar import Hold, session_holds, to_seconds
from .calendar_index import BookingCalendar
from .tables import ReservationRow, SessionRow, holding_clause

__all__ = ["LiveCalendar", "RESERVATIONS", "row_entry"]

#: The owner under which reservations are kept: no user's allocation counts them.
RESERVATIONS = ("reservations",)
_RELEASED = frozenset(values(RELEASED_PHASES))
_OFFERED = frozenset(values(OFFERED_PHASES))


def row_entry(row: SessionRow | ReservationRow) -> tuple[Hashable, list[Hold] | None, Hashable, float | None]:
    """``(key, holds or None if it holds nothing, owner, expiry)`` for a row of either table."""
    if isinstance(row, ReservationRow):
        key: Hashable = ("reservation", row.name)
        return (
            key,
            [Hold(to_seconds(row.start), to_seconds(row.end), row.cores, row.memory, row.storage)],
            RESERVATIONS,
            None,
        )
    key = ("session", row.uuid)
    phase = str(row.phase.value if isinstance(row.phase, SessionPhase) else row.phase)
    if phase in _RELEASED:
        return key, None, row.owner, None
    expires = to_seconds(row.expires) if phase in _OFFERED and row.expires is not None else None
    holds = session_holds(row.start, row.compute_end, row.storage_end, row.cores, row.memory, row.storage or 0)
    return key, holds, row.owner, expires


class LiveCalendar:
    """One platform's :class:`BookingCalendar`, loaded on first use and changed row by row."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.calendar = BookingCalendar()
        self.generation: int | None = None
        self.stale = True
        self.reloads = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------ told by the store

    def begin(self, generation: int | None) -> None:
        """A write transaction of this platform took the lock and moved the generation to ``generation``."""
        with self._lock:
            if generation is None or self.generation is None or generation != self.generation + 1:
                self.stale = True
            self.generation = generation

    def changed(self, row: SessionRow | ReservationRow, deleted: bool = False) -> None:
        """A row of this platform was flushed (inserted, updated or deleted)."""
        with self._lock:
            if self.stale:
                return
            key, holds, owner, expires = row_entry(row)
            if deleted or holds is None:
                self.calendar.discard(key)
            else:
                self.calendar.put(key, holds, owner, expires)

    def invalidate(self) -> None:
        """Something happened that this calendar cannot follow: reload before the next question."""
        with self._lock:
            self.stale = True

    # ------------------------------------------------------------------------- use

    def current(self, session: Session, now: datetime) -> BookingCalendar:
        """The calendar, reloaded through ``session`` (a write transaction of this platform) if stale."""
        with self._lock:
            if self.stale:
                self.calendar = BookingCalendar.load(self._rows(session, now))
                self.stale = False
                self.reloads += 1
            self.calendar.expire(to_seconds(now))
            return self.calendar

    def _rows(self, session: Session, now: datetime) -> Iterator[tuple[Hashable, list[Hold], Hashable, float | None]]:
        """Every row that holds something from ``now`` on (an index scan on ``hold_end``)."""
        query = select(
            SessionRow.uuid,
            SessionRow.owner,
            SessionRow.phase,
            SessionRow.expires,
            SessionRow.start,
            SessionRow.compute_end,
            SessionRow.storage_end,
            SessionRow.cores,
            SessionRow.memory,
            SessionRow.storage,
        ).where(
            SessionRow.platform == self.platform,
            SessionRow.hold_end > now,
            holding_clause(now),
        )
        for uuid, owner, phase, expires, start, compute_end, storage_end, cores, memory, storage in session.execute(
            query
        ):
            lapse = to_seconds(expires) if phase in _OFFERED and expires is not None else None
            yield (
                ("session", uuid),
                session_holds(start, compute_end, storage_end, cores, memory, storage or 0),
                owner,
                lapse,
            )
        reserved = select(ReservationRow).where(ReservationRow.platform == self.platform, ReservationRow.end > now)
        for row in session.scalars(reserved):
            key, holds, owner, _ = row_entry(row)
            yield key, holds or [], owner, None
