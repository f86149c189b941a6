"""The planner app: the five steps in one widget, in a notebook cell or in JupyterLab's sidebar.

1. **Executable** (:class:`ExecutableList`) -> 2. **Data** (:class:`ShoppingList`) ->
3. **Resources** (:class:`ResourceForm`) -> 4. **Offers** (:class:`OfferBrowser`) ->
5. **Job** (:class:`JobMonitor`).

Each step's result feeds the next; the offers step will not ask the platforms while a required data
item has no location or a resource field is wrong, and says which. A sixth section, **My bookings**,
lists the user's sessions on every platform.

Exports: a saved widget needs its JavaScript renderer, which an exported page (``jupyter nbconvert
--to html``) or nbviewer without internet does not have. So displaying the app also displays a
static HTML snapshot (offers table, timeline, job) with a display id, updated as the app's state
changes; while the live widget is on screen it hides the snapshot with a style rule of its own, so
JupyterLab shows the app once. Where widgets cannot be shown at all (Zeppelin, a terminal) the app
shows the HTML summary instead.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets
from traitlets import Instance

from ..html import app_html, esc
from ..model import ExecutionRequest, ExecutionSession, parse_request
from .bookings import Booking, BookingsView
from .common import describe_error, status
from .executables import ExecutableList
from .jobs import JobMonitor
from .offers import OfferBrowser
from .resources import ResourceForm
from .shopping import ShoppingList

__all__ = ["PlannerApp", "SIDEBAR_TITLE", "widgets_available"]

SIDEBAR_TITLE = "ExecPlanner"
STEPS = ("Executable", "Data", "Resources", "Offers", "Job", "My bookings")

#: While the live app is on screen, its static snapshot (for exports) is hidden.
_HIDE_SNAPSHOT = "<style>.execplanner-snapshot{display:none}</style>"


def mode_line(planner: Any) -> tuple[str, str]:
    """A short line saying how the app reaches the platforms, and the full description (on hover)."""
    try:
        full = planner.describe_mode()
    except Exception as error:
        return f"cannot describe the planner: {describe_error(error)}", ""
    mode = getattr(planner, "mode", None)
    mode = str(getattr(mode, "value", mode) or "")
    if mode == "server":
        url = getattr(planner, "server_url", None)
        return f"Asking the platforms through this Jupyter server{f' ({url})' if url else ''}.", full
    if mode == "local":
        return "Asking the platforms from this kernel.", full
    return full, full


def widgets_available() -> bool:
    """Whether a Jupyter kernel is there to carry widgets (not plain Python or a terminal)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class PlannerApp(widgets.VBox):
    """Pick an executable, fill its shopping list and resources, compare offers, book and follow.

    ``planner`` is a :class:`~execplanner_widgets.client.Planner` (one is made with the defaults if
    none is given); ``record`` an OSSR record (path, URL, dict or
    :class:`~execplanner_widgets.ossr.OssrRecord`); ``basket`` the candidate data items for the
    shopping list; ``request`` a request to start from instead of a record.
    """

    session = Instance(ExecutionSession, allow_none=True, help="The booked session, once an offer is accepted")

    def __init__(
        self,
        planner: Any = None,
        record: Any = None,
        basket: list[Any] | None = None,
        *,
        request: Any = None,
        poll: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if planner is None:
            from ..client import Planner

            planner = Planner()
        self.planner = planner
        self.executables = ExecutableList(record)
        self.shopping = ShoppingList(basket=basket)
        self.resources = ResourceForm()
        self.offers = OfferBrowser(planner)
        self.job = JobMonitor(planner, poll=poll)
        self.bookings = BookingsView(planner, on_follow=self._follow)
        self.steps = widgets.Accordion(
            children=[self.executables, self.shopping, self.resources, self.offers, self.job, self.bookings],
            titles=tuple(f"{number}. {name}" if number <= 5 else name for number, name in enumerate(STEPS, start=1)),
            selected_index=0,
        )
        mode, full = mode_line(planner)
        self.header = widgets.HTML(
            _HIDE_SNAPSHOT + f'<div style="font-size:1.15em;font-weight:600">{esc(SIDEBAR_TITLE)}</div>'
            f'<div style="font-size:0.9em;color:#57606a;line-height:1.35;overflow-wrap:anywhere" title="{esc(full)}">{esc(mode)}</div>'
        )
        self._sidecar: Any = None
        self._snapshot: Any = None
        self._snapshot_html = ""
        self._snapshot_lock = threading.Lock()
        self._platforms_html: str | None = None
        super().__init__([self.header, self.steps], **kwargs)
        self.steps.observe(self._section_opened, "selected_index")
        self.executables.observe(self._executable_chosen, "request")
        self.executables.observe(self._executable_error, "error")
        self.shopping.observe(self._data_changed, "request")
        self.shopping.observe(self._gate, "complete")
        self.resources.observe(self._gate, "request")
        self.offers.observe(self._offers_changed, ["answered", "expected", "busy", "results"])
        self.offers.observe(self._booked, "accepted")
        self.job.observe(self._job_changed, ["session", "phase"])
        self.job.observe(lambda change: self.update_snapshot(), "output")
        if request is not None:
            self.start_from(request)
        self._gate()

    # -------------------------------------------------------------------------------- the flow

    def start_from(self, request: Any) -> None:
        """Skip step 1: start from a request (any dialect ``parse_request`` reads)."""
        self.shopping.request = parse_request(request)
        self.steps.selected_index = 1 if self.shopping.request.data else 2

    def _executable_chosen(self, change: dict[str, Any]) -> None:
        request: ExecutionRequest | None = change["new"]
        self.shopping.request = request
        self._title(0, (request.executable.name or "") if request is not None else "")
        if request is not None:
            self.steps.selected_index = 1 if request.data else 2

    def _executable_error(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.steps.selected_index = 0

    def _data_changed(self, change: dict[str, Any]) -> None:
        self.resources.source = change["new"]
        self._gate()

    def _gate(self, change: dict[str, Any] | None = None) -> None:
        """Let the offers step ask only for a request that is complete and valid; else say why."""
        shopping, resources = self.shopping, self.resources
        if shopping.request is None:
            reason = "Pick an executable first (step 1)."
        elif not shopping.complete:
            reason = "Still to find: " + ", ".join(shopping.missing) + " (step 2)."
        elif resources.request is None:
            problems = "; ".join(f"{field}: {message}" for field, message in resources.errors.items())
            reason = f"Correct the resources first (step 3): {problems}."
        else:
            reason = ""
        self.offers.blocked = reason
        self.offers.request = resources.request if not reason else None
        if shopping.request is None:
            self._title(1, "")
        else:
            self._title(1, f"{len(shopping.missing)} still to find" if shopping.missing else "complete")
        self._title(
            2,
            resources.request.summary()
            if resources.request is not None
            else ("needs attention" if resources.errors and shopping.request is not None else ""),
        )

    def _offers_changed(self, change: dict[str, Any]) -> None:
        offers = self.offers
        if offers.busy:
            self._title(3, f"answered {offers.answered} of {offers.expected or '?'}")
        elif offers.results:
            count = sum(len(result.offers) for result in offers.results if result.status == "YES")
            self._title(3, f"{count} offer{'s' if count != 1 else ''}")
        else:
            self._title(3, "")  # the table was cleared: the title must not keep the old count
        if not offers.busy:
            self.update_snapshot()

    def _booked(self, change: dict[str, Any]) -> None:
        session: ExecutionSession | None = change["new"]
        if session is not None:
            platform = self.offers.accepted_platform
            self.job.watch(session, platform)
            self.bookings.remember(
                platform, session, next((r.title for r in self.offers.results if r.platform == platform), platform)
            )
            self.steps.selected_index = 4

    def _job_changed(self, change: dict[str, Any]) -> None:
        self.session = self.job.session
        self._title(4, self.job.phase)
        if change["name"] == "phase":
            self.update_snapshot()

    def _follow(self, booking: Booking) -> None:
        """My bookings' Follow: show that session in the job step."""
        self.job.watch(booking.session, booking.platform)
        self.steps.selected_index = 4

    def _section_opened(self, change: dict[str, Any]) -> None:
        if change["new"] == 5:
            self.bookings.refresh()

    def _title(self, index: int, detail: str) -> None:
        name = f"{index + 1}. {STEPS[index]}"
        self.steps.set_title(index, f"{name}: {detail}" if detail else name)

    # ----------------------------------------------------------------------------- showing

    @property
    def request(self) -> ExecutionRequest | None:
        """The request as the platforms will be asked it (None until it is complete and valid)."""
        return self.offers.request

    def show(self, sidebar: bool = False) -> Any:
        """Display the app in the output of the cell, or with ``sidebar=True`` in JupyterLab's right
        sidebar (the ``sidecar`` package, titled "ExecPlanner"). Without a widget-capable kernel the
        HTML summary is shown instead. Returns what was displayed.

        In a cell, a static snapshot is displayed too (see the module's docstring): exports show it."""
        from IPython.display import HTML, DisplayHandle, display

        if not widgets_available():
            fallback = HTML(self._repr_html_())
            display(fallback)
            return fallback
        if sidebar:
            from sidecar import Sidecar

            if self._sidecar is None:
                self._sidecar = Sidecar(title=SIDEBAR_TITLE)
            self._sidecar.clear_output()  # shown again: one app in the sidebar, not two
            with self._sidecar:
                display(self._repr_mimebundle_(), raw=True)
            return self._sidecar
        display(self._repr_mimebundle_(), raw=True)  # the widget itself (display(self) would come back here)
        self._snapshot_html = self.snapshot_html()
        self._snapshot = DisplayHandle()
        self._snapshot.display(HTML(self._snapshot_html))
        return self

    def _ipython_display_(self) -> None:
        self.show()

    def snapshot_html(self) -> str:
        """The app's state as static HTML: what an exported notebook shows in place of the widget."""
        if self._platforms_html is None:
            from ..html import planner_html

            self._platforms_html = planner_html(self.planner)
        parts = [
            '<div class="execplanner-snapshot">',
            '<div style="font-size:1.15em;font-weight:600">ExecPlanner (snapshot)</div>',
            self._platforms_html,
        ]
        request = self.offers.request or self.shopping.request
        if request is not None:
            parts.append(request._repr_html_())
        offers = self.offers.snapshot_html()
        if offers:
            parts.append("<div><strong>Offers</strong></div>" + offers)
        job = self.job.snapshot_html()
        if job:
            parts.append("<div><strong>Job</strong></div>" + job)
        parts.append("</div>")
        return "".join(parts)

    def update_snapshot(self) -> None:
        """Bring the displayed snapshot up to date (only when it changed)."""
        handle = self._snapshot
        if handle is None:
            return
        from IPython.display import HTML

        with self._snapshot_lock:
            try:
                html = self.snapshot_html()
            except Exception:
                return
            if html != self._snapshot_html:
                self._snapshot_html = html
                handle.update(HTML(html))

    def close(self) -> None:
        for step in (self.offers, self.job):
            step.close()
        if self._sidecar is not None:
            self._sidecar.close()
        super().close()

    def _repr_html_(self) -> str:
        try:
            record = self.executables.record
            return app_html(
                self.planner,
                record=record,
                request=self.offers.request or self.shopping.request,
                results=self.offers.results,
                session=self.job.session,
            )
        except Exception as error:  # a summary must never break the display of the widget itself
            return status(f"ExecPlanner (summary unavailable: {describe_error(error)})", "muted")
