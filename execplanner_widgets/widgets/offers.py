"""Step 4: ask every platform, compare the answers, book one offer.

**Find offers** runs ``planner.stream_offers`` in a background thread, so the kernel stays free while
platforms think; each answer adds its rows as it arrives ("answered 2 of 3"). A YES answer gives a row
per offer (platform, start time, cores, memory, and how long the offer stays open, counting down); a
NO or ERROR answer gives one row with its reasons. **Details** shows the whole offer (or the whole
answer), **Select** picks an offer and **Accept** books it: the platform rejects its sibling offers,
and offers from the other platforms are released so that they hold nothing for nobody.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import ipywidgets as widgets
from traitlets import Bool, Instance, Int, List, Unicode, observe

from ..html import answer_badge, countdown, esc, reasons_html, result_html, session_html, when
from ..model import ExecutionRequest, ExecutionSession, SessionPhase
from ..model.units import format_size
from ..model.results import PlatformResult
from .background import Repeater, Worker
from .common import cell, compact, describe_error, status, status_widget

__all__ = ["OfferBrowser"]

log = logging.getLogger(__name__)

#: Column widths of the offers table (platform, answer, start, cores, memory, expires).
COLUMNS = ("13em", "4.5em", "11em", "4em", "5.5em", "6.5em")
HEADERS = ("Platform", "Answer", "Start", "Cores", "Memory", "Expires in")


class _Row(widgets.HBox):
    """One line of the table: an offer of a YES answer, or a whole NO/ERROR answer."""

    def __init__(self, browser: OfferBrowser, result: PlatformResult, offer: ExecutionSession | None, number: int) -> None:
        self.result = result
        self.offer = offer
        self.number = number
        self.expired = False
        platform = f"<strong>{esc(result.title)}</strong><br><small>{esc(result.platform)}</small>"
        self.details_button = widgets.Button(description="Details", icon="info-circle", layout=widgets.Layout(width="7em"))
        self.details_button.on_click(lambda _: browser.show_details(self))
        cells: list[widgets.Widget] = [cell(platform, COLUMNS[0]), cell(answer_badge(result.status), COLUMNS[1])]
        if offer is not None:
            start = offer.start
            self.expires = cell(esc(countdown(offer.expires)), COLUMNS[5])
            cells += [
                cell(f'<span title="{esc(start.isoformat() if start else "")}">{esc(when(start))}</span>', COLUMNS[2]),
                cell(esc(offer.cores if offer.cores is not None else "-"), COLUMNS[3]),
                cell(esc(format_size(offer.memory)), COLUMNS[4]),
                self.expires,
            ]
            self.select_button = widgets.Button(description="Select", icon="hand-pointer-o", layout=widgets.Layout(width="8.5em"))  # fits "Selected", "Accepted"
            self.select_button.on_click(lambda _: browser.choose(self))
            cells += [self.select_button, self.details_button]
        else:
            self.expires = None
            self.select_button = None
            width = f"calc({COLUMNS[2]} + {COLUMNS[3]} + {COLUMNS[4]} + {COLUMNS[5]})"
            cells += [cell(reasons_html(result.reasons) or "-", width, min_width="12em"), self.details_button]
        super().__init__(
            cells,
            layout=widgets.Layout(flex="0 0 auto", flex_flow="row wrap", align_items="center", border_bottom="1px solid #d0d7de", padding="2px 0"),
        )

    @property
    def platform(self) -> str:
        return self.result.platform

    def sort_key(self) -> tuple[int, float, str]:
        rank = {"YES": 0, "NO": 1, "ERROR": 2}.get(self.result.status, 3)
        start = self.offer.start.timestamp() if self.offer is not None and self.offer.start else 0.0
        return rank, start, self.result.platform

    def tick(self, now: datetime) -> bool:
        """Update the countdown; True while the offer is still open."""
        if self.offer is None or self.expires is None:
            return False
        text = countdown(self.offer.expires, now)
        if self.expires.value != compact(esc(text)):
            self.expires.value = compact(esc(text))
        if text == "expired" and not self.expired:
            self.expired = True
            self.select_button.disabled = True
            self.select_button.description = "Expired"
        return not self.expired

    def mark(self, state: str) -> None:
        """Show the row as ``selected``, ``accepted`` or plain (``""``)."""
        if self.select_button is None:
            return
        labels = {"selected": ("Selected", "info", "check"), "accepted": ("Accepted", "success", "check-circle")}
        description, style, icon = labels.get(state, ("Expired" if self.expired else "Select", "", "hand-pointer-o"))
        self.select_button.description = description
        self.select_button.button_style = style
        self.select_button.icon = icon


class OfferBrowser(widgets.VBox):
    """Asks the planner's platforms for offers, shows them as they arrive, books the chosen one."""

    request = Instance(ExecutionRequest, allow_none=True, help="What to ask the platforms")
    blocked = Unicode("", help="Why the platforms cannot be asked yet (empty when they can)")
    results = List(Instance(PlatformResult), help="The answers so far, in the order they arrived")
    answered = Int(0, help="Platforms that have answered")
    expected = Int(0, help="Platforms asked (0 while unknown)")
    busy = Bool(False, help="True while platforms are being asked")
    selected = Instance(ExecutionSession, allow_none=True, help="The offer picked for booking")
    selected_platform = Unicode("", help="The platform of the selected offer")
    accepted = Instance(ExecutionSession, allow_none=True, help="The booked session")
    accepted_platform = Unicode("", help="The platform of the booked session")
    error = Unicode("", help="The last failure, for people")

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
        self.find_button = widgets.Button(description="Find offers", icon="search", button_style="primary", layout=widgets.Layout(width="10em"))
        self.find_button.on_click(lambda _: self.find())
        self.accept_button = widgets.Button(description="Accept", icon="check", button_style="success", disabled=True, layout=widgets.Layout(width="8em"))
        self.accept_button.on_click(lambda _: self.accept())
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="10em", visibility="hidden"))
        self.progress_text = widgets.HTML()
        header = widgets.HBox(
            [cell(f"<b>{esc(title)}</b>", width) for title, width in zip(HEADERS, COLUMNS)],
            layout=widgets.Layout(flex_flow="row wrap", border_bottom="2px solid #8c959f"),
        )
        self.rows_box = widgets.VBox()
        self.table = widgets.VBox([header, self.rows_box], layout=widgets.Layout(display="none"))
        self.details = widgets.HTML(layout=widgets.Layout(display="none", border="1px solid #d0d7de", padding="4px"))
        self.status = status_widget()
        self.rows: list[_Row] = []
        self._lock = threading.RLock()
        self._generation = 0
        self._details_row: _Row | None = None
        self._selected_row: _Row | None = None
        self._accepted_offer: ExecutionSession | None = None
        self._search = Worker("execplanner-find-offers", on_error=self._search_failed)
        self._booking = Worker("execplanner-accept", on_error=self._booking_failed)
        self._clock = Repeater("execplanner-offer-clock", self._tick, tick)
        super().__init__(
            [
                widgets.HBox([self.find_button, self.progress, self.progress_text], layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
                self.table,
                widgets.HBox([self.accept_button, self.status], layout=widgets.Layout(align_items="center", flex_flow="row wrap")),
                self.details,
            ],
            **kwargs,
        )
        self.request = request
        self._blocked_changed({"new": self.blocked})

    # ---------------------------------------------------------------------------------- asking

    def find(self) -> bool:
        """Ask every platform (as the **Find offers** button does); False if it could not start."""
        if self.blocked:
            self.status.value = status(self.blocked, "no")
            return False
        if self.request is None:
            self.status.value = status("There is nothing to ask yet: pick an executable and fill in the resources.", "no")
            return False
        with self._lock:
            if self._search.busy:
                return False
            self._generation += 1
            generation = self._generation
            self._clear()
            self.busy = True
            self._update_find_button()
            self.progress.layout.visibility = "visible"
            self.progress_text.value = status("asking the platforms ...", "wait")
            self.status.value = ""
        return self._search.start(self._run_search, generation, self.request)

    def _run_search(self, generation: int, request: ExecutionRequest) -> None:
        try:
            try:
                expected = len(self.planner.platforms())
            except Exception:  # the count is for the progress bar only; the answers still come
                log.debug("could not count the platforms", exc_info=True)
                expected = 0
            with self._lock:
                if generation != self._generation:
                    return
                self.expected = expected
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
        new_rows = [_Row(self, result, offer, number) for number, offer in enumerate(result.offers)] if result.status == "YES" and result.offers else [_Row(self, result, None, 0)]
        self.rows.extend(new_rows)
        self.rows_box.children = tuple(self.rows)
        self.table.layout.display = ""
        self.results = [*self.results, result]
        self.answered = len(self.results)  # after results: observers of the count see every answer
        self._show_progress()
        if any(row.offer is not None for row in new_rows):
            self._clock.start()

    def _show_progress(self) -> None:
        if self.expected:
            self.progress.max = max(self.expected, 1)
            self.progress.value = min(self.answered, self.expected)
            text = f"answered {self.answered} of {self.expected}"
        else:
            text = f"answered {self.answered}"
        self.progress_text.value = status(text, "wait" if self.busy else "muted")

    def _finish(self) -> None:
        self.rows.sort(key=_Row.sort_key)
        self.rows_box.children = tuple(self.rows)
        self.busy = False
        self._update_find_button()
        self.progress.layout.visibility = "hidden"
        counts = {status_name: sum(1 for result in self.results if result.status == status_name) for status_name in ("YES", "NO", "ERROR")}
        offers = sum(len(result.offers) for result in self.results if result.status == "YES")
        summary = f"answered {self.answered} of {self.expected or self.answered}: {counts['YES']} YES ({offers} offer{'s' if offers != 1 else ''}), {counts['NO']} NO, {counts['ERROR']} ERROR"
        self.progress_text.value = status(summary, "ok" if offers else "no")
        if not self.results:
            self.status.value = status("No platform answered.", "no")
        elif not offers:
            self.status.value = status("No platform can run this request as it stands; see the reasons, change the resources and ask again.", "no")
        elif self.selected is None:
            self.status.value = status("Select an offer, then Accept to book it.", "muted")

    def _clear(self) -> None:
        self._clock.stop(timeout=0)
        self.rows = []
        self.rows_box.children = ()
        self.table.layout.display = "none"
        self.results = []
        self.answered = 0
        self.expected = 0
        self.selected = None
        self.selected_platform = ""
        self.error = ""
        self.accept_button.disabled = True
        self._selected_row = None
        self._accepted_offer = None
        self._details_row = None
        self.details.value = ""
        self.details.layout.display = "none"

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
                self._clear()
                self.busy = False
                self.progress_text.value = ""
        self._blocked_changed({"new": self.blocked})

    def _update_find_button(self) -> None:
        """Find offers is live only when there is a complete request and no search running."""
        self.find_button.disabled = self.busy or bool(self.blocked) or self.request is None
        self.find_button.tooltip = self.blocked or ("Asking the platforms ..." if self.busy else "Ask every platform for offers")

    @observe("blocked")
    def _blocked_changed(self, change: dict[str, Any]) -> None:
        reason = change["new"]
        self._update_find_button()
        if reason:
            self.status.value = status(reason, "no")
        elif self.request is not None and not self.results:
            self.status.value = status(f"Ready to ask: {self.request.summary()}", "muted")

    # ------------------------------------------------------------------------------- choosing

    def _row(self, platform: str, index: int = 0) -> _Row:
        with self._lock:
            for row in self.rows:
                if row.platform == platform and row.offer is not None and row.number == index:
                    return row
        offered = ", ".join(sorted({row.platform for row in self.rows if row.offer is not None})) or "none"
        raise KeyError(f"no offer {index} from platform {platform!r}; platforms with offers: {offered}")

    def select(self, platform: str, index: int = 0) -> ExecutionSession:
        """Pick offer ``index`` of ``platform`` (as its **Select** button does)."""
        row = self._row(platform, index)
        self.choose(row)
        return row.offer

    def choose(self, row: _Row) -> None:
        if row.offer is None:
            return
        row.tick(datetime.now().astimezone())
        if row.expired:
            self.status.value = status(f"This offer from {row.result.title} has expired; ask again for new offers.", "no")
            return
        with self._lock:
            if self._accepted_offer is not None:
                self.status.value = status("An offer from this search is booked already; Find offers again to book another.", "no")
                return
            for other in self.rows:
                other.mark("selected" if other is row else "")
            self.selected_platform = row.platform
            self.selected = row.offer
            self._selected_row = row
            self.accept_button.disabled = self._booking.busy
            self.status.value = status(f"Selected: {row.result.title}, starting {when(row.offer.start)}. Accept to book it.", "info")
            if self._details_row is not None:
                self._show_details(row)

    def show_details(self, row: _Row) -> None:
        """Show (or hide, on a second press) the whole offer or answer of ``row``."""
        if self._details_row is row and self.details.layout.display != "none":
            self._details_row = None
            self.details.layout.display = "none"
            return
        self._show_details(row)

    def _show_details(self, row: _Row) -> None:
        self._details_row = row
        self.details.value = session_html(row.offer) if row.offer is not None else result_html(row.result)
        self.details.layout.display = ""

    # --------------------------------------------------------------------------------- booking

    def accept(self) -> bool:
        """Book the selected offer (as the **Accept** button does); False if it could not start."""
        row = self._selected_row
        if row is None or self.selected is None or row.offer is not self.selected:
            self.status.value = status("Select an offer first.", "no")
            return False
        row.tick(datetime.now().astimezone())
        if row.expired:
            self.status.value = status("The selected offer has expired; ask again for new offers.", "no")
            self.accept_button.disabled = True
            return False
        self.accept_button.disabled = True
        self.status.value = status(f"Booking the offer from {row.result.title} ...", "wait")
        return self._booking.start(self._run_accept, row)

    def _run_accept(self, row: _Row) -> None:
        session = self.planner.accept(row.offer, platform=row.platform)
        with self._lock:
            self._accepted_offer = row.offer
            for other in self.rows:
                other.mark("accepted" if other is row else "")
                if other.select_button is not None:
                    other.select_button.disabled = True
            self.accepted_platform = row.platform
            self.accepted = session
            self.status.value = status(f"Booked on {row.result.title}: the session is {session.phase}.", "ok")
        self._clock.stop(timeout=0)
        if self.release_others:
            self._release_others(row)

    def _release_others(self, booked: _Row) -> None:
        """Reject the other platforms' open offers: an offer nobody will take should hold nothing."""
        failures = []
        for row in list(self.rows):
            if row.offer is None or row.platform == booked.platform or row.expired or row.offer.phase is not SessionPhase.OFFERED:
                continue
            try:
                self.planner.reject(row.offer, platform=row.platform)
            except Exception as error:  # the booking stands; the offer will simply expire
                failures.append(f"{row.result.title}: {describe_error(error)}")
        if failures:
            log.info("offers not released: %s", "; ".join(failures))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) for the search and any booking to finish."""
        done = self._search.wait(timeout)
        return self._booking.wait(timeout) and done

    # ---------------------------------------------------------------------------------- clock

    def refresh_clock(self, now: datetime | None = None) -> int:
        """Update every countdown; returns how many offers are still open."""
        now = now or datetime.now().astimezone()
        with self._lock:
            rows = list(self.rows)
            open_offers = sum(1 for row in rows if row.tick(now))
            selected = self._selected_row
            if selected is not None and selected.expired and self.accepted is None:
                self.accept_button.disabled = True
                self.status.value = status("The selected offer has expired; ask again for new offers.", "no")
        return open_offers

    def _tick(self) -> bool:
        return self.refresh_clock() > 0 and self.accepted is None

    def close(self) -> None:
        self._generation += 1
        self._clock.stop(timeout=1.0)
        super().close()

    def _repr_html_(self) -> str:
        from ..html import results_html

        return results_html(self.results)
