"""The 2021 ExecutionPlanner note's transport on hosted platforms, so that its clients can ask us.

The note asked "can I run this task type?" and "can you run this task?", and was answered
``{"reponseword": "YES"|"NO", "servicetype": ..., "serviceinfo": {"endpoint": ...}}``:

=============================  ========  =================================================================
route (after ``{name}/``)      method    answer
=============================  ========  =================================================================
``accepts?tasktype=...``       GET       YES if the platform runs that kind; ``serviceinfo.endpoint`` is
                                         its UWS job list (where a task can be sent to run), and
                                         ``serviceinfo.requests`` its ExecutionBroker ``requests`` route
``accept``                     POST      the task as multipart (or urlencoded) fields ``tasktype``,
                                         ``taskinfo``, ``resources`` (JSON or YAML text) or ``task``:
                                         YES with the offers (``serviceinfo.offers``, nothing is booked
                                         yet) or NO with the reasons, in the note's form
=============================  ========  =================================================================

A NO is an answer (200), as in the note; a malformed request is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from execplanner_widgets.model import canonical_kind, short_kind
from execplanner_widgets.model.dialects import NOTE_2021
from execplanner_widgets.model.kinds import is_known
from jupyter_server_extension.hosted.documents import UWS_CONNECTOR

from .base import ApiError
from .broker_io import BrokerHandler
from .hosted import PLATFORM_ROUTE

__all__ = ["NOTE_2021_HANDLERS"]


class AcceptsHandler(BrokerHandler):
    """``GET accepts?tasktype=...``: can this platform run that kind of task?"""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        platform = self.hosted(name)
        tasktype = (self.get_query_argument("tasktype", "") or "").strip()
        if not tasktype:
            raise ApiError(400, "say which task type, e.g. accepts?tasktype=uri://jupyter-notebook", field="tasktype")
        kind = canonical_kind(tasktype, "executable")
        why = None
        if not is_known(kind, "executable") or short_kind(kind) not in platform.options.accepts_short:
            known = ", ".join(platform.options.accepts_short)
            why = f"{name} does not run {tasktype}; it runs {known}"
        else:
            why = platform.executor.unsupported(short_kind(kind))
        if why:
            self.write_2021({"reponseword": "NO", "messages": [why]})
            return
        base = self.public_base().rstrip("/")
        platform_path = url_path_join(self.base_url, "execplanner", "platforms", name)
        answer: dict[str, Any] = {
            "reponseword": "YES",
            "servicetype": UWS_CONNECTOR,
            "serviceinfo": {
                "endpoint": base + url_path_join(platform_path, "jobs"),
                "requests": base + url_path_join(platform_path, "requests") + f"?dialect={NOTE_2021}",
                "accept": base + url_path_join(platform_path, "accept"),
            },
            "messages": [
                f"{name} runs {short_kind(kind)} tasks: POST the task to serviceinfo.accept for offers, or as a "
                "UWS job (REQUEST form field) to serviceinfo.endpoint to run it at the earliest time."
            ],
        }
        self.write_2021(answer)


class AcceptHandler(BrokerHandler):
    """``POST accept``: the 2021 note's task as form fields -> YES with offers, or NO with reasons."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        platform = self.hosted(name)
        if self.content_type() in ("multipart/form-data", "application/x-www-form-urlencoded"):
            request = self.read_2021_form()
        else:
            request = self.read_broker_request()[0]
        response = await platform.offers(request, user=self.username)
        self.write_broker(response.to_wire(), "offerset", NOTE_2021)


NOTE_2021_HANDLERS: list[tuple[str, type]] = [
    (PLATFORM_ROUTE + r"/accepts/?", AcceptsHandler),
    (PLATFORM_ROUTE + r"/accept/?", AcceptHandler),
]
