"""Step 4: ask every platform, compare the answers, book one offer.

**Find offers** runs ``planner.stream_offers`` in a background thread, so the kernel stays free while
platforms think; each answer adds its rows as it arrives, and the line above the table says which
platforms are still being asked. The table is ONE HTML view (any number of rows, one message to the
browser) with Select / Accept / Details buttons whose clicks come back through an
:class:`~.events.EventChannel`; the **Timeline** view draws the same offers on one time axis, and a
click on a bar selects that offer.

What the rows say comes from an :class:`~.offerbook.OfferBook` fed only by the platforms' answers and
the clock. Offers are never left holding capacity for nobody: a new search, a changed request,
closing the widget or ending the kernel first **rejects** the open offers of the previous search on
their platforms (the ExecutionBroker phase update to REJECTED), so asking again cannot push the
user's own start times later; accepting one offer rejects the others.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets
from traitlets import Bool, Instance, Int, List, Unicode, observe

from ..html import TimelineBar, countdown, offers_view, result_html, session_html, timeline_svg, when
from ..model import ExecutionRequest, ExecutionSession
from ..model.results import PlatformResult
from .background import Repeater, Worker
from .common import describe_error, status, status_widget
from .events import EventChannel
from .offerbook import OfferBook, OfferEntry

__all__ = ["OfferBrowser"]

log = logging.getLogger(__name__)

#: Words in NO reasons that point at the data rather than at the resources asked for.
_DATA_WORDS = (
    "no such file",
    "cannot copy",
    "not found",
    "data item",
    "cannot read",
    "cannot reach the data",
    "permission denied",
)

#: Seconds between redraws of the table while answers stream in (it is drawn again when all are in).
DRAW_EVERY = 0.25

#: Every live browser, so that a kernel that ends releases their offers.
_LIVE: weakref.WeakSet[OfferBrowser] = weakref.WeakSet()


@atexit.register
def _release_everything() -> None:  # pragma: no cover - runs at interpreter exit
    for browser in list(_LIVE):
        try:
            browser.release(timeout=5.0)
        except Exception:
            log.debug("releasing offers at exit failed", exc_info=True)


class OfferBrowser(widgets.VBox):
    """Asks the planner's platforms for offers, shows them as they arrive, books the chosen one."""

    request = Instance(ExecutionRequest, allow_none=True, help="What to ask the platforms")
    blocked = Unicode("", help="Why the platforms cannot be asked yet (empty when they can)")
    results = List(Instance(PlatformResult), help="The answers so far, in the order they arrived")
    answered = Int(0, help="Platforms that have answered")
    expected = Int(0, help="Platforms asked (0 while unknown)")
    pending = List(Unicode(), help="Titles of the platforms still being asked")
    busy = Bool(False, help="True while platforms are being asked")
    selected = Instance(ExecutionSession, allow_none=True, help="The offer picked for booking")
    selected_platform = Unicode("", help="The platform of the selected offer")
    accepted = Instance(ExecutionSession, allow_none=True, help="The booked session")
    accepted_platform = Unicode("", help="The platform of the booked session")
    released = Int(0, help="Offers of earlier searches rejected on their platforms so far")
    error = Unicode("", help="The last failure, for people")
    view = Unicode("Table", help="Which view of the offers is shown: Table or Timeline")

    def __init__(
        self,
        planner: Any,
        request: ExecutionRequest | None = None,
        *,
        release_others: bool = True,
        tick: float = 1.0,
        **kwargs: Any,
    ) -> None:
        self.planner = planner
        self.release_others = release_others
        self.find_button = widgets.Button(
            description="Find offers", icon="search", button_style="primary", layout=widgets.Layout(width="10em")
        )
        self.find_button.on_click(lambda _: self.find())
        self.accept_button = widgets.Button(
            description="Accept",
            icon="check",
            button_style="success",
            disabled=True,
            layout=widgets.Layout(width="8em"),
        )
        self.accept_button.on_click(lambda _: self.accept())
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="8em", display="none"))
        self.progress_text = widgets.HTML()
        self.view_toggle = widgets.ToggleButtons(
            options=["Table", "Timeline"], value="Table", layout=widgets.Layout(display="none")
        )
        self.view_toggle.style.button_width = "6.5em"
        self.view_toggle.observe(lambda change: setattr(self, "view", change["new"]), "value")
        self.table = widgets.HTML(layout=widgets.Layout(display="none", width="100%"))
        self.timeline = widgets.HTML(layout=widgets.Layout(display="none", width="100%"))
        self.details = widgets.HTML(layout=widgets.Layout(display="none", border="1px solid #d0d7de", padding="4px"))
        self.status = status_widget()
        self.book = OfferBook()
        self._lock = threading.RLock()
        self._generation = 0
        self._details_key = ""
        self._drawn: tuple[str, str] = ("", "")
        self._drawn_at = 0.0
        self._pending_draw: threading.Timer | None = None
        self._closing = False
        self._search = Worker("execplanner-find-offers", on_error=self._search_failed)
        self._booking = Worker("execplanner-accept", on_error=self._booking_failed)
        self._releases: list[threading.Thread] = []
        self.calendars: dict[str, Any] = {}
        self.bookings: list[Any] = []  # the user's own sessions booked from here: (platform, title, session)
        self._calendar_reader = Worker("execplanner-calendars")
        self._clock = Repeater("execplanner-offer-clock", self._tick, tick)
        super().__init__(**kwargs)
        self.channel = EventChannel(
            self, {"select": self._on_select, "accept": self._on_accept, "details": self._on_details}
        )
        self.children = [
            widgets.HBox(
                [self.find_button, self.accept_button, self.progress],
                layout=widgets.Layout(align_items="center", flex_flow="row wrap"),
            ),
            self.progress_text,
            self.status,
            self.view_toggle,
            self.table,
            self.timeline,
            self.details,
            self.channel.box,
        ]
        self.request = request
        self._blocked_changed({"new": self.blocked})
        _LIVE.add(self)

    # ---------------------------------------------------------------------------------- asking

    def find(self) -> bool:
        """Ask every platform (as the **Find offers** button does); False if it could not start.

        The open offers of the previous search are rejected on their platforms first, so that they
        do not hold capacity against this search."""
        if self.blocked:
            self.status.value = status(self.blocked, "no")
            return False
        if self.request is None:
            self.status.value = status(
                "There is nothing to ask yet: pick an executable and fill in the resources.", "no"
            )
            return False
        with self._lock:
            if self._search.busy:
                return False
            self._generation += 1
            generation = self._generation
            leftovers = self._clear()
            self.busy = True
            self._update_find_button()
            self.progress.layout.display = ""
            self.progress_text.value = status("asking the platforms ...", "wait")
            self.status.value = ""
        return self._search.start(self._run_search, generation, self.request, leftovers)

    def _run_search(self, generation: int, request: ExecutionRequest, leftovers: list[OfferEntry]) -> None:
        try:
            if leftovers:
                self.progress_text.value = status(f"releasing {len(leftovers)} earlier offer(s) ...", "wait")
                self._reject_all(leftovers)
            self._join_releases()
            try:
                described = list(self.planner.platforms())
            except Exception:
                log.debug("could not list the platforms", exc_info=True)
                described = []
            with self._lock:
                if generation != self._generation:
                    return
                self.expected = len(described)
                self._titles = {item.name: item.title for item in described}
                self.pending = [item.title for item in described]
                self._show_progress()
            stream: Iterator[PlatformResult] = iter(self.planner.stream_offers(request))
            try:
                for result in stream:
                    with self._lock:
                        if generation != self._generation:
                            break
                        self._add(result)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        finally:
            with self._lock:
                if generation == self._generation:
                    self._finish()

    def _add(self, result: PlatformResult) -> None:
        added = self.book.add(result)
        self.pending = [title for title in self.pending if title != self._titles.get(result.platform, result.title)]
        self.results = [*self.results, result]
        self.answered = len(self.results)  # after results: observers of the count see every answer
        self._show_progress()
        if time.monotonic() - self._drawn_at >= DRAW_EVERY:  # many answers at once: one table, not one per answer
            self._draw()
        elif self._pending_draw is None:  # drawn a moment ago: draw again soon, so no answer waits for the next
            self._pending_draw = threading.Timer(DRAW_EVERY, self._draw_later, args=(self._generation,))
            self._pending_draw.daemon = True
            self._pending_draw.start()
        if any(entry.offer is not None for entry in added):
            self._clock.start()

    def _show_progress(self) -> None:
        if self.expected:
            self.progress.max = max(self.expected, 1)
            self.progress.value = min(self.answered, self.expected)
            text = f"answered {self.answered} of {self.expected}"
        else:
            text = f"answered {self.answered}"
        if self.busy and self.pending:
            text += "; still asking: " + ", ".join(self.pending)
        self.progress_text.value = status(text, "wait" if self.busy else "muted")

    def _finish(self) -> None:
        self.book.sort()
        self.busy = False
        self.pending = []
        self._update_find_button()
        self.progress.layout.display = "none"
        results = self.results
        counts = {name: sum(1 for result in results if result.status == name) for name in ("YES", "NO", "ERROR")}
        offers = sum(len(result.offers) for result in results if result.status == "YES")
        summary = f"answered {self.answered} of {self.expected or self.answered}: {counts['YES']} YES ({offers} offer{'s' if offers != 1 else ''}), {counts['NO']} NO, {counts['ERROR']} ERROR"
        self.progress_text.value = status(summary, "ok" if offers else "no")
        self._draw()
        if not results:
            self.status.value = status("No platform answered.", "no")
        elif not offers:
            self.status.value = status(self._no_offers_advice(), "no")
        else:
            self._show_choice()

    def _no_offers_advice(self) -> str:
        """Say what to change: the data, when the platforms' reasons are about the data; else the resources."""
        reasons = " ".join(reason.lower() for result in self.results for reason in result.reasons)
        if any(word in reasons for word in _DATA_WORDS):
            return "No platform can reach the data as given; see the reasons, correct the data locations (step 2) and ask again."
        return "No platform can run this request as it stands; see the reasons, change the resources and ask again."

    def _clear(self) -> list[OfferEntry]:
        """Forget the current search; return its open offers (to be rejected on their platforms)."""
        leftovers = self.book.open_offers() if self.release_others else []
        self.book = OfferBook()
        self.calendars = {}  # the platforms' calendars change with every search (our own holds are in them)
        self._titles: dict[str, str] = {}
        self.results = []
        self.answered = 0
        self.expected = 0
        self.pending = []
        self.selected = None
        self.selected_platform = ""
        self.accepted = None
        self.accepted_platform = ""
        self.error = ""
        self.accept_button.disabled = True
        self._details_key = ""
        self.details.value = ""
        self.details.layout.display = "none"
        self._draw()
        return leftovers

    def _search_failed(self, error: BaseException) -> None:
        with self._lock:
            self.error = describe_error(error)
            self.status.value = status(f"Asking the platforms failed: {self.error}", "error")

    def _booking_failed(self, error: BaseException) -> None:
        with self._lock:
            self.error = describe_error(error)
            self.status.value = status(f"Booking failed: {self.error}", "error")
            self.accept_button.disabled = self.selected is None

    @observe("request")
    def _request_changed(self, change: dict[str, Any]) -> None:
        if change["old"] is not None or self.results:
            with self._lock:
                self._generation += 1  # answers to the old request are no longer wanted
                leftovers = self._clear()
                self.busy = False
                self.progress_text.value = ""
            self._release_in_background(leftovers)
        self._blocked_changed({"new": self.blocked})

    def _update_find_button(self) -> None:
        """Find offers is live only when there is a complete request and no search running."""
        self.find_button.disabled = self.busy or bool(self.blocked) or self.request is None
        self.find_button.tooltip = self.blocked or (
            "Asking the platforms ..." if self.busy else "Ask every platform for offers"
        )

    @observe("blocked")
    def _blocked_changed(self, change: dict[str, Any]) -> None:
        reason = change["new"]
        self._update_find_button()
        if reason:
            self.status.value = status(reason, "no")
        elif self.request is not None and not self.results:
            self.status.value = status(f"Ready to ask: {self.request.summary()}", "muted")

    @observe("view")
    def _view_changed(self, change: dict[str, Any]) -> None:
        if self.view_toggle.value != change["new"]:
            self.view_toggle.value = change["new"]
        self._draw()

    # ---------------------------------------------------------------------------- releasing

    def _reject_all(self, entries: list[OfferEntry], book: OfferBook | None = None) -> list[str]:
        """Reject ``entries`` on their platforms (the phase update to REJECTED); return failures."""
        failures = []
        for entry in entries:
            try:
                answer = self.planner.reject(entry.offer, platform=entry.platform)
            except Exception as error:
                failures.append(f"{entry.title}: {describe_error(error)}")
                continue
            self.released += 1
            if book is not None:
                book.released_as(entry.key, answer)
        if failures:
            log.info("offers not released: %s", "; ".join(failures))
        return failures

    def _release_in_background(self, entries: list[OfferEntry]) -> None:
        if not entries:
            return
        thread = threading.Thread(target=self._reject_all, args=(entries,), name="execplanner-release", daemon=True)
        self._releases.append(thread)
        thread.start()

    def _join_releases(self, timeout: float = 30.0) -> None:
        for thread in list(self._releases):
            thread.join(timeout)
        self._releases = [thread for thread in self._releases if thread.is_alive()]

    def release(self, timeout: float = 30.0) -> int:
        """Reject every open offer of the current search now (closing the app does this); returns
        how many were released."""
        with self._lock:
            leftovers = self.book.open_offers() if self.release_others else []
            book = self.book
        before = self.released
        if leftovers:
            worker = threading.Thread(target=self._reject_all, args=(leftovers, book), daemon=True)
            worker.start()
            worker.join(timeout)
        self._join_releases(timeout)
        with self._lock:
            if book is self.book:
                self._draw()
        return self.released - before

    # ---------------------------------------------------------------------------- choosing

    def _on_select(self, key: str) -> None:
        try:
            entry = self.book.entry(key)
        except KeyError:
            return
        self.choose(entry)

    def _on_accept(self, key: str) -> None:
        if self.book.selected != key:
            self._on_select(key)
        self.accept()

    def _on_details(self, key: str) -> None:
        try:
            entry = self.book.entry(key)
        except KeyError:
            return
        self.show_details(entry)

    def _row(self, platform: str, index: int = 0) -> OfferEntry:
        with self._lock:
            return self.book.find(platform, index)

    def select(self, platform: str, index: int = 0) -> ExecutionSession:
        """Pick offer ``index`` of ``platform`` (as its **Select** button does)."""
        entry = self._row(platform, index)
        self.choose(entry)
        return entry.offer

    def choose(self, entry: OfferEntry) -> None:
        if entry.offer is None:
            return
        with self._lock:
            try:
                self.book.select(entry.key)
            except ValueError as refusal:
                self.status.value = status(str(refusal), "no")
                self._draw()
                return
            self.selected_platform = entry.platform
            self.selected = entry.offer
            self.accept_button.disabled = self._booking.busy
            self._show_choice()
            if self._details_key:
                self._show_details(entry)
            self._draw()

    def _show_choice(self, now: datetime | None = None) -> None:
        """The status line: the selected offer and how long it stays open (ticks every second)."""
        now = now or datetime.now(timezone.utc)
        if self.book.accepted is not None:
            return
        key = self.book.selected
        if key is not None:
            entry = self.book.entry(key)
            left = countdown(entry.offer.expires, now)
            self.status.value = status(
                f"Selected: {entry.title}, starting {when(entry.offer.start, now)}; open for {left}. Accept to book it.",
                "info",
            )
            return
        soonest = self.book.next_expiry(now)
        if soonest is not None:
            self.status.value = status(
                f"Select an offer, then Accept to book it; the first offers expire in {countdown(soonest, now)}.",
                "muted",
            )
        elif self.book.entries and any(entry.offer is not None for entry in self.book.entries):
            self.status.value = status("Every offer has expired; Find offers again for new ones.", "no")

    def show_details(self, entry: OfferEntry) -> None:
        """Show (or hide, on a second press) the whole offer or answer of ``entry``."""
        if self._details_key == entry.key and self.details.layout.display != "none":
            self._details_key = ""
            self.details.layout.display = "none"
            self._draw()
            return
        self._show_details(entry)
        self._draw()

    def _show_details(self, entry: OfferEntry) -> None:
        self._details_key = entry.key
        self.details.value = session_html(entry.offer) if entry.offer is not None else result_html(entry.result)
        self.details.layout.display = ""

    # --------------------------------------------------------------------------------- booking

    def accept(self) -> bool:
        """Book the selected offer (as the **Accept** button does); False if it could not start."""
        with self._lock:
            key = self.book.selected
            if key is None or self.selected is None:
                self.status.value = status("Select an offer first.", "no")
                return False
            entry = self.book.entry(key)
            if not self.book.is_open(entry):
                self.book.tick()
                self.status.value = status("The selected offer is no longer open; ask again for new offers.", "no")
                self.accept_button.disabled = True
                self._draw()
                return False
            self.accept_button.disabled = True
            self.status.value = status(f"Booking the offer from {entry.title} ...", "wait")
            book = self.book
        return self._booking.start(self._run_accept, book, entry)

    def _run_accept(self, book: OfferBook, entry: OfferEntry) -> None:
        session = self.planner.accept(entry.offer, platform=entry.platform)
        with self._lock:
            book.accepted_as(entry.key, session)
            if book is not self.book:  # a new search started meanwhile: the booking stands, shown in the job step
                self.accepted_platform = entry.platform
                self.accepted = session
                return
            self.accepted_platform = entry.platform
            self.accepted = session
            self.bookings.append((entry.platform, entry.title, session))
            self.status.value = status(f"Booked on {entry.title}: the session is {session.phase}.", "ok")
            self._draw()
            others = book.open_offers() if self.release_others else []
        # the platform rejects its own sibling offers; the other platforms' offers are rejected here
        siblings = [
            other
            for other in book.entries
            if other.offer is not None
            and other.platform == entry.platform
            and other.key != entry.key
            and other.state == "OFFERED"
        ]
        foreign = [other for other in others if other.platform != entry.platform]
        self._reject_all(foreign, book)
        for sibling in siblings:
            try:
                book.released_as(sibling.key, self.planner.session(sibling.offer, platform=sibling.platform))
            except Exception:
                log.debug("could not read a sibling offer", exc_info=True)
        with self._lock:
            if book is self.book:
                self._draw()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) for the search and any booking to finish."""
        done = self._search.wait(timeout)
        return self._booking.wait(timeout) and done

    # ---------------------------------------------------------------------------------- clock

    def refresh_clock(self, now: datetime | None = None) -> int:
        """Update expiries and countdowns; returns how many offers are still open."""
        now = now or datetime.now(timezone.utc)
        with self._lock:
            self.book.tick(now)
            if self.book.selected is None and self.selected is not None and self.book.accepted is None:
                self.selected = None
                self.selected_platform = ""
                self.accept_button.disabled = True
                self.status.value = status("The selected offer has expired; ask again for new offers.", "no")
            else:
                self._show_choice(now)
            self._draw(now)
            return len(self.book.open_entries(now))

    def _tick(self) -> bool:
        return self.refresh_clock() > 0

    # -------------------------------------------------------------------------------- drawing

    def _draw_later(self, generation: int) -> None:
        with self._lock:
            self._pending_draw = None
            if generation == self._generation:
                self._draw()

    def _draw(self, now: datetime | None = None) -> None:
        """Render the current view from the book; send it only if it changed."""
        if self._closing:
            return
        self._drawn_at = time.monotonic()
        now = now or datetime.now(timezone.utc)
        has_rows = bool(self.book.entries)
        self.view_toggle.layout.display = "" if has_rows else "none"
        if not has_rows:
            self.table.value = self.timeline.value = ""
            self.table.layout.display = self.timeline.layout.display = "none"
            self._drawn = ("", "")
            return
        if self.view == "Timeline":
            self._read_calendars()
            calendars = [calendar for calendar in self.calendars.values() if calendar is not None]
            html = timeline_svg(self.book.bars() + self._booking_bars(), calendars, now=now)
            if html != self._drawn[1]:
                self.timeline.value = html
                self._drawn = (self._drawn[0], html)
            self.timeline.layout.display, self.table.layout.display = "", "none"
        else:
            html = offers_view(self.book.rows(now), now, details_key=self._details_key, search=self._generation)
            if html != self._drawn[0]:
                self.table.value = html
                self._drawn = (html, self._drawn[1])
            self.table.layout.display, self.timeline.layout.display = "", "none"

    def _booking_bars(self) -> list[TimelineBar]:
        """The user's own bookings from this browser, hatched on the timeline."""
        bars = []
        for number, (platform, title, session) in enumerate(self.bookings):
            if session.start is not None and session.end is not None:
                bars.append(
                    TimelineBar(
                        key=f"b{number}",
                        platform=platform,
                        title=title,
                        start=session.start,
                        end=session.end,
                        state=str(session.phase),
                        mine=True,
                    )
                )
        return bars

    def _read_calendars(self) -> None:
        """Once per search, in the background: the calendars of the platforms that made offers
        (hosted platforms keep one; the others say they do not, and get no shading)."""
        wanted = sorted(
            {entry.platform for entry in self.book.entries if entry.offer is not None} - set(self.calendars)
        )
        if not wanted or self._calendar_reader.busy or not hasattr(self.planner, "calendar"):
            return
        ends = [
            entry.offer.end for entry in self.book.entries if entry.offer is not None and entry.offer.end is not None
        ]
        hours = (
            min(24 * 14, max(1.0, ((max(ends) - datetime.now(timezone.utc)).total_seconds() / 3600) + 1))
            if ends
            else 24
        )

        def work() -> None:
            for name in wanted:
                try:
                    self.calendars[name] = self.planner.calendar(name, hours=hours)
                except Exception:  # a platform without a calendar is drawn without shading
                    self.calendars[name] = None
            with self._lock:
                self._draw()

        self._calendar_reader.start(work)

    def close(self) -> None:
        if self._closing or sys.is_finalizing():
            # Closed already (ipywidgets closes again from __del__), or the interpreter is tearing
            # down its modules: nothing can be asked any more, and unreleased offers expire.
            super().close()
            return
        self._generation += 1
        self._closing = True
        self._clock.stop(timeout=1.0)
        try:
            self.release(timeout=10.0)
        except Exception:  # closing (also at garbage collection) must not fail; unreleased offers expire
            log.debug("releasing offers on close failed", exc_info=True)
        finally:
            _LIVE.discard(self)
            super().close()

    def _repr_html_(self) -> str:
        from ..html import results_html

        return results_html(self.results)

    def snapshot_html(self) -> str:
        """The offers as static HTML (no buttons): table and timeline, for exports."""
        if not self.book.entries:
            return ""
        now = datetime.now(timezone.utc)
        calendars = [calendar for calendar in self.calendars.values() if calendar is not None]
        return offers_view(self.book.rows(now), now, static=True) + timeline_svg(
            self.book.bars() + self._booking_bars(), calendars, now=now, static=True
        )
