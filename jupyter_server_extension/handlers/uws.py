"""IVOA UWS 1.1 routes of hosted platforms: every booked session is also a job, under
``{base_url}execplanner/platforms/{name}/jobs``.

=========================================  =============  ==============================================
route (after ``.../platforms/{name}/``)    methods        what
=========================================  =============  ==============================================
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

UWS documents (:mod:`jupyter_server_extension.hosted.uws_documents`) are XML unless the client asks
for JSON; changes are answered 303 See Other, as UWS says.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from execplanner_widgets.model import parse_instant
from jupyter_server_extension.hosted.platform import RequestRefused
from jupyter_server_extension.hosted.uws_documents import (
    UwsJob,
    job_list_json,
    job_list_xml,
    parameters_json,
    parameters_xml,
    results_json,
    results_xml,
)

from .base import ApiError
from .broker import ResultHandler
from .hosted import PLATFORM_ROUTE as _PLATFORM
from .hosted import HostedHandler

__all__ = ["UWS_HANDLERS"]


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


_JOB = _PLATFORM + r"/jobs/(?P<job>[^/]+)"

UWS_HANDLERS: list[tuple[str, type, dict[str, Any]] | tuple[str, type]] = [
    (_PLATFORM + r"/jobs/?", JobListHandler),
    (_PLATFORM + r"/jobs/(?P<uuid>[^/]+)/results/(?P<result>.+)", JobResultHandler),
    (_JOB + r"/phase/?", JobPhaseHandler),
    *[
        (_JOB + rf"/{value}/?", JobValueHandler, {"value": value})
        for value in ("executionduration", "destruction", "quote", "error", "parameters", "results", "owner")
    ],
    (_JOB + r"/?", JobHandler),
]
