"""What the widget tests share: a planner over real platforms, bounded waits, sample records.

The widgets talk only to the kernel client's API (``platforms``, ``stream_offers``, ``accept``,
``reject``, ``cancel``, ``session``, ``describe_mode``). :func:`make_planner` gives the project's
``Planner`` in local mode over a real platforms file (static platforms, and ExecutionBroker services
on 127.0.0.1 from ``brokers.py``); ``test_widgets_server.py`` drives the same widgets in server mode.
Nothing is mocked: offers, NO reasons, bookings and cancellations come from the platforms.
"""

from __future__ import annotations

import time
from html.parser import HTMLParser
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from brokers import Broker, answer_no, answer_yes, run_broker, static_entry, write_platforms
from execplanner_widgets.client import Planner

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


def text_of(markup: str) -> str:
    """The text a browser would show for ``markup`` (tags dropped, entities decoded, spaces collapsed)."""
    parts: list[str] = []
    parser = HTMLParser(convert_charrefs=True)
    parser.handle_data = parts.append  # type: ignore[method-assign]
    parser.feed(markup)
    parser.close()
    return " ".join("".join(parts).split())


def book_and_cancel(app: Any, platform: str) -> Any:
    """Find offers, book ``platform``'s first offer and cancel it, with the app's own controls;
    returns the cancelled session as the platform reports it."""
    app.offers.find()
    assert app.offers.wait(WAIT)
    app.offers.select(platform)
    app.offers.accept()
    assert app.offers.wait(WAIT) and app.job.phase == "ACCEPTED"
    app.job.cancel_button.click()
    assert app.job.wait(WAIT)
    assert app.job.phase == "CANCELLED" and str(app.session.phase) == "CANCELLED"
    return app.planner.session(app.session, platform=platform)


def make_planner(platforms_file: Path, data_dir: Path) -> Planner:
    """The kernel client in local mode over ``platforms_file`` (the same API as server mode)."""
    return Planner(platforms_file=str(platforms_file), mode="local", data_dir=str(data_dir))


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

    def __init__(self, planner: Planner, remote: Broker, hostile: Broker, path: Path) -> None:
        self.planner = planner
        self.remote = remote
        self.hostile = hostile
        self.path = path


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
            planner.close()
