"""The planner app: the five steps in one widget, in a notebook cell or in JupyterLab's sidebar.

1. **Executable** (:class:`ExecutableList`) -> 2. **Data** (:class:`ShoppingList`) ->
3. **Resources** (:class:`ResourceForm`) -> 4. **Offers** (:class:`OfferBrowser`) ->
5. **Job** (:class:`JobMonitor`).

Each step's result feeds the next; the offers step will not ask the platforms while a required data
item has no location or a resource field is wrong, and says which. Where widgets cannot be shown
(Zeppelin, nbviewer, exported HTML, a terminal) the app shows an HTML summary instead, in the style
of dask's widget reprs.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
from traitlets import Instance, observe

from ..html import app_html, esc
from ..model import ExecutionRequest, ExecutionSession, parse_request
from .common import describe_error, status
from .executables import ExecutableList
from .jobs import JobMonitor
from .offers import OfferBrowser
from .resources import ResourceForm
from .shopping import ShoppingList

__all__ = ["PlannerApp", "SIDEBAR_TITLE", "widgets_available"]

SIDEBAR_TITLE = "ExecPlanner"
STEPS = ("Executable", "Data", "Resources", "Offers", "Job")


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
        self.steps = widgets.Accordion(
            children=[self.executables, self.shopping, self.resources, self.offers, self.job],
            titles=tuple(f"{number}. {name}" for number, name in enumerate(STEPS, start=1)),
            selected_index=0,
        )
        try:
            mode = planner.describe_mode()
        except Exception as error:
            mode = f"cannot describe the planner: {describe_error(error)}"
        self.header = widgets.HTML(
            f'<div style="font-size:1.15em;font-weight:600">{esc(SIDEBAR_TITLE)}</div>'
            f'<div style="font-size:0.9em;color:#57606a;line-height:1.35">{esc(mode)}</div>'
        )
        self._sidecar: Any = None
        super().__init__([self.header, self.steps], **kwargs)
        self.executables.observe(self._executable_chosen, "request")
        self.executables.observe(self._executable_error, "error")
        self.shopping.observe(self._data_changed, "request")
        self.shopping.observe(self._gate, "complete")
        self.resources.observe(self._gate, "request")
        self.offers.observe(self._offers_changed, ["answered", "expected", "busy"])
        self.offers.observe(self._booked, "accepted")
        self.job.observe(self._job_changed, ["session", "phase"])
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
        self._title(2, resources.request.summary() if resources.request is not None else ("needs attention" if resources.errors and shopping.request is not None else ""))

    def _offers_changed(self, change: dict[str, Any]) -> None:
        offers = self.offers
        if offers.busy:
            self._title(3, f"answered {offers.answered} of {offers.expected or '?'}")
        elif offers.results:
            count = sum(len(result.offers) for result in offers.results if result.status == "YES")
            self._title(3, f"{count} offer{'s' if count != 1 else ''}")

    def _booked(self, change: dict[str, Any]) -> None:
        session: ExecutionSession | None = change["new"]
        if session is not None:
            self.job.watch(session, self.offers.accepted_platform)
            self.steps.selected_index = 4

    def _job_changed(self, change: dict[str, Any]) -> None:
        self.session = self.job.session
        self._title(4, self.job.phase)

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
        HTML summary is shown instead. Returns what was displayed."""
        from IPython.display import HTML, display

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
                display(self)
            return self._sidecar
        display(self)
        return self

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
