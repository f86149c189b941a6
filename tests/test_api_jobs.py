"""``follow_job``: one JobStatus for platforms that run UWS jobs in-process (as hosted platforms do)
and for those that only have sessions. The job-reading platform here is a small plugin written for
the test (a static platform that also reports UWS jobs), so these tests do not depend on the hosted
platforms' own code."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from execplanner_widgets.core.jobs import follow_job, platform_reads_jobs
from execplanner_widgets.core.platform import PlatformError, SessionNotFound
from execplanner_widgets.model import InvalidRequest, parse_request
from execplanner_widgets.platforms.static import StaticOptions, StaticPlatform

REQUEST = parse_request(
    {"executable": {"kind": "python-script", "location": "run.py"}, "compute": {"cores": {"min": 1}}}
)


class Job(BaseModel):
    """A UWS job summary that renders itself as UWS JSON, as the hosted platforms' model does."""

    job_id: str
    phase: str
    results: list[dict[str, Any]] = []
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"jobId": self.job_id, "phase": self.phase, "results": self.results}
        if self.error:
            document["errorSummary"] = {"type": "fatal", "message": self.error}
        return document


class JobPlatform(StaticPlatform):
    """A static platform whose accepted sessions are also UWS jobs."""

    def __init__(self) -> None:
        super().__init__("jobs", "Platform with UWS jobs", options=StaticOptions(accepts=["python-script"], cores=4))
        self.jobs: dict[str, Job] = {}
        self.stall = False

    async def job(self, job_id: str, *, user: str | None = None) -> Job:
        if self.stall:
            await asyncio.sleep(30)
        if job_id not in self.jobs:
            raise SessionNotFound(f"no job {job_id}")
        return self.jobs[job_id]


@pytest.mark.asyncio
async def test_sessions_only_platform_is_followed_through_its_session():
    platform = StaticPlatform("plain", options=StaticOptions(accepts=["python-script"]))
    assert not platform_reads_jobs(platform)
    offer = (await platform.offers(REQUEST)).offers[0]
    await platform.accept(offer.uuid)
    status = await follow_job(platform, offer.uuid, user=None, timeout=5)
    assert (status.phase, status.uws_phase, status.job, status.is_final) == ("ACCEPTED", None, None, False)
    assert "accepted" in status.messages
    with pytest.raises(SessionNotFound):
        await follow_job(platform, "missing", user=None, timeout=5)


@pytest.mark.asyncio
async def test_uws_state_is_read_from_the_platform_with_its_results():
    platform = JobPlatform()
    assert platform_reads_jobs(platform)
    offer = (await platform.offers(REQUEST)).offers[0]
    await platform.accept(offer.uuid)
    platform.jobs[offer.uuid] = Job(job_id=offer.uuid, phase="EXECUTING")
    running = await follow_job(platform, offer.uuid, user=None, timeout=5)
    assert (running.phase, running.uws_phase, running.is_final) == ("ACCEPTED", "EXECUTING", False)
    assert running.job["jobId"] == offer.uuid and running.session.uuid == offer.uuid
    platform.jobs[offer.uuid] = Job(
        job_id=offer.uuid,
        phase="ERROR",
        error="the script failed: exit status 3",
        results=[
            {"id": "stdout.txt", "href": "/results/stdout.txt", "size": 12, "mime-type": "text/plain"},
            {"href": "no id"},
        ],
    )
    failed = await follow_job(platform, offer.uuid, user=None, timeout=5)
    assert failed.uws_phase == "ERROR" and failed.messages[-1] == "the script failed: exit status 3"
    assert [item.to_wire() for item in failed.results] == [
        {"id": "stdout.txt", "url": "/results/stdout.txt", "size": 12, "mime-type": "text/plain"}
    ]
    assert failed.is_final is False  # the session (ACCEPTED) and the job disagree: not final until both are


@pytest.mark.asyncio
async def test_a_job_without_a_session_still_answers():
    platform = JobPlatform()
    platform.jobs["orphan-1"] = Job(job_id="orphan-1", phase="COMPLETED")
    status = await follow_job(platform, "orphan-1", user=None, timeout=5)
    assert (status.phase, status.session, status.uws_phase, status.is_final) == (None, None, "COMPLETED", True)
    assert status.to_wire()["results"] == [] and "session" not in status.to_wire()


@pytest.mark.asyncio
async def test_bad_ids_and_slow_platforms():
    platform = JobPlatform()
    with pytest.raises(InvalidRequest) as error:
        await follow_job(platform, "../etc/passwd", user=None, timeout=5)
    assert error.value.errors[0].field == "id"
    platform.stall = True
    with pytest.raises(PlatformError) as slow:
        await follow_job(platform, "some-job", user=None, timeout=0.2)
    assert slow.value.status == 504 and "0.2 s" in str(slow.value)
