"""The booking service: offers that hold capacity, and accept / reject / cancel, each decided in one
serialised transaction, with the executor asked where the engine has its own say.

The decisions are synchronous (SQLAlchemy sessions) and run in the platform's database threads. Every
one that can change the calendar runs in a :meth:`Store.write` transaction (shared by the offers and
accepts that arrive together: :mod:`.group_commit`), reads ``now`` *after* it has the platform's
lock, and decides on the calendar as that transaction has it: two requests or two accepts can never
decide on the same free capacity. Accepting re-checks the capacity as well, so even a configuration
change between offer and accept cannot overbook.

The executor's hooks are asynchronous and run on the engine loop, outside the transactions: its
:meth:`~.executors.Executor.external_holds` are read just before a decision and added to the
calendar for it; :meth:`~.executors.Executor.booked` is called once an accept is committed, and
undoes it when it refuses; :meth:`~.executors.Executor.released` is called by the runner when a
booked slot is over (:meth:`BookingService.release_slot`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid as uuid_module
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from execplanner_widgets.core.platform import SessionConflict, SessionNotFound
from execplanner_widgets.model import ExecutionRequest
from execplanner_widgets.model.phases import QUEUED_PHASES, SessionPhase, offer_expired

from . import messages
from .calendar import Capacity, Hold, Profile, from_seconds, to_seconds
from .calendar_live import LiveCalendar
from .executors import BookedSlot, Executor, ExecutorRefused
from .group_commit import GroupCommit
from .options import HostedOptions
from .plan import Plan, ceil_seconds, describe_need, offered_document, precise_now, whole_seconds
from .store import (
    EventRow,
    OfferSetRow,
    ReservationRow,
    SessionRow,
    Store,
    add_event,
    events_of,
    select_holds,
    sessions_with_histories,
)
from .tables import SLOT_BOOKED, SLOT_RELEASED, run_under_way

#: An offer set and its offers, each with its history: what a document is built from.
OfferSetRows = tuple[OfferSetRow, list[tuple[SessionRow, list[EventRow]]]]
#: A session and its history.
SessionRows = tuple[SessionRow, list[EventRow]]

__all__ = ["BookingService", "booked_slot", "release_hold"]

#: Offers and the other offers of their sets that are still open (built once).
_OFFERS_AND_SIBLINGS = select(SessionRow).where(
    SessionRow.offerset.in_(select(SessionRow.offerset).where(SessionRow.uuid.in_(bindparam("uuids", expanding=True)))),
    or_(SessionRow.uuid.in_(bindparam("uuids", expanding=True)), SessionRow.phase == SessionPhase.OFFERED.value),
)
#: ``session.info`` key of the families read ahead for a batch of accepts.
_FAMILIES = "execplanner_offer_families"

log = logging.getLogger(__name__)

T = TypeVar("T")
DB = Callable[..., Awaitable[Any]]
Engine = Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]


def release_hold(row: SessionRow, now: datetime, *, storage_too: bool) -> None:
    """Give back the compute (and storage) a session holds from ``now`` on (whole seconds)."""
    until = max(row.start, ceil_seconds(now))
    row.compute_end = min(row.compute_end, until)
    if storage_too:
        row.storage_end = min(row.storage_end, until)
    row.hold_end = max(row.compute_end, row.storage_end)


def booked_slot(row: SessionRow) -> BookedSlot:
    """The executor's view of a booked session."""
    return BookedSlot(
        session=row.uuid,
        user=row.owner,
        start=row.start,
        end=row.compute_end,
        cores=row.cores,
        memory_gib=row.memory,
        storage_gib=row.storage,
        handle=row.slot_handle,
    )


class BookingService:
    """The calendar decisions of one hosted platform, and the executor's part in them."""

    def __init__(
        self,
        store: Store,
        platform: str,
        options: HostedOptions,
        title: str,
        executor: Executor,
        db: DB,
        engine: Engine,
    ) -> None:
        self.store = store
        self.platform = platform
        self.options = options
        self.title = title
        self.executor = executor
        self._db = db
        self._engine = engine
        # the calendar in memory, kept in step by the store (see calendar_live): a question reads
        # no bookings, and neither does the re-check of an accept; the database stays the truth
        self.live = LiveCalendar(platform)
        store.watch(platform, self.live)
        # offers and accepts that arrive together share one write transaction
        self.writes = GroupCommit(store, platform, db, self._prepare_accepts)

    # --------------------------------------------------------------------------- reads

    def owned(self, session: Session, uuid: str, user: str | None) -> SessionRow:
        return self._mine(session.get(SessionRow, uuid), uuid, user)

    def _mine(self, row: SessionRow | None, uuid: str, user: str | None) -> SessionRow:
        """``row`` if it is ``user``'s session on this platform; :class:`SessionNotFound` otherwise
        (another user's session is not found either: its existence is not ours to tell)."""
        if row is None or row.platform != self.platform or row.owner != user or row.deleted:
            raise SessionNotFound(f"no offer or session {uuid} on {self.platform}")
        return row

    def session_rows(self, uuid: str, user: str | None) -> tuple[SessionRow, list[EventRow]]:
        with self.store.read() as session:
            row = self.owned(session, uuid, user)
            return row, events_of(session, [uuid])[uuid]

    def offerset_rows(self, uuid: str, user: str | None) -> OfferSetRows:
        with self.store.read() as session:
            row = session.get(OfferSetRow, uuid)
            if row is None or row.platform != self.platform or row.owner != user:
                raise SessionNotFound(f"no offer set {uuid} on {self.platform}")
            query = select(SessionRow).where(SessionRow.offerset == uuid).order_by(SessionRow.start)
            sessions = list(session.scalars(query))
            events = events_of(session, [item.uuid for item in sessions])
            return row, [(item, events[item.uuid]) for item in sessions]

    def holds(self, session: Session, low: datetime, high: datetime, now: datetime, **kwargs: Any) -> list[Hold]:
        return select_holds(session, self.platform, low, high, now, **kwargs)

    def _hooked(self, name: str) -> bool:
        """Whether the executor has its own ``name`` hook: the default ones are no-ops, and skipping
        them saves a trip to the engine loop (and, for ``booked``, a read and a write) per decision."""
        return getattr(type(self.executor), name, None) is not getattr(Executor, name)

    async def external_holds(self, low: datetime, high: datetime) -> list[Hold]:
        """What the engine itself reports as busy in ``[low, high)``."""
        if not self._hooked("external_holds"):
            return []
        return list(await self._engine(self.executor.external_holds(low, high)))

    async def refusals(self, plan: Plan, user: str | None) -> list[str]:
        """NO reasons from the engine's own limits."""
        if not self._hooked("refusals"):
            return []
        return list(await self._engine(self.executor.refusals(plan.need, user)))

    # -------------------------------------------------------------------------- offers

    async def refuse(
        self, request: dict[str, Any], texts: list[dict[str, Any]], options: list[dict[str, Any]], user: str | None
    ) -> OfferSetRows:
        """Record a NO answer (so ``GET offersets/{uuid}`` can show it again) and return its row."""
        return await self.writes.run(lambda session: self._refuse(session, request, texts, options, user))

    def _refuse(
        self, session: Session, request: dict[str, Any], texts: list[Any], options: list[Any], user: str | None
    ) -> OfferSetRows:
        description = f"{self.title} cannot run this request"
        offerset = self._offerset(request, "NO", texts, options, user, description)
        self.store.add_rows(session, [offerset])
        return offerset, []

    def _offerset(
        self,
        request: dict[str, Any],
        result: str,
        texts: list[dict[str, Any]],
        options: list[dict[str, Any]],
        user: str | None,
        description: str,
    ) -> OfferSetRow:
        row = OfferSetRow(
            uuid=str(uuid_module.uuid4()),
            platform=self.platform,
            owner=user,
            created=precise_now().replace(microsecond=0),
            result=result,
            description=description,
            messages=texts,
            options=options,
            request=request,
        )
        return row

    async def offer(
        self, request: ExecutionRequest, plan: Plan, capacity: Capacity, allocation: Capacity | None, user: str | None
    ) -> OfferSetRows:
        """Find up to ``options.offers`` start times and hold them as offers; return the offer set's
        rows as the write transaction left them (no second trip to read them back)."""
        low = max(plan.earliest, ceil_seconds(precise_now()))
        external = await self.external_holds(low, plan.latest + timedelta(seconds=plan.need.storage_duration))
        rows: OfferSetRows = await self.writes.run(
            lambda session: self._offer(session, request, plan, capacity, allocation, user, external)
        )
        if self._hooked("offer_note") and rows[1]:
            offerset = rows[0].uuid
            await self._offer_notes(offerset, plan, user)
            rows = await self._db(self.offerset_rows, offerset, user)
        return rows

    async def _offer_notes(self, offerset: str, plan: Plan, user: str | None) -> None:
        """Each offer gets the executor's sentence about it (e.g. "this start is Slurm's estimate")."""
        rows = await self._db(self._offer_shapes, offerset)
        if not rows:
            return
        needs = [
            dataclasses.replace(plan.need, cores=cores, memory=memory, cores_max=cores, memory_max=memory)
            for _, _, cores, memory in rows
        ]
        notes = await asyncio.gather(
            *(
                self._engine(self.executor.offer_note(need, start, user))
                for need, (_, start, _, _) in zip(needs, rows, strict=True)
            ),
            return_exceptions=True,
        )
        texts: dict[str, str] = {}
        for (uuid, _, _, _), note in zip(rows, notes, strict=True):
            if isinstance(note, BaseException):  # a note is extra: the offer stands without it
                log.warning("hosted platform %s: no offer note for %s: %s", self.platform, uuid, note)
            elif note:
                texts[uuid] = str(note)
        if texts:
            await self._db(self._add_notes, texts)

    def _offer_shapes(self, offerset: str) -> list[tuple[str, datetime, int, int]]:
        query = select(SessionRow.uuid, SessionRow.available_start, SessionRow.cores, SessionRow.memory).where(
            SessionRow.offerset == offerset, SessionRow.phase == SessionPhase.OFFERED.value
        )
        with self.store.read() as session:
            return [tuple(item) for item in session.execute(query.order_by(SessionRow.start))]  # type: ignore[misc]

    def _add_notes(self, texts: dict[str, str]) -> None:
        with self.store.write(self.platform) as session:
            for uuid, text in texts.items():
                row = session.get(SessionRow, uuid)
                if row is not None:
                    add_event(session, row, text)

    def _offer(
        self,
        session: Session,
        request: ExecutionRequest,
        plan: Plan,
        capacity: Capacity,
        allocation: Capacity | None,
        user: str | None,
        external: list[Hold],
    ) -> OfferSetRows:
        """Find the slots and hold them as offers, in the platform's write transaction ``session``."""
        now = precise_now()
        earliest, latest = max(plan.earliest, ceil_seconds(now)), plan.latest
        window = to_seconds(earliest), to_seconds(latest)
        slots = []
        platform_has_room = False  # for a NO within an allocation: would the platform alone have room?
        if earliest <= latest:
            calendar = self.live.current(session, now)
            calendar.set_overlay(external)
            slots = calendar.find_slots(
                plan.need,
                capacity,
                *window,
                self.options.offers,
                owner=user,
                allocation=allocation,
                now=to_seconds(now),
            )
            if not slots and allocation is not None:
                platform_has_room = bool(calendar.find_slots(plan.need, capacity, *window, 1))
        document = request.to_broker()
        if not slots:
            reason = self._no_slot_reason(plan, earliest, latest, allocation, platform_has_room)
            description = f"{self.title} has no free time for this request"
            texts = [messages.message_document(reason, "WARN")]
            offerset = self._offerset(document, "NO", texts, [], user, description)
            self.store.add_rows(session, [offerset])
            return offerset, []
        expires = now.replace(microsecond=0) + self.options.offer_ttl
        wanted = describe_need(plan.need, plan.run)
        summary = messages.offers_summary(len(slots), wanted, [from_seconds(slot.start) for slot in slots], expires)
        texts = [messages.message_document(summary)]
        offerset = self._offerset(document, "YES", texts, [], user, f"{self.title} can run this request")
        rows = [self._offer_row(request, plan, slot, offerset.uuid, user, now, expires) for slot in slots]
        rows.sort(key=lambda row: row.start)  # as offerset_rows reads them
        self.store.add_rows(session, [offerset, *rows])
        offers = []
        for row in rows:
            text = messages.offered(row.cores, row.memory, row.storage, row.available_start, plan.run, expires)
            offers.append((row, [add_event(session, row, text)]))
        return offerset, offers

    def _offer_row(
        self,
        request: ExecutionRequest,
        plan: Plan,
        slot: Any,
        offerset: str,
        user: str | None,
        now: datetime,
        expires: datetime,
    ) -> SessionRow:
        """The offer of ``slot``, not yet written."""
        start = from_seconds(slot.start)
        compute_end = start + timedelta(seconds=plan.need.duration)
        storage_end = start + timedelta(seconds=plan.need.storage_duration) if slot.storage else compute_end
        available_start = start + self.options.preparation
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
            storage_end=storage_end,
            hold_end=max(compute_end, storage_end),
            cores=slot.cores,
            memory=slot.memory,
            storage=slot.storage,
            document=offered_document(request, plan, slot.cores, slot.memory, slot.storage),
            results=[],
            storage_removed=not plan.storage_names,
        )
        return row

    def _no_slot_reason(
        self, plan: Plan, earliest: datetime, latest: datetime, allocation: Capacity | None, platform_has_room: bool
    ) -> str:
        wanted = describe_need(plan.need, plan.run)
        if earliest > latest:
            return "the requested start window ends before now; no offer can start in it"
        if allocation is not None and platform_has_room:
            return messages.allocation_taken(self.title, allocation, latest, wanted)
        return messages.no_free_time(self.title, wanted, earliest, latest)

    # -------------------------------------------------------------------------- accept

    def expire_if_due(self, session: Session, row: SessionRow, now: datetime) -> bool:
        """Write EXPIRED on an offer whose time is up (a client may ask before the runner does)."""
        if not offer_expired(row, now):
            return False
        row.phase, row.modified = SessionPhase.EXPIRED.value, now
        add_event(
            session, row, f"expired at {messages.short(row.expires)} without being accepted; its capacity is free again"
        )
        return True

    async def accept(self, uuid: str, user: str | None, capacity: Capacity, allocation: Capacity | None) -> SessionRows:
        """Book the offer ``uuid``, reject its siblings, and let the executor hold the slot; return
        the session's rows as the accept left them. :class:`SessionConflict` if it cannot be booked
        (or the executor refuses)."""
        external: list[Hold] = []
        if self._hooked("external_holds"):
            row, _ = await self._db(self.session_rows, uuid, user)
            external = await self.external_holds(row.start, row.hold_end)
        hooked = self._hooked("booked")
        rows: SessionRows = await self.writes.run(
            lambda session: self._accept(session, uuid, user, capacity, allocation, external, not hooked), uuid
        )
        if hooked:
            await self.book(uuid)
            rows = await self._db(self.session_rows, uuid, user)  # the executor's part changed them
        return rows

    def _accept(
        self,
        session: Session,
        uuid: str,
        user: str | None,
        capacity: Capacity,
        allocation: Capacity | None,
        external: list[Hold],
        slot_booked: bool = False,
    ) -> SessionRows:
        """The accept, in the platform's write transaction ``session``; ``slot_booked`` when the
        executor has no ``booked`` hook, so the slot is the executor's at once (what :meth:`book`
        would write after a no-op hook). A refusal is written (REJECTED, EXPIRED) before it is
        raised: :class:`.group_commit.GroupCommit` keeps it."""
        now = precise_now()
        family = self._family(session, uuid)
        row = self._mine(next((item for item in family if item.uuid == uuid), None), uuid, user)
        problem = self._not_acceptable(session, row, now)
        if problem is None:
            problem = self._still_fits(session, row, now, capacity, allocation, user, external)
            if problem is not None:
                row.phase, row.modified = SessionPhase.REJECTED.value, now
                add_event(session, row, f"could not be booked: {problem}", "WARN")
        if problem is None:
            self._book_row(session, row, now, [item for item in family if item is not row])
            if slot_booked:
                row.slot_state = SLOT_BOOKED
        if problem is not None:
            raise SessionConflict(problem)
        return _with_events(session, row)

    def _prepare_accepts(self, session: Session, uuids: list[str]) -> None:
        """Read what a batch of accepts will read, in one query for the whole batch: the offers with
        the open offers of their sets, and the offers' histories (a batch then costs the same few
        round trips to PostgreSQL whatever its size)."""
        asked = set(uuids)
        found = sessions_with_histories(session, _OFFERS_AND_SIBLINGS, {"uuids": uuids}, asked)
        families: dict[str, list[SessionRow]] = {}
        for item in found:
            families.setdefault(item.offerset, []).append(item)
        known = session.info.setdefault(_FAMILIES, {})
        known.update(dict.fromkeys(asked, []))  # an unknown offer has no family: not found
        known.update({item.uuid: families[item.offerset] for item in found if item.uuid in asked})

    def _family(self, session: Session, uuid: str) -> list[SessionRow]:
        """The offer ``uuid`` and the other open offers of its set, as this transaction has them:
        read ahead for its batch (:meth:`_prepare_accepts`), or now for a step that came alone."""
        if uuid not in session.info.get(_FAMILIES, {}):
            self._prepare_accepts(session, [uuid])
        return session.info[_FAMILIES][uuid]  # type: ignore[no-any-return]

    def _not_acceptable(self, session: Session, row: SessionRow, now: datetime) -> str | None:
        """Why the offer ``row`` cannot be accepted in its phase, or ``None``."""
        if self.expire_if_due(session, row, now) or row.phase == SessionPhase.EXPIRED.value:
            return f"the offer {row.uuid} expired at {messages.short(row.expires or now)}; ask for new offers"
        if row.phase == SessionPhase.REJECTED.value:
            return (
                f"the offer {row.uuid} was REJECTED (declined, or another offer of its request was accepted); "
                "ask for new offers"
            )
        if row.phase != SessionPhase.OFFERED.value:
            return f"the offer {row.uuid} is {row.phase}; only an OFFERED offer can be accepted"
        return None

    def _book_row(self, session: Session, row: SessionRow, now: datetime, siblings: list[SessionRow]) -> None:
        """Book ``row`` and reject the other offers of its set that are still open."""
        row.phase = SessionPhase.ACCEPTED.value
        row.accepted = row.modified = now
        row.expires = None
        row.destruction = row.available_end + self.options.retention
        add_event(session, row, messages.accepted(row.cores, row.memory, row.available_start, row.available_end))
        for sibling in siblings:
            if sibling.phase != SessionPhase.OFFERED.value:  # as the steps before it in this batch left it
                continue
            sibling.phase, sibling.modified = SessionPhase.REJECTED.value, now
            add_event(session, sibling, messages.sibling_rejected(row.uuid))

    def _still_fits(
        self,
        session: Session,
        row: SessionRow,
        now: datetime,
        capacity: Capacity,
        allocation: Capacity | None,
        user: str | None,
        external: list[Hold],
    ) -> str | None:
        """Re-check the booking against everything else held, as the platform is now (a smaller
        capacity since the offer, an engine's own load): the live calendar, which this transaction
        has brought in step with the database, answers in O(log n) without reading the bookings."""
        calendar = self.live.current(session, now)
        calendar.set_overlay(external)
        key = ("session", row.uuid)
        start, compute_end, storage_end = (
            to_seconds(row.start),
            to_seconds(row.compute_end),
            to_seconds(row.storage_end),
        )
        checks: list[tuple[tuple[int, int, int], Capacity, str]] = []
        for limit, who, mine in ((capacity, self.title, False), (allocation, "your allocation", True)):
            if limit is None:
                continue
            cores, memory, _ = calendar.peak_without(key, start, compute_end, user, by_owner=mine)
            storage = calendar.peak_without(key, start, storage_end, user, by_owner=mine)[2]
            checks.append(((cores, memory, storage), limit, who))
        for used, limit, who in checks:
            problem = _short_of(used, row, limit, who)
            if problem is not None:
                return problem
        return None

    # ------------------------------------------------------------- the executor's slot

    async def book(self, uuid: str) -> None:
        """Let the executor hold the accepted slot ``uuid``; undo the accept if it refuses."""
        row, _ = await self._db(self._row, uuid)
        if row is None or row.slot_state is not None:
            return
        slot = booked_slot(row)
        try:
            await self._engine(self.executor.booked(slot))
        except ExecutorRefused as refused:
            await self._db(self._undo_accept, uuid, refused.reason)
            raise SessionConflict(f"{self.title} could not book this slot: {refused.reason}") from None
        await self._db(self._slot_state, uuid, SLOT_BOOKED, slot.handle)

    def _row(self, uuid: str) -> tuple[SessionRow | None, None]:
        with self.store.read() as session:
            return session.get(SessionRow, uuid), None

    def _slot_state(self, uuid: str, state: str, handle: str | None) -> None:
        with self.store.write(self.platform) as session:
            row = session.get(SessionRow, uuid)
            if row is not None:
                row.slot_state, row.slot_handle = state, handle

    def _undo_accept(self, uuid: str, reason: str) -> None:
        with self.store.write(self.platform) as session:
            row = session.get(SessionRow, uuid)
            if row is None or row.phase not in (SessionPhase.ACCEPTED.value, SessionPhase.WAITING.value):
                return
            now = precise_now()
            row.phase, row.modified = SessionPhase.REJECTED.value, now
            release_hold(row, now, storage_too=True)
            add_event(session, row, f"could not be booked: the executor refused: {reason}", "WARN")

    async def release_slot(self, uuid: str) -> None:
        """The booked slot ``uuid`` is over: the executor gives back what it held (once)."""
        row, _ = await self._db(self._row, uuid)
        if row is None or row.slot_state != SLOT_BOOKED:
            return
        try:
            await self._engine(self.executor.released(booked_slot(row)))
        except Exception:  # the slot is over either way; say so in the log, do not ask again forever
            log.exception("hosted platform %s: the executor failed to release the slot of %s", self.platform, uuid)
        await self._db(self._slot_state, uuid, SLOT_RELEASED, row.slot_handle)

    # ------------------------------------------------------------------ reject, cancel

    async def reject(self, uuid: str, user: str | None) -> SessionRows:
        return await self._db(self._reject, uuid, user)  # type: ignore[no-any-return]

    def _reject(self, uuid: str, user: str | None) -> SessionRows:
        """Decline an offer, freeing what it held (rejecting twice is harmless); return its rows."""
        problem: str | None = None
        with self.store.write(self.platform) as session:
            now = precise_now()
            row = self.owned(session, uuid, user)
            if self.expire_if_due(session, row, now):
                problem = f"the offer {uuid} had already expired at {messages.short(row.expires or now)}"
            elif row.phase == SessionPhase.OFFERED.value:
                row.phase, row.modified = SessionPhase.REJECTED.value, now
                add_event(session, row, "rejected; its capacity is free again")
            elif row.phase != SessionPhase.REJECTED.value:
                problem = (
                    f"the session {uuid} is {row.phase}; only an OFFERED offer can be rejected "
                    "(cancel a booked session instead)"
                )
            rows = _with_events(session, row)
        if problem is not None:
            raise SessionConflict(problem)
        return rows

    async def cancel(
        self, uuid: str, user: str | None, reason: str = "cancelled by the user"
    ) -> tuple[bool, SessionRows]:
        """Cancel an offer or booking; return whether a run is in progress and must be stopped, and
        the session's rows as the cancel left them."""
        return await self._db(self._cancel, uuid, user, reason)  # type: ignore[no-any-return]

    def _cancel(self, uuid: str, user: str | None, reason: str) -> tuple[bool, SessionRows]:
        problem: str | None = None
        stop = False
        with self.store.write(self.platform) as session:
            now = precise_now()
            row = self.owned(session, uuid, user)
            self.expire_if_due(session, row, now)
            phase = SessionPhase(row.phase)
            if phase is SessionPhase.OFFERED or (phase in QUEUED_PHASES and not run_under_way(row)):
                row.phase, row.modified = SessionPhase.CANCELLED.value, now
                release_hold(row, now, storage_too=True)
                add_event(session, row, f"{reason} before it started; the booked time is free again")
            elif run_under_way(row):  # running, or WAITING in the engine's queue (a Slurm job PENDING)
                if not row.cancel_requested:
                    row.cancel_requested, row.modified = True, now
                    add_event(session, row, f"{reason}; stopping the run")
                stop = True
            elif phase is not SessionPhase.CANCELLED:
                problem = f"the session {uuid} is already {phase.value}; nothing to cancel"
            rows = _with_events(session, row)
        if problem is not None:
            raise SessionConflict(problem)
        return stop, rows

    # ---------------------------------------------------------------------- calendar

    def install_reservations(self, anchor: datetime) -> None:
        """Write the provider's reservations, once each: a restart keeps the existing ones.

        Reservations given as offsets ("PT4H after start-up") describe a busy pattern rather than
        fixed dates: once all of them are over, the pattern is laid down again from ``anchor``, so a
        demonstration platform is busy again after a restart instead of empty for good.
        """
        if not self.options.reservations:
            return
        with self.store.write(self.platform) as session:
            query = select(ReservationRow).where(ReservationRow.platform == self.platform)
            existing = {row.name: row for row in session.scalars(query)}
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

    async def usage_profile(self, low: datetime, high: datetime) -> Profile:
        """Everything held over ``[low, high)``, the engine's own load included."""
        external = await self.external_holds(low, high)

        def read() -> list[Hold]:
            with self.store.read() as session:
                return self.holds(session, low, high, precise_now())

        return Profile.from_holds(list(await self._db(read)) + external)

    async def usage_steps(self, low: datetime, high: datetime) -> list[tuple[datetime, datetime, int, int, int]]:
        """What is held over ``[low, high)`` as steps ``(start, end, cores, memory, storage)``: the
        booking calendar as a user sees it (bookings, live offers, reservations and the engine's load)."""
        profile = await self.usage_profile(low, high)
        start, end = to_seconds(low), to_seconds(high)
        cuts = [start] + [t for t in profile.times if start < t < end] + [end]
        steps: list[tuple[datetime, datetime, int, int, int]] = []
        for left, right in zip(cuts, cuts[1:], strict=False):
            cores, memory, storage = profile.peak(left, right)
            if steps and steps[-1][2:] == (cores, memory, storage):
                steps[-1] = (steps[-1][0], from_seconds(right), cores, memory, storage)
            else:
                steps.append((from_seconds(left), from_seconds(right), cores, memory, storage))
        return steps

    async def usage_peak(self, low: datetime, high: datetime) -> tuple[int, int, int]:
        """The most cores, memory and storage held at any instant in ``[low, high)``."""
        return (await self.usage_profile(low, high)).peak(to_seconds(low), to_seconds(high))


def _short_of(used: tuple[int, int, int], row: SessionRow, limit: Capacity, who: str) -> str | None:
    """What ``row`` would overbook against ``limit`` when the others hold ``used`` (the peaks of
    cores and memory over its compute time, and of storage over its storage time), or ``None``."""
    wanted = (row.cores, row.memory, row.storage)
    names = ("cores", "GiB of memory", "GiB of storage")
    for name, have, taken, asked in zip(names, limit.limits(), used, wanted, strict=True):
        if have is not None and asked and taken + asked > have:
            return f"{who} no longer has {asked} {name} free for this time ({have - taken} left); ask for new offers"
    return None


def _with_events(session: Session, row: SessionRow) -> SessionRows:
    """``row`` with its history, read in the transaction that changed it (no second trip)."""
    return row, events_of(session, [row.uuid])[row.uuid]
