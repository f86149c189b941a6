"""What the widget tests share: a planner over real platforms, bounded waits, sample records.

The widgets talk only to the kernel client's API (``platforms``, ``stream_offers``, ``accept``,
``reject``, ``cancel``, ``session``, ``describe_mode``). :func:`make_planner` gives the project's
``Planner`` in local mode over a real platforms file (static platforms, and ExecutionBroker services
on 127.0.0.1 from ``brokers.py``); ``test_widgets_server.py`` drives the same widgets in server mode.
Nothing is mocked: offers, NO reasons, bookings and cancellations come from the platforms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
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


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self._hidden += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def text_of(markup: str) -> str:
    """The text a browser would show for ``markup`` (tags, styles and scripts dropped, entities decoded,
    spaces collapsed)."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    return " ".join("".join(parser.parts).split())


def book_and_cancel(app: Any, platform: str) -> Any:
    """Find offers, book ``platform``'s first offer and cancel it, with the app's own controls;
    returns the cancelled session as the platform reports it."""
    app.offers.find()
    assert app.offers.wait(WAIT)
    app.offers.select(platform)
    app.offers.accept()
    assert app.offers.wait(WAIT) and app.job.phase == "ACCEPTED"
    app.job.cancel_button.click()  # asks first
    assert app.job.phase == "ACCEPTED" and app.job.confirm_button.layout.display == ""
    app.job.confirm_button.click()
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


# ------------------------------------------------------------------------------ one-HTML views


class _Rows(HTMLParser):
    """Rows of a view (``tr.ep-row`` or ``g.ep-bar``): their data attributes, text and buttons."""

    def __init__(self, tag: str, marker: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tag, self.marker = tag, marker
        self.rows: list[dict[str, Any]] = []
        self._depth = 0
        self._current: dict[str, Any] | None = None
        self._button: str | None = None
        self._in_label = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if self._current is None and tag == self.tag and self.marker in (attributes.get("class") or "").split():
            self._current = {
                **{k: v for k, v in attributes.items() if k.startswith("data-")},
                "text": [],
                "buttons": {},
            }
            self._depth = 1
            return
        if self._current is None:
            return
        if tag == self.tag:
            self._depth += 1
        if "data-ep" in attributes and tag == "button":
            self._button = attributes["data-ep"]
        if "ep-label" in (attributes.get("class") or "").split():
            self._in_label += 1

    def handle_endtag(self, tag):
        if self._current is None:
            return
        if tag == "button":
            self._button = None
        if tag == "span" and self._in_label:
            self._in_label -= 1
        if tag == self.tag:
            self._depth -= 1
            if self._depth == 0:
                self._current["text"] = " ".join("".join(self._current["text"]).split())
                self.rows.append(self._current)
                self._current = None

    def handle_data(self, data):
        if self._current is None or self._in_label:
            return
        if self._button is not None:
            self._current["buttons"][data.strip()] = self._button
        self._current["text"].append(data + " ")


def view_rows(markup: str, tag: str = "tr", marker: str = "ep-row") -> list[dict[str, Any]]:
    """The rows of a one-HTML view as dicts: ``data-*`` attributes, ``text`` (labels left out) and
    ``buttons`` (label -> the event it sends)."""
    parser = _Rows(tag, marker)
    parser.feed(markup)
    parser.close()
    return parser.rows


_CLICKS = iter(range(1, 10**9))


def click(host: Any, event: str) -> None:
    """Send ``verb:key`` through ``host``'s event channel exactly as the browser does (the hidden text
    box gets ``event|stamp``), i.e. what a click on that button or bar does."""
    host.channel.box.value = f"{event}|{next(_CLICKS)}"


def offer_rows(browser: Any) -> list[dict[str, Any]]:
    """The offers table's rows, each with its entry (``entry``) from the browser's book."""
    rows = view_rows(browser.table.value)
    for row in rows:
        row["entry"] = browser.book.entry(row["data-key"])
    return rows


def row_of(browser: Any, platform: str, number: int = 0) -> dict[str, Any]:
    return next(
        row for row in offer_rows(browser) if row["entry"].platform == platform and row["entry"].number == number
    )
