"""HTTP routes of hosted platforms: IVOA ExecutionBroker v1.0 and UWS 1.1, under
``{base_url}execplanner/platforms/{name}/``.

=========================================  =============  ==============================================
route (after ``.../platforms/{name}/``)    methods        what
=========================================  =============  ==============================================
(the platform itself)                      GET            description, limits and links
``requests``                               POST           an execution request -> offer set (YES/NO)
``offersets/{uuid}``                       GET            the offer set as it is now
``sessions/{uuid}``                        GET, POST      the session; POST an update (accept/reject/cancel)
``sessions/{uuid}/results/{id}``           GET            download a result
``direct``                                 POST           book the earliest offer at once -> session
``jobs``                                   GET, POST      UWS job list (PHASE, AFTER, LAST); POST a task
``jobs/{id}``                              GET, POST,     UWS job (WAIT, PHASE); POST ACTION=DELETE;
                                           DELETE         DELETE
``jobs/{id}/phase``                        GET, POST      PHASE=RUN or PHASE=ABORT
``jobs/{id}/executionduration``            GET, POST      EXECUTIONDURATION=seconds (shorten only)
``jobs/{id}/destruction``                  GET, POST      DESTRUCTION=ISO 8601 instant
``jobs/{id}/quote|error|owner``            GET            plain text
``jobs/{id}/parameters|results``           GET            XML (JSON when asked)
``jobs/{id}/results/{id}``                 GET            download a result
=========================================  =============  ==============================================

ExecutionBroker bodies are JSON or YAML in (by Content-Type) and out (by Accept); requests may be in
any dialect ``parse_request`` reads. UWS documents are XML unless the client asks for JSON. Every
method is authenticated and authorized (resource ``execplanner``); the caller's Jupyter identity is
the user for allocations and ownership (one user never sees another's sessions or jobs).
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from pydantic import TypeAdapter, ValidationError
from tornado import web

from execplanner_widgets.model import ExecutionRequest, InvalidRequest, UpdateModel, parse_instant, parse_request
from execplanner_widgets.model.errors import FieldError, from_validation_error
from execplanner_widgets.core.federation import UnknownPlatform
from execplanner_widgets.core.platform import PlatformError

from ..handlers.base import ApiError, ExecPlannerHandler
from .platform import HostedPlatform, RequestRefused
from .staging import safe_name
from .uws import (
    UwsJob,
    UwsPhase,
    job_list_json,
    job_list_xml,
    parameters_json,
    parameters_xml,
    results_json,
    results_xml,
)

__all__ = ["HOSTED_HANDLERS"]

_UPDATE = TypeAdapter(UpdateModel)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
XML_TYPE = "application/xml"


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


def _update_error(error: ValidationError) -> InvalidRequest:
    """A 400 for a bad update document, with field names as the client wrote them (``value``,
    not ``uri:enum-value-update.value``: the union's tag is not a field)."""
    converted = from_validation_error(error, what="update")
    fields = [
        FieldError(
            item.field.split(".", 1)[1] if item.field.startswith("uri:") and "." in item.field else item.field,
            item.message,
        )
        for item in converted.errors
    ]
    return InvalidRequest(fields, "update")


# ------------------------------------------------------------------------ ExecutionBroker


class PlatformHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        platform = self.hosted(name)
        await platform.start()
        await platform.capacity()
        self.write_document(platform.describe().model_dump(mode="json", exclude_none=True))


class RequestsHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        platform = self.hosted(name)
        request = self.read_request()
        response = await platform.offers(request, user=self.username)
        self.write_document(response.to_wire())


class OfferSetHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str) -> None:
        response = await self.hosted(name).offerset(uuid, user=self.username)
        self.write_document(response.to_wire())


class SessionHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str) -> None:
        session = await self.hosted(name).session(uuid, user=self.username)
        self.write_document(session.to_wire())

    @web.authenticated
    @authorized
    async def post(self, name: str, uuid: str) -> None:
        platform = self.hosted(name)
        document = self.read_document()
        try:
            update = _UPDATE.validate_python(document)
        except ValidationError as error:
            raise _update_error(error) from None
        session = await platform.update_session(uuid, update, user=self.username)
        self.write_document(session.to_wire())


class DirectHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        platform = self.hosted(name)
        request = self.read_request()
        try:
            session = await platform.direct(request, user=self.username)
        except RequestRefused as refused:
            self.write_refusal(refused)
            return
        self.write_document(session.to_wire())

    def write_refusal(self, refused: RequestRefused) -> None:
        """400 with the reasons, shaped as a REJECTED session (the ExecutionBroker answer for
        ``POST direct``) plus the usual ``message``."""
        self.write_document(
            {
                "message": str(refused),
                "reasons": refused.reasons,
                "offerset": refused.offerset,
                "phase": "REJECTED",
                "meta": {"messages": [{"level": "WARN", "message": reason} for reason in refused.reasons]},
            },
            400,
        )


class ResultHandler(HostedHandler):
    """Download one result file (the URL session documents point to)."""

    async def send_result(self, platform: HostedPlatform, uuid: str, result: str) -> None:
        path, mime = await platform.result_file(uuid, result, user=self.username)
        self.set_header("Content-Type", mime)
        self.set_header("Content-Disposition", f'attachment; filename="{safe_name(path.name, "result")}"')
        self.set_header("X-Content-Type-Options", "nosniff")
        with open(path, "rb") as handle:
            while chunk := handle.read(256 * 1024):
                self.write(chunk)
                await self.flush()
        self.finish(set_content_type=mime)

    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str, result: str) -> None:
        await self.send_result(self.hosted(name), uuid, result)


# ------------------------------------------------------------------------------------ UWS


class JobListHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        platform = self.hosted(name)
        after_text = self.uws_value("AFTER")
        after = None
        if after_text is not None:
            try:
                after = parse_instant(after_text)
            except ValueError as error:
                raise ApiError(400, f"AFTER: {error}", field="AFTER") from None
        refs = await platform.jobs(
            user=self.username, phases=self.uws_phase() or None, after=after, last=self.uws_int("LAST", minimum=1)
        )
        self.write_uws(job_list_xml(refs), job_list_json(refs))

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        platform = self.hosted(name)
        phase = self.uws_value("PHASE")
        if phase is not None and phase.strip().upper() != "RUN":
            raise ApiError(
                400, f"a new job can only be sent with PHASE=RUN (it runs at once), not {phase!r}", field="PHASE"
            )
        request = self.read_request()
        try:
            job = await platform.submit_job(request, user=self.username, run_id=self.uws_value("RUNID"))
        except RequestRefused as refused:
            self.write_document(
                {"message": str(refused), "reasons": refused.reasons, "offerset": refused.offerset}, 400
            )
            return
        self.see_other(self.job_path(name, job))


class JobHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str, job: str) -> None:
        platform = self.hosted(name)
        wait = self.uws_int("WAIT")
        if wait is None:
            summary = await platform.job(job, user=self.username)
        else:
            phases = self.uws_phase()
            summary = await platform.wait_job(
                job, user=self.username, timeout=float(wait), phase=phases[0] if phases else None
            )
        self.write_uws(summary.to_xml(), summary.to_json())

    @web.authenticated
    @authorized
    async def delete(self, name: str, job: str) -> None:
        await self.hosted(name).delete_job(job, user=self.username)
        self.see_other(self.job_path(name))

    @web.authenticated
    @authorized
    async def post(self, name: str, job: str) -> None:
        action = (self.uws_value("ACTION") or "").strip().upper()
        if action != "DELETE":
            raise ApiError(
                400,
                "POST to a job takes ACTION=DELETE (use the phase, destruction or executionduration routes for changes)",
                field="ACTION",
            )
        await self.hosted(name).delete_job(job, user=self.username)
        self.see_other(self.job_path(name))


class JobPhaseHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str, job: str) -> None:
        self.write_text((await self.hosted(name).job(job, user=self.username)).phase.value)

    @web.authenticated
    @authorized
    async def post(self, name: str, job: str) -> None:
        platform = self.hosted(name)
        phase = (self.uws_value("PHASE") or "").strip().upper()
        if phase == "ABORT":
            await platform.abort_job(job, user=self.username)
        elif phase == "RUN":
            await platform.run_job(job, user=self.username)
        else:
            await platform.job(job, user=self.username)  # 404 first for an unknown job
            raise ApiError(400, f"PHASE must be RUN or ABORT, not {phase or 'missing'!r}", field="PHASE")
        self.see_other(self.job_path(name, job))


class JobValueHandler(HostedHandler):
    """The single-value UWS resources: plain text out; POST for the two that may change."""

    def initialize(self, value: str, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(**kwargs)
        self.value = value

    def _text(self, job: UwsJob) -> str:
        if self.value == "executionduration":
            return str(job.execution_duration)
        if self.value == "destruction":
            return job.to_json()["destruction"] or ""
        if self.value == "quote":
            return job.to_json()["quote"] or ""
        if self.value == "owner":
            return job.owner_id or ""
        if job.error_summary is None:
            raise ApiError(404, f"the job {job.job_id} did not fail: it has no error")
        return job.error_summary.message

    @web.authenticated
    @authorized
    async def get(self, name: str, job: str) -> None:
        platform = self.hosted(name)
        summary = await platform.job(job, user=self.username)
        if self.value == "parameters":
            self.write_uws(parameters_xml(summary.parameters), parameters_json(summary.parameters))
        elif self.value == "results":
            self.write_uws(results_xml(summary.results), results_json(summary.results))
        else:
            self.write_text(self._text(summary))

    @web.authenticated
    @authorized
    async def post(self, name: str, job: str) -> None:
        platform = self.hosted(name)
        await platform.job(job, user=self.username)  # 404 for an unknown job before anything else
        if self.value == "executionduration":
            seconds = self.uws_int("EXECUTIONDURATION")
            if seconds is None:
                raise ApiError(400, "send EXECUTIONDURATION=<seconds>", field="EXECUTIONDURATION")
            await platform.set_job_execution_duration(job, seconds, user=self.username)
        elif self.value == "destruction":
            text = self.uws_value("DESTRUCTION")
            if text is None:
                raise ApiError(400, "send DESTRUCTION=<ISO 8601 instant>", field="DESTRUCTION")
            try:
                when = parse_instant(text)
            except ValueError as error:
                raise ApiError(400, f"DESTRUCTION: {error}", field="DESTRUCTION") from None
            await platform.set_job_destruction(job, when, user=self.username)
        else:
            raise ApiError(403, f"the job's {self.value} cannot be changed: it was fixed when the job was booked")
        self.see_other(self.job_path(name, job))


class JobResultHandler(ResultHandler):
    """UWS result links (``jobs/{id}/results/{result}``): the same files as the session's."""

    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str, result: str) -> None:
        platform = self.hosted(name)
        await platform.job(uuid, user=self.username)  # 404 unless it is a job (offers have no results)
        await self.send_result(platform, uuid, result)


_PLATFORM = r"execplanner/platforms/(?P<name>[^/]+)"
_JOB = _PLATFORM + r"/jobs/(?P<job>[^/]+)"

HOSTED_HANDLERS: list[tuple[str, type, dict[str, Any]] | tuple[str, type]] = [
    (_PLATFORM + r"/?", PlatformHandler),
    (_PLATFORM + r"/requests/?", RequestsHandler),
    (_PLATFORM + r"/offersets/(?P<uuid>[^/]+)/?", OfferSetHandler),
    (_PLATFORM + r"/sessions/(?P<uuid>[^/]+)/results/(?P<result>.+)", ResultHandler),
    (_PLATFORM + r"/sessions/(?P<uuid>[^/]+)/?", SessionHandler),
    (_PLATFORM + r"/direct/?", DirectHandler),
    (_PLATFORM + r"/jobs/?", JobListHandler),
    (_PLATFORM + r"/jobs/(?P<uuid>[^/]+)/results/(?P<result>.+)", JobResultHandler),
    (_JOB + r"/phase/?", JobPhaseHandler),
    *[
        (_JOB + rf"/{value}/?", JobValueHandler, {"value": value})
        for value in ("executionduration", "destruction", "quote", "error", "parameters", "results", "owner")
    ],
    (_JOB + r"/?", JobHandler),
]
