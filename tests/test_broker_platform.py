"""BrokerPlatform and the federation against real ExecutionBroker services on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid as uuid_module

import pytest
from brokers import Reply, answer_no, answer_yes, garbage, hang, run_broker

from execplanner_widgets import SessionPhase, parse_request
from execplanner_widgets.core.config import build_federation, default_context, load_platforms_file
from execplanner_widgets.core.platform import PlatformContext, PlatformError, SessionConflict, SessionNotFound
from execplanner_widgets.platforms.broker import BrokerPlatform

REQUEST = parse_request(
    {
        "executable": {"kind": "jupyter-notebook", "location": "x.ipynb"},
        "compute": {"cores": {"min": 2}, "memory": {"min": 4}},
    }
)


def broker_platform(url: str, tmp_path, **options) -> BrokerPlatform:
    return BrokerPlatform.from_config(
        "remote", "Remote broker", {"url": url, **options}, PlatformContext(data_dir=tmp_path)
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_offers_accept_and_session_over_http(tmp_path):
    with run_broker(answer_yes(offers=3)) as broker:
        platform = broker_platform(broker.url, tmp_path)

        async def scenario():
            answer = await platform.offers(REQUEST)
            assert answer.result == "YES" and len(answer.offers) == 3
            starts = [offer.start for offer in answer.offers]
            assert starts == sorted(starts) and len(set(starts)) == 3
            accepted = await platform.accept(answer.offers[0].uuid)
            assert accepted.phase is SessionPhase.ACCEPTED
            assert (await platform.session(answer.offers[0].uuid)).phase is SessionPhase.ACCEPTED
            with pytest.raises(SessionConflict, match="cannot change ACCEPTED to ACCEPTED"):
                await platform.accept(answer.offers[0].uuid)
            with pytest.raises(SessionNotFound):
                await platform.session(str(uuid_module.uuid4()))
            await platform.aclose()

        asyncio.run(scenario())
        posted = [r for r in broker.requests if r.method == "POST"]
        assert posted[0].path == "/broker/requests"
        assert posted[0].json()["executable"]["kind"].endswith("/executable/jupyter-notebook.yaml")
        assert posted[1].json() == {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}


def test_no_answer_keeps_its_reasons(tmp_path):
    with run_broker(answer_no("needs 220 cores; this platform has at most 32")) as broker:
        answer = asyncio.run(broker_platform(broker.url, tmp_path).offers(REQUEST))
    assert answer.result == "NO"
    assert answer.reasons == ["needs 220 cores; this platform has at most 32"]


def test_303_to_the_offer_set_is_followed_within_the_origin(tmp_path):
    offerset = {"result": "NO", "meta": {"uuid": "set-1", "messages": [{"message": "busy"}]}}

    def behave(recorded, broker):
        if recorded.method == "POST":
            return Reply(303, b"", {"Location": "/broker/offersets/set-1"})
        return Reply.json(offerset)

    with run_broker(behave) as broker:
        answer = asyncio.run(broker_platform(broker.url, tmp_path).offers(REQUEST))
        assert answer.reasons == ["busy"]
        assert [(r.method, r.path) for r in broker.requests] == [
            ("POST", "/broker/requests"),
            ("GET", "/broker/offersets/set-1"),
        ]


def test_token_goes_to_the_broker_and_never_into_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("REMOTE_TOKEN", "s3cr3t-token")
    with run_broker(answer_yes()) as broker:
        platform = broker_platform(broker.url, tmp_path, token_env="REMOTE_TOKEN")
        asyncio.run(platform.offers(REQUEST))
        assert broker.requests[0].headers["Authorization"] == "Bearer s3cr3t-token"
        assert "s3cr3t" not in repr(platform) and "s3cr3t" not in str(platform.describe())


def test_unsafe_identifiers_never_reach_the_wire(tmp_path):
    with run_broker(answer_yes()) as broker:
        platform = broker_platform(broker.url, tmp_path)
        for bad in ("../../admin", "a/b", "%2e%2e", "x?y=1", ""):
            with pytest.raises(PlatformError):
                asyncio.run(platform.session(bad))
        assert broker.requests == []


def test_federation_with_a_slow_a_down_and_a_hanging_broker(tmp_path):
    down_url = f"http://127.0.0.1:{free_port()}/broker/"
    with run_broker(answer_yes(delay=0.5)) as slow, run_broker(answer_yes()) as fast, run_broker(hang()) as stuck:
        path = tmp_path / "platforms.yaml"
        path.write_text(
            "timeout: 3\nplatforms:\n"
            f"  - {{name: slow, title: Slow, broker: {{url: '{slow.url}'}}}}\n"
            f"  - {{name: down, title: Down, broker: {{url: '{down_url}'}}}}\n"
            f"  - {{name: stuck, title: Stuck, timeout: 1, broker: {{url: '{stuck.url}'}}}}\n"
            f"  - {{name: fast, title: Fast, broker: {{url: '{fast.url}'}}}}\n"
        )
        federation = build_federation(load_platforms_file(path), default_context(tmp_path))

        async def scenario():
            started = time.perf_counter()
            results = await federation.offers(REQUEST)
            took = time.perf_counter() - started
            order = [item.platform async for item in federation.stream_offers(REQUEST)]
            await federation.aclose()
            return results, took, order

        results, took, order = asyncio.run(scenario())
    by_name = {result.platform: result for result in results}
    assert [result.platform for result in results] == ["slow", "down", "stuck", "fast"]
    assert by_name["slow"].status == "YES" and by_name["slow"].elapsed >= 0.5
    assert by_name["fast"].status == "YES"
    assert by_name["down"].status == "ERROR" and "cannot connect" in by_name["down"].error
    assert by_name["stuck"].status == "ERROR" and "timeout" in by_name["stuck"].error
    assert took < 3  # bounded by the slowest timeout (1 s), not the sum of latencies
    assert order.index("fast") < order.index("slow") < order.index("stuck")


def test_a_token_that_would_break_the_request_is_refused_without_showing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("REMOTE_TOKEN", "s3cr3t\r\nX-Injected: 1")
    with run_broker(answer_yes()) as broker:
        platform = broker_platform(broker.url, tmp_path, token_env="REMOTE_TOKEN")
        with pytest.raises(PlatformError) as caught:
            asyncio.run(platform.offers(REQUEST))
        assert "token" in str(caught.value) and "s3cr3t" not in str(caught.value)
        assert broker.requests == []


V1_ANSWER = {
    "result": "yes",
    "messages": [{"level": "info", "message": "one slot left"}],
    "offers": [
        {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/session/scheduled-execution-session.yaml",
            "meta": {"uuid": "0b3f1a52-7d6e-4c1e-9a57-2f0c8a6d3e11", "created": "2026-12-07T10:00:00+01:00"},
            "schedule": {"available": {"start": "2026-12-07T11:00:00Z/PT2H", "duration": "PT1H"}},
            "compute": {
                "kind": "simple-compute-resource",
                "cores": {"min": "2"},
                "memory": {"min": 512, "units": "MiB"},
            },
            "future-field": [],
        }
    ],
}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps(V1_ANSWER).encode(), "application/json"),  # read straight from the bytes
        (json.dumps(V1_ANSWER).encode(), "application/json; charset=utf-8"),
        (json.dumps(V1_ANSWER, indent=2).encode(), "text/plain"),  # not said to be JSON: the general way
        (json.dumps({**V1_ANSWER, "note": {"type": "extension"}}).encode(), "application/json"),  # "type": general
    ],
)
def test_an_answer_reads_the_same_from_its_bytes_as_the_general_way(tmp_path, body, content_type):
    from execplanner_widgets.model import OfferSetResponse
    from execplanner_widgets.model.answer_dialects import read_answer

    with run_broker(garbage(body, content_type=content_type)) as broker:
        answer = asyncio.run(broker_platform(broker.url, tmp_path).offers(REQUEST))
    assert answer == OfferSetResponse.model_validate(read_answer(json.loads(body)))
    assert answer.reasons == ["one slot left"] and answer.offers[0].cores == 2 and answer.offers[0].memory == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "answered the offer set with no document"),
        (b'"YES"', "answered the offer set with no document"),
        (b'{"result": "YES"', "answered something that is not JSON or YAML"),
        (b'{"result": "YES", "offers": []}', "a YES answer must carry at least one offer"),
        (b'{"result": "MAYBE"}', "invalid offer set (result:"),
    ],
)
def test_answers_that_are_not_offer_sets_say_so_as_before(tmp_path, body, message):
    with run_broker(garbage(body, content_type="application/json")) as broker:
        with pytest.raises(PlatformError) as caught:
            asyncio.run(broker_platform(broker.url, tmp_path).offers(REQUEST))
    assert message in str(caught.value)
