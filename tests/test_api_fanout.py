"""A hanging platform and a garbage-answering one give ERROR results within their timeout while the
others answer; in the stream the fast answers arrive first, before the hanging platform's timeout."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from brokers import answer_no, answer_yes, garbage, hang, run_broker, static_entry, write_platforms

REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 1}}}
HANG_TIMEOUT = 2.0


@pytest.fixture
def brokers():
    with (
        run_broker(answer_yes(delay=0.1)) as fast,
        run_broker(answer_no("no GPUs here", delay=0.3)) as slower,
        run_broker(hang()) as stuck,
        run_broker(garbage()) as html,
        run_broker(garbage(b'{"result": "PERHAPS", "offers": 7}', content_type="application/json")) as nonsense,
    ):
        yield {"fast": fast, "slower": slower, "stuck": stuck, "html": html, "nonsense": nonsense}


@pytest.fixture
def jp_server_config(tmp_path, brokers):
    entries = [static_entry("local")]
    for name, broker in brokers.items():
        entries.append(broker.entry(name, timeout=HANG_TIMEOUT if name == "stuck" else None))
    platforms = write_platforms(tmp_path / "platforms.yaml", entries, timeout=10)
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_server_extension": True}},
        "ExecPlanner": {"platforms_file": str(platforms), "data_dir": str(tmp_path / "data")},
    }


def _check_results(results: dict[str, dict]) -> None:
    assert results["local"]["status"] == "YES"
    assert results["fast"]["status"] == "YES"
    assert (
        results["slower"]["status"] == "NO"
        and results["slower"]["response"]["meta"]["messages"][0]["message"] == "no GPUs here"
    )
    assert results["stuck"]["status"] == "ERROR" and "timeout" in results["stuck"]["error"]
    assert HANG_TIMEOUT * 0.9 <= results["stuck"]["elapsed"] < HANG_TIMEOUT + 5
    assert results["html"]["status"] == "ERROR" and "not JSON" in results["html"]["error"]
    assert results["nonsense"]["status"] == "ERROR" and "invalid offer set" in results["nonsense"]["error"]


async def test_offers_survive_hanging_and_garbage_platforms(jp_fetch, brokers):
    response = await jp_fetch(
        "execplanner",
        "api",
        "offers",
        method="POST",
        body=json.dumps(REQUEST),
        headers={"Content-Type": "application/json"},
        request_timeout=30,
    )
    results = {result["platform"]: result for result in json.loads(response.body)}
    assert list(results) == ["local", "fast", "slower", "stuck", "html", "nonsense"]
    _check_results(results)
    assert len(brokers["stuck"].requests) == 1


@pytest.mark.parametrize("stream_format", ["ndjson", "sse"])
async def test_stream_sends_fast_answers_before_the_hanging_platform_times_out(jp_fetch, stream_format):
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()

    def on_chunk(chunk: bytes) -> None:
        arrivals.append((time.monotonic() - started, chunk))

    await jp_fetch(
        "execplanner",
        "api",
        "offers",
        "stream",
        method="POST",
        body=json.dumps(REQUEST),
        headers={"Content-Type": "application/json"},
        params={"format": stream_format},
        streaming_callback=on_chunk,
        request_timeout=30,
    )
    text = b"".join(chunk for _, chunk in arrivals).decode()
    if stream_format == "ndjson":
        documents = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        documents = [
            json.loads(block.split("data: ", 1)[1]) for block in text.split("\n\n") if block.startswith("event: result")
        ]
        assert text.rstrip().endswith('event: end\ndata: {"count": 6}')
    order = [document["platform"] for document in documents]
    assert order[-1] == "stuck", order  # the hanging platform comes last, after its timeout
    assert order.index("fast") < order.index("slower"), order
    _check_results({document["platform"]: document for document in documents})

    # the answers before the hang were sent as they came, not held back until the timeout
    def arrival_of(name: str) -> float:
        received = b""
        for moment, chunk in arrivals:
            received += chunk
            if f'"platform":"{name}"'.encode() in received:
                return moment
        raise AssertionError(f"{name} never arrived")

    assert arrival_of("slower") < arrival_of("stuck"), [(round(m, 2), c[:40]) for m, c in arrivals]


# ------------------------------------------------ the kernel client reads POST offers as it arrives


def _result(name: str) -> dict:
    return {"platform": name, "title": f"Platform {name}", "status": "ERROR", "error": 'é, ]} " [', "elapsed": 0.1}


@contextmanager
def _list_server(pieces: list[bytes]):
    """A real HTTP/1.1 server on 127.0.0.1 answering ``POST .../offers`` with ``pieces``, each
    sent as its own chunk after a pause (so the client gets the list in awkward parts)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in pieces:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _backend(url: str):
    import httpx

    from execplanner_widgets.client.discovery import ServerInfo
    from execplanner_widgets.client.server import ServerBackend

    return ServerBackend(ServerInfo(url, "t", "test"), httpx.Client(), 10)


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_the_kernel_reads_the_list_of_results_in_any_pieces(size):
    text = " [\n" + ",\r\n ".join(json.dumps(_result(name)) for name in ("a", "b", "c")) + "\t]\n"
    data = text.encode()
    pieces = [data[index : index + size] for index in range(0, len(data), size)]
    with _list_server(pieces) as url:
        backend = _backend(url)
        try:
            results = backend.offers(REQUEST, None)
        finally:
            backend.close()
    assert [(result.platform, result.error) for result in results] == [(n, 'é, ]} " [') for n in "abc"]


@pytest.mark.parametrize(
    "body",
    [b"", b"[", b'[{"platform": "a"', b"{}", b"[1]", b'[{"a": 1}} ]', b"[] []", b"[,]", b'[{"a": 1},]', b"\xff["],
)
def test_a_list_that_is_not_one_is_a_clear_error(body):
    from execplanner_widgets.client.errors import PlannerError

    with _list_server([body] if body else []) as url:
        backend = _backend(url)
        try:
            with pytest.raises((PlannerError, ValueError)) as caught:
                backend.offers(REQUEST, None)
        finally:
            backend.close()
    assert "not JSON" in str(caught.value) or "Field required" in str(caught.value)
