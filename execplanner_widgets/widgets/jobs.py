"""Step 5: follow the booked session: its phase, history and messages, its links, and Cancel.

The session is polled in a background thread (every ``poll`` seconds, backing off to ``max_poll``
while nothing changes, stopping at a final phase), so a job that runs for nine hours costs a few
requests an hour and never blocks the kernel. The phase is shown as its name (``RUNNING``,
``COMPLETED``), the way UWS and ExecutionBroker write it.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets
from traitlets import Instance, List, Unicode, observe

from ..html import TONES, esc, pairs_table, session_rows
from ..model import ExecutionSession
from ..model.phases import FINAL_PHASES
from .background import Repeater, Worker
from .common import describe_error, status, status_widget

__all__ = ["JobMonitor"]

_PHASE_COLOURS = {"COMPLETED": TONES["ok"], "RUNNING": TONES["ok"], "FAILED": TONES["no"], "CANCELLED": TONES["muted"]}


class JobMonitor(widgets.VBox):
    """Shows one session as it runs and lets the user cancel it.

    ``planner`` needs ``session(session, platform=)`` and ``cancel(session, platform=)``.
    """

    session = Instance(ExecutionSession, allow_none=True, help="The session as last seen")
    platform = Unicode("", help="The platform running the session")
    phase = Unicode("", help="The session's phase name, e.g. RUNNING or COMPLETED")
    history = List(help="Phases seen so far: {'phase', 'time'} in order")
    error = Unicode("", help="The last failure, for people")

    def __init__(
        self,
        planner: Any,
        session: ExecutionSession | None = None,
        platform: str = "",
        *,
        poll: float = 1.0,
        max_poll: float = 30.0,
        **kwargs: Any,
    ) -> None:
        self.planner = planner
        self.poll = poll
        self.max_poll = max_poll
        self.title = widgets.HTML()
        self.phase_label = widgets.HTML()
        self.history_html = widgets.HTML()
        self.details = widgets.HTML()
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", button_style="danger", disabled=True, layout=widgets.Layout(width="8em"))
        self.cancel_button.on_click(lambda _: self.cancel())
        self.status = status_widget()
        self._lock = threading.RLock()
        self._interval = poll
        self._poller = Repeater("execplanner-session-poll", self._poll_step, poll)
        self._canceller = Worker("execplanner-cancel", on_error=self._cancel_failed)
        super().__init__(
            [
                self.title,
                widgets.HBox([self.phase_label, self.cancel_button], layout=widgets.Layout(align_items="center", justify_content="space-between")),
                self.history_html,
                self.details,
                self.status,
            ],
            **kwargs,
        )
        if session is not None:
            self.watch(session, platform)
        else:
            self._render()

    # ------------------------------------------------------------------------------- watching

    def watch(self, session: ExecutionSession, platform: str = "") -> None:
        """Follow ``session`` on ``platform`` from now on."""
        self.platform = platform or (session.meta.name if session.meta and session.meta.name else "")
        self.session = session

    @observe("session")
    def _session_changed(self, change: dict[str, Any]) -> None:
        old: ExecutionSession | None = change["old"]
        new: ExecutionSession | None = change["new"]
        with self._lock:
            if new is None:
                self._poller.stop(timeout=0)
                self.history = []
                self.phase = ""
            else:
                same = old is not None and old.uuid == new.uuid
                if not same:
                    self.history = []
                    self.error = ""
                    self._interval = self.poll
                if not self.history or self.history[-1]["phase"] != str(new.phase):
                    self.history = [*self.history, {"phase": str(new.phase), "time": datetime.now(timezone.utc)}]
                self.phase = str(new.phase)
                if new.phase in FINAL_PHASES:
                    self._poller.stop(timeout=0)
                elif not same or not self._poller.running:
                    self._poller.interval = self.poll
                    self._poller.start()
            self._render()

    def refresh(self) -> ExecutionSession | None:
        """Ask the platform for the session now (the background poll does this by itself)."""
        current = self.session
        if current is None:
            return None
        fresh = self.planner.session(current, platform=self.platform or None)
        with self._lock:
            if self.session is not None and self.session.uuid == current.uuid:
                self.error = ""
                self.session = fresh
        return fresh

    def _poll_step(self) -> bool | float:
        current = self.session
        if current is None or current.phase in FINAL_PHASES:
            return False
        try:
            fresh = self.refresh()
        except Exception as error:  # keep watching: a network hiccup is not the end of the job
            self.error = describe_error(error)
            self.status.value = status(f"Cannot reach the platform just now ({self.error}); trying again.", "wait")
            self._interval = min(self._interval * 2, self.max_poll)
            return self._interval
        if fresh is None or fresh.phase in FINAL_PHASES:
            return False
        self._interval = self.poll if fresh != current else min(self._interval * 1.5, self.max_poll)
        return self._interval

    # ------------------------------------------------------------------------------- cancelling

    def cancel(self) -> bool:
        """Stop the session (as the **Cancel** button does); False if there is nothing to stop."""
        session = self.session
        if session is None or session.phase in FINAL_PHASES:
            self.status.value = status("There is no running session to cancel.", "muted")
            return False
        self.cancel_button.disabled = True
        self.status.value = status("Cancelling ...", "wait")

        def work() -> None:
            cancelled = self.planner.cancel(session, platform=self.platform or None)
            with self._lock:
                self.session = cancelled
                self.status.value = status(f"The session is {cancelled.phase}.", "ok" if cancelled.phase in FINAL_PHASES else "wait")

        return self._canceller.start(work)

    def _cancel_failed(self, error: BaseException) -> None:
        self.error = describe_error(error)
        self.status.value = status(f"Cancel failed: {self.error}", "error")
        self._render()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) for a cancellation in progress."""
        return self._canceller.wait(timeout)

    def stop(self) -> None:
        """Stop polling (the session goes on; only this view stops following it)."""
        self._poller.stop(timeout=1.0)

    def close(self) -> None:
        self.stop()
        super().close()

    # ------------------------------------------------------------------------------ rendering

    def _render(self) -> None:
        session = self.session
        if session is None:
            self.title.value = status("No session yet: accept an offer to book one.", "muted")
            self.phase_label.value = ""
            self.history_html.value = ""
            self.details.value = ""
            self.cancel_button.disabled = True
            return
        self.title.value = f'<div style="line-height:1.35">Session <code>{esc(session.uuid)}</code> on <strong>{esc(self.platform or "?")}</strong></div>'
        colour = _PHASE_COLOURS.get(self.phase, TONES["info"])
        self.phase_label.value = f'<span style="font-size:1.5em;font-weight:700;color:{colour}">{esc(self.phase)}</span>'
        steps = " &rarr; ".join(f"{esc(item['phase'])} <small>{esc(item['time'].strftime('%H:%M:%S'))}</small>" for item in self.history)
        self.history_html.value = f'<div style="line-height:1.35"><b>History</b>: {steps}</div>'
        self.details.value = pairs_table([row for row in session_rows(session) if row[0] != "Phase"])
        final = session.phase in FINAL_PHASES
        self.cancel_button.disabled = final or self._canceller.busy
        if final and not self.error:
            self.status.value = status(f"The session has ended: {session.phase}.", "ok" if str(session.phase) == "COMPLETED" else "muted")

    def _repr_html_(self) -> str:
        from ..html import session_html

        return session_html(self.session) if self.session is not None else status("No session yet.")
