"""Clients of every generation ask a hosted platform over real HTTP and understand its answer.

A real Jupyter server (pytest-jupyter, non-root base URL) with a hosted platform is asked the way each
client in the wild asks: the ExecutionBroker v1.0 clients and the prototype's Python client
(``path: "/phase"``, ``POST offersets``, absolute ``meta.url`` followed as is), XML and YAML bodies
and answers, the 2025 prototype's ``type:``/``computer:`` documents, the 2021 note (its transport too)
and the 2022 note (its ``requests`` wrapper, a lease sent back with ``status: ACCEPTED``). Each answer
is read back with this project's own readers, and links in older-dialect answers keep the dialect.
"""

from __future__ import annotations

import json
import uuid as uuid_module
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jupyter_live import run_jupyter_server
from test_hosted_support import DATA, extension_config, request_document, write_platforms
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from execplanner_widgets.model import ExecutionSession, OfferSetResponse, format_instant, kind_uri, utcnow
from execplanner_widgets.model.answer_dialects import read_answer
from execplanner_widgets.model.broker_xml import from_xml, to_xml

PROTOTYPE = Path(__file__).resolve().parent / "data" / "prototype"
JSON = {"Content-Type": "application/json"}
ACCEPT = {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}
PUBLIC = "https://science.example.org/jupyter/execplanner/platforms/edge/"


@pytest.fixture
def jp_server_config(tmp_path):
    hosted = {"cores": 4, "memory": 8, "storage": 20, "offers": 2, "offer_ttl": "PT2M"}
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        [
            {"name": "gaia", "hosted": dict(hosted)},
            {"name": "edge", "hosted": {**hosted, "public_url": PUBLIC}},
        ],
    )
    config = extension_config(platforms, tmp_path / "state")
    return config


def later(hours: float = 1) -> str:
    return f"{format_instant(utcnow() + timedelta(hours=hours))}/PT12H"


def notebook(**kwargs: Any) -> dict[str, Any]:
    return request_document(DATA / "sum_numbers.ipynb", kind="jupyter-notebook", data=[DATA / "numbers.csv"], **kwargs)


async def call(jp_fetch, *path: str, method: str = "GET", body: Any = None, headers: dict | None = None, **kw):
    all_headers = dict(JSON if body is not None and not isinstance(body, (str, bytes)) else {})
    all_headers.update(headers or {})
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return await jp_fetch("execplanner", "platforms", *path, method=method, body=body, headers=all_headers, **kw)


async def ask(jp_fetch, *path: str, **kwargs: Any) -> Any:
    return json.loads((await call(jp_fetch, *path, **kwargs)).body)


async def follow(url: str, auth: dict[str, str], *, method: str = "GET", body: Any = None, headers=None) -> Any:
    """What a client does with a link from an answer: fetch it exactly as given."""
    all_headers = {**auth, **(headers or {})}
    if body is not None and not isinstance(body, (str, bytes)):
        body, all_headers["Content-Type"] = json.dumps(body), "application/json"
    return await AsyncHTTPClient().fetch(url, method=method, body=body, headers=all_headers)


async def refused(coroutine) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as caught:
        await coroutine
    return caught.value.code, json.loads(caught.value.response.body)


# ------------------------------------------------------------------ ExecutionBroker v1.0 clients


async def test_answers_carry_absolute_urls_that_clients_can_follow(jp_fetch, jp_auth_header):
    answer = await ask(jp_fetch, "gaia", "requests", method="POST", body=notebook(start=later()))
    assert (
        answer["meta"]["url"].startswith("http://")
        and "/execplanner/platforms/gaia/offersets/" in answer["meta"]["url"]
    )
    offer = answer["offers"][0]
    assert offer["meta"]["url"].startswith("http://")
    again = json.loads((await follow(offer["meta"]["url"], jp_auth_header)).body)
    assert again["meta"]["uuid"] == offer["meta"]["uuid"] and again["meta"]["url"] == offer["meta"]["url"]
    accepted = json.loads((await follow(offer["meta"]["url"], jp_auth_header, method="POST", body=ACCEPT)).body)
    assert accepted["phase"] == "ACCEPTED" and accepted["connectors"][0]["location"].startswith("http://")

    behind_proxy = await ask(jp_fetch, "edge", "requests", method="POST", body=notebook(start=later()))
    assert behind_proxy["meta"]["url"].startswith(PUBLIC + "offersets/")
    assert behind_proxy["offers"][0]["meta"]["url"].startswith(PUBLIC + "sessions/")


async def test_phase_updates_as_the_prototype_client_sends_them(jp_fetch):
    offers = (await ask(jp_fetch, "gaia", "requests", method="POST", body=notebook(start=later())))["offers"]
    pointer = await ask(
        jp_fetch, "gaia", "sessions", offers[0]["meta"]["uuid"], method="POST", body={**ACCEPT, "path": "/phase"}
    )
    assert pointer["phase"] == "ACCEPTED"
    code, body = await refused(
        call(jp_fetch, "gaia", "sessions", offers[0]["meta"]["uuid"], method="POST", body={**ACCEPT, "path": "/cores"})
    )
    assert code == 400 and body["field"] and body["message"]


async def test_post_offersets_is_post_requests(jp_fetch):
    """The schema's path until June 2026, which the prototype still posts to."""
    answer = await ask(jp_fetch, "gaia", "offersets", method="POST", body=notebook(start=later()))
    assert answer["result"] == "YES" and "/offersets/" in answer["meta"]["url"]
    assert (await ask(jp_fetch, "gaia", "offersets", answer["meta"]["uuid"]))["meta"]["uuid"] == answer["meta"]["uuid"]


async def test_direct_refusal_is_a_rejected_session_with_its_kind(jp_fetch):
    code, body = await refused(call(jp_fetch, "gaia", "direct", method="POST", body=notebook(cores=64)))
    assert code == 400
    assert body["kind"] == kind_uri("session", "scheduled-execution-session") and body["phase"] == "REJECTED"
    assert body["message"] and body["meta"]["messages"]
    assert ExecutionSession.model_validate(body).phase.value == "REJECTED"


async def test_xml_and_yaml_bodies_and_answers(jp_fetch):
    xml_request = to_xml(notebook(start=later()), "offers-request")
    response = await call(
        jp_fetch,
        "gaia",
        "requests",
        method="POST",
        body=xml_request,
        headers={"Content-Type": "application/xml", "Accept": "application/xml"},
    )
    assert response.headers["Content-Type"].startswith("application/xml")
    root, document = from_xml(response.body)
    assert root == "offers-response"
    offerset = OfferSetResponse.model_validate(document)
    assert offerset.result == "YES" and offerset.offers[0].meta.url.startswith("http://")

    update = to_xml(ACCEPT, "update")
    accepted = await call(
        jp_fetch,
        "gaia",
        "sessions",
        offerset.offers[0].meta.uuid,
        method="POST",
        body=update,
        headers={"Content-Type": "application/xml", "Accept": "application/yaml;q=0.9, application/json;q=0.5"},
    )
    assert accepted.headers["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(accepted.body)["phase"] == "ACCEPTED"

    code, body = await refused(
        call(
            jp_fetch,
            "gaia",
            "requests",
            method="POST",
            body=b"<offers-request><executable>",
            headers={"Content-Type": "application/xml"},
        )
    )
    assert code == 400 and "XML" in body["message"]
    hostile = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><offers-request>&x;</offers-request>'
    code, body = await refused(
        call(jp_fetch, "gaia", "requests", method="POST", body=hostile, headers={"Content-Type": "application/xml"})
    )
    assert code == 400 and "DOCTYPE" in body["message"]


# ------------------------------------------------------------------------ the 2025 prototype


def prototype_request(name: str) -> str:
    return (PROTOTYPE / name).read_text().replace("NOTEBOOK", str(DATA / "sum_numbers.ipynb"))


async def test_prototype_documents_are_answered_in_the_prototype_form(jp_fetch, jp_auth_header):
    response = await call(
        jp_fetch,
        "gaia",
        "requests",
        method="POST",
        body=prototype_request("notebook-request.yaml"),
        headers={"Content-Type": "application/yaml", "Accept": "application/yaml"},
    )
    answer = yaml.safe_load(response.body)
    assert answer["type"].endswith("/offerset/offerset-response-1.0") and answer["result"] == "YES"
    assert answer["href"].startswith("http://") and answer["href"].endswith("?dialect=prototype-2025")
    offer = answer["offers"][0]
    assert offer["computer"]["type"].endswith("/types/computer/simple-compute-resource-1.0")
    assert offer["executable"]["type"].endswith("/types/executable/jupyter-notebook-1.0")
    assert "kind" not in offer and "meta" not in offer and offer["phase"] == "OFFERED"
    assert OfferSetResponse.model_validate(read_answer(answer)).offers[0].cores is not None

    again = yaml.safe_load((await follow(offer["href"], jp_auth_header, headers={"Accept": "application/yaml"})).body)
    assert again["uuid"] == offer["uuid"] and "computer" in again
    wrapped = yaml.safe_load((PROTOTYPE / "reject-update.yaml").read_text())
    sibling = answer["offers"][1]
    rejected = json.loads((await follow(sibling["href"], jp_auth_header, method="POST", body=wrapped)).body)
    assert rejected["phase"] == "REJECTED"
    update = yaml.safe_load((PROTOTYPE / "accept-update.json").read_text())
    accepted = json.loads((await follow(offer["href"], jp_auth_header, method="POST", body=update)).body)
    assert accepted["phase"] == "ACCEPTED" and accepted["type"].endswith("execution-session-response-1.0")


async def test_prototype_script_request_in_json(jp_fetch):
    body = (PROTOTYPE / "script-request.json").read_text().replace("SCRIPT", str(DATA / "sum_numbers.py"))
    answer = await ask(jp_fetch, "gaia", "requests", method="POST", body=body, headers=JSON)
    assert answer["result"] == "YES" and answer["offers"][0]["executable"]["type"].endswith("python-script-1.0")
    said = " ".join(item["message"] for item in answer["offers"][0]["messages"])
    assert "extension" in said


# ------------------------------------------------------------------------------ the 2021 note


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid_module.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: application/json\r\n\r\n{value}\r\n"
        )
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def test_2021_clients_ask_and_are_answered_in_their_form(jp_fetch, jp_auth_header):
    task = {
        "tasktype": "uri://jupyter-notebook",
        "taskinfo": {"notebook": str(DATA / "sum_numbers.ipynb")},
        "resources": {"mincores": 1, "minmemory": "1G", "minduration": "2m"},
    }
    yes = await ask(jp_fetch, "gaia", "requests", method="POST", body=task)
    assert yes["reponseword"] == "YES" and yes["serviceinfo"]["offers"]
    assert yes["resources"]["mincores"] >= 1

    accepts = await ask(jp_fetch, "gaia", "accepts", params={"tasktype": "uri://jupyter-notebook"})
    assert accepts["reponseword"] == "YES" and accepts["serviceinfo"]["endpoint"].startswith("http://")
    nope = await ask(jp_fetch, "gaia", "accepts", params={"tasktype": "uri://docker-container"})
    assert nope["reponseword"] == "NO" and nope["messages"]
    code, body = await refused(call(jp_fetch, "gaia", "accepts"))
    assert code == 400 and body["field"] == "tasktype"

    fields = {
        "tasktype": task["tasktype"],
        "taskinfo": json.dumps(task["taskinfo"]),
        "resources": json.dumps(task["resources"]),
    }
    body, content_type = multipart(fields)
    form = await ask(jp_fetch, "gaia", "accept", method="POST", body=body, headers={"Content-Type": content_type})
    assert form["reponseword"] == "YES"
    endpoint = form["serviceinfo"]["offers"][0]["endpoint"]
    assert endpoint.endswith("?dialect=note-2021")
    session = json.loads((await follow(endpoint, jp_auth_header, method="POST", body=ACCEPT)).body)
    assert session["reponseword"] == "YES" and session["serviceinfo"]["phase"] == "ACCEPTED"

    big, content_type = multipart({"tasktype": "uri://jupyter-notebook", "resources": json.dumps({"mincores": 64})})
    no = await ask(jp_fetch, "gaia", "accept", method="POST", body=big, headers={"Content-Type": content_type})
    assert no["reponseword"] == "NO" and no["messages"]


# ------------------------------------------------------------------------------ the 2022 note


async def test_2022_clients_send_the_wrapper_and_accept_a_lease_by_sending_it_back(
    jp_fetch, jp_auth_header, reference_dir
):
    example = json.loads(
        (reference_dir / "ep-note-2022/examples/jupyter-notebook/jupyter-notebook-001-02-request.json").read_text()
    )
    example["startdate"] = format_instant(utcnow() + timedelta(hours=1))
    example["task"]["task"] = {"notebook": str(DATA / "sum_numbers.ipynb")}
    example["task"]["data-resources"] = [{"name": "numbers", "location": str(DATA / "numbers.csv")}]
    answer = await ask(jp_fetch, "gaia", "requests", method="POST", body={"requests": [example]})
    lease = answer["offers"][0]
    assert lease["status"] == "OFFERED" and lease["startdate"] and lease["enddate"] and lease["expirydate"]
    assert lease["url"].startswith("http://") and lease["url"].endswith("?dialect=note-2022")

    accepted = json.loads(
        (await follow(lease["url"], jp_auth_header, method="POST", body={**lease, "status": "ACCEPTED"})).body
    )
    assert accepted["status"] == "ACCEPTED" and accepted["uuid"] == lease["uuid"]
    later_lease = json.loads((await follow(lease["url"], jp_auth_header)).body)
    assert later_lease["status"] == "ACCEPTED"

    code, body = await refused(call(jp_fetch, "gaia", "requests", method="POST", body={"requests": [example, example]}))
    assert code == 400 and body["field"] == "requests"


def test_behind_a_tls_proxy_links_keep_the_public_scheme_and_host(tmp_path):
    """A real ``jupyter server`` process with ``trust_xheaders``, asked as a TLS-terminating proxy
    forwards a request: the links say https and the public host (the provider's guide, on public URLs)."""
    platforms = write_platforms(tmp_path / "platforms.yaml", [{"name": "gaia", "hosted": {"cores": 2, "memory": 4}}])
    extra = {"ServerApp": {"trust_xheaders": True, "local_hostnames": ["localhost", "science.example.org"]}}
    with run_jupyter_server(tmp_path / "server", platforms, extra_config=extra) as server:
        headers = {
            "Authorization": f"token {server.token}",
            "X-Forwarded-Proto": "https",
            "Host": "science.example.org",
            "Content-Type": "application/json",
        }
        body = json.dumps(request_document(DATA / "sum_numbers.py", start=later()))
        answer = httpx.post(
            server.url + "execplanner/platforms/gaia/requests", content=body, headers=headers, timeout=30
        )
        answer = answer.json()
    prefix = "https://science.example.org/jupyter/user/ada/execplanner/platforms/gaia/"
    assert answer["meta"]["url"].startswith(prefix + "offersets/"), answer
    assert answer["offers"][0]["meta"]["url"].startswith(prefix + "sessions/")


async def test_a_broker_platform_speaking_the_prototype_dialect_books_here(
    jp_fetch, jp_auth_header, http_server_port, jp_base_url
):
    """Both sides of this project interoperate in the 2025 form: ``BrokerPlatform`` with
    ``dialect: prototype-2025`` asks this server, which answers in that form."""
    from execplanner_widgets.model import parse_request, phase_update
    from execplanner_widgets.platforms.broker import BrokerOptions, BrokerPlatform

    url = f"http://127.0.0.1:{http_server_port[-1]}{jp_base_url}execplanner/platforms/gaia/"
    token = jp_auth_header["Authorization"].split(" ", 1)[1]
    broker = BrokerPlatform("here", options=BrokerOptions(url=url, dialect="prototype-2025"), token=token)
    try:
        answer = await broker.offers(parse_request(prototype_request("notebook-request.yaml")))
        assert answer.result == "YES" and answer.offers[0].meta.url.startswith("http://127.0.0.1:")
        accepted = await broker.update_session(answer.offers[0].meta.uuid, phase_update("ACCEPTED"))
        assert accepted.phase.value == "ACCEPTED"
        # read back: booked (the scheduler may already have moved it on to WAITING for its start)
        assert (await broker.session(answer.offers[0].meta.uuid)).phase.value in {"ACCEPTED", "WAITING"}
    finally:
        await broker.aclose()
