"""Step 5: follow the booked session live: phase, when (relative and local), history, output, Cancel.

The session is polled in a background thread (every ``poll`` seconds, backing off to ``max_poll``
while nothing changes, stopping at a final phase), so a job that runs for nine hours costs a few
requests an hour and never blocks the kernel. A clock re-renders the view so that "starts in 2 h
10 min", "running for 3 min" and "12 min left" stay true between polls. The view is one HTML value
(:func:`execplanner_widgets.html.job_view`): the phase, the slot in the user's time zone (UTC on
hover), the phase history with local and relative times, an **Open** link for an AVAILABLE session
(its connector), and the tail of the job's output where the planner can read it
(``planner.log(session, platform=, tail=)``). Cancel asks for confirmation; the job's end is
announced in the status line.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets
from traitlets import Instance, List, Unicode, observe

from ..html import job_view, pairs_table, preview_html, session_rows
from ..model import ExecutionSession
from ..model.phases import FINAL_PHASES
from .background import Repeater, Worker
from .common import describe_error, status, status_widget
from .events import EventChannel

__all__ = ["JobMonitor"]

#: Lines of output shown while a job runs.
TAIL = 30
_NO_LOG = object()


class JobMonitor(widgets.VBox):
    """Shows one session as it runs and lets the user cancel it.

    ``planner`` needs ``session(session, platform=)`` and ``cancel(session, platform=)``; with
    ``log(session, platform=, tail=)`` the view shows the job's latest output too.
    """

    session = Instance(ExecutionSession, allow_none=True, help="The session as last seen")
    platform = Unicode("", help="The platform running the session")
    phase = Unicode("", help="The session's phase name, e.g. RUNNING or COMPLETED")
    history = List(help="Phases seen so far: {'phase', 'time'} in order")
    output = Unicode("", help="The last lines of the job's output, as the platform serves them")
    error = Unicode("", help="The last failure, for people")

    def __init__(
        self,
        planner: Any,
        session: ExecutionSession | None = None,
        platform: str = "",
        *,
        poll: float = 1.0,
        max_poll: float = 30.0,
        tick: float = 1.0,
        **kwargs: Any,
    ) -> None:
        self.planner = planner
        self.poll = poll
        self.max_poll = max_poll
        self.view = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.details = widgets.HTML()
        self.cancel_button = widgets.Button(
            description="Cancel", icon="stop", button_style="danger", disabled=True, layout=widgets.Layout(width="8em")
        )
        self.cancel_button.on_click(lambda _: self.ask_cancel())
        self.confirm_button = widgets.Button(
            description="Yes, cancel", button_style="danger", layout=widgets.Layout(width="9em", display="none")
        )
        self.confirm_button.on_click(lambda _: self._confirmed())
        self.keep_button = widgets.Button(description="Keep it", layout=widgets.Layout(width="7em", display="none"))
        self.keep_button.on_click(lambda _: self._kept())
        self.confirm_text = widgets.HTML(layout=widgets.Layout(display="none"))
        self.status = status_widget()
        self.preview = widgets.HTML(layout=widgets.Layout(display="none", border="1px solid #d0d7de", padding="4px"))
        self._lock = threading.RLock()
        self._interval = poll
        self._ended_here = False  # the job ended while this view watched it: say so in the browser too
        self._log_reader = getattr(planner, "log", None)
        self._poller = Repeater("execplanner-session-poll", self._poll_step, poll)
        self._clock = Repeater("execplanner-job-clock", self._tick, tick)
        self._canceller = Worker("execplanner-cancel", on_error=self._cancel_failed)
        self._previewer = Worker("execplanner-preview", on_error=self._preview_failed)
        super().__init__(**kwargs)
        self.channel = EventChannel(self, {"preview": self._preview})
        self.children = [
            self.view,
            widgets.HBox(
                [self.cancel_button, self.confirm_text, self.confirm_button, self.keep_button],
                layout=widgets.Layout(align_items="center", flex_flow="row wrap"),
            ),
            self.status,
            self.preview,
            self.details,
            self.channel.box,
        ]
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
                self._clock.stop(timeout=0)
                self.history = []
                self.output = ""
                self.status.value = ""
            else:
                same = old is not None and old.uuid == new.uuid
                if not same:  # a new booking: nothing of the previous one may show
                    self._ended_here = False
                    self.history = []
                    self.error = ""
                    self.output = ""
                    self.status.value = ""
                    self._hide_confirmation()
                    self._interval = self.poll
                if not self.history or self.history[-1]["phase"] != str(new.phase):
                    self.history = [*self.history, {"phase": str(new.phase), "time": datetime.now(timezone.utc)}]
                ended = new.phase in FINAL_PHASES and (not same or old.phase not in FINAL_PHASES)
                if new.phase in FINAL_PHASES:
                    self._poller.stop(timeout=0)
                    self._clock.stop(timeout=0)
                    self._hide_confirmation()
                    if ended and same:
                        self._announce_end(new)
                else:
                    if not same or not self._poller.running:
                        self._poller.interval = self.poll
                        self._poller.start()
                    self._clock.start()
            self._render()
            # The phase last: whoever reacts to it (a notebook, a test) finds the view already drawn.
            self.phase = "" if new is None else str(new.phase)

    def refresh(self) -> ExecutionSession | None:
        """Ask the platform for the session now (the background poll does this by itself)."""
        current = self.session
        if current is None:
            return None
        fresh = self.planner.session(current, platform=self.platform or None)
        self._read_log(fresh)
        with self._lock:
            if self.session is not None and self.session.uuid == current.uuid:
                self.error = ""
                self.session = fresh
        return fresh

    def _read_log(self, session: ExecutionSession) -> None:
        if self._log_reader is None or str(session.phase) in ("OFFERED", "ACCEPTED", "WAITING"):
            return
        try:
            text = self._log_reader(session, platform=self.platform or None, tail=TAIL)
        except Exception as error:  # the output is a bonus; the phase still shows
            if getattr(error, "status", None) == 404:  # this platform serves no output: stop asking, show none
                self._log_reader = None
                self._render()
            return
        if isinstance(text, str) and text != self.output:
            self.output = text

    def _poll_step(self) -> bool | float:
        current = self.session
        if current is None or current.phase in FINAL_PHASES:
            return False
        try:
            fresh = self.refresh()
        except Exception as error:
            self.error = describe_error(error)
            self.status.value = status(f"Cannot reach the platform just now ({self.error}); trying again.", "wait")
            self._interval = min(self._interval * 2, self.max_poll)
            return self._interval
        if fresh is None or fresh.phase in FINAL_PHASES:
            return False
        self._interval = self.poll if fresh != current else min(self._interval * 1.5, self.max_poll)
        return self._interval

    def _tick(self) -> bool:
        session = self.session
        if session is None or session.phase in FINAL_PHASES:
            return False
        self._render()
        return True

    def _announce_end(self, session: ExecutionSession) -> None:
        """Say that the job ended, loud enough to notice (the view's status line, coloured)."""
        self._ended_here = True
        phase = str(session.phase)
        results = len(session.results)
        extra = f"; {results} result{'s' if results != 1 else ''} below" if results else ""
        self.status.value = status(f"The session has ended: {phase}{extra}.", "ok" if phase == "COMPLETED" else "no")

    # ------------------------------------------------------------------------------- results

    def _preview(self, key: str) -> None:
        session = self.session
        if session is None or not key.isdigit() or int(key) >= len(session.results):
            return
        self.show_result(int(key))

    def show_result(self, index: int, folder: str | None = None) -> bool:
        """Download result ``index`` into ``folder`` (default ``results/`` next to the notebook) and
        show it here: a CSV as a table, a picture as itself, a notebook with a link to open it."""
        session = self.session
        if session is None or not 0 <= index < len(session.results):
            return False
        item = session.results[index]
        self.preview.layout.display = ""
        self.preview.value = status(f"Fetching {item.id} ...", "wait")

        def work() -> None:
            from pathlib import Path

            target = Path(folder or "results")
            path = self.planner.download(item, to=target)
            self.preview.value = preview_html(path, item.id, open_url=_lab_url(self.planner, path))

        return self._previewer.start(work)

    def _preview_failed(self, error: BaseException) -> None:
        self.preview.value = status(f"Cannot show this result: {describe_error(error)}", "error")

    def wait_preview(self, timeout: float | None = None) -> bool:
        return self._previewer.wait(timeout)

    # ------------------------------------------------------------------------------- cancelling

    def ask_cancel(self) -> None:
        """The **Cancel** button: ask before stopping the session."""
        session = self.session
        if session is None or session.phase in FINAL_PHASES:
            self.status.value = status("There is no running session to cancel.", "muted")
            return
        self.confirm_text.value = status(
            f"Cancel the session on {self.platform or 'its platform'}? Its work stops and the slot is released.", "no"
        )
        for widget in (self.confirm_text, self.confirm_button, self.keep_button):
            widget.layout.display = ""
        self.cancel_button.layout.display = "none"

    def _hide_confirmation(self) -> None:
        for widget in (self.confirm_text, self.confirm_button, self.keep_button):
            widget.layout.display = "none"
        self.cancel_button.layout.display = ""

    def _confirmed(self) -> None:
        self._hide_confirmation()
        self.cancel()

    def _kept(self) -> None:
        self._hide_confirmation()
        self.status.value = status("The session goes on.", "muted")

    def cancel(self) -> bool:
        """Stop the session now (no question asked: this is the Python API; the button asks first);
        False if there is nothing to stop."""
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
                self.status.value = status(
                    f"The session is {cancelled.phase}.", "ok" if cancelled.phase in FINAL_PHASES else "wait"
                )

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
        self._clock.stop(timeout=1.0)

    def close(self) -> None:
        self.stop()
        super().close()

    # ------------------------------------------------------------------------------ rendering

    @observe("output")
    def _output_changed(self, change: dict[str, Any]) -> None:
        self._render()

    def _render(self) -> None:
        session = self.session
        if session is None:
            self.view.value = status("No session yet: accept an offer to book one.", "muted")
            self.details.value = ""
            self.cancel_button.disabled = True
            return
        started = str(session.phase) not in ("OFFERED", "ACCEPTED", "WAITING", "REJECTED", "EXPIRED")
        if _interactive(session):  # the user works in it: there is no batch output to wait for
            started = False
        html = job_view(
            session,
            self.platform,
            self.history,
            log=self.output if self._log_reader is not None and (self.output or started) else None,
            notify=self._ended_here,
            progress=_progress_hint(session),
        )
        if html != self.view.value:
            self.view.value = html
        details = pairs_table([row for row in session_rows(session) if row[0] not in ("Phase", "Identifier")])
        if details != self.details.value:
            self.details.value = details
        final = session.phase in FINAL_PHASES
        self.cancel_button.disabled = final or self._canceller.busy
        if final:  # nothing left to cancel: the button goes (it comes back with the next booking)
            self.cancel_button.layout.display = "none"
        elif self.confirm_button.layout.display == "none":
            self.cancel_button.layout.display = ""

    def _repr_html_(self) -> str:
        from ..html import session_html

        return session_html(self.session) if self.session is not None else status("No session yet.")

    def snapshot_html(self) -> str:
        """The job as static HTML, for exports."""
        if self.session is None:
            return ""
        return job_view(self.session, self.platform, self.history, log=self.output or None, static=True)


def _lab_url(planner: Any, path: Any) -> str | None:
    """Where JupyterLab opens ``path``: the server's ``lab/tree/`` plus the path from the server's
    root, known from the notebook's own path (``$JPY_SESSION_NAME``, set by Jupyter Server)."""
    import os
    from pathlib import Path
    from urllib.parse import quote

    server = getattr(planner, "server_url", None)
    notebook = os.environ.get("JPY_SESSION_NAME")
    if not server or not notebook or Path(notebook).is_absolute():
        return None
    root_relative_folder = Path(notebook).parent
    try:
        inside = Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return None
    return server.rstrip("/") + "/lab/tree/" + quote(str(root_relative_folder / inside))


def _progress_hint(session: ExecutionSession) -> str:
    """While a job prepares or runs, the platform's latest word on it (executors add progress
    messages to the session's history: staging, queue position, steps done)."""
    if str(session.phase) not in ("PREPARING", "RUNNING", "RELEASING") or not session.messages:
        return ""
    latest = session.messages[-1]
    return f"Latest: {getattr(latest, 'text', None) or latest}"


#: The connector kind of an interactive session a user opens (a hub's JupyterLab).
WEB_CONNECTOR = "urn:execplanner:connector:web"


def _interactive(session: Any) -> bool:
    """Whether ``session`` is one the user opens and works in, rather than a batch run with output."""
    if str(session.phase) == "AVAILABLE":
        return True
    return any(str(getattr(connector, "kind", "")) == WEB_CONNECTOR for connector in session.connectors or [])
