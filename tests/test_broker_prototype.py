"""``BrokerPlatform`` against a real HTTP server on 127.0.0.1 that behaves like the 2025 ExecutionBroker
prototype: ``POST requests`` answers 303 to the offer set, answers are YAML (one of them with no YAML
content type at all), documents are in the prototype's form (``type:``, ``computer:``, ``href`` with
absolute URLs, the offered schedule under ``offered``), and with ``dialect: prototype-2025`` the
server refuses anything but that form for requests and updates.

The server is this test's own few lines (nothing of the prototype is copied); its answers are made
from ``tests/data/prototype``, written for this project from the form's description.
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from execplanner_widgets.core.platform import PlatformError
from execplanner_widgets.model import kind_uri, parse_request, phase_update
from execplanner_widgets.platforms.broker import BrokerOptions, BrokerPlatform

PROTOTYPE = Path(__file__).resolve().parent / "data" / "prototype"


class PrototypeLike(http.server.BaseHTTPRequestHandler):
    """``requests`` -> 303; ``offersets/{id}``, ``sessions/{id}`` in the 2025 form, as YAML."""

    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, document: Any = None, content_type: str | None = "application/yaml") -> None:
        body = yaml.safe_dump(document, sort_keys=False).encode() if document is not None else b""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return yaml.safe_load(raw) if raw else None

    def do_POST(self) -> None:
        state = self.server.state
        document = self._body()
        state["received"].append((self.path, document))
        if self.path == "/requests":
            executable = (document or {}).get("executable") or {}
            if state["strict"] and ("type" not in executable or "kind" in executable or "compute" in document):
                return self._answer(400, {"message": "the 2025 prototype reads type: and computer:"})
            offerset = copy.deepcopy(state["offerset"])
            self.send_response(303)
            self.send_header("Location", offerset["href"])  # absolute, as the prototype wrote them
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if self.path.startswith("/sessions/"):
            if state["strict"] and "type" not in (document or {}):
                return self._answer(400, {"message": "an update needs type:"})
            session = copy.deepcopy(state["session"])
            session["phase"] = (document or {}).get("value", "ACCEPTED")
            return self._answer(200, session)
        return self._answer(404, {"message": "no such route"})

    def do_GET(self) -> None:
        state = self.server.state
        if self.path.startswith("/offersets/"):
            return self._answer(200, state["offerset"])
        if self.path.startswith("/sessions/"):
            # one answer with no content type: the client must still read it
            return self._answer(200, state["session"], content_type=None)
        return self._answer(404, {"message": "no such route"})


@pytest.fixture
def prototype() -> Iterator[dict[str, Any]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PrototypeLike)
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def load(name: str) -> dict[str, Any]:
        return yaml.safe_load((PROTOTYPE / name).read_text().replace("BASE", base))

    server.state = {
        "offerset": load("offerset-response.yaml"),
        "session": load("session-response.yaml"),
        "received": [],
        "strict": False,
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": base + "/", "state": server.state}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def platform(url: str, **options: Any) -> BrokerPlatform:
    return BrokerPlatform("proto", "A prototype-like broker", options=BrokerOptions(url=url, **options))


async def test_offers_through_a_303_to_a_yaml_answer_in_the_2025_form(prototype):
    broker = platform(prototype["url"])
    try:
        answer = await broker.offers(parse_request(PROTOTYPE / "notebook-request.yaml"))
        assert answer.result == "YES" and len(answer.offers) == 1
        offer = answer.offers[0]
        assert offer.meta.uuid == "6c1f0a52-93d4-4b7e-8f20-7d5e3a9c4b11"
        assert offer.meta.url == prototype["url"] + "sessions/6c1f0a52-93d4-4b7e-8f20-7d5e3a9c4b11"
        assert offer.executable.kind == kind_uri("executable", "jupyter-notebook")
        assert offer.compute.kind == kind_uri("compute", "simple-compute-resource") and offer.cores == 2
        assert offer.start is not None and offer.end is not None and offer.expires is not None
        # sent as v1.0 by default
        path, sent = prototype["state"]["received"][0]
        assert path == "/requests" and sent["executable"]["kind"] == kind_uri("executable", "jupyter-notebook")

        again = await broker.offerset("0b7e2d8c-5f1a-4c3e-9a61-2f4d8e6b1c01")
        assert [item.meta.uuid for item in again.offers] == [offer.meta.uuid]
        session = await broker.session(offer.meta.uuid)  # YAML with no content type
        assert session.phase.value == "ACCEPTED"
    finally:
        await broker.aclose()


async def test_a_strict_2025_service_gets_requests_and_updates_in_its_form(prototype):
    prototype["state"]["strict"] = True
    plain = platform(prototype["url"])
    spoken = platform(prototype["url"], dialect="prototype-2025")
    try:
        with pytest.raises(PlatformError):
            await plain.offers(parse_request(PROTOTYPE / "notebook-request.yaml"))
        answer = await spoken.offers(parse_request(PROTOTYPE / "notebook-request.yaml"))
        sent = prototype["state"]["received"][-1][1]
        assert sent["executable"]["type"].endswith("/types/executable/jupyter-notebook-1.0")
        assert sent["computer"]["cores"] == {"min": 1, "max": 2}
        offer_id = answer.offers[0].meta.uuid
        accepted = await spoken.update_session(offer_id, phase_update("ACCEPTED"))
        assert accepted.phase.value == "ACCEPTED"
        assert prototype["state"]["received"][-1][1] == {
            "type": "uri:enum-value-update",
            "path": "phase",
            "value": "ACCEPTED",
        }
    finally:
        await plain.aclose()
        await spoken.aclose()


async def test_a_prototype_answer_that_is_not_an_offer_set_is_a_clear_error(prototype):
    prototype["state"]["offerset"] = {"href": prototype["url"] + "offersets/x", "result": "YES", "offers": []}
    broker = platform(prototype["url"])
    try:
        with pytest.raises(PlatformError) as caught:
            await broker.offers(parse_request(PROTOTYPE / "notebook-request.yaml"))
        assert "invalid offer set" in str(caught.value)
    finally:
        await broker.aclose()


def test_the_dialect_option_is_checked():
    with pytest.raises(ValueError):
        BrokerOptions(url="http://127.0.0.1:1/", dialect="note-2019")
    assert json.loads(BrokerOptions(url="http://127.0.0.1:1/").model_dump_json())["dialect"] == "broker"
