"""Small real ExecutionBroker services on 127.0.0.1, for tests and benchmarks.

Each service is a threaded HTTP server on ``127.0.0.1:0`` that records every request it receives
(method, path, headers, body, time) and answers according to a *behaviour*::

    from brokers import run_broker, answer_yes, hang, garbage, redirect

    with run_broker(answer_yes(delay=0.2)) as broker, run_broker(hang()) as stuck:
        config = {"platforms": [broker.entry("fast"), stuck.entry("stuck")]}
        ...
        assert broker.requests[0].headers.get("Authorization") is None

Behaviours (all in this module): :func:`answer_yes` (a stateful broker: offers, then sessions that
can be accepted, rejected, cancelled and, with ``run_for``, run to COMPLETED), :func:`answer_no`,
:func:`hang`, :func:`garbage`, :func:`redirect`, :func:`huge`, :func:`status`. ``delay=`` on the
answering behaviours makes a platform slow. A hanging request is released when the server closes,
so no thread outlives its ``with`` block (every wait is bounded).
"""

from __future__ import annotations

import json
import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "Broker",
    "Recorded",
    "Reply",
    "answer_no",
    "answer_yes",
    "garbage",
    "hang",
    "huge",
    "redirect",
    "run_broker",
    "static_entry",
    "status",
    "write_platforms",
]

#: No test waits longer than this for anything a broker does (hangs included).
MAX_WAIT = 60.0


@dataclass(frozen=True)
class Recorded:
    """One request as the broker received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """What to send back; ``None`` body means none."""

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # send without Content-Length, in chunks

    @classmethod
    def json(cls, document: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(document).encode(), {"Content-Type": "application/json"})


Behaviour = Callable[[Recorded, "Broker"], Reply | None]


class Broker:
    """A running test broker: its ``url``, what it received, and the state of its sessions."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[Recorded] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.origin}/broker/"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __str__(self) -> str:
        return self.url

    def entry(
        self, name: str, *, title: str | None = None, timeout: float | None = None, **options: Any
    ) -> dict[str, Any]:
        """This broker as an entry of a platforms file (``broker: {url: ..., **options}``)."""
        item: dict[str, Any] = {
            "name": name,
            "title": title or f"Test broker {name}",
            "broker": {"url": self.url, **options},
        }
        if timeout is not None:
            item["timeout"] = timeout
        return item

    def header_values(self) -> list[str]:
        """Every header value this broker has seen, for "was this secret ever sent here?" checks."""
        with self.lock:
            return [value for request in self.requests for value in request.headers.values()]

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        broker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 16 * 1024 * 1024)) if length else b""
                recorded = Recorded(self.command, self.path, dict(self.headers.items()), body, time.monotonic())
                with broker.lock:
                    broker.requests.append(recorded)
                reply = broker.behaviour(recorded, broker)
                if reply is None:  # a hang: hold the connection until the broker closes
                    broker.released.wait(MAX_WAIT)
                    self.close_connection = True
                    return
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    body = reply.body or b""
                    if reply.chunked:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for start in range(0, len(body), 65536):
                            chunk = body[start : start + 65536]
                            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler


@contextmanager
def run_broker(behaviour: Behaviour | None = None) -> Iterator[Broker]:
    """Run a broker with ``behaviour`` (default: :func:`answer_yes`) for the ``with`` block."""
    broker = Broker(behaviour or answer_yes())
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


# ------------------------------------------------------------------------------------ behaviours


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _offer(request: dict[str, Any], start: datetime, broker: Broker, run_for: float | None) -> dict[str, Any]:
    session_id = str(uuid_module.uuid4())
    compute = request.get("compute") or {}
    cores = (compute.get("cores") or {}).get("min", 1)
    memory = (compute.get("memory") or {}).get("min", 1)
    document = {
        "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/session/scheduled-execution-session.yaml",
        "meta": {"uuid": session_id, "name": "offer", "created": _iso(_now())},
        "phase": "OFFERED",
        "expires": _iso(_now() + timedelta(minutes=5)),
        "executable": request.get("executable"),
        "compute": {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/compute/simple-compute-resource.yaml",
            "cores": {"min": cores, "max": cores},
            "memory": {"min": memory, "max": memory},
        },
        "schedule": {"available": {"start": f"{_iso(start)}/PT0S", "duration": "PT1H"}},
    }
    with broker.lock:
        broker.sessions[session_id] = {"document": document, "accepted_at": None, "run_for": run_for}
    return document


def _session_now(state: dict[str, Any]) -> dict[str, Any]:
    """The session as read now: once accepted with ``run_for``, RUNNING, then COMPLETED after ``run_for`` s."""
    document = dict(state["document"])
    accepted_at, run_for = state["accepted_at"], state["run_for"]
    if document["phase"] == "ACCEPTED" and accepted_at is not None and run_for is not None:
        elapsed = time.monotonic() - accepted_at
        document["phase"] = "COMPLETED" if elapsed >= run_for else "RUNNING"
    return document


def _sessions(recorded: Recorded, broker: Broker) -> Reply:
    session_id = recorded.path.rstrip("/").rsplit("/", 1)[-1]
    with broker.lock:
        state = broker.sessions.get(session_id)
        if state is None:
            return Reply.json({"message": f"no session {session_id}"}, 404)
        if recorded.method == "GET":
            return Reply.json(_session_now(state))
        update = recorded.json() or {}
        wanted = str(update.get("value", "")).upper()
        current = _session_now(state)["phase"]
        allowed = {"ACCEPTED": {"OFFERED"}, "REJECTED": {"OFFERED"}, "CANCELLED": {"OFFERED", "ACCEPTED", "RUNNING"}}
        if update.get("path") != "phase" or current not in allowed.get(wanted, set()):
            return Reply.json({"message": f"cannot change {current} to {wanted or '?'}"}, 409)
        state["document"] = {**state["document"], "phase": wanted}
        if wanted == "ACCEPTED":
            state["accepted_at"] = time.monotonic()
        return Reply.json(state["document"])


def answer_yes(*, offers: int = 1, delay: float = 0.0, run_for: float | None = None) -> Behaviour:
    """A working broker: YES with ``offers`` offers an hour apart; sessions can be read and changed.

    ``run_for`` seconds after an offer is accepted its session reads COMPLETED (RUNNING before).
    """

    def behave(recorded: Recorded, broker: Broker) -> Reply:
        if delay:
            broker.released.wait(delay)
        if "/sessions/" in recorded.path:
            return _sessions(recorded, broker)
        if recorded.method == "POST" and recorded.path.rstrip("/").endswith("/requests"):
            request = recorded.json() or {}
            start = _now() + timedelta(minutes=1)
            documents = [_offer(request, start + timedelta(hours=index), broker, run_for) for index in range(offers)]
            return Reply.json({"result": "YES", "meta": {"uuid": str(uuid_module.uuid4())}, "offers": documents})
        return Reply.json({"message": f"no route {recorded.path}"}, 404)

    return behave


def answer_no(*reasons: str, delay: float = 0.0) -> Behaviour:
    """A broker that always says NO, with ``reasons`` as its messages."""
    reasons = reasons or ("not enough resources",)

    def behave(recorded: Recorded, broker: Broker) -> Reply:
        if delay:
            broker.released.wait(delay)
        messages = [{"level": "WARN", "message": text} for text in reasons]
        return Reply.json({"result": "NO", "meta": {"uuid": str(uuid_module.uuid4()), "messages": messages}})

    return behave


def hang() -> Behaviour:
    """Accept the connection and never answer (until the broker closes)."""
    return lambda recorded, broker: None


def garbage(
    body: bytes = b"<html><body><script>alert('pwned')</script> not a broker</body></html>",
    *,
    content_type: str = "text/html",
    status_code: int = 200,
) -> Behaviour:
    """Answer ``body`` (by default an HTML page with a script) whatever was asked."""
    return lambda recorded, broker: Reply(status_code, body, {"Content-Type": content_type})


def redirect(location: str, *, status_code: int = 302) -> Behaviour:
    """Answer every request with a redirect to ``location`` (another origin, say)."""
    return lambda recorded, broker: Reply(status_code, b"", {"Location": location})


def huge(size: int, *, chunked: bool = False) -> Behaviour:
    """A valid NO answer of about ``size`` bytes (padded description); ``chunked`` hides its length."""

    def behave(recorded: Recorded, broker: Broker) -> Reply:
        padding = "x" * max(0, size - 40)
        body = json.dumps({"result": "NO", "description": padding}).encode()
        return Reply(200, body, {"Content-Type": "application/json"}, chunked=chunked)

    return behave


def status(code: int, document: Any = None) -> Behaviour:
    """Always answer ``code`` with ``document`` as JSON."""
    return lambda recorded, broker: Reply.json(
        document if document is not None else {"message": f"status {code}"}, code
    )


# ------------------------------------------------------------------------------ platforms files


def write_platforms(path: Any, entries: list[dict[str, Any]], *, timeout: float | None = None) -> Any:
    """Write a platforms file with ``entries`` (and a default ``timeout``) to ``path``; returns ``path``."""
    from pathlib import Path

    import yaml

    document: dict[str, Any] = {"platforms": entries}
    if timeout is not None:
        document["timeout"] = timeout
    target = Path(path)
    target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return target


def static_entry(name: str, *, title: str | None = None, **options: Any) -> dict[str, Any]:
    """A ``static:`` platform entry; by default it runs notebooks and containers on 16 cores, 64 GiB."""
    defaults: dict[str, Any] = {
        "accepts": ["jupyter-notebook", "docker-container"],
        "cores": 16,
        "memory": 64,
        "duration": "PT12H",
    }
    return {"name": name, "title": title or f"Static {name}", "static": {**defaults, **options}}
