"""Hosted platforms as ExecutionBroker services on a real Jupyter server (pytest-jupyter, non-root
base_url): requests in JSON, YAML and an older dialect, offer sets, accept/reject, results
downloaded through the authenticated route, per-user allocations and ownership, bad input answered
4xx naming the field, and no overbooking under many concurrent accepts over real HTTP."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import nbformat
import pytest
import yaml
from test_hosted_support import DATA, eventually, extension_config, request_document, write_platforms
from tornado.httpclient import HTTPClientError

from execplanner_widgets.model import format_instant, utcnow

JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml", "Accept": "application/yaml"}
ACCEPT = {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}


@pytest.fixture
def jp_server_config(tmp_path):
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        [
            {
                "name": "gaia",
                "title": "Gaia data mining platform",
                "hosted": {
                    "cores": 4,
                    "memory": 8,
                    "storage": 20,
                    "offers": 3,
                    "offer_ttl": "PT2M",
                    "allocations": {"alice": {"cores": 2}},
                    "local_roots": [str(DATA)],  # a platform for several users copies only from named folders
                    # token-only calls here stand for the server's owner (a platform that serves several
                    # people refuses callers it cannot name: test_attacks checks that)
                    "multi_user": False,
                },
            },
            {"name": "cloud", "title": "A static cloud", "static": {"accepts": ["docker-container"], "cores": 8}},
        ],
    )
    config = extension_config(platforms, tmp_path / "state")
    config["ServerApp"]["identity_provider_class"] = "test_hosted_support.HeaderIdentityProvider"
    return config


def later(hours: float = 1, exact: bool = False) -> str:
    start = format_instant(utcnow() + timedelta(hours=hours))
    return f"{start}/PT0S" if exact else f"{start}/PT12H"


async def call(
    jp_fetch,
    *path: str,
    method: str = "GET",
    body: Any = None,
    user: str | None = None,
    headers: dict | None = None,
    **kwargs,
):
    all_headers = dict(JSON if body is not None and not isinstance(body, (str, bytes)) else {})
    all_headers.update(headers or {})
    if user:
        all_headers["X-Test-User"] = user
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return await jp_fetch("execplanner", "platforms", *path, method=method, body=body, headers=all_headers, **kwargs)


async def ask(jp_fetch, document: dict[str, Any], user: str | None = None) -> dict[str, Any]:
    """``POST requests`` on gaia: the offer set."""
    return json.loads((await call(jp_fetch, "gaia", "requests", method="POST", body=document, user=user)).body)


async def error_of(coroutine) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as caught:
        await coroutine
    response = caught.value.response
    assert response.headers["Content-Type"].startswith("application/json")
    return caught.value.code, json.loads(response.body)


async def test_requests_in_json_yaml_and_an_older_dialect(jp_fetch):
    answer = await ask(jp_fetch, request_document(DATA / "sum_numbers.py", start=later()))
    assert answer["result"] == "YES" and len(answer["offers"]) == 3
    offer = answer["offers"][0]
    assert (
        offer["phase"] == "OFFERED" and offer["expires"] and offer["schedule"]["available"]["start"].endswith("/PT0S")
    )
    assert offer["meta"]["url"].endswith(f"/execplanner/platforms/gaia/sessions/{offer['meta']['uuid']}")
    assert offer["meta"]["messages"][0]["level"] == "INFO" and offer["meta"]["messages"][0]["time"]

    text = yaml.safe_dump(request_document(DATA / "sum_numbers.ipynb", kind="jupyter-notebook", start=later()))
    response = await call(jp_fetch, "gaia", "requests", method="POST", body=text, headers=YAML)
    assert response.headers["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(response.body)["result"] == "YES"

    note_2021 = {
        "tasktype": "python-script",
        "taskinfo": {"location": str(DATA / "sum_numbers.py")},
        "resources": {"mincores": 1, "minmemory": "1G", "minduration": "10m"},
    }
    old = await ask(jp_fetch, note_2021)
    assert old["reponseword"] == "YES"  # answered in the 2021 note's own form (issue 11)

    again = json.loads((await call(jp_fetch, "gaia", "offersets", answer["meta"]["uuid"])).body)
    assert [item["meta"]["uuid"] for item in again["offers"]] == [item["meta"]["uuid"] for item in answer["offers"]]

    description = json.loads((await call(jp_fetch, "gaia")).body)
    assert description["kind"] == "hosted" and description["limits"]["cores"] == 4
    assert description["jobs"].endswith("/execplanner/platforms/gaia/jobs")


async def test_accept_reject_and_conflicts(jp_fetch):
    answer = await ask(jp_fetch, request_document(DATA / "sum_numbers.py", start=later()))
    first, second, third = (offer["meta"]["uuid"] for offer in answer["offers"])
    rejected = json.loads(
        (await call(jp_fetch, "gaia", "sessions", third, method="POST", body={**ACCEPT, "value": "REJECTED"})).body
    )
    assert rejected["phase"] == "REJECTED"
    accepted = json.loads((await call(jp_fetch, "gaia", "sessions", first, method="POST", body=ACCEPT)).body)
    assert accepted["phase"] == "ACCEPTED"
    assert accepted["connectors"][0]["location"].endswith(f"/execplanner/platforms/gaia/jobs/{first}")
    sibling = json.loads((await call(jp_fetch, "gaia", "sessions", second)).body)
    assert sibling["phase"] == "REJECTED"
    code, body = await error_of(call(jp_fetch, "gaia", "sessions", second, method="POST", body=ACCEPT))
    assert code == 409 and "REJECTED" in body["message"]
    code, body = await error_of(call(jp_fetch, "gaia", "sessions", first, method="POST", body=ACCEPT))
    assert code == 409


async def test_bad_input_is_answered_4xx_naming_the_field(jp_fetch):
    cases = [
        ("requests", b"{not json", JSON, 400, None),
        ("requests", {"compute": {"cores": 2}}, None, 400, "executable"),
        ("requests", request_document(DATA / "sum_numbers.py", cores={"min": "many"}), None, 400, "compute.cores.min"),
        (
            "requests",
            request_document(DATA / "sum_numbers.py", duration="soon"),
            None,
            400,
            "schedule.requested.duration",
        ),
        ("requests", b"x=1", {"Content-Type": "text/csv"}, 415, None),
    ]
    for route, body, headers, status, field in cases:
        code, reply = await error_of(call(jp_fetch, "gaia", route, method="POST", body=body, headers=headers))
        assert code == status, (body, reply)
        assert reply["message"]
        if field:
            assert reply["field"] == field, reply
    offer = (await ask(jp_fetch, request_document(DATA / "sum_numbers.py", start=later())))["offers"][0]
    uuid = offer["meta"]["uuid"]
    code, reply = await error_of(
        call(jp_fetch, "gaia", "sessions", uuid, method="POST", body={"kind": "uri:enum-value-update", "path": "phase"})
    )
    assert code == 400 and reply["field"] == "value"
    code, reply = await error_of(
        call(jp_fetch, "gaia", "sessions", uuid, method="POST", body={**ACCEPT, "value": "RUNNING"})
    )
    assert code == 400 and reply["field"] == "value"
    code, reply = await error_of(call(jp_fetch, "gaia", "sessions", "no-such-session"))
    assert code == 404
    code, reply = await error_of(
        call(jp_fetch, "nowhere", "requests", method="POST", body=request_document(DATA / "sum_numbers.py"))
    )
    assert code == 404 and reply["field"] == "platform"
    code, reply = await error_of(
        call(jp_fetch, "cloud", "requests", method="POST", body=request_document(DATA / "sum_numbers.py"))
    )
    assert code == 404 and "not a hosted platform" in reply["message"]


async def test_a_notebook_runs_end_to_end_and_its_results_download(jp_fetch):
    document = request_document(
        DATA / "sum_numbers.ipynb", kind="jupyter-notebook", data=[DATA / "numbers.csv"], duration="PT2M"
    )
    answer = await ask(jp_fetch, document)
    uuid = answer["offers"][0]["meta"]["uuid"]
    await call(jp_fetch, "gaia", "sessions", uuid, method="POST", body=ACCEPT)

    async def completed():
        session = json.loads((await call(jp_fetch, "gaia", "sessions", uuid)).body)
        return session if session["phase"] in ("COMPLETED", "FAILED") else None

    session = await eventually(completed, 90)
    assert session["phase"] == "COMPLETED", session["meta"]["messages"]
    results = {item["id"]: item for item in session["results"]}
    notebook = results["sum_numbers.executed.ipynb"]
    assert notebook["mime-type"] == "application/x-ipynb+json"
    prefix = "/execplanner/platforms/"
    path = notebook["url"].split(prefix, 1)[1].split("/")
    download = await jp_fetch("execplanner", "platforms", *path)
    assert download.headers["Content-Type"].startswith("application/x-ipynb+json")
    assert "attachment" in download.headers["Content-Disposition"]
    executed = nbformat.reads(download.body.decode(), as_version=4)
    assert any(
        output.get("data", {}).get("text/plain") == "12"
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    total = await jp_fetch(
        "execplanner", "platforms", *results["outputs/total.txt"]["url"].split(prefix, 1)[1].split("/")
    )
    assert total.body == b"12"
    code, _ = await error_of(call(jp_fetch, "gaia", "sessions", uuid, "results", "..%2F..%2Fplatforms.yaml"))
    assert code == 404


async def test_results_need_authentication(jp_fetch, jp_serverapp, http_server_client, jp_base_url):
    answer = await ask(jp_fetch, request_document(DATA / "sum_numbers.py", start=later()))
    uuid = answer["offers"][0]["meta"]["uuid"]
    for path in (
        "",
        f"offersets/{answer['meta']['uuid']}",
        f"sessions/{uuid}",
        f"sessions/{uuid}/results/stdout.txt",
        "jobs",
        f"jobs/{uuid}",
    ):
        response = await http_server_client.fetch(f"{jp_base_url}execplanner/platforms/gaia/{path}", raise_error=False)
        assert response.code == 403, path
    for path in ("requests", "direct", f"sessions/{uuid}", "jobs", f"jobs/{uuid}/phase"):
        response = await http_server_client.fetch(
            f"{jp_base_url}execplanner/platforms/gaia/{path}",
            method="POST",
            body=json.dumps(ACCEPT),
            headers=JSON,
            raise_error=False,
        )
        assert response.code == 403, path
    # the offer is untouched
    assert json.loads((await call(jp_fetch, "gaia", "sessions", uuid)).body)["phase"] == "OFFERED"


async def test_allocations_and_ownership_follow_the_jupyter_identity(jp_fetch):
    big = request_document(DATA / "sum_numbers.py", cores=3, start=later())
    alice = await ask(jp_fetch, big, user="alice")
    assert alice["result"] == "NO"
    assert any("your allocation" in message["message"] for message in alice["meta"]["messages"])
    bob = await ask(jp_fetch, big, user="bob")
    assert bob["result"] == "YES"
    uuid = bob["offers"][0]["meta"]["uuid"]
    code, _ = await error_of(call(jp_fetch, "gaia", "sessions", uuid, user="alice"))
    assert code == 404
    code, _ = await error_of(call(jp_fetch, "gaia", "sessions", uuid, method="POST", body=ACCEPT, user="alice"))
    assert code == 404
    assert json.loads((await call(jp_fetch, "gaia", "sessions", uuid, user="bob")).body)["phase"] == "OFFERED"


async def test_direct_runs_at_once_or_explains(jp_fetch):
    session = json.loads(
        (
            await call(
                jp_fetch, "gaia", "direct", method="POST", body=request_document(DATA / "sum_numbers.py", start=later())
            )
        ).body
    )
    assert session["phase"] == "ACCEPTED"
    code, reply = await error_of(
        call(jp_fetch, "gaia", "direct", method="POST", body=request_document(DATA / "sum_numbers.py", cores=40))
    )
    assert code == 400 and reply["phase"] == "REJECTED" and "40 cores" in reply["reasons"][0]


async def test_many_concurrent_requests_and_accepts_never_overbook(jp_fetch, jp_serverapp):
    """24 clients ask for the same instant at once, then accept every offer they got (and each
    other's siblings) at once, over real HTTP: the platform has 4 cores and never books more."""
    window = later(2, exact=True)
    requests = [
        call(
            jp_fetch,
            "gaia",
            "requests",
            method="POST",
            body=request_document(DATA / "sum_numbers.py", cores={"min": 1, "max": 2}, duration="PT1H", start=window),
        )
        for _ in range(24)
    ]
    answers = [json.loads(response.body) for response in await asyncio.gather(*requests)]
    offers = [offer["meta"]["uuid"] for answer in answers if answer["result"] == "YES" for offer in answer["offers"]]
    assert 2 <= len(offers) <= 4  # 1-2 cores each, from 4 cores: the holds leave no room for more
    accepts = [
        call(jp_fetch, "gaia", "sessions", uuid, method="POST", body=ACCEPT, raise_error=False) for uuid in offers * 3
    ]
    responses = await asyncio.gather(*accepts)
    assert {response.code for response in responses} <= {200, 409}
    booked = {uuid for uuid, response in zip(offers * 3, responses, strict=True) if response.code == 200}
    assert booked == set(offers)  # each offer booked exactly once (the others got 409)
    sessions = [json.loads((await call(jp_fetch, "gaia", "sessions", uuid)).body) for uuid in booked]
    assert sum(session["compute"]["cores"]["max"] for session in sessions) <= 4
    start = utcnow() + timedelta(hours=2)
    extension = next(app for app in _extension_apps(jp_serverapp) if app.name == "execplanner")
    peak = await extension.federation.get("gaia").peak_usage(
        start - timedelta(minutes=1), start + timedelta(hours=1, minutes=1)
    )
    assert peak[0] <= 4


def _extension_apps(serverapp) -> list[Any]:
    apps = []
    for extension in serverapp.extension_manager.extensions.values():
        for point in extension.extension_points.values():
            if point.app is not None:
                apps.append(point.app)
    return apps
