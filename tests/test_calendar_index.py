"""The incremental calendar (hosted/calendar_index.py) against the reference sweep and plain sums.

Random calendars (hypothesis) are asked the same questions as the rebuilt :class:`Profile` and its
sweep (:func:`find_slots`, itself checked against a brute force in test_hosted_calendar.py), and
the step functions are compared with a direct sum of the holds at every instant. Small blocks are
forced (``BLOCK``) so that splits, empty blocks and the tree descent are all exercised by a few
dozen holds. Any wrong jump, lost breakpoint or stale tree node makes one of these fail.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_server_extension.hosted import calendar_index
from jupyter_server_extension.hosted.calendar import Capacity, Hold, Need, Profile, find_slots
from jupyter_server_extension.hosted.calendar_index import BookingCalendar, Steps, Usage, search


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(calendar_index, "BLOCK", 2)


holds_strategy = st.lists(
    st.builds(
        lambda start, length, cores, memory, storage: Hold(start, start + length, cores, memory, storage),
        st.integers(0, 150),
        st.integers(0, 40),
        st.integers(0, 6),
        st.integers(0, 10),
        st.sampled_from([0, 0, 5, 10]),
    ),
    max_size=40,
)

needs_strategy = st.builds(
    Need,
    cores=st.integers(1, 7),
    memory=st.integers(1, 9),
    storage=st.sampled_from([0, 0, 5]),
    cores_max=st.integers(1, 8),
    memory_max=st.integers(1, 16),
    storage_max=st.sampled_from([0, 10]),
    duration=st.integers(1, 30),
    storage_duration=st.integers(1, 50),
)

capacities = st.builds(
    Capacity,
    cores=st.sampled_from([None, 4, 8]),
    memory=st.sampled_from([None, 9, 16]),
    storage=st.sampled_from([None, 10, 20]),
)


def plain_usage(holds: list[Hold], at: float) -> tuple[int, int, int]:
    totals = [0, 0, 0]
    for hold in holds:
        if hold.start <= at < hold.end:
            for index, amount in enumerate(hold.amounts()):
                totals[index] += amount
    return tuple(totals)  # type: ignore[return-value]


def plain_peak(holds: list[Hold], start: int, end: int) -> tuple[int, int, int]:
    if end <= start:
        return 0, 0, 0
    # usage changes only at integers here, so the integers of [start, end) cover every instant
    peaks = [plain_usage(holds, t) for t in range(start, end)]
    return tuple(max(values) for values in zip(*peaks, strict=True))  # type: ignore[return-value]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(holds=holds_strategy, removed=st.lists(st.integers(0, 39), max_size=15), bulk=st.booleans())
def test_usage_after_adds_and_removes_equals_a_plain_sum(holds, removed, bulk):
    usage = Usage(holds) if bulk else Usage()
    if not bulk:
        for hold in holds:
            usage.add(hold)
    kept = list(holds)
    for index in sorted(set(removed), reverse=True):
        if index < len(kept):
            usage.remove(kept.pop(index))
    for start in range(-2, 195, 7):
        for length in (1, 3, 25, 60):
            assert usage.peak(start, start + length) == plain_peak(kept, start, start + length)
    for at in range(-1, 195, 3):
        assert tuple(steps.at(at) for steps in usage.steps) == plain_usage(kept, at)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(holds=holds_strategy, start=st.integers(-5, 190), length=st.integers(1, 60), limit=st.integers(0, 12))
def test_the_end_of_the_last_busy_stretch_is_found(holds, start, length, limit):
    steps = Steps()
    for hold in holds:
        if hold.end > hold.start and hold.cores:
            steps.add(hold.start, hold.cores)
            steps.add(hold.end, -hold.cores)
    busy = [t for t in range(start, start + length) if plain_usage(holds, t)[0] > limit]
    found = steps.release_after_last_above(start, start + length, limit)
    if not busy:
        assert found is None
    else:
        # the first instant after the last busy one where usage is back within the limit
        after = busy[-1] + 1
        while plain_usage(holds, after)[0] > limit and plain_usage(holds, after)[0] == plain_usage(holds, after - 1)[0]:
            after += 1
        assert found == after


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    holds=holds_strategy,
    wanted=needs_strategy,
    capacity=capacities,
    earliest=st.integers(0, 100),
    count=st.integers(1, 4),
)
def test_search_finds_the_same_slots_as_the_reference_sweep(holds, wanted, capacity, earliest, count):
    expected = find_slots([(Profile.from_holds(holds), capacity)], wanted, earliest, 200, count)
    usage = Usage(holds)
    before = [usage.peak(t, t + 1) for t in range(0, 260, 5)]
    assert search([(usage, capacity)], wanted, earliest, 200, count) == expected
    # the sibling holds taken while searching are given back
    assert [usage.peak(t, t + 1) for t in range(0, 260, 5)] == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(holds=holds_strategy, mine=holds_strategy, wanted=needs_strategy, count=st.integers(1, 3))
def test_an_allocation_constrains_as_in_the_reference(holds, mine, wanted, count):
    platform, allocation = Capacity(16, 24, None), Capacity(5, None, 12)
    expected = find_slots(
        [(Profile.from_holds(holds + mine), platform), (Profile.from_holds(mine), allocation)], wanted, 0, 200, count
    )
    calendar = BookingCalendar()
    for index, hold in enumerate(holds):
        calendar.put(("other", index), [hold], owner="other")
    for index, hold in enumerate(mine):
        calendar.put(("me", index), [hold], owner="me")
    found = calendar.find_slots(wanted, platform, 0, 200, count, owner="me", allocation=allocation)
    assert found == expected


def test_entries_are_replaced_removed_and_expire():
    calendar = BookingCalendar()
    calendar.put("a", [Hold(0, 100, 4, 2, 0)], owner="ann", expires=50)
    calendar.put("b", [Hold(50, 150, 2, 1, 0)], owner="bob")
    assert calendar.peak(0, 200) == (6, 3, 0)
    calendar.put("b", [Hold(100, 150, 2, 1, 0)], owner="bob")  # replaced, not added
    assert calendar.peak(0, 200) == (4, 2, 0)
    assert calendar.peak(0, 200, "ann", by_owner=True) == (4, 2, 0)
    assert calendar.expire(49) == 0
    assert calendar.expire(50) == 1  # an offer holds while expires > now
    assert calendar.peak(0, 200) == (2, 1, 0)
    calendar.put("a", [Hold(0, 10, 1, 1, 0)], owner="ann")  # accepted: no expiry any more
    assert calendar.expire(9) == 0
    calendar.discard("b")
    calendar.discard("nothing")
    assert calendar.peak(0, 200) == (1, 1, 0)
    assert "bob" not in calendar.owners
    calendar.expire(10)  # what is over is dropped: a long-running server does not keep the past
    assert calendar.entries == {} and calendar.usage.empty()


def test_a_restart_loads_the_same_calendar_as_one_built_hold_by_hold():
    rng = random.Random(3)
    rows = []
    for index in range(500):
        start = rng.randint(0, 10_000)
        rows.append(
            (
                index,
                [Hold(start, start + rng.randint(1, 900), rng.randint(1, 8), rng.randint(1, 8), 0)],
                f"u{index % 7}",
                None,
            )
        )
    loaded = BookingCalendar.load(rows)
    built = BookingCalendar()
    for key, holds, owner, expires in rows:
        built.put(key, holds, owner, expires)
    for start in range(0, 11_000, 97):
        assert loaded.peak(start, start + 300) == built.peak(start, start + 300)
        assert loaded.peak(start, start + 300, "u3", by_owner=True) == built.peak(
            start, start + 300, "u3", by_owner=True
        )


def test_the_executor_overlay_is_applied_as_a_difference():
    calendar = BookingCalendar()
    calendar.put("booking", [Hold(0, 100, 2, 0, 0)])
    jobs = [Hold(10 * i, 10 * i + 50, 1, 0, 0) for i in range(100)]
    assert calendar.set_overlay(jobs) == 100
    assert calendar.peak(0, 1) == (3, 0, 0)
    assert calendar.set_overlay(jobs[1:] + [Hold(2000, 2100, 3, 0, 0)]) == 2  # one gone, one new
    assert calendar.peak(0, 1) == (2, 0, 0)
    assert calendar.peak(2000, 2001) == (3, 0, 0)
    assert calendar.set_overlay([]) == 100
    assert calendar.peak(0, 5000) == (2, 0, 0)


def test_a_need_above_the_capacity_finds_nothing():
    calendar = BookingCalendar()
    wanted = Need(
        cores=9, memory=1, storage=0, cores_max=9, memory_max=1, storage_max=0, duration=10, storage_duration=10
    )
    assert calendar.find_slots(wanted, Capacity(8, 8, None), 0, 1000, 3) == []


def test_replacing_entries_many_times_keeps_the_heaps_small_and_expiry_right():
    calendar = BookingCalendar()
    for round_ in range(3000):  # one offer changed again and again (as flushes replace a session's holds)
        calendar.put("offer", [Hold(1000, 2000, 1, 1, 0)], owner="ann", expires=500 + round_ % 3)
    calendar.put("booking", [Hold(0, 3000, 2, 0, 0)])
    assert len(calendar._expiry) <= 2 * len(calendar.entries) + 1030
    assert len(calendar._ends) <= 2 * len(calendar.entries) + 1030
    assert calendar.peak(1000, 1001) == (3, 1, 0)
    calendar.expire(502)  # the last expiry written (500 + 2999 % 3) is the one that counts
    assert calendar.peak(1000, 1001) == (2, 0, 0)
