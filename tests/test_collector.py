"""Python's cyclic garbage collector is paused while a fan-out's requests go out and while the kernel
reads a whole federation's answers; it always resumes, also after an error, and only if it was
running before."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from execplanner_widgets.core.collector import collector_paused
from execplanner_widgets.core.federation import Federation
from execplanner_widgets.core.platform import Platform
from execplanner_widgets.model import OfferSetResponse
from execplanner_widgets.model.platform import PlatformDescription

REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}}


@pytest.fixture(autouse=True)
def collector_running():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_inside_running_after_also_after_an_error():
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("reading failed")
    assert gc.isenabled()


def test_pauses_nest_and_the_last_one_resumes():
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_the_program_had_stopped_stays_stopped():
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_in_two_threads_resume_when_both_end():
    first_in, second_done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_done.wait(10)
            seen.append(gc.isenabled())  # the other thread's pause ended, this one still holds

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(10)
    with collector_paused():
        pass
    second_done.set()
    thread.join(10)
    assert seen == [False]
    assert gc.isenabled()


class _Thinking(Platform):
    """A platform that notes whether the collector runs when its request goes out and when its
    answer comes, and answers NO after a short think."""

    kind = "thinking"

    def __init__(self, name: str, seen: list[tuple[str, bool]]) -> None:
        super().__init__(name)
        self.seen = seen

    async def offers(self, request, *, user=None):
        self.seen.append(("asked", gc.isenabled()))
        await asyncio.sleep(0.01)
        self.seen.append(("answered", gc.isenabled()))
        return OfferSetResponse(result="NO")

    async def session(self, uuid, *, user=None):
        raise KeyError(uuid)

    async def update_session(self, uuid, update, *, user=None):
        raise KeyError(uuid)

    def describe(self):
        return PlatformDescription(name=self.name, title=self.title, kind=self.kind)

    @classmethod
    def from_config(cls, name, title, options, context):
        raise NotImplementedError


def test_a_fan_out_pauses_the_collector_until_every_request_is_out():
    seen: list[tuple[str, bool]] = []
    federation = Federation([_Thinking(f"p{index}", seen) for index in range(3)])
    results = asyncio.run(federation.offers(REQUEST))
    assert [result.status for result in results] == ["NO"] * 3
    assert seen[:3] == [("asked", False)] * 3 and seen[3:] == [("answered", True)] * 3
    assert gc.isenabled()


def test_delivered_answers_come_one_by_one_and_a_reader_that_fails_stops_the_questions():
    seen: list[tuple[str, bool]] = []
    federation = Federation([_Thinking(f"p{index}", seen) for index in range(3)])
    delivered: list[str] = []
    asyncio.run(federation.deliver_offers(REQUEST, lambda result: delivered.append(result.platform)))
    assert sorted(delivered) == ["p0", "p1", "p2"]

    def full(result):
        raise OSError("the reader went away")

    with pytest.raises(OSError, match="the reader went away"):
        asyncio.run(federation.deliver_offers(REQUEST, full))
    assert gc.isenabled()
