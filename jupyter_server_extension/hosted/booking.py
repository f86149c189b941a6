"""Booking: offers that hold capacity, and accept / reject / cancel, each in one serialised transaction.

These functions are synchronous (SQLAlchemy sessions) and run in the platform's database threads.
Every one that can change the calendar runs in :meth:`Store.write`, reads ``now`` *after* it has
the platform's lock, and reads the holds it decides on inside the same transaction: two requests
or two accepts can never decide on the same free capacity. Accepting re-checks the capacity as
well, so even a configuration change between offer and accept cannot overbook.
"""

from __future__ import annotations

import math
import uuid as uuid_module
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from execplanner_widgets.model import (
    ExecutionRequest,
    MessageItem,
    SessionPhase,
    format_instant,
    human_duration,
    kind_uri,
)
from execplanner_widgets.platforms.base import SessionConflict, SessionNotFound

from .calendar import Capacity, Hold, Need, Profile, find_slots, from_seconds, to_seconds
from .options import HostedOptions
from .store import EventRow, OfferSetRow, ReservationRow, SessionRow, Store

__all__ = ["Bookings", "Plan", "plan_request", "precise_now", "ceil_seconds", "describe_need"]

#: Phases in which a session no longer holds anything: its offer was declined or lapsed.
RELEASED = (SessionPhase.REJECTED.value, SessionPhase.EXPIRED.value)
RUNNING_PHASES = (
    SessionPhase.PREPARING.value,
    SessionPhase.AVAILABLE.value,
    SessionPhase.RUNNING.value,
    SessionPhase.RELEASING.value,
)
FINAL = tuple(
    phase.value
    for phase in (
        SessionPhase.COMPLETED,
        SessionPhase.FAILED,
        SessionPhase.CANCELLED,
        SessionPhase.REJECTED,
        SessionPhase.EXPIRED,
    )
)


def precise_now() -> datetime:
    """The current time with microseconds (the wire rounds; the calendar must not)."""
    return datetime.now(timezone.utc)


def ceil_seconds(value: datetime) -> datetime:
    """``value`` rounded up to a whole second, so offered times read ``14:00:05Z``."""
    return value if value.microsecond == 0 else value.replace(microsecond=0) + timedelta(seconds=1)


def whole_seconds(value: timedelta) -> timedelta:
    """A duration rounded up to whole seconds: every calendar boundary stays on a second."""
    return timedelta(seconds=math.ceil(value.total_seconds()))


@dataclass
class Plan:
    """A request in the platform's terms: amounts, durations and the window for the start."""

    need: Need
    run: timedelta
    storage: list[tuple[int, int]]
    storage_names: list[str]
    earliest: datetime
    latest: datetime


def plan_request(request: ExecutionRequest, options: HostedOptions, now: datetime) -> tuple[Plan | None, list[str]]:
    """Turn ``request`` into a :class:`Plan`, or say why its timing cannot work."""
    problems: list[str] = []
    run = whole_seconds(request.duration or options.default_duration)
    if run <= timedelta(0):
        problems.append("the requested duration is zero; ask for at least a second (e.g. 'PT10M')")
    slot = options.slot_length(run)
    storage: list[tuple[int, int]] = []
    names: list[str] = []
    lifetime = timedelta(0)
    for index, item in enumerate(request.storage):
        low = (
            item.size.min
            if item.size and item.size.min is not None
            else (item.size.max if item.size and item.size.max else 0)
        )
        high = item.size.max if item.size and item.size.max is not None else low
        storage.append((low or 0, max(high or 0, low or 0)))
        names.append(item.name or f"storage-{index + 1}")
        if item.lifetime is not None:
            lifetime = max(lifetime, whole_seconds(item.lifetime))
    horizon_end = now + options.horizon
    earliest, latest = ceil_seconds(now), horizon_end
    window = request.start_window
    if window is not None:
        if window.end < now:
            problems.append(f"the requested start ({window}) is in the past")
        if window.start > horizon_end:
            problems.append(
                f"the requested start ({format_instant(window.start)}) is more than {human_duration(options.horizon)} ahead; "
                f"this platform books at most until {format_instant(horizon_end.replace(microsecond=0))}"
            )
        earliest = max(earliest, ceil_seconds(window.start))
        latest = min(latest, window.end)
    if problems or run <= timedelta(0):
        return None, problems
    compute = request.compute
    cores_max = compute.cores.max if compute and compute.cores and compute.cores.max is not None else request.min_cores
    memory_max = (
        compute.memory.max if compute and compute.memory and compute.memory.max is not None else request.min_memory
    )
    need = Need(
        cores=request.min_cores,
        memory=request.min_memory,
        storage=sum(low for low, _ in storage),
        cores_max=cores_max,
        memory_max=memory_max,
        storage_max=sum(high for _, high in storage),
        duration=slot.total_seconds(),
        storage_duration=max(slot, lifetime).total_seconds(),
    )
    return Plan(need=need, run=run, storage=storage, storage_names=names, earliest=earliest, latest=latest), []


def describe_need(need: Need, run: timedelta) -> str:
    """``4 cores and 8 GiB of memory for 2h``."""
    parts = [f"{need.cores} core{'s' if need.cores != 1 else ''}", f"{need.memory} GiB of memory"]
    if need.storage:
        parts.append(f"{need.storage} GiB of storage")
    return f"{', '.join(parts[:-1])} and {parts[-1]} for {human_duration(run)}"


def split_storage(items: Sequence[tuple[int, int]], total: int) -> list[int]:
    """Share ``total`` offered GiB among storage items: each its minimum, then up to its maximum."""
    shares = [low for low, _ in items]
    spare = total - sum(shares)
    for index, (low, high) in enumerate(items):
        extra = min(spare, high - low)
        if extra > 0:
            shares[index] += extra
            spare -= extra
    return shares


def _message(text: str, level: str = "INFO") -> dict[str, Any]:
    return MessageItem(time=precise_now().replace(microsecond=0), level=level, message=text).model_dump(
        mode="json", exclude_none=True
    )


def _short(value: datetime) -> str:
    return format_instant(value.replace(microsecond=0))


class Bookings:
    """The calendar transactions of one hosted platform."""

    def __init__(self, store: Store, platform: str, options: HostedOptions, title: str) -> None:
        self.store = store
        self.platform = platform
        self.options = options
        self.title = title

    # ------------------------------------------------------------------------------- holds

    def holds(
        self,
        session: Session,
        low: datetime,
        high: datetime,
        now: datetime,
        *,
        owner: str | None = None,
        by_owner: bool = False,
        exclude: str | None = None,
    ) -> list[Hold]:
        """Everything that holds capacity somewhere in ``[low, high)``: bookings, live offers and
        (for the whole platform) reservations. Reads only rows that overlap the window."""
        query = select(
            SessionRow.start,
            SessionRow.compute_end,
            SessionRow.storage_end,
            SessionRow.cores,
            SessionRow.memory,
            SessionRow.storage,
        ).where(
            SessionRow.platform == self.platform,
            SessionRow.hold_end > low,
            SessionRow.start < high,
            SessionRow.phase.not_in(RELEASED),
            or_(SessionRow.phase != SessionPhase.OFFERED.value, SessionRow.expires > now),
        )
        if by_owner:
            query = query.where(SessionRow.owner.is_(None) if owner is None else SessionRow.owner == owner)
        if exclude is not None:
            query = query.where(SessionRow.uuid != exclude)
        holds: list[Hold] = []
        for start, compute_end, storage_end, cores, memory, storage in session.execute(query):
            begin = to_seconds(start)
            compute_until, storage_until = to_seconds(compute_end), to_seconds(storage_end)
            if storage and storage_until > compute_until:
                holds.append(Hold(begin, compute_until, cores, memory, 0))
                holds.append(Hold(begin, storage_until, 0, 0, storage))
            else:
                holds.append(Hold(begin, compute_until, cores, memory, storage))
        if not by_owner:
            reserved = select(
                ReservationRow.start,
                ReservationRow.end,
                ReservationRow.cores,
                ReservationRow.memory,
                ReservationRow.storage,
            ).where(ReservationRow.platform == self.platform, ReservationRow.end > low, ReservationRow.start < high)
            for start, end, cores, memory, storage in session.execute(reserved):
                holds.append(Hold(to_seconds(start), to_seconds(end), cores, memory, storage))
        return holds

    # ------------------------------------------------------------------------------ offers

    def refuse(
        self, request: dict[str, Any], messages: list[dict[str, Any]], options: list[dict[str, Any]], user: str | None
    ) -> str:
        """Record a NO answer (so ``GET offersets/{uuid}`` can show it again) and return its id."""
        with self.store.write(self.platform) as session:
            return self._offerset(
                session, request, "NO", messages, options, user, f"{self.title} cannot run this request"
            )

    def _offerset(
        self,
        session: Session,
        request: dict[str, Any],
        result: str,
        messages: list[dict[str, Any]],
        options: list[dict[str, Any]],
        user: str | None,
        description: str,
    ) -> str:
        identifier = str(uuid_module.uuid4())
        session.add(
            OfferSetRow(
                uuid=identifier,
                platform=self.platform,
                owner=user,
                created=precise_now().replace(microsecond=0),
                result=result,
                description=description,
                messages=messages,
                options=options,
                request=request,
            )
        )
        return identifier

    def offer(
        self, request: ExecutionRequest, plan: Plan, capacity: Capacity, allocation: Capacity | None, user: str | None
    ) -> str:
        """Find up to ``options.offers`` start times and hold them as offers; return the offer set id."""
        options = self.options
        with self.store.write(self.platform) as session:
            now = precise_now()
            earliest = max(plan.earliest, ceil_seconds(now))
            latest = plan.latest
            span_end = latest + timedelta(seconds=plan.need.storage_duration)
            holds = self.holds(session, earliest, span_end, now)
            platform_profile = Profile.from_holds(holds)
            constraints: list[tuple[Profile, Capacity]] = [(platform_profile, capacity)]
            if allocation is not None:
                mine = self.holds(session, earliest, span_end, now, owner=user, by_owner=True)
                constraints.append((Profile.from_holds(mine), allocation))
            slots = (
                find_slots(constraints, plan.need, to_seconds(earliest), to_seconds(latest), options.offers)
                if earliest <= latest
                else []
            )
            document = request.to_broker()
            if not slots:
                reason = self._no_slot_reason(plan, holds, capacity, allocation, earliest, latest)
                return self._offerset(
                    session,
                    document,
                    "NO",
                    [_message(reason, "WARN")],
                    [],
                    user,
                    f"{self.title} has no free time for this request",
                )
            expires = now.replace(microsecond=0) + options.offer_ttl
            times = ", ".join(_short(from_seconds(slot.start)) for slot in slots)
            summary = f"{len(slots)} offer{'s' if len(slots) != 1 else ''} for {describe_need(plan.need, plan.run)}, starting {times}; they hold the time until {_short(expires)}"
            offerset = self._offerset(
                session, document, "YES", [_message(summary)], [], user, f"{self.title} can run this request"
            )
            for slot in slots:
                start = from_seconds(slot.start)
                compute_end = start + timedelta(seconds=plan.need.duration)
                storage_end = start + timedelta(seconds=plan.need.storage_duration)
                available_start = start + options.preparation
                row = SessionRow(
                    uuid=str(uuid_module.uuid4()),
                    platform=self.platform,
                    offerset=offerset,
                    owner=user,
                    phase=SessionPhase.OFFERED.value,
                    created=now,
                    modified=now,
                    expires=expires,
                    start=start,
                    available_start=available_start,
                    available_end=available_start + plan.run,
                    compute_end=compute_end,
                    storage_end=storage_end if slot.storage else compute_end,
                    hold_end=max(compute_end, storage_end if slot.storage else compute_end),
                    cores=slot.cores,
                    memory=slot.memory,
                    storage=slot.storage,
                    document=self._offered_document(request, plan, slot.cores, slot.memory, slot.storage),
                    results=[],
                    storage_removed=not plan.storage_names,
                )
                session.add(row)
                session.flush()
                self.event(
                    session,
                    row,
                    f"offered: {slot.cores} core(s), {slot.memory} GiB of memory"
                    + (f", {slot.storage} GiB of storage" if slot.storage else "")
                    + f" from {_short(available_start)} for {human_duration(plan.run)}; held until {_short(expires)}",
                )
            return offerset

    def _offered_document(
        self, request: ExecutionRequest, plan: Plan, cores: int, memory: int, storage: int
    ) -> dict[str, Any]:
        compute = (
            request.compute.to_wire() if request.compute else {"kind": kind_uri("compute", "simple-compute-resource")}
        )
        compute["cores"] = {"min": cores, "max": cores}
        compute["memory"] = {"min": memory, "max": memory}
        items = []
        for item, share in zip(request.storage, split_storage(plan.storage, storage)):
            wire = item.to_wire()
            wire["size"] = {"min": share, "max": share}
            items.append(wire)
        return {
            "executable": request.executable.to_wire(),
            "compute": compute,
            "storage": items,
            "data": [item.to_wire() for item in request.data],
            "storage_names": plan.storage_names,
            "fetch": [
                {"location": item.location_hint, "name": item.name or f"data-{index + 1}"}
                for index, item in enumerate(request.data)
                if item.is_located
            ],
        }

    def _no_slot_reason(
        self,
        plan: Plan,
        holds: list[Hold],
        capacity: Capacity,
        allocation: Capacity | None,
        earliest: datetime,
        latest: datetime,
    ) -> str:
        wanted = describe_need(plan.need, plan.run)
        if earliest > latest:
            return "the requested start window ends before now; no offer can start in it"
        if allocation is not None:
            alone = find_slots(
                [(Profile.from_holds(holds), capacity)], plan.need, to_seconds(earliest), to_seconds(latest), 1
            )
            if alone:
                limits = ", ".join(
                    f"{value} {name}"
                    for name, value in zip(("cores", "GiB memory", "GiB storage"), allocation.limits())
                    if value is not None
                )
                return (
                    f"your allocation on {self.title} ({limits} at any one time) is taken by your other bookings "
                    f"until {_short(latest)}; {wanted} would fit the platform itself"
                )
        if earliest == latest:
            return f"{self.title} does not have {wanted} free at the requested start {_short(earliest)}"
        return f"no start time between {_short(earliest)} and {_short(latest)} has {wanted} free on {self.title}"

    # ---------------------------------------------------------------------------- updates

    def event(
        self, session: Session, row: SessionRow, message: str, level: str = "INFO", phase: str | None = None
    ) -> None:
        """Record one step of ``row``'s history (``phase`` defaults to its current phase)."""
        session.add(
            EventRow(
                session=row.uuid,
                time=precise_now().replace(microsecond=0),
                level=level,
                phase=phase or row.phase,
                message=message,
            )
        )

    def _owned(self, session: Session, uuid: str, user: str | None) -> SessionRow:
        row = session.get(SessionRow, uuid)
        if row is None or row.platform != self.platform or row.owner != user or row.deleted:
            raise SessionNotFound(f"no offer or session {uuid} on {self.platform}")
        return row

    def _expire_if_due(self, session: Session, row: SessionRow, now: datetime) -> bool:
        if row.phase == SessionPhase.OFFERED.value and row.expires is not None and row.expires <= now:
            row.phase = SessionPhase.EXPIRED.value
            row.modified = now
            self.event(
                session, row, f"expired at {_short(row.expires)} without being accepted; its capacity is free again"
            )
            return True
        return False

    def accept(self, uuid: str, user: str | None, capacity: Capacity, allocation: Capacity | None) -> None:
        """Book the offer ``uuid`` and reject its siblings; :class:`SessionConflict` if it cannot be."""
        problem: str | None = None
        with self.store.write(self.platform) as session:
            now = precise_now()
            row = self._owned(session, uuid, user)
            if self._expire_if_due(session, row, now):
                problem = f"the offer {uuid} expired at {_short(row.expires)}; ask for new offers"  # type: ignore[arg-type]
            elif row.phase == SessionPhase.EXPIRED.value:
                problem = f"the offer {uuid} expired at {_short(row.expires or now)}; ask for new offers"
            elif row.phase == SessionPhase.REJECTED.value:
                problem = f"the offer {uuid} was REJECTED (declined, or another offer of its request was accepted); ask for new offers"
            elif row.phase != SessionPhase.OFFERED.value:
                problem = f"the offer {uuid} is {row.phase}; only an OFFERED offer can be accepted"
            else:
                problem = self._still_fits(session, row, now, capacity, allocation, user)
                if problem is not None:
                    row.phase = SessionPhase.REJECTED.value
                    row.modified = now
                    self.event(session, row, f"could not be booked: {problem}", "WARN")
                else:
                    row.phase = SessionPhase.ACCEPTED.value
                    row.accepted = row.modified = now
                    row.expires = None
                    row.destruction = row.available_end + self.options.retention
                    self.event(
                        session,
                        row,
                        f"accepted: {row.cores} core(s) and {row.memory} GiB of memory are booked from {_short(row.available_start)} "
                        f"to {_short(row.available_end)}",
                    )
                    siblings = session.scalars(
                        select(SessionRow).where(
                            SessionRow.offerset == row.offerset,
                            SessionRow.uuid != uuid,
                            SessionRow.phase == SessionPhase.OFFERED.value,
                        )
                    )
                    for sibling in siblings:
                        sibling.phase = SessionPhase.REJECTED.value
                        sibling.modified = now
                        self.event(
                            session,
                            sibling,
                            f"rejected: the offer {uuid} of the same request was accepted; this time is free again",
                        )
        if problem is not None:
            raise SessionConflict(problem)

    def _still_fits(
        self,
        session: Session,
        row: SessionRow,
        now: datetime,
        capacity: Capacity,
        allocation: Capacity | None,
        user: str | None,
    ) -> str | None:
        """Re-check the booking against everything else held (defence in depth: offers already hold)."""
        checks: list[tuple[list[Hold], Capacity, str]] = [
            (self.holds(session, row.start, row.hold_end, now, exclude=row.uuid), capacity, self.title)
        ]
        if allocation is not None:
            mine = self.holds(session, row.start, row.hold_end, now, owner=user, by_owner=True, exclude=row.uuid)
            checks.append((mine, allocation, "your allocation"))
        for holds, limit, who in checks:
            profile = Profile.from_holds(holds)
            start = to_seconds(row.start)
            used_compute = profile.peak(start, to_seconds(row.compute_end))
            used_storage = profile.peak(start, to_seconds(row.storage_end))
            wanted = (row.cores, row.memory, row.storage)
            used = (used_compute[0], used_compute[1], used_storage[2])
            for name, have, taken, asked in zip(
                ("cores", "GiB of memory", "GiB of storage"), limit.limits(), used, wanted
            ):
                if have is not None and asked and taken + asked > have:
                    return f"{who} no longer has {asked} {name} free for this time ({have - taken} left); ask for new offers"
        return None

    def reject(self, uuid: str, user: str | None) -> None:
        """Decline an offer, freeing what it held (rejecting twice is harmless)."""
        problem: str | None = None
        with self.store.write(self.platform) as session:
            now = precise_now()
            row = self._owned(session, uuid, user)
            if self._expire_if_due(session, row, now):
                problem = f"the offer {uuid} had already expired at {_short(row.expires)}"  # type: ignore[arg-type]
            elif row.phase == SessionPhase.OFFERED.value:
                row.phase = SessionPhase.REJECTED.value
                row.modified = now
                self.event(session, row, "rejected; its capacity is free again")
            elif row.phase != SessionPhase.REJECTED.value:
                problem = f"the session {uuid} is {row.phase}; only an OFFERED offer can be rejected (cancel a booked session instead)"
        if problem is not None:
            raise SessionConflict(problem)

    def cancel(self, uuid: str, user: str | None, reason: str = "cancelled by the user") -> bool:
        """Cancel an offer or booking; return True if a run is in progress and must be stopped."""
        problem: str | None = None
        stop = False
        with self.store.write(self.platform) as session:
            now = precise_now()
            row = self._owned(session, uuid, user)
            self._expire_if_due(session, row, now)
            phase = row.phase
            if phase in (SessionPhase.OFFERED.value, SessionPhase.ACCEPTED.value, SessionPhase.WAITING.value):
                row.phase = SessionPhase.CANCELLED.value
                row.modified = now
                self.release(row, now, storage_too=True)
                self.event(session, row, f"{reason} before it started; the booked time is free again")
            elif phase in RUNNING_PHASES:
                if not row.cancel_requested:
                    row.cancel_requested = True
                    row.modified = now
                    self.event(session, row, f"{reason}; stopping the run")
                stop = True
            elif phase != SessionPhase.CANCELLED.value:
                problem = f"the session {uuid} is already {phase}; nothing to cancel"
        if problem is not None:
            raise SessionConflict(problem)
        return stop

    @staticmethod
    def release(row: SessionRow, now: datetime, *, storage_too: bool) -> None:
        """Give back the compute (and storage) a session holds from ``now`` on (whole seconds)."""
        until = max(row.start, ceil_seconds(now))
        row.compute_end = min(row.compute_end, until)
        if storage_too:
            row.storage_end = min(row.storage_end, until)
        row.hold_end = max(row.compute_end, row.storage_end)

    # ------------------------------------------------------------------------------ reads

    def session_rows(self, uuid: str, user: str | None) -> tuple[SessionRow, list[EventRow]]:
        with self.store.read() as session:
            row = self._owned(session, uuid, user)
            return row, self._events(session, [uuid])[uuid]

    def offerset_rows(self, uuid: str, user: str | None) -> tuple[OfferSetRow, list[tuple[SessionRow, list[EventRow]]]]:
        with self.store.read() as session:
            row = session.get(OfferSetRow, uuid)
            if row is None or row.platform != self.platform or row.owner != user:
                raise SessionNotFound(f"no offer set {uuid} on {self.platform}")
            sessions = list(
                session.scalars(select(SessionRow).where(SessionRow.offerset == uuid).order_by(SessionRow.start))
            )
            events = self._events(session, [item.uuid for item in sessions])
            return row, [(item, events[item.uuid]) for item in sessions]

    @staticmethod
    def _events(session: Session, uuids: list[str]) -> dict[str, list[EventRow]]:
        found: dict[str, list[EventRow]] = {uuid: [] for uuid in uuids}
        if uuids:
            for event in session.scalars(select(EventRow).where(EventRow.session.in_(uuids)).order_by(EventRow.id)):
                found[event.session].append(event)
        return found

    def events_for(self, uuids: list[str]) -> dict[str, list[EventRow]]:
        with self.store.read() as session:
            return self._events(session, uuids)

    def install_reservations(self, anchor: datetime) -> None:
        """Write the provider's reservations, once each: a restart keeps the existing ones.

        Reservations given as offsets ("PT4H after start-up") describe a busy pattern rather than
        fixed dates: once all of them are over, the pattern is laid down again from ``anchor``, so a
        demonstration platform is busy again after a restart instead of empty for good.
        """
        if not self.options.reservations:
            return
        with self.store.write(self.platform) as session:
            existing = {
                row.name: row
                for row in session.scalars(select(ReservationRow).where(ReservationRow.platform == self.platform))
            }
            relative = [item for item in self.options.reservations if isinstance(item.start, timedelta)]
            renew = bool(relative) and all(
                item.name in existing and existing[item.name].end <= anchor for item in relative
            )
            for item in self.options.reservations:
                row = existing.get(item.name)
                if row is not None and not (renew and item in relative):
                    continue
                if row is None:
                    row = ReservationRow(platform=self.platform, name=item.name)
                    session.add(row)
                row.start = ceil_seconds(item.starts_at(anchor))
                row.end = row.start + whole_seconds(item.duration)
                row.cores, row.memory, row.storage = item.cores, item.memory, item.storage

    def usage_steps(self, low: datetime, high: datetime) -> list[tuple[datetime, datetime, int, int, int]]:
        """What is held over ``[low, high)`` as steps ``(start, end, cores, memory, storage)``: the
        booking calendar as a user sees it (bookings, live offers and reservations together)."""
        with self.store.read() as session:
            profile = Profile.from_holds(self.holds(session, low, high, precise_now()))
        start, end = to_seconds(low), to_seconds(high)
        cuts = [start] + [t for t in profile.times if start < t < end] + [end]
        steps = []
        for left, right in zip(cuts, cuts[1:]):
            cores, memory, storage = profile.peak(left, right)
            if steps and steps[-1][2:] == (cores, memory, storage):
                steps[-1] = (steps[-1][0], from_seconds(right), cores, memory, storage)
            else:
                steps.append((from_seconds(left), from_seconds(right), cores, memory, storage))
        return steps

    def usage_peak(self, low: datetime, high: datetime) -> tuple[int, int, int]:
        """The most cores, memory and storage held at any instant in ``[low, high)`` (for checks and tests)."""
        with self.store.read() as session:
            now = precise_now()
            return Profile.from_holds(self.holds(session, low, high, now)).peak(to_seconds(low), to_seconds(high))
