"""Python's cyclic garbage collector is paused while a fan-out's requests go out, while the kernel
reads a whole federation's answers and while the server relays them; it always resumes, also after
an error, only if it was running before, and overlapping pauses never keep it off for long."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from execplanner_widgets.core import collector, federation
from execplanner_widgets.core.collector import collect_young, collector_held, collector_paused
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


def test_a_held_collector_resumes_when_the_block_ends_or_the_hold_runs_out():
    async def main() -> list[bool]:
        seen = []
        async with collector_held(5):
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())
        async with collector_held(0.05):
            seen.append(gc.isenabled())
            await asyncio.sleep(0.2)  # a slow platform: the hold runs out first
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())
        with pytest.raises(RuntimeError):
            async with collector_held(5):
                raise RuntimeError("the client left")
        seen.append(gc.isenabled())
        async with collector_held(0):  # 0: not held at all
            seen.append(gc.isenabled())
        return seen

    assert asyncio.run(main()) == [False, True, False, True, True, True, True]


def test_pauses_that_keep_overlapping_run_a_full_collection_when_it_is_overdue(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(collector, "monotonic", lambda: now[0])
    full: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(1)

    gc.callbacks.append(note)
    try:
        with collector_paused():
            now[0] += collector.MAX_PAUSED_SECONDS / 2
            with collector_paused():  # overlaps the first, which has not been off long
                pass
            assert full == []
            now[0] += collector.MAX_PAUSED_SECONDS
            with collector_paused():  # the collector has been off too long: one full collection first
                assert len(full) == 1 and not gc.isenabled()
            now[0] += collector.MAX_PAUSED_SECONDS / 2
            with collector_paused():  # and the clock started again
                assert len(full) == 1
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(note)


def test_young_objects_are_collected_between_chunks_only_while_paused_by_us(monkeypatch):
    monkeypatch.setattr(collector, "YOUNG_BATCH", 10)
    young: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            young.append(info["generation"])

    gc.callbacks.append(note)
    try:
        keep = [[index] for index in range(100)]  # young container objects
        collect_young()  # not paused: the collector does its own work
        assert young == []
        with collector_paused():
            keep += [[index] for index in range(100)]
            collect_young()
            assert young == [0]
            collect_young()  # nothing new since
            assert young == [0]
        gc.disable()
        with collector_paused():  # the program had stopped it: it stays stopped
            keep += [[index] for index in range(100)]
            collect_young()
            assert young == [0]
    finally:
        gc.callbacks.remove(note)
        gc.enable()
    assert len(keep) == 300


class _Counted(_Thinking):
    """A platform whose question is made (the coroutine object) and asked (its first step) in order
    noted in ``events``."""

    def __init__(self, name: str, events: list[str]) -> None:
        super().__init__(name, [])
        self.events = events

    def offers(self, request, *, user=None):
        self.events.append(f"made {self.name}")
        return self._ask()

    async def _ask(self):
        self.events.append(f"asked {self.name}")
        await asyncio.sleep(0.01)
        return OfferSetResponse(result="NO")


def test_a_fan_out_asks_the_first_platforms_before_it_makes_the_last_ones_tasks(monkeypatch):
    """Tasks are made a wave at a time: the first request leaves before 1,000 tasks are made."""
    monkeypatch.setattr(federation, "WAVE", 4)
    events: list[str] = []
    platforms = [_Counted(f"p{index}", events) for index in range(10)]
    results = asyncio.run(Federation(platforms).offers(REQUEST))
    assert [result.platform for result in results] == [f"p{index}" for index in range(10)]
    assert events.index("asked p0") < events.index("made p4")
    assert events.index("asked p4") < events.index("made p8")
    assert sorted(events) == sorted(
        [f"made p{index}" for index in range(10)] + [f"asked p{index}" for index in range(10)]
    )
