"""My bookings: the user's sessions on every platform, with phase, start, end and actions.

The list comes from ``planner.bookings()``, which the server keeps (so it survives kernel restarts
and shows bookings made from other kernels). A planner without it (an older server) still shows
the sessions booked from this kernel, and says that the list is partial. Each row has **Open**
(an AVAILABLE session's connector), **Follow** (show it in the job step), **Cancel** (asks first)
and **Results**; clicks come back through an :class:`~.events.EventChannel`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
from traitlets import List, Unicode

from ..html import bookings_html, session_html
from ..model import ExecutionSession
from .background import Worker
from .common import describe_error, status, status_widget
from .events import EventChannel

__all__ = ["Booking", "BookingsView"]


@dataclass
class Booking:
    """One of the user's sessions, on one platform."""

    platform: str
    session: ExecutionSession
    title: str = ""
    key: str = ""


def _as_booking(item: Any, number: int) -> Booking:
    if isinstance(item, Booking):
        item.key = item.key or str(number)
        return item
    platform = getattr(item, "platform", None) or (item.get("platform") if isinstance(item, dict) else "")
    session = getattr(item, "session", None) or (item.get("session") if isinstance(item, dict) else None)
    if not isinstance(session, ExecutionSession):
        session = ExecutionSession.model_validate(session)
    title = getattr(item, "title", None) or (item.get("title") if isinstance(item, dict) else None) or platform
    return Booking(platform=platform, session=session, title=title, key=str(number))


class BookingsView(widgets.VBox):
    """The user's bookings across platforms, refreshed on demand."""

    bookings = List(help="Booking rows as last read")
    error = Unicode("", help="The last failure, for people")

    def __init__(self, planner: Any, *, on_follow: Callable[[Booking], None] | None = None, **kwargs: Any) -> None:
        self.planner = planner
        self.on_follow = on_follow
        self.local: dict[str, Booking] = {}
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="8em"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.table = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.details = widgets.HTML()
        self.confirm = widgets.HBox(layout=widgets.Layout(display="none", flex_flow="row wrap", align_items="center"))
        self.status = status_widget()
        self._lock = threading.RLock()
        self._reader = Worker("execplanner-bookings", on_error=self._failed)
        super().__init__(**kwargs)
        self.channel = EventChannel(
            self, {"follow": self._follow, "cancel": self._ask_cancel, "results": self._results}
        )
        self.children = [self.refresh_button, self.status, self.table, self.confirm, self.details, self.channel.box]
        self._render()

    def remember(self, platform: str, session: ExecutionSession, title: str = "") -> None:
        """A booking made from this kernel (shown even where the server keeps no list)."""
        with self._lock:
            self.local[session.uuid] = Booking(platform, session, title or platform)
        self._render()

    def refresh(self, wait: float | None = None) -> bool:
        """Read the list again in the background (``wait`` seconds at most, if given)."""
        started = self._reader.start(self._read)
        if wait is not None:
            self._reader.wait(wait)
        return started

    def wait(self, timeout: float | None = None) -> bool:
        return self._reader.wait(timeout)

    def _read(self) -> None:
        reader = getattr(self.planner, "bookings", None)
        self.status.value = status("Reading your bookings ...", "wait")
        if reader is None:
            rows = list(self.local.values())
            self.bookings = [_as_booking(row, number) for number, row in enumerate(rows)]
            self.status.value = status(
                "This planner keeps no list of bookings; showing the ones made from this kernel.", "muted"
            )
        else:
            everything = list(reader())
            rows = [row for row in everything if getattr(row, "session", None) is not None]
            unreadable = [
                f"{getattr(row, 'title', '') or row.platform}: {getattr(row, 'error', '')}"
                for row in everything
                if row not in rows
            ]
            self.bookings = [_as_booking(row, number) for number, row in enumerate(rows)]
            text = f"{len(rows)} booking{'s' if len(rows) != 1 else ''} on all platforms."
            if unreadable:
                text += f" {len(unreadable)} cannot be read now: " + "; ".join(unreadable[:3])
            self.status.value = status(text, "muted")
        self.error = ""
        self._render()

    def _failed(self, error: BaseException) -> None:
        self.error = describe_error(error)
        self.status.value = status(f"Cannot read your bookings: {self.error}", "error")
        self._render()

    def _render(self) -> None:
        rows = self.bookings or list(self.local.values())
        for number, row in enumerate(rows):
            row.key = row.key or str(number)
        self.table.value = bookings_html(rows)

    def _find(self, key: str) -> Booking | None:
        return next((row for row in self.bookings or list(self.local.values()) if row.key == key), None)

    def _follow(self, key: str) -> None:
        row = self._find(key)
        if row is not None and self.on_follow is not None:
            self.on_follow(row)

    def _results(self, key: str) -> None:
        row = self._find(key)
        if row is not None:
            self.details.value = session_html(row.session, document=False)

    def _ask_cancel(self, key: str) -> None:
        row = self._find(key)
        if row is None:
            return
        yes = widgets.Button(description="Yes, cancel", button_style="danger", layout=widgets.Layout(width="9em"))
        keep = widgets.Button(description="Keep it", layout=widgets.Layout(width="7em"))
        yes.on_click(lambda _: self._cancel(row))
        keep.on_click(lambda _: setattr(self.confirm.layout, "display", "none"))
        self.confirm.children = [widgets.HTML(status(f"Cancel the session on {row.title}?", "no")), yes, keep]
        self.confirm.layout.display = ""

    def _cancel(self, row: Booking) -> None:
        self.confirm.layout.display = "none"

        def work() -> None:
            session = self.planner.cancel(row.session, platform=row.platform)
            row.session = session
            self.status.value = status(f"The session on {row.title} is {session.phase}.", "ok")
            self._render()

        self._reader.start(work)
