"""The proxy reaches only configured platforms, sends each platform's token only to that platform,
limits what goes in and comes out, and never answers HTML.

Every "was it contacted?" check uses a real HTTP server on 127.0.0.1 (tests/brokers.py) that
records each request and its headers: an ``evil`` server that is never configured, and brokers
on the same host with different ports for the credential checks.
"""

from __future__ import annotations

import json
import logging

import pytest
from brokers import answer_yes, garbage, huge, redirect, run_broker, static_entry, status, write_platforms

REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 1}}}
TOKEN_A = "tok-A-3c9a1f0e8b7d45a2b1c6e0f9d8a7b6c5"
TOKEN_B = "tok-B-91e2d3c4b5a6978877665544332211ff"
TOKEN_REDIRECTING = "tok-R-00aa11bb22cc33dd44ee55ff66778899"


@pytest.fixture
def evil():
    """A server that must never be contacted."""
    with run_broker(answer_yes()) as broker:
        yield broker


@pytest.fixture
def broker_a():
    with run_broker(answer_yes(offers=2)) as broker:
        yield broker


@pytest.fixture
def broker_b():
    with run_broker(answer_yes()) as broker:
        yield broker


@pytest.fixture
def redirecting(evil, broker_b):
    """Answers 302/303/307 alternately, to the evil server and to broker B."""
    targets = iter([(302, evil), (303, broker_b), (307, evil), (302, broker_b)] * 10)

    def behave(recorded, broker):
        code, target = next(targets)
        return redirect(f"{target.url}requests", status_code=code)(recorded, broker)

    with run_broker(behave) as broker:
        yield broker


@pytest.fixture
def html_broker():
    """Answers an HTML page with a script to everything."""
    with run_broker(garbage()) as broker:
        yield broker


@pytest.fixture
def failing():
    """Answers 500 with markup in its message."""
    with run_broker(status(500, {"message": "<b>boom</b><script>alert(1)</script>"})) as broker:
        yield broker


@pytest.fixture
def big_brokers():
    """Two valid answers of 300 kB, one with a Content-Length and one chunked (no declared length)."""
    with run_broker(huge(300_000)) as declared, run_broker(huge(300_000, chunked=True)) as chunked:
        yield declared, chunked


@pytest.fixture
def jp_server_config(tmp_path, monkeypatch, broker_a, broker_b, redirecting, html_broker, failing, big_brokers):
    monkeypatch.setenv("PLATFORM_A_TOKEN", TOKEN_A)
    monkeypatch.setenv("REDIRECTING_TOKEN", TOKEN_REDIRECTING)
    (tmp_path / "b.token").write_text(TOKEN_B + "\n")
    with run_broker() as gone:
        pass  # closed at once: a configured platform that is down
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        [
            static_entry("local"),
            broker_a.entry("alpha", token_env="PLATFORM_A_TOKEN"),
            broker_b.entry("beta", token_file="b.token"),
            redirecting.entry("redirecting", token_env="REDIRECTING_TOKEN"),
            html_broker.entry("html"),
            failing.entry("failing"),
            gone.entry("down"),
            big_brokers[0].entry("big"),
            big_brokers[1].entry("bigchunked"),
        ],
        timeout=5,
    )
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_server_extension": True}},
        "ExecPlanner": {
            "platforms_file": str(platforms),
            "data_dir": str(tmp_path / "data"),
            "max_body_bytes": 20_000,
            "max_answer_bytes": 100_000,
        },
    }


async def call(http_server_client, jp_base_url, jp_auth_header, method, path, body=None, **headers):
    """One raw API call (the path is sent exactly as given, encoded characters included)."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return await http_server_client.fetch(
        f"{jp_base_url}execplanner/api/{path}",
        method=method,
        body=body,
        headers={"Content-Type": "application/json", **jp_auth_header, **headers},
        raise_error=False,
        follow_redirects=False,
        request_timeout=30,
    )


@pytest.fixture
def api(http_server_client, jp_base_url, jp_auth_header, jp_serverapp):
    answers = []

    async def fetch(method, path, body=None, expect=None, **headers):
        response = await call(http_server_client, jp_base_url, jp_auth_header, method, path, body, **headers)
        answers.append(response)
        if expect is not None:
            assert response.code == expect, (path, response.code, response.body[:300])
        return response

    fetch.answers = answers
    return fetch


def as_json(response):
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith(("application/json", "application/x-ndjson", "text/event-stream")), content_type
    return json.loads(response.body)


# ------------------------------------------------------------------------ only configured hosts

URLISH_NAMES = [
    "..%2F",
    "..%2F..%2F..%2Fapi%2Fcontents",
    "%2e%2e",
    "%2E%2E%2Fevil",
    "http:%2F%2Fevil",
    "http%3A%2F%2F127.0.0.1%3A{port}%2Fbroker%2F",
    "evil@127.0.0.1",
    "alpha@127.0.0.1:{port}",
    "127.0.0.1:{port}",
    "ALPHA",
    "alpha%00",
    "alpha%20",
    "evil",
]


@pytest.mark.parametrize("name", URLISH_NAMES)
async def test_urlish_and_unknown_names_are_404_and_reach_nothing(api, evil, broker_a, name):
    name = name.format(port=evil.port)
    for path in (f"platforms/{name}", f"platforms/{name}/sessions/abc", f"platforms/{name}/jobs/abc"):
        response = await api("GET", path)
        assert response.code == 404, (path, response.code)
        assert "message" in as_json(response)
    response = await api("POST", f"platforms/{name}/sessions/abc", {"phase": "ACCEPTED"}, expect=404)
    for path in (f"offers?platform={name}", f"offers/stream?platform={name}"):
        response = await api("POST", path, REQUEST, expect=404)
        assert as_json(response)["field"] == "platform"
    assert evil.requests == []
    assert broker_a.requests == []


@pytest.mark.parametrize(
    "uuid", ["..%2F..%2Frequests", "%2e%2e", "a%2Fb", "x@127.0.0.1", "http:%2F%2Fevil", "a.b", "-x", "x" * 200]
)
async def test_tricky_session_ids_never_reach_the_platform(api, broker_a, evil, uuid):
    for method, path, body in (
        ("GET", f"platforms/alpha/sessions/{uuid}", None),
        ("POST", f"platforms/alpha/sessions/{uuid}", {"phase": "ACCEPTED"}),
        ("GET", f"platforms/alpha/jobs/{uuid}", None),
    ):
        response = await api(method, path, body)
        assert response.code in (400, 404), (path, response.code)
        assert "message" in as_json(response)
    assert broker_a.requests == []
    assert evil.requests == []


async def test_dot_segments_do_not_escape_the_api(api, evil):
    for path in ("platforms/../../api/contents", "platforms/alpha/../../../api/status", "..%2F..%2Fapi%2Fstatus"):
        response = await api("GET", path, expect=404)
        assert "message" in as_json(response)
    assert evil.requests == []


async def test_redirects_to_other_origins_are_not_followed(api, redirecting, evil, broker_b):
    for _ in range(4):  # 302 to evil, 303 to beta, 307 to evil, 302 to beta
        results = as_json(await api("POST", "offers?platform=redirecting", REQUEST, expect=200))
        assert results[0]["status"] == "ERROR"
        assert "redirected to another origin" in results[0]["error"]
    response = await api("GET", "platforms/redirecting/sessions/abc", expect=502)
    assert "redirected" in as_json(response)["message"]
    assert len(redirecting.requests) == 5
    assert evil.requests == []
    assert broker_b.requests == []


# ---------------------------------------------------------------------------------- credentials


async def test_each_token_goes_only_to_its_own_platform(
    api, broker_a, broker_b, redirecting, evil, caplog, jp_logging_stream
):
    caplog.set_level(logging.DEBUG)
    results = as_json(await api("POST", "offers", REQUEST, expect=200))
    by_name = {result["platform"]: result for result in results}
    assert by_name["alpha"]["status"] == "YES" and by_name["beta"]["status"] == "YES"
    offer_a = by_name["alpha"]["response"]["offers"][0]["meta"]["uuid"]
    offer_b = by_name["beta"]["response"]["offers"][0]["meta"]["uuid"]
    await api("GET", f"platforms/alpha/sessions/{offer_a}", expect=200)
    await api("POST", f"platforms/alpha/sessions/{offer_a}", {"phase": "ACCEPTED"}, expect=200)
    await api("GET", f"platforms/alpha/jobs/{offer_a}", expect=200)
    await api("POST", f"platforms/beta/sessions/{offer_b}", {"phase": "REJECTED"}, expect=200)
    await api("GET", "platforms/beta/sessions/unknown-session", expect=404)
    await api("POST", "offers/stream?format=sse", REQUEST, expect=200)
    await api("GET", "platforms", expect=200)
    await api("GET", "platforms/alpha", expect=200)
    await api("GET", "openapi.json", expect=200)

    # every request to A carried A's token, and only A's
    assert broker_a.requests and all(r.headers.get("Authorization") == f"Bearer {TOKEN_A}" for r in broker_a.requests)
    assert broker_b.requests and all(r.headers.get("Authorization") == f"Bearer {TOKEN_B}" for r in broker_b.requests)
    for token, others in (
        (TOKEN_A, (broker_b, redirecting, evil)),
        (TOKEN_B, (broker_a, redirecting, evil)),
        (TOKEN_REDIRECTING, (broker_a, broker_b, evil)),
    ):
        for other in others:
            assert not any(token in value for value in other.header_values()), (token, other.url)
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN_REDIRECTING}" for r in redirecting.requests)
    # never in an answer, never in the log
    for response in api.answers:
        for token in (TOKEN_A, TOKEN_B, TOKEN_REDIRECTING):
            assert token.encode() not in response.body
            assert all(token not in value for _, value in response.headers.get_all())
    log_text = caplog.text + jp_logging_stream.getvalue()
    assert "POST /a%40b/execplanner/api/offers" in log_text  # the log was captured
    for token in (TOKEN_A, TOKEN_B, TOKEN_REDIRECTING):
        assert token not in log_text
        assert token[-12:] not in log_text


# ------------------------------------------------------------------------------------ limits


@pytest.mark.parametrize("path", ["offers", "offers/stream", "platforms/local/sessions/abc"])
async def test_bodies_over_the_limit_are_413(api, path):
    body = {**REQUEST, "padding": "x" * 30_000}
    response = await api("POST", path, body, expect=413)
    assert "20000 bytes" in as_json(response)["message"]


async def test_answers_over_the_limit_and_invalid_answers_are_errors_not_500(api):
    results = {r["platform"]: r for r in as_json(await api("POST", "offers", REQUEST, expect=200))}
    assert results["local"]["status"] == "YES"
    assert results["big"]["status"] == "ERROR" and "100000" in results["big"]["error"]
    assert results["bigchunked"]["status"] == "ERROR" and "100000" in results["bigchunked"]["error"]
    assert results["down"]["status"] == "ERROR" and "cannot connect" in results["down"]["error"]
    assert results["failing"]["status"] == "ERROR"


async def test_no_answer_is_html_whatever_the_platforms_write(api):
    """Platform text (an HTML page with a script, an error with markup) reaches clients only inside JSON."""
    results = {r["platform"]: r for r in as_json(await api("POST", "offers", REQUEST, expect=200))}
    assert results["html"]["status"] == "ERROR"
    assert "not JSON" in results["html"]["error"] and "<script>" not in results["html"]["error"]
    assert results["failing"]["status"] == "ERROR" and "boom" in results["failing"]["error"]
    calls = [
        ("POST", "offers", REQUEST),
        ("POST", "offers/stream", REQUEST),
        ("POST", "offers/stream?format=sse", REQUEST),
        ("GET", "platforms", None),
        ("GET", "platforms/html/sessions/abc", None),
        ("GET", "platforms/failing/jobs/abc", None),
        ("POST", "platforms/failing/sessions/abc", {"phase": "ACCEPTED"}),
        ("GET", "platforms/%3Cscript%3Ealert(1)%3C%2Fscript%3E", None),
        ("GET", "nothing/%3Cb%3Ehere%3C%2Fb%3E", None),
        ("GET", "openapi.json", None),
        ("PUT", "offers", REQUEST),
    ]
    for method, path, body in calls:
        response = await api(method, path, body)
        content_type = response.headers.get("Content-Type", "")
        assert content_type.split(";")[0] in ("application/json", "application/x-ndjson", "text/event-stream"), (
            path,
            content_type,
        )
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path
        if b"<script>" in response.body:  # platform markup, if any, is a string inside JSON
            assert content_type.startswith(("application/json", "application/x-ndjson", "text/event-stream"))
