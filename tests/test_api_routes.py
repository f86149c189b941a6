"""Every route of the proxy API against a real Jupyter server (pytest-jupyter, non-root base_url),
with static platforms and a real ExecutionBroker service on 127.0.0.1 behind it."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest
import yaml
from brokers import answer_no, answer_yes, run_broker, static_entry, write_platforms
from referencing import Registry, Resource
from tornado.httpclient import HTTPClientError

REQUEST = {
    "executable": {"kind": "jupyter-notebook", "location": "analysis.ipynb"},
    "compute": {"cores": {"min": 2}, "memory": {"min": 4}},
    "schedule": {"requested": {"duration": "PT1H"}},
}


@pytest.fixture
def yes_broker():
    with run_broker(answer_yes(offers=2, run_for=0.3)) as broker:
        yield broker


@pytest.fixture
def no_broker():
    with run_broker(answer_no("the queue is full this week")) as broker:
        yield broker


@pytest.fixture
def jp_server_config(tmp_path, yes_broker, no_broker):
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        [
            static_entry("big", title="Big static platform"),
            static_entry("small", title="Small static platform", cores=1, memory=2),
            yes_broker.entry("remote"),
            no_broker.entry("busy"),
        ],
        timeout=10,
    )
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_server_extension": True}},
        "ExecPlanner": {"platforms_file": str(platforms), "data_dir": str(tmp_path / "data")},
    }


async def fetch_json(jp_fetch, *parts, method="GET", body=None, expect=200, **kwargs):
    """The JSON answer of one API call; asserts the status and that the answer is JSON."""
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    headers = {"Content-Type": "application/json", **(kwargs.pop("headers", None) or {})}
    try:
        response = await jp_fetch("execplanner", "api", *parts, method=method, body=body, headers=headers, **kwargs)
    except HTTPClientError as error:
        response = error.response
    assert response.code == expect, response.body[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


# --------------------------------------------------------------------------------------- routes


async def test_platforms_lists_every_configured_platform(jp_fetch, yes_broker):
    platforms = await fetch_json(jp_fetch, "platforms")
    assert [item["name"] for item in platforms] == ["big", "small", "remote", "busy"]
    big = platforms[0]
    assert big["kind"] == "static" and big["title"] == "Big static platform"
    assert big["limits"]["cores"] == 16 and big["limits"]["memory"] == 64
    assert big["accepts"] == ["jupyter-notebook", "docker-container"]
    assert platforms[2]["kind"] == "broker" and platforms[2]["url"] == yes_broker.url


async def test_one_platform_and_unknown_platform(jp_fetch):
    assert (await fetch_json(jp_fetch, "platforms", "small"))["limits"]["cores"] == 1
    error = await fetch_json(jp_fetch, "platforms", "nowhere", expect=404)
    assert "nowhere" in error["message"] and error["field"] == "platform"


async def test_offers_gives_one_result_per_platform_in_config_order(jp_fetch, yes_broker, no_broker):
    results = await fetch_json(jp_fetch, "offers", method="POST", body=REQUEST)
    by_name = {result["platform"]: result for result in results}
    assert [result["platform"] for result in results] == ["big", "small", "remote", "busy"]
    assert by_name["big"]["status"] == "YES" and len(by_name["big"]["response"]["offers"]) == 1
    assert by_name["small"]["status"] == "NO"
    assert any("cores" in m["message"] for m in by_name["small"]["response"]["meta"]["messages"])
    assert by_name["remote"]["status"] == "YES" and len(by_name["remote"]["response"]["offers"]) == 2
    assert by_name["busy"]["status"] == "NO"
    assert by_name["busy"]["response"]["meta"]["messages"][0]["message"] == "the queue is full this week"
    assert all(isinstance(result["elapsed"], float) for result in results)
    # the broker received the request in ExecutionBroker form
    sent = [request for request in yes_broker.requests if request.path == "/broker/requests"]
    assert len(sent) == 1 and sent[0].json()["compute"]["cores"] == {"min": 2}


async def test_offers_selects_platforms_by_query(jp_fetch, no_broker):
    results = await fetch_json(jp_fetch, "offers", method="POST", body=REQUEST, params={"platform": "small,big"})
    assert [result["platform"] for result in results] == ["big", "small"]
    assert no_broker.requests == []
    error = await fetch_json(
        jp_fetch, "offers", method="POST", body=REQUEST, params={"platform": "big,ghost"}, expect=404
    )
    assert "ghost" in error["message"]


async def test_offers_accepts_yaml_and_older_dialects(jp_fetch):
    results = await fetch_json(
        jp_fetch,
        "offers",
        method="POST",
        body=yaml.safe_dump(REQUEST),
        headers={"Content-Type": "application/yaml"},
        params={"platform": "big"},
    )
    assert results[0]["status"] == "YES"
    note_2021 = {
        "tasktype": "uri://docker-container",
        "taskinfo": {"image": "x"},
        "resources": {"mincores": 2, "minmemory": 4},
    }
    results = await fetch_json(jp_fetch, "offers", method="POST", body=note_2021, params={"platform": "big"})
    assert results[0]["status"] == "YES"


async def test_offers_answers_yaml_when_asked(jp_fetch):
    response = await jp_fetch(
        "execplanner",
        "api",
        "offers",
        method="POST",
        body=json.dumps(REQUEST),
        params={"platform": "big"},
        headers={"Accept": "application/yaml", "Content-Type": "application/json"},
    )
    assert response.headers["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(response.body)[0]["status"] == "YES"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"compute": {"cores": {"min": 2}}}, "executable"),
        ({"executable": {"kind": "jupyter-notebook"}, "compute": {"memory": {"min": "lots"}}}, "compute.memory.min"),
        ("[1, 2]", None),
        ("{not json", None),
    ],
)
async def test_bad_requests_are_400_naming_the_field(jp_fetch, body, field):
    error = await fetch_json(jp_fetch, "offers", method="POST", body=body, expect=400)
    assert error["message"]
    if field is not None:
        assert error["field"] == field


async def test_unsupported_content_type_is_415(jp_fetch):
    error = await fetch_json(
        jp_fetch, "offers", method="POST", body="<request/>", headers={"Content-Type": "application/xml"}, expect=415
    )
    assert "Content-Type" in error["message"]


async def test_offers_stream_ndjson_gives_every_platform(jp_fetch):
    response = await jp_fetch(
        "execplanner",
        "api",
        "offers",
        "stream",
        method="POST",
        body=json.dumps(REQUEST),
        headers={"Content-Type": "application/json"},
    )
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.body.decode().splitlines() if line.strip()]
    assert sorted(line["platform"] for line in lines) == ["big", "busy", "remote", "small"]
    assert {line["platform"]: line["status"] for line in lines} == {
        "big": "YES",
        "small": "NO",
        "remote": "YES",
        "busy": "NO",
    }


async def test_offers_stream_sse(jp_fetch):
    response = await jp_fetch(
        "execplanner",
        "api",
        "offers",
        "stream",
        method="POST",
        body=json.dumps(REQUEST),
        headers={"Accept": "text/event-stream", "Content-Type": "application/json"},
        params={"platform": "big,small"},
    )
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [block for block in response.body.decode().split("\n\n") if block.startswith("event:")]
    assert [block.splitlines()[0] for block in events] == ["event: result", "event: result", "event: end"]
    results = [json.loads(block.splitlines()[1][len("data: ") :]) for block in events[:2]]
    assert sorted(result["platform"] for result in results) == ["big", "small"]
    assert json.loads(events[2].splitlines()[1][len("data: ") :]) == {"count": 2}


async def test_stream_refuses_unknown_format_before_streaming(jp_fetch):
    error = await fetch_json(
        jp_fetch, "offers", "stream", method="POST", body=REQUEST, params={"format": "xml"}, expect=400
    )
    assert error["field"] == "format"


async def test_session_read_accept_and_sibling_rules_on_static(jp_fetch):
    results = await fetch_json(jp_fetch, "offers", method="POST", body=REQUEST, params={"platform": "big"})
    offer = results[0]["response"]["offers"][0]
    uuid = offer["meta"]["uuid"]
    session = await fetch_json(jp_fetch, "platforms", "big", "sessions", uuid)
    assert session["phase"] == "OFFERED" and session["meta"]["uuid"] == uuid
    accepted = await fetch_json(
        jp_fetch,
        "platforms",
        "big",
        "sessions",
        uuid,
        method="POST",
        body={"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"},
    )
    assert accepted["phase"] == "ACCEPTED"
    assert (await fetch_json(jp_fetch, "platforms", "big", "sessions", uuid))["phase"] == "ACCEPTED"
    conflict = await fetch_json(
        jp_fetch, "platforms", "big", "sessions", uuid, method="POST", body={"phase": "REJECTED"}, expect=409
    )
    assert "ACCEPTED" in conflict["message"]
    cancelled = await fetch_json(
        jp_fetch, "platforms", "big", "sessions", uuid, method="POST", body={"phase": "cancelled"}
    )
    assert cancelled["phase"] == "CANCELLED"


async def test_reject_through_the_proxy_reaches_the_remote_broker(jp_fetch, yes_broker):
    results = await fetch_json(jp_fetch, "offers", method="POST", body=REQUEST, params={"platform": "remote"})
    first, second = (offer["meta"]["uuid"] for offer in results[0]["response"]["offers"])
    rejected = await fetch_json(
        jp_fetch, "platforms", "remote", "sessions", second, method="POST", body={"phase": "REJECTED"}
    )
    assert rejected["phase"] == "REJECTED"
    accepted = await fetch_json(
        jp_fetch, "platforms", "remote", "sessions", first, method="POST", body={"phase": "ACCEPTED"}
    )
    assert accepted["phase"] == "ACCEPTED"
    updates = [r.json() for r in yes_broker.requests if r.method == "POST" and "/sessions/" in r.path]
    assert updates == [
        {"kind": "uri:enum-value-update", "path": "phase", "value": "REJECTED"},
        {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"},
    ]
    missing = await fetch_json(jp_fetch, "platforms", "remote", "sessions", "no-such-session", expect=404)
    assert "not found" in missing["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phase": "RUNNING"}, "phase"),
        ({"phase": "ACCEPTED", "extra": 1}, "extra"),
        ({"kind": "uri:enum-value-update", "path": "phase", "value": "SLEEPING"}, "value"),
        ({"kind": "uri:enum-value-update", "path": "phase"}, "value"),
        ({"value": "ACCEPTED"}, "kind"),
    ],
)
async def test_bad_session_updates_are_400_naming_the_field(jp_fetch, body, field):
    results = await fetch_json(jp_fetch, "offers", method="POST", body=REQUEST, params={"platform": "big"})
    uuid = results[0]["response"]["offers"][0]["meta"]["uuid"]
    error = await fetch_json(jp_fetch, "platforms", "big", "sessions", uuid, method="POST", body=body, expect=400)
    assert error["field"] == field, error
    assert (await fetch_json(jp_fetch, "platforms", "big", "sessions", uuid))["phase"] == "OFFERED"


async def test_unknown_session_and_bad_identifiers(jp_fetch):
    error = await fetch_json(
        jp_fetch, "platforms", "big", "sessions", "0f8fad5b-d9cb-469f-a165-70867728950e", expect=404
    )
    assert "0f8fad5b" in error["message"]
    error = await fetch_json(jp_fetch, "platforms", "big", "sessions", "a.b", expect=400)
    assert error["field"] == "uuid"
    error = await fetch_json(jp_fetch, "platforms", "big", "jobs", "a.b", expect=400)
    assert error["field"] == "id"


async def test_job_follows_the_session_of_a_static_platform(jp_fetch):
    results = await fetch_json(jp_fetch, "offers", method="POST", body=REQUEST, params={"platform": "big"})
    uuid = results[0]["response"]["offers"][0]["meta"]["uuid"]
    await fetch_json(jp_fetch, "platforms", "big", "sessions", uuid, method="POST", body={"phase": "ACCEPTED"})
    job = await fetch_json(jp_fetch, "platforms", "big", "jobs", uuid)
    assert job["platform"] == "big" and job["id"] == uuid and job["phase"] == "ACCEPTED"
    assert job["is_final"] is False and "uws_phase" not in job
    assert job["session"]["meta"]["uuid"] == uuid
    assert "accepted" in job["messages"]
    assert (await fetch_json(jp_fetch, "platforms", "big", "jobs", "not-a-job", expect=404))["message"]


async def test_job_of_a_remote_broker_runs_to_completion(jp_fetch):
    results = await fetch_json(jp_fetch, "offers", method="POST", body=REQUEST, params={"platform": "remote"})
    uuid = results[0]["response"]["offers"][0]["meta"]["uuid"]
    await fetch_json(jp_fetch, "platforms", "remote", "sessions", uuid, method="POST", body={"phase": "ACCEPTED"})
    seen = []
    for _ in range(50):  # the test broker completes 0.3 s after the accept
        job = await fetch_json(jp_fetch, "platforms", "remote", "jobs", uuid)
        seen.append(job["phase"])
        if job["is_final"]:
            break
        await asyncio.sleep(0.05)
    assert seen[0] == "RUNNING" and seen[-1] == "COMPLETED", seen


async def test_unknown_routes_are_json_404(jp_fetch):
    for parts in (("nothing",), ("platforms", "big", "secrets"), ("platforms", "big", "sessions", "x", "y")):
        error = await fetch_json(jp_fetch, *parts, expect=404)
        assert "no such route" in error["message"]
    error = await fetch_json(jp_fetch, "offers", method="GET", expect=405)
    assert error["message"]


# -------------------------------------------------------------------------------------- OpenAPI


def _validator(spec: dict, ref: dict) -> jsonschema.Draft202012Validator:
    """A validator for the schema ``ref`` points to inside the OpenAPI document ``spec``."""
    document = {**spec, "$schema": "https://json-schema.org/draft/2020-12/schema"}
    registry = Registry().with_resource("urn:openapi", Resource.from_contents(document))
    return jsonschema.Draft202012Validator({"$ref": "urn:openapi" + ref["$ref"]}, registry=registry)


async def test_openapi_describes_every_route_and_real_answers_validate(jp_fetch, jp_base_url):
    spec = await fetch_json(jp_fetch, "openapi.json")
    assert spec["openapi"] == "3.1.0"
    assert spec["servers"][0]["url"] == jp_base_url + "execplanner/api"
    from jupyter_server_extension.handlers.api import API_HANDLERS

    routes = {pattern for pattern, *_ in API_HANDLERS}
    assert len(routes) == len(spec["paths"]) + 1  # every route but the JSON 404 is described
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["responses"]["403"], (path, method)
    # every $ref resolves
    text = json.dumps(spec)
    for name in {part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]}:
        assert name in spec["components"]["schemas"], name
    # the real answers of this server are valid against the published schemas
    responses = {
        ("/platforms", "get"): await fetch_json(jp_fetch, "platforms"),
        ("/offers", "post"): await fetch_json(jp_fetch, "offers", method="POST", body=REQUEST),
    }
    uuid = responses[("/offers", "post")][0]["response"]["offers"][0]["meta"]["uuid"]
    responses[("/platforms/{name}/sessions/{uuid}", "post")] = await fetch_json(
        jp_fetch, "platforms", "big", "sessions", uuid, method="POST", body={"phase": "ACCEPTED"}
    )
    responses[("/platforms/{name}/jobs/{id}", "get")] = await fetch_json(jp_fetch, "platforms", "big", "jobs", uuid)
    for (path, method), answer in responses.items():
        schema = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        _validator(spec, schema).validate(answer)
    error = await fetch_json(jp_fetch, "platforms", "ghost", expect=404)
    _validator(
        spec, spec["paths"]["/platforms/{name}"]["get"]["responses"]["404"]["content"]["application/json"]["schema"]
    ).validate(error)
    # and a wrong answer is not: the check can fail
    with pytest.raises(jsonschema.ValidationError):
        _validator(
            spec, spec["paths"]["/platforms"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        ).validate([{"title": "no name"}])
