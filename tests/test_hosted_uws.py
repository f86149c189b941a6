"""Booked sessions as UWS 1.1 jobs on a real Jupyter server: documents valid against UWS.xsd and
read by pyvo, the job list with PHASE/AFTER/LAST, WAIT, PHASE=ABORT/RUN, DELETE, the single-value
resources, JSON on request, 404 for unknown jobs and 403 for actions their phase does not allow."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from pyvo.io.uws import parse_job, parse_job_list
from test_hosted_support import (
    DATA,
    assert_valid_uws,
    eventually,
    extension_config,
    request_document,
    uws_schema,
    write_platforms,
)
from tornado.httpclient import HTTPClientError

from execplanner_widgets.model import format_instant, parse_instant, utcnow

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def jp_server_config(tmp_path):
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        [
            {
                "name": "gaia",
                "title": "Gaia data mining platform",
                "hosted": {"cores": 2, "memory": 4, "offers": 2, "retention": "P2D"},
            }
        ],
    )
    return extension_config(platforms, tmp_path / "state")


@pytest.fixture
def schema(reference_dir):
    return uws_schema(reference_dir)


def later(hours: float = 2) -> str:
    return f"{format_instant(utcnow() + timedelta(hours=hours))}/PT12H"


async def post_task(jp_fetch, body: str, *, form: bool = False, query: dict[str, str] | None = None):
    """``POST jobs`` with a task (JSON, or form fields when ``form``); the raw response."""
    return await jp_fetch(
        "execplanner", "platforms", "gaia", "jobs",
        method="POST", body=body, params=query or {}, headers=FORM if form else {"Content-Type": "application/json"},
        follow_redirects=False, raise_error=False,
    )  # fmt: skip


async def submit(jp_fetch, document: dict[str, Any], query: dict[str, str] | None = None) -> str:
    """POST jobs; check the 303 and return the new job's id."""
    response = await post_task(jp_fetch, json.dumps(document), query=query)
    assert response.code == 303, response.body
    location = urlsplit(response.headers["Location"]).path
    assert "/execplanner/platforms/gaia/jobs/" in location
    return location.rsplit("/", 1)[1]


async def uws(
    jp_fetch,
    *path: str,
    method: str = "GET",
    form: dict[str, str] | None = None,
    follow_redirects: bool = True,
    **kwargs,
):
    """A UWS call; a 303 is followed with a GET of its Location, as a UWS client does (done here
    because pytest-jupyter's test client cannot follow redirects itself)."""
    if form is not None:
        kwargs.update(body=urlencode(form), headers={**FORM, **kwargs.pop("headers", {})})
    raise_error = kwargs.pop("raise_error", True)
    response = await jp_fetch(
        "execplanner",
        "platforms",
        "gaia",
        "jobs",
        *path,
        method=method,
        follow_redirects=False,
        raise_error=False,
        **kwargs,
    )
    if response.code == 303 and follow_redirects:
        location = urlsplit(response.headers["Location"]).path.split("/execplanner/platforms/gaia/", 1)[1]
        return await jp_fetch("execplanner", "platforms", "gaia", *location.split("/"))
    if raise_error and response.code >= 400:
        raise HTTPClientError(response.code, response=response)
    return response


async def status_of(coroutine) -> int:
    with pytest.raises(HTTPClientError) as caught:
        await coroutine
    return caught.value.code


async def test_a_job_runs_and_its_documents_are_valid_uws(jp_fetch, schema):
    document = request_document(DATA / "sum_numbers.py", data=[DATA / "numbers.csv"], duration="PT2M")
    job_id = await submit(jp_fetch, document, {"RUNID": "my-first-job"})
    first = await uws(jp_fetch, job_id)
    assert first.headers["Content-Type"].startswith("application/xml")
    assert_valid_uws(schema, first.body)
    job = parse_job(io.BytesIO(first.body))
    assert job.jobid == job_id and job.runid == "my-first-job"
    assert job.ownerid is None  # the server's owner: no named identity
    assert str(job.phase) in ("QUEUED", "EXECUTING", "COMPLETED")
    assert round(job.executionduration.to_value("s")) == 120

    async def completed():
        response = await uws(jp_fetch, job_id, params={"WAIT": "10"})
        return response if parse_job(io.BytesIO(response.body)).phase == "COMPLETED" else None

    done = await eventually(completed, 60, interval=0)
    assert_valid_uws(schema, done.body)
    job = parse_job(io.BytesIO(done.body))
    assert job.starttime is not None and job.endtime is not None
    results = {result.id_: result for result in job.results}
    assert {"stdout.txt", "outputs/total.txt"} <= set(results)
    href = results["outputs/total.txt"].href
    path = urlsplit(href).path.split("/execplanner/platforms/", 1)[1].split("/")
    assert (await jp_fetch("execplanner", "platforms", *path)).body == b"12\n"
    parameters = {parameter.id_: str(parameter.content).strip() for parameter in job.parameters}
    assert (
        parameters["kind"] == "python-script"
        and parameters["cores"] == "1"
        and parameters["executable"].endswith("sum_numbers.py")
    )

    listing = await uws(jp_fetch)
    assert_valid_uws(schema, listing.body)
    refs = parse_job_list(io.BytesIO(listing.body))
    assert [ref.jobid for ref in refs] == [job_id]

    for name in ("parameters", "results"):
        assert_valid_uws(schema, (await uws(jp_fetch, job_id, name)).body)
    assert (await uws(jp_fetch, job_id, "phase")).body == b"COMPLETED"
    assert (await uws(jp_fetch, job_id, "executionduration")).body == b"120"
    assert parse_instant((await uws(jp_fetch, job_id, "quote")).body.decode())
    assert parse_instant((await uws(jp_fetch, job_id, "destruction")).body.decode()) > utcnow() + timedelta(days=1)
    assert (await uws(jp_fetch, job_id, "owner")).body == b""
    assert await status_of(uws(jp_fetch, job_id, "error")) == 404  # it did not fail

    as_json = json.loads((await uws(jp_fetch, job_id, headers={"Accept": "application/json"})).body)
    assert as_json["jobId"] == job_id and as_json["phase"] == "COMPLETED" and as_json["version"] == "1.1"
    assert any(result["id"] == "outputs/total.txt" and result["href"] for result in as_json["results"])
    assert [entry["phase"] for entry in as_json["jobInfo"]["messages"]][-1] == "COMPLETED"


async def test_a_failed_job_carries_its_error(jp_fetch, schema):
    job_id = await submit(jp_fetch, request_document(DATA / "failing.py"))

    async def errored():
        response = await uws(jp_fetch, job_id, params={"WAIT": "10", "PHASE": "EXECUTING"})
        phase = parse_job(io.BytesIO(response.body)).phase
        return response if phase == "ERROR" else None

    response = await eventually(errored, 60, interval=0)
    assert_valid_uws(schema, response.body)
    job = parse_job(io.BytesIO(response.body))
    assert "the input catalogue is empty" in job.errorsummary.message.content
    assert "the input catalogue is empty" in (await uws(jp_fetch, job_id, "error")).body.decode()
    assert await status_of(uws(jp_fetch, job_id, "phase", method="POST", form={"PHASE": "ABORT"})) == 403
    assert await status_of(uws(jp_fetch, job_id, "phase", method="POST", form={"PHASE": "RUN"})) == 403


async def test_abort_a_queued_job_and_what_is_not_allowed_after(jp_fetch, schema):
    job_id = await submit(jp_fetch, request_document(DATA / "sum_numbers.py", start=later()))
    assert (await uws(jp_fetch, job_id, "phase")).body == b"QUEUED"
    # RUN on a queued job is allowed (it is booked to run already)
    ran = await uws(
        jp_fetch, job_id, "phase", method="POST", form={"PHASE": "RUN"}, follow_redirects=False, raise_error=False
    )
    assert ran.code == 303
    aborted = await uws(
        jp_fetch, job_id, "phase", method="POST", form={"phase": "abort"}
    )  # names and values in any case
    assert_valid_uws(schema, aborted.body)
    assert parse_job(io.BytesIO(aborted.body)).phase == "ABORTED"
    assert await status_of(uws(jp_fetch, job_id, "phase", method="POST", form={"PHASE": "ABORT"})) == 403
    assert await status_of(uws(jp_fetch, job_id, "phase", method="POST", form={"PHASE": "SUSPEND"})) == 400
    assert (
        await status_of(uws(jp_fetch, job_id, "executionduration", method="POST", form={"EXECUTIONDURATION": "10"}))
        == 403
    )


async def test_execution_duration_and_destruction_can_change_while_queued(jp_fetch):
    job_id = await submit(jp_fetch, request_document(DATA / "sum_numbers.py", duration="PT10M", start=later()))
    changed = await uws(
        jp_fetch,
        job_id,
        "executionduration",
        method="POST",
        form={"EXECUTIONDURATION": "300"},
        follow_redirects=False,
        raise_error=False,
    )
    assert changed.code == 303 and urlsplit(changed.headers["Location"]).path.endswith(f"/jobs/{job_id}")
    assert (await uws(jp_fetch, job_id, "executionduration")).body == b"300"
    assert (
        await status_of(uws(jp_fetch, job_id, "executionduration", method="POST", form={"EXECUTIONDURATION": "3600"}))
        == 403
    )
    assert (
        await status_of(uws(jp_fetch, job_id, "executionduration", method="POST", form={"EXECUTIONDURATION": "soon"}))
        == 400
    )
    wanted = utcnow() + timedelta(hours=5)
    await uws(jp_fetch, job_id, "destruction", method="POST", form={"DESTRUCTION": format_instant(wanted)})
    assert parse_instant((await uws(jp_fetch, job_id, "destruction")).body.decode()) == wanted
    assert await status_of(uws(jp_fetch, job_id, "destruction", method="POST", form={"DESTRUCTION": "tomorrow"})) == 400
    assert await status_of(uws(jp_fetch, job_id, "parameters", method="POST", form={"cores": "8"})) == 403


async def test_job_list_filters_and_delete(jp_fetch, schema):
    queued = await submit(jp_fetch, request_document(DATA / "sum_numbers.py", start=later(2)))
    aborted = await submit(jp_fetch, request_document(DATA / "sum_numbers.py", start=later(3)))
    newest = await submit(jp_fetch, request_document(DATA / "sum_numbers.py", start=later(4)))
    await uws(jp_fetch, aborted, "phase", method="POST", form={"PHASE": "ABORT"})

    async def ids(**params: Any) -> list[str]:
        response = await uws(jp_fetch, params=params)
        assert_valid_uws(schema, response.body)
        return [ref.jobid for ref in parse_job_list(io.BytesIO(response.body))]

    assert await ids() == [newest, aborted, queued]  # most recently created first
    assert set(await ids(PHASE="QUEUED")) == {queued, newest}
    assert await ids(PHASE="ABORTED") == [aborted]
    assert await ids(LAST="2") == [newest, aborted]
    first = parse_job(io.BytesIO((await uws(jp_fetch, queued)).body))
    assert queued not in await ids(
        AFTER=format_instant(
            first.creationtime.datetime if hasattr(first.creationtime, "datetime") else first.creationtime
        )
    )
    assert await status_of(uws(jp_fetch, params={"PHASE": "SLEEPING"})) == 400
    assert await status_of(uws(jp_fetch, params={"LAST": "-1"})) == 400
    assert await status_of(uws(jp_fetch, params={"AFTER": "yesterday"})) == 400

    deleted = await uws(jp_fetch, queued, method="DELETE", follow_redirects=False, raise_error=False)
    assert deleted.code == 303 and urlsplit(deleted.headers["Location"]).path.endswith("/jobs")
    assert await status_of(uws(jp_fetch, queued)) == 404
    via_post = await uws(
        jp_fetch, newest, method="POST", form={"ACTION": "DELETE"}, follow_redirects=False, raise_error=False
    )
    assert via_post.code == 303
    assert await ids() == [aborted]
    assert await status_of(uws(jp_fetch, aborted, method="POST", form={"ACTION": "ARCHIVE"})) == 400


async def test_unknown_jobs_and_refused_tasks(jp_fetch):
    for path in (("no-such-job",), ("no-such-job", "phase"), ("no-such-job", "results"), ("no-such-job", "owner")):
        assert await status_of(uws(jp_fetch, *path)) == 404
    assert await status_of(uws(jp_fetch, "no-such-job", "phase", method="POST", form={"PHASE": "ABORT"})) == 404
    assert await status_of(uws(jp_fetch, "no-such-job", method="DELETE")) == 404
    refused = await post_task(jp_fetch, json.dumps(request_document(DATA / "sum_numbers.py", cores=64)))
    assert refused.code == 400 and "64 cores" in json.loads(refused.body)["reasons"][0]
    invalid = await post_task(jp_fetch, json.dumps({"compute": {}}))
    assert invalid.code == 400 and json.loads(invalid.body)["field"] == "executable"
    # a task sent as a REQUEST form field, as form-only UWS clients do
    form = urlencode({"REQUEST": json.dumps(request_document(DATA / "sum_numbers.py", start=later())), "PHASE": "RUN"})
    created = await post_task(jp_fetch, form, form=True)
    assert created.code == 303
