"""What the widget tests share: a planner over real platforms, bounded waits, sample records.

The widgets talk only to the kernel client's API (``platforms``, ``stream_offers``, ``accept``,
``reject``, ``cancel``, ``session``, ``describe_mode``). :func:`make_planner` returns the project's
``Planner`` in local mode when ``execplanner_widgets.client`` is there; until then it returns
:class:`FederationPlanner`, which gives the same API over a real :class:`Federation` built from a real
platforms file (static platforms, and ExecutionBroker services on 127.0.0.1 from ``brokers.py``).
Nothing is mocked: offers, NO reasons, bookings and cancellations come from the platforms.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from brokers import Broker, answer_no, answer_yes, run_broker, static_entry, write_platforms
from execplanner_widgets.config import build_federation, load_platforms_file
from execplanner_widgets.model import ExecutionSession, parse_request
from execplanner_widgets.planner import Federation, PlatformResult
from execplanner_widgets.platforms.base import PlatformContext, PlatformDescription

DATA = Path(__file__).resolve().parent / "data" / "ossr"

#: No test waits longer than this for the widgets' background work.
WAIT = 30.0

#: A title and a NO message with markup: they must show as text, never as markup.
HOSTILE_TITLE = "<script>alert(1)</script> <b>Hostile</b> & co"
HOSTILE_REASON = "<b>no</b> room <script>alert(1)</script> <img src=x onerror=alert(2)>"


def wait_for(condition: Callable[[], Any], timeout: float = WAIT, what: str = "the condition") -> Any:
    """Poll ``condition`` until it is truthy, at most ``timeout`` seconds; fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class FederationPlanner:
    """The kernel client's API over a real :class:`Federation`, run on its own event loop thread."""

    mode = "local"

    def __init__(self, federation: Federation, *, user: str | None = None) -> None:
        self.federation = federation
        self.user = user
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-federation-loop", daemon=True)
        self._thread.start()
        self._call(federation.start())

    @classmethod
    def from_file(cls, path: Path, data_dir: Path, **kwargs: Any) -> FederationPlanner:
        config = load_platforms_file(path)
        data_dir.mkdir(parents=True, exist_ok=True)
        federation = build_federation(config, PlatformContext(data_dir=data_dir, config_dir=path.parent))
        return cls(federation, **kwargs)

    def _call(self, coroutine: Any, timeout: float = WAIT) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def describe_mode(self) -> str:
        return f"in-process (test federation of {len(self.federation)} platforms)"

    def platforms(self) -> list[PlatformDescription]:
        return self.federation.describe()

    def offers(self, request: Any) -> list[PlatformResult]:
        return self._call(self.federation.offers(parse_request(request), user=self.user))

    def stream_offers(self, request: Any) -> Iterator[PlatformResult]:
        answers: queue.Queue[Any] = queue.Queue()
        done = object()

        async def pump() -> None:
            try:
                async for result in self.federation.stream_offers(parse_request(request), user=self.user):
                    answers.put(result)
            finally:
                answers.put(done)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        for _ in range(len(self.federation) + 1):
            item = answers.get(timeout=WAIT)
            if item is done:
                break
            yield item
        future.result(WAIT)

    def _target(self, session: Any, platform: str | None) -> tuple[Any, str]:
        uuid = session.uuid if isinstance(session, ExecutionSession) else str(session)
        name = platform or (session.meta.name if isinstance(session, ExecutionSession) and session.meta else None)
        if not name:
            raise ValueError("say which platform the session is on")
        return self.federation.get(name), uuid

    def accept(self, offer: Any, platform: str | None = None) -> ExecutionSession:
        target, uuid = self._target(offer, platform)
        return self._call(target.accept(uuid, user=self.user))

    def reject(self, offer: Any, platform: str | None = None) -> ExecutionSession:
        target, uuid = self._target(offer, platform)
        return self._call(target.reject(uuid, user=self.user))

    def cancel(self, session: Any, platform: str | None = None) -> ExecutionSession:
        target, uuid = self._target(session, platform)
        return self._call(target.cancel(uuid, user=self.user))

    def session(self, session: Any, platform: str | None = None) -> ExecutionSession:
        target, uuid = self._target(session, platform)
        return self._call(target.session(uuid, user=self.user))

    def close(self) -> None:
        try:
            self._call(self.federation.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


def make_planner(platforms_file: Path, data_dir: Path) -> Any:
    """The project's Planner in local mode if it exists yet, else :class:`FederationPlanner`."""
    try:
        from execplanner_widgets.client import Planner
    except ImportError:
        return FederationPlanner.from_file(platforms_file, data_dir)
    return Planner(platforms_file=str(platforms_file), mode="local", data_dir=str(data_dir))


def close_planner(planner: Any) -> None:
    close = getattr(planner, "close", None)
    if close is not None:
        close()


# ------------------------------------------------------------------------------------- fixtures

#: Seconds a booked session on the test broker runs before it reads COMPLETED.
RUN_FOR = 1.5


class Platforms:
    """A real federation for widget tests: the planner and the brokers behind it.

    ``big``: static, runs anything up to 16 cores; ``small``: static, 1 core (says NO to most);
    ``remote``: an ExecutionBroker on 127.0.0.1 with two offers, sessions COMPLETED ``RUN_FOR`` s
    after acceptance; ``hostile``: a broker whose title and NO message carry markup; ``down``: a
    broker URL where nothing listens (ERROR).
    """

    def __init__(self, planner: Any, remote: Broker, hostile: Broker, path: Path) -> None:
        self.planner = planner
        self.remote = remote
        self.hostile = hostile
        self.path = path

    names = ("big", "small", "remote", "hostile", "down")


@pytest.fixture
def platforms(tmp_path: Path) -> Iterator[Platforms]:
    with run_broker(answer_no()) as gone:
        closed_port = gone.port
    with run_broker(answer_yes(offers=2, run_for=RUN_FOR)) as remote, run_broker(answer_no(HOSTILE_REASON)) as hostile:
        path = write_platforms(
            tmp_path / "platforms.yaml",
            [
                static_entry("big", title="Big static platform", storage=500, url="https://big.example.org/start"),
                static_entry("small", title="Small static platform", cores=1, memory=2),
                remote.entry("remote", title="Remote broker"),
                hostile.entry("hostile", title=HOSTILE_TITLE),
                {"name": "down", "title": "Broker that is down", "broker": {"url": f"http://127.0.0.1:{closed_port}/"}},
            ],
            timeout=10,
        )
        planner = make_planner(path, tmp_path / "data")
        try:
            yield Platforms(planner, remote, hostile, path)
        finally:
            close_planner(planner)
