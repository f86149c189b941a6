"""Row 4 of issue 12: asking N = 100 and N = 1,000 platforms over real HTTP, each answering in 200 ms,
in-process (the kernel's local mode, ``Planner(platforms_file)``) and through the proxy of a real
``jupyter server`` (the kernel's server mode, ``Planner(url=...)``); and when the first streamed
answer arrives.

Goals: total / 200 ms <= 1.25x at N = 100 and <= 2x at N = 1,000 on both paths; first streamed
answer <= 1.2x the fastest platform (here all take 200 ms).

The N platforms are ExecutionBroker services on one asynchronous HTTP server on 127.0.0.1 (one
path prefix each, so 1,000 of them cost one thread, not 1,000): every ``POST requests`` waits
200 ms, then answers YES with one offer. Each figure is the median of ``--rounds`` rounds after a
warm-up round (connections made, clients built), measured in this one run. A round is one
``offers`` (total) and one stream read to its first answer and left, each after a pause of
2 x 200 ms, so that it does not overlap the answers still coming for the stream left before it.

Usage: ``python bench/bench_fanout_scale.py [--sizes 100,1000] [--rounds 3] [--no-server]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _common import figure, write_platforms

LATENCY = 0.2
#: A pause before each question: a stream left after its first answer still has the other platforms'
#: answers coming (they are read and their connections kept); a round measures one question, not
#: the tail of the previous one.
SETTLE = 2 * LATENCY
REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 1}}}
SESSION_KIND = (
    "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/session/scheduled-execution-session.yaml"
)
COMPUTE_KIND = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/compute/simple-compute-resource.yaml"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def offer_set(request: dict) -> bytes:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    offer = {
        "kind": SESSION_KIND,
        "meta": {"uuid": str(uuid.uuid4()), "name": "offer", "created": _iso(now)},
        "phase": "OFFERED",
        "expires": _iso(now + timedelta(minutes=5)),
        "executable": request.get("executable"),
        "compute": {"kind": COMPUTE_KIND, "cores": {"min": 1, "max": 1}, "memory": {"min": 1, "max": 1}},
        "schedule": {"available": {"start": f"{_iso(now + timedelta(minutes=1))}/PT0S", "duration": "PT1H"}},
    }
    return json.dumps({"result": "YES", "meta": {"uuid": str(uuid.uuid4())}, "offers": [offer]}).encode()


class _Answers:
    """What the brokers answer, cheaply: 1,000 platforms answer within the same few milliseconds,
    and the answers must not queue behind the benchmark server's own work. Each answer is the
    document :func:`offer_set` writes (fresh identifiers, times of this second, the request's
    executable); the part that repeats is serialised once a second instead of once an answer."""

    def __init__(self) -> None:
        self.second = -1
        self.template = b""
        self.executables: dict[bytes, bytes] = {}

    def answer(self, body: bytes) -> bytes:
        second = int(time.time())
        if second != self.second:
            document = json.loads(offer_set({"executable": "@EXECUTABLE@"}))
            document["meta"]["uuid"] = "@SET@"
            document["offers"][0]["meta"]["uuid"] = "@OFFER@"
            self.template, self.second = json.dumps(document).encode(), second
        executable = self.executables.get(body)
        if executable is None:
            executable = json.dumps((json.loads(body or b"{}") or {}).get("executable")).encode()
            if len(self.executables) < 16:
                self.executables[body] = executable
        return (
            self.template.replace(b'"@SET@"', b'"%s"' % str(uuid.uuid4()).encode())
            .replace(b'"@OFFER@"', b'"%s"' % str(uuid.uuid4()).encode())
            .replace(b'"@EXECUTABLE@"', executable)
        )


async def _serve(port_file: Path) -> None:
    """One asyncio HTTP/1.1 server (keep-alive, Content-Length framing) answering every
    ``POST /p<i>/requests`` after LATENCY s. A plain protocol, not streams: the server stays a
    real HTTP/1.1 server on its own process, but costs little per request, so that what is
    measured is the client's fan-out rather than the benchmark's own broker."""
    loop = asyncio.get_running_loop()
    answers = _Answers()

    class Broker(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end].decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if len(self.buffer) < end + 4 + length:
                    return
                body = self.buffer[end + 4 : end + 4 + length]
                self.buffer = self.buffer[end + 4 + length :]
                method, path = head.split(" ", 2)[:2]
                if method == "POST" and path.rstrip("/").endswith("/requests"):
                    loop.call_later(LATENCY, self.answer, body)
                else:
                    self.send(b'{"message": "no route"}', "404 Not Found")

        def answer(self, body: bytes) -> None:
            self.send(answers.answer(body), "200 OK")

        def send(self, payload: bytes, code: str) -> None:
            if not self.transport.is_closing():
                head = f"HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
                self.transport.write(head.encode() + payload)

    server = await loop.create_server(Broker, "127.0.0.1", 0, backlog=4096)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


@contextmanager
def many_brokers(folder: Path) -> Iterator[str]:
    """The brokers in their own process (so they never compete with the client for one GIL)."""
    port_file = folder / "brokers.port"
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the broker server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}"
    finally:
        process.terminate()
        process.wait(30)


def platforms_file(folder: Path, origin: str, count: int) -> Path:
    entries = [
        {"name": f"p{index}", "title": f"Platform {index}", "broker": {"url": f"{origin}/p{index}/"}}
        for index in range(count)
    ]
    return write_platforms(folder / f"platforms-{count}.yaml", entries)


def in_process(path: Path, state: Path, rounds: int) -> dict[str, float]:
    """The kernel's local mode: the federation runs in this process, as ``Planner(platforms_file)``
    runs it in a notebook."""
    from execplanner_widgets import Planner

    totals, firsts = [], []
    with Planner(path, mode="local", data_dir=state) as planner:
        for round_ in range(rounds + 1):  # the first round warms up: connections open, nothing measured
            time.sleep(SETTLE)
            started = time.perf_counter()
            results = planner.offers(REQUEST)
            took = time.perf_counter() - started
            bad = [result.error for result in results if result.status != "YES"]
            if bad:
                raise RuntimeError(f"{len(bad)} platforms did not answer YES: {bad[:3]}")
            time.sleep(SETTLE)
            started = time.perf_counter()
            stream = planner.stream_offers(REQUEST)
            next(stream)
            first = time.perf_counter() - started
            stream.close()  # the other platforms still answer; SETTLE lets them before the next round
            if round_:
                totals.append(took)
                firsts.append(first)
    return {"total": statistics.median(totals), "first": statistics.median(firsts)}


def through_proxy(path: Path, root: Path, rounds: int) -> dict[str, float]:
    from _common import jupyter_server

    from execplanner_widgets import Planner

    totals, firsts = [], []
    with jupyter_server(root, path) as server, Planner(url=server.url, token=server.token) as planner:
        for round_ in range(rounds + 1):  # the first round warms up
            time.sleep(SETTLE)
            started = time.perf_counter()
            results = planner.offers(REQUEST)
            took = time.perf_counter() - started
            bad = [result for result in results if result.status != "YES"]
            if bad:
                raise RuntimeError(f"{len(bad)} platforms did not answer YES through the proxy")
            time.sleep(SETTLE)
            started = time.perf_counter()
            stream = planner.stream_offers(REQUEST)
            next(stream)
            first = time.perf_counter() - started
            stream.close()
            if round_:
                totals.append(took)
                firsts.append(first)
    return {"total": statistics.median(totals), "first": statistics.median(firsts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-server", action="store_true", help="skip the path through a real jupyter server")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(Path(args.serve)))
        return
    goals = {100: 1.25, 1000: 2.0}
    with tempfile.TemporaryDirectory() as scratch, many_brokers(Path(scratch)) as origin:
        for count in [int(size) for size in args.sizes.split(",")]:
            path = platforms_file(Path(scratch), origin, count)
            goal = goals.get(count, 2.0)
            local = in_process(path, Path(scratch) / "state", args.rounds)
            ratio = local["total"] / LATENCY
            figure(f"fan-out N={count} in-process, total / 200 ms", f"{ratio:.2f}x", f"<= {goal}x", ratio <= goal)
            first = local["first"] / LATENCY
            figure(f"fan-out N={count} in-process, first streamed / fastest", f"{first:.2f}x", "<= 1.2x", first <= 1.2)
            if args.no_server:
                continue
            proxy = through_proxy(path, Path(scratch) / f"server-{count}", args.rounds)
            ratio = proxy["total"] / LATENCY
            figure(
                f"fan-out N={count} through the proxy, total / 200 ms", f"{ratio:.2f}x", f"<= {goal}x", ratio <= goal
            )
            first = proxy["first"] / LATENCY
            figure(
                f"fan-out N={count} through the proxy, first streamed / fastest",
                f"{first:.2f}x",
                "<= 1.2x",
                first <= 1.2,
            )


if __name__ == "__main__":
    main()
