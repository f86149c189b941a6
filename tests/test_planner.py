"""The federation asks every platform at once: stable order, per-platform timeouts, no contagion."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from execplanner_widgets import parse_request
from execplanner_widgets.core.federation import Federation, UnknownPlatform
from execplanner_widgets.core.platform import Platform, PlatformError
from execplanner_widgets.model.platform import PlatformDescription
from execplanner_widgets.platforms.static import StaticOptions, StaticPlatform

REQUEST = {"executable": {"kind": "docker-container", "image": "x"}, "compute": {"cores": 2}}


class BehavingPlatform(Platform):
    """A real Platform whose answer takes ``delay`` seconds and may fail: the cases a federation meets."""

    kind = "test"

    def __init__(self, name: str, *, delay: float = 0.0, failure: Exception | None = None, answer: Any = None) -> None:
        super().__init__(name, name.title())
        self.delay, self.failure, self.answer = delay, failure, answer
        self.inner = StaticPlatform(name, name.title(), options=StaticOptions(cores=8))

    async def offers(self, request, *, user=None):
        await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        if self.answer is not None:
            return self.answer
        return await self.inner.offers(request, user=user)

    async def session(self, uuid, *, user=None):
        return await self.inner.session(uuid)

    async def update_session(self, uuid, update, *, user=None):
        return await self.inner.update_session(uuid, update)

    def describe(self) -> PlatformDescription:
        return PlatformDescription(name=self.name, title=self.title, kind=self.kind)

    @classmethod
    def from_config(cls, name, title, options, context):  # pragma: no cover - not built from files
        return cls(name)


def test_results_come_in_configuration_order_with_times():
    federation = Federation([BehavingPlatform("slow", delay=0.3), BehavingPlatform("fast")])
    results = asyncio.run(federation.offers(REQUEST))
    assert [r.platform for r in results] == ["slow", "fast"]
    assert [r.status for r in results] == ["YES", "YES"]
    assert results[0].elapsed >= 0.3 > results[1].elapsed


def test_total_time_is_the_slowest_not_the_sum():
    federation = Federation([BehavingPlatform(f"p{i}", delay=0.4) for i in range(5)])
    started = time.perf_counter()
    asyncio.run(federation.offers(REQUEST))
    assert time.perf_counter() - started < 5 * 0.4  # concurrent: about 0.4 s, never the 2 s sum


def test_a_hanging_platform_costs_its_timeout_and_spoils_nothing():
    federation = Federation(
        [BehavingPlatform("hangs", delay=60), BehavingPlatform("ok")],
        timeout=30,
        timeouts={"hangs": 0.5},
    )
    started = time.perf_counter()
    hangs, ok = asyncio.run(federation.offers(REQUEST))
    assert time.perf_counter() - started < 10
    assert hangs.status == "ERROR" and "timeout" in hangs.error
    assert ok.status == "YES"


def test_failures_and_garbage_become_error_results():
    federation = Federation(
        [
            BehavingPlatform("down", failure=PlatformError("cannot connect to down (connection refused)")),
            BehavingPlatform("buggy", failure=ZeroDivisionError("division by zero")),
            BehavingPlatform("garbage", answer={"not": "an offer set"}),
            BehavingPlatform("ok"),
        ]
    )
    down, buggy, garbage, ok = asyncio.run(federation.offers(REQUEST))
    assert (down.status, down.error) == ("ERROR", "cannot connect to down (connection refused)")
    assert buggy.status == "ERROR" and "ZeroDivisionError" in buggy.error
    assert garbage.status == "ERROR" and "not an offer set" in garbage.error
    assert ok.status == "YES"
    assert down.reasons == ["cannot connect to down (connection refused)"]


def test_stream_yields_answers_as_they_arrive():
    federation = Federation(
        [BehavingPlatform("slow", delay=0.5), BehavingPlatform("fast"), BehavingPlatform("hangs", delay=60)],
        timeouts={"hangs": 1},
    )

    async def collect():
        order = []
        async for result in federation.stream_offers(REQUEST):
            order.append((result.platform, result.status))
        return order

    assert asyncio.run(collect()) == [("fast", "YES"), ("slow", "YES"), ("hangs", "ERROR")]


def test_only_selected_platforms_and_unknown_names():
    federation = Federation([BehavingPlatform("a"), BehavingPlatform("b")])
    results = asyncio.run(federation.offers(parse_request(REQUEST), platforms=["b"]))
    assert [r.platform for r in results] == ["b"]
    with pytest.raises(UnknownPlatform, match="no platform named 'c' is configured \\(configured: a, b\\)"):
        federation.get("c")


def test_names_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        Federation([BehavingPlatform("a"), BehavingPlatform("a")])


def test_result_wire_form():
    (result,) = asyncio.run(Federation([BehavingPlatform("a")]).offers(REQUEST))
    wire = result.to_wire()
    assert wire["status"] == "YES" and wire["response"]["offers"][0]["phase"] == "OFFERED"


def test_result_list_shows_as_a_table_and_sorts_offers():
    federation = Federation([BehavingPlatform("a"), BehavingPlatform("down", failure=PlatformError("down"))])
    results = asyncio.run(federation.offers(REQUEST))
    assert [r.platform for r in results.yes] == ["a"]
    ((result, offer),) = results.all_offers()
    assert result.platform == "a" and results.earliest() is offer
    html = results._repr_html_()
    assert "YES" in html and "ERROR" in html and "down" in html
    assert "<table" in federation.describe()._repr_html_()
