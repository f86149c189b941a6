"""The offers of one search and what became of them: the single source of what the offers step shows.

Every change comes from a platform's answer (the offer set, the session an accept or reject
returned) or from the clock (an offer past its ``expires`` is EXPIRED), so nothing on screen can
contradict the platform: a row says OFFERED only while the platform holds it for us, REJECTED once
the platform said so, and only an open offer can be selected or accepted. A new search starts a
new book; the open offers of the old one are handed back (:meth:`OfferBook.open_offers`) so that
the caller releases them on the platforms before asking again.

No widgets here: the book is plain data, tested on its own and rendered by the html views.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..html import OfferRow, TimelineBar
from ..model import ExecutionSession
from ..model.phases import offer_expired
from ..model.results import PlatformResult

__all__ = ["OfferBook", "OfferEntry"]

#: The state an offer shows while the platform holds it for the user.
OPEN = "OFFERED"


@dataclass
class OfferEntry:
    """A row: one offer of a YES answer, or a whole NO/ERROR answer (``offer`` None)."""

    key: str
    result: PlatformResult
    offer: ExecutionSession | None
    number: int
    state: str = ""

    @property
    def platform(self) -> str:
        return self.result.platform

    @property
    def title(self) -> str:
        return self.result.title

    def sort_key(self) -> tuple[int, float, str, int]:
        rank = {"YES": 0, "NO": 1, "ERROR": 2}.get(self.result.status, 3)
        start = self.offer.start.timestamp() if self.offer is not None and self.offer.start else 0.0
        return rank, start, self.result.platform, self.number


class OfferBook:
    """The answers of one search and the state of each offer."""

    def __init__(self) -> None:
        self.results: list[PlatformResult] = []
        self.entries: list[OfferEntry] = []
        self.selected: str | None = None
        self.accepted: str | None = None
        self.session: ExecutionSession | None = None
        self._by_key: dict[str, OfferEntry] = {}

    # ------------------------------------------------------------------------------ answers

    def add(self, result: PlatformResult, now: datetime | None = None) -> list[OfferEntry]:
        """A platform answered: a row per offer (YES) or one row for the answer (NO, ERROR)."""
        self.results.append(result)
        offers = result.offers if result.status == "YES" and result.offers else [None]
        added = []
        for number, offer in enumerate(offers):
            entry = OfferEntry(str(len(self.entries)), result, offer, number)
            if offer is not None:
                entry.state = str(getattr(offer.phase, "value", offer.phase))
            self.entries.append(entry)
            self._by_key[entry.key] = entry
            added.append(entry)
        self.tick(now)
        return added

    def sort(self) -> None:
        self.entries.sort(key=OfferEntry.sort_key)

    def entry(self, key: str) -> OfferEntry:
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"no row {key!r} in the current offers") from None

    def find(self, platform: str, index: int = 0) -> OfferEntry:
        for entry in self.entries:
            if entry.platform == platform and entry.offer is not None and entry.number == index:
                return entry
        offered = ", ".join(sorted({e.platform for e in self.entries if e.offer is not None})) or "none"
        raise KeyError(f"no offer {index} from platform {platform!r}; platforms with offers: {offered}")

    # -------------------------------------------------------------------------------- clock

    def tick(self, now: datetime | None = None) -> bool:
        """Mark offers past their expiry EXPIRED; True if any row changed."""
        now = now or datetime.now(timezone.utc)
        changed = False
        for entry in self.entries:
            if entry.state == OPEN and entry.offer is not None and offer_expired(entry.offer.expires, now):
                entry.state = "EXPIRED"
                changed = True
                if self.selected == entry.key:
                    self.selected = None
        return changed

    def is_open(self, entry: OfferEntry, now: datetime | None = None) -> bool:
        """Whether the platform still holds this offer for the user (and it can be taken)."""
        if entry.offer is None or entry.state != OPEN or self.accepted is not None:
            return False
        return not offer_expired(entry.offer.expires, now or datetime.now(timezone.utc))

    def open_entries(self, now: datetime | None = None) -> list[OfferEntry]:
        return [entry for entry in self.entries if self.is_open(entry, now)]

    def open_offers(self) -> list[OfferEntry]:
        """Offers the platforms hold for nobody once this search is over: neither accepted, nor
        expired, nor rejected (the ones to release)."""
        now = datetime.now(timezone.utc)
        return [
            entry
            for entry in self.entries
            if entry.offer is not None
            and entry.state == OPEN
            and entry.key != self.accepted
            and not offer_expired(entry.offer.expires, now)
        ]

    def next_expiry(self, now: datetime | None = None) -> datetime | None:
        moments = [entry.offer.expires for entry in self.open_entries(now) if entry.offer.expires is not None]
        return min(moments) if moments else None

    # ------------------------------------------------------------------------------ choices

    def select(self, key: str, now: datetime | None = None) -> OfferEntry:
        """Pick an open offer; ValueError saying why a row cannot be picked."""
        entry = self.entry(key)
        self.tick(now)
        if entry.offer is None:
            raise ValueError(f"{entry.title} made no offer")
        if self.accepted is not None:
            raise ValueError("An offer from this search is booked already; Find offers again to book another.")
        if entry.state == "EXPIRED":
            raise ValueError(f"This offer from {entry.title} has expired; ask again for new offers.")
        if entry.state != OPEN:
            raise ValueError(f"This offer from {entry.title} is {entry.state}; ask again for new offers.")
        self.selected = key
        return entry

    def accepted_as(self, key: str, session: ExecutionSession) -> None:
        """The platform booked the offer: the row shows the session's phase."""
        entry = self.entry(key)
        self.accepted = key
        self.selected = key
        self.session = session
        entry.state = "ACCEPTED"

    def released_as(self, key: str, session: Any) -> None:
        """The platform answered for an offer we let go (REJECTED, or whatever it says now)."""
        entry = self.entry(key)
        entry.state = str(getattr(session.phase, "value", session.phase))

    # ------------------------------------------------------------------------------- views

    def rows(self, now: datetime | None = None) -> list[OfferRow]:
        now = now or datetime.now(timezone.utc)
        rows = []
        for entry in self.entries:
            offer = entry.offer
            state = entry.state
            if entry.key == self.selected and state == OPEN and self.accepted is None:
                state = "SELECTED"
            rows.append(
                OfferRow(
                    key=entry.key,
                    platform=entry.platform,
                    title=entry.title,
                    answer=entry.result.status,
                    start=offer.start if offer is not None else None,
                    end=offer.end if offer is not None else None,
                    expires=offer.expires if offer is not None else None,
                    cores=offer.cores if offer is not None else None,
                    memory=offer.memory if offer is not None else None,
                    state=state,
                    reasons=entry.result.reasons if offer is None else (),
                    selected=entry.key == self.selected,
                    open=self.is_open(entry, now),
                )
            )
        return rows

    def bars(self) -> list[TimelineBar]:
        bars = []
        for entry in self.entries:
            offer = entry.offer
            if offer is None or offer.start is None or offer.end is None:
                continue
            bars.append(
                TimelineBar(
                    key=entry.key,
                    platform=entry.platform,
                    title=entry.title,
                    start=offer.start,
                    end=offer.end,
                    expires=offer.expires,
                    state=entry.state,
                    selected=entry.key == self.selected,
                    label=f"{offer.cores} cores" if offer.cores is not None else "",
                )
            )
        return bars
