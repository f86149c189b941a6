"""Follow an accepted session's run: one :class:`JobStatus` whatever kind of platform runs it.

Hosted platforms live in the server's own process and run accepted sessions as UWS jobs, so their
job state is read directly (no HTTP round trip to ourselves). A platform takes part by providing a
coroutine method ``job(job_id, *, user=None)`` that returns the UWS job as a JSON-ready mapping, or a
pydantic model with ``to_json()`` (UWS JSON, as ``HostedPlatform.job`` returns), with at least
``phase``, and raises ``SessionNotFound`` for an unknown id; the proxy then also reads the session of
the same id when there is one. Every other platform is followed through
its ExecutionBroker session. The kernel client's in-process mode uses the same function, so both
modes answer alike: the server's proxy and the kernel client both call this function.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ..model import ExecutionSession, ResultItem
from ..model.identifiers import check_identifier
from ..model.phases import FINAL_UWS_PHASES
from ..model.status import JobStatus
from .platform import Platform, PlatformError, SessionNotFound

__all__ = ["follow_job", "platform_reads_jobs"]


def platform_reads_jobs(platform: Platform) -> bool:
    """True if the platform can report UWS job state itself (hosted platforms)."""
    return inspect.iscoroutinefunction(getattr(platform, "job", None))


def _as_mapping(document: Any) -> dict[str, Any]:
    """The job as JSON: a mapping as is, a model through its UWS JSON (``to_json``) or wire form."""
    if isinstance(document, Mapping):
        return dict(document)
    if isinstance(document, BaseModel):
        for method in ("to_json", "to_wire"):
            render = getattr(document, method, None)
            if callable(render):
                return dict(render())
        return document.model_dump(mode="json", by_alias=True, exclude_none=True)
    raise PlatformError(f"the platform described a job as {type(document).__name__}, not a document")


def _results(job: dict[str, Any] | None, session: ExecutionSession | None) -> list[ResultItem]:
    if session is not None and session.results:
        return list(session.results)
    items = (job or {}).get("results") or []
    results: list[ResultItem] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            try:
                fields = {key: value for key, value in item.items() if key not in ("href", "url")}
                href = item.get("href") or item.get("url")
                results.append(ResultItem.model_validate({**fields, "url": href} if href else fields))
            except ValidationError:
                continue  # a result without an id cannot be shown; the job document still carries it
    return results


def _messages(session: ExecutionSession | None, job: dict[str, Any] | None) -> list[str]:
    messages = [item.text for item in session.messages if item.text] if session is not None else []
    error = (job or {}).get("errorSummary") or (job or {}).get("error")
    if isinstance(error, Mapping):
        error = error.get("message")
    if isinstance(error, str) and error and error not in messages:
        messages.append(error)
    return messages


async def follow_job(platform: Platform, job_id: str, *, user: str | None, timeout: float) -> JobStatus:
    """The job ``job_id`` on ``platform``: its UWS state where the platform has one, else its session.

    Raises :class:`SessionNotFound` when neither a job nor a session has that id, and
    :class:`PlatformError` when the platform fails or does not answer within ``timeout`` seconds.
    """
    check_identifier(job_id, "id")

    async def read() -> tuple[dict[str, Any] | None, ExecutionSession | None]:
        job: dict[str, Any] | None = None
        if platform_reads_jobs(platform):
            try:
                job = _as_mapping(await platform.job(job_id, user=user))  # type: ignore[attr-defined]
            except SessionNotFound:
                job = None
        try:
            return job, await platform.session(job_id, user=user)
        except SessionNotFound:
            if job is None:
                raise
            return job, None

    try:
        job, session = await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise PlatformError(f"{platform.name} did not answer within {timeout:g} s", status=504) from None
    uws_phase = str(job["phase"]).upper() if job and job.get("phase") else None
    if session is not None:
        is_final = session.is_final and (uws_phase is None or uws_phase in FINAL_UWS_PHASES)
    else:
        is_final = uws_phase in FINAL_UWS_PHASES
    return JobStatus(
        platform=platform.name,
        id=job_id,
        phase=session.phase if session is not None else None,
        uws_phase=uws_phase,
        is_final=is_final,
        session=session,
        job=job,
        results=_results(job, session),
        messages=_messages(session, job),
    )
