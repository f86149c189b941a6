"""What the hosted-platform routes share (ExecutionBroker in :mod:`.broker`, UWS in :mod:`.uws`):
finding the platform, content negotiation, UWS parameters, and a request body in any dialect.

Routes live under ``{base_url}execplanner/platforms/{name}/``. Every method is authenticated and
authorized (resource ``execplanner``); the caller's Jupyter identity is the user for allocations and
ownership (one user never sees another's sessions or jobs).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.utils import url_path_join

from execplanner_widgets.core.federation import UnknownPlatform
from execplanner_widgets.core.platform import PlatformError
from execplanner_widgets.model import ExecutionRequest, InvalidRequest, parse_request
from execplanner_widgets.model.phases import UwsPhase
from jupyter_server_extension.hosted.platform import HostedPlatform

from .base import ApiError, ExecPlannerHandler

__all__ = ["FORM_TYPES", "PLATFORM_ROUTE", "HostedHandler"]

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
XML_TYPE = "application/xml"
#: The route prefix of one hosted platform.
PLATFORM_ROUTE = r"execplanner/platforms/(?P<name>[^/]+)"


class HostedHandler(ExecPlannerHandler):
    """What every hosted-platform route shares: finding the platform, UWS parameters, negotiation."""

    def hosted(self, name: str) -> HostedPlatform:
        """The hosted platform ``name``; 404 JSON if there is none of that name or it is not hosted."""
        try:
            platform = self.federation.get(name)
        except UnknownPlatform as error:
            raise ApiError(404, str(error), field="platform") from None
        if not isinstance(platform, HostedPlatform):
            raise ApiError(404, f"{name!r} is not a hosted platform on this server", field="platform")
        return platform

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        """A client's mistake (bad input, an unknown session, a refused change) is answered 4xx by
        ``write_error``; log it as one line, not as a server error with a traceback."""
        if isinstance(value, (InvalidRequest, PlatformError, UnknownPlatform)):
            self.log.warning("%s %s: %s", self.request.method, self.request.path, str(value).splitlines()[0])
            return
        super().log_exception(typ, value, tb)

    # ------------------------------------------------------------------------------ output

    def write_text(self, text: str) -> None:
        self.finish(text, set_content_type="text/plain; charset=UTF-8")

    def wants_json(self) -> bool:
        accept = self.request.headers.get("Accept", "").lower()
        if "json" not in accept:
            return False
        return "xml" not in accept or accept.index("json") < accept.index("xml")

    def write_uws(self, xml: bytes, document: dict[str, Any]) -> None:
        """A UWS document: XML by default, JSON when the client's Accept prefers it."""
        if self.wants_json():
            self.finish(json.dumps(document), set_content_type="application/json; charset=UTF-8")
        else:
            self.finish(xml, set_content_type=f"{XML_TYPE}; charset=UTF-8")

    def see_other(self, path: str) -> None:
        """303 See Other, as UWS answers every change."""
        self.set_status(303)
        self.set_header("Location", path)
        self.finish(set_content_type="text/plain; charset=UTF-8")

    def job_path(self, name: str, job: str | None = None) -> str:
        parts = [self.base_url, "execplanner", "platforms", name, "jobs"]
        return url_path_join(*parts, job) if job else url_path_join(*parts)

    # ------------------------------------------------------------------------------ input

    def uws_values(self, name: str) -> list[str]:
        """All values of the UWS parameter ``name`` from the query and a form body (names are
        case-insensitive in UWS)."""
        wanted = name.upper()
        values: list[str] = []
        sources = [self.request.query_arguments]
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type in FORM_TYPES:
            sources.append(self.request.body_arguments)
        for source in sources:
            for key, raw in source.items():
                if key.upper() == wanted:
                    values.extend(item.decode("utf-8", "replace") for item in raw)
        return values

    def uws_value(self, name: str) -> str | None:
        values = self.uws_values(name)
        return values[-1] if values else None

    def uws_int(self, name: str, *, minimum: int | None = None) -> int | None:
        value = self.uws_value(name)
        if value is None:
            return None
        try:
            number = int(value.strip())
        except ValueError:
            raise ApiError(400, f"{name} must be a whole number, got {value!r}", field=name) from None
        if minimum is not None and number < minimum:
            raise ApiError(400, f"{name} must be at least {minimum}, got {number}", field=name)
        return number

    def uws_phase(self, name: str = "PHASE") -> list[UwsPhase]:
        phases = []
        for value in self.uws_values(name):
            try:
                phases.append(UwsPhase(value.strip().upper()))
            except ValueError:
                known = ", ".join(phase.value for phase in UwsPhase)
                raise ApiError(400, f"unknown UWS phase {value!r}; use one of {known}", field=name) from None
        return phases

    def read_request(self) -> ExecutionRequest:
        """An execution request from a JSON/YAML body (or a ``REQUEST`` form field), any dialect."""
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type in FORM_TYPES:
            text = self.uws_value("REQUEST")
            if not text:
                raise ApiError(
                    400, "send the task description as a JSON or YAML body, or in a REQUEST form field", field="REQUEST"
                )
            return parse_request(text)
        return parse_request(self.read_document())
