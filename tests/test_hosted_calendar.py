"""The booking calendar on its own: profiles, the sweep, sibling holds, allocations, storage lifetimes.

The sweep is checked against a brute-force answer (try every second) on random calendars, so a
clever shortcut that misses a fit, or offers one that does not fit, fails here.
"""

from __future__ import annotations

import random

import pytest

from jupyter_server_extension.hosted.calendar import Capacity, Hold, Need, Profile, find_slots


def need(
    cores: int = 1,
    memory: int = 1,
    storage: int = 0,
    duration: float = 10,
    *,
    cores_max: int | None = None,
    storage_duration: float | None = None,
) -> Need:
    return Need(
        cores=cores,
        memory=memory,
        storage=storage,
        cores_max=cores_max if cores_max is not None else cores,
        memory_max=memory,
        storage_max=storage,
        duration=duration,
        storage_duration=storage_duration if storage_duration is not None else duration,
    )


def test_profile_is_a_step_function_of_usage():
    profile = Profile.from_holds([Hold(0, 10, 4, 2, 0), Hold(5, 20, 2, 1, 3), Hold(20, 30, 1, 1, 0)])
    assert profile.times == [0, 5, 10, 20, 30]
    assert profile.usage[0] == [4, 6, 2, 1, 0]
    assert profile.peak(0, 10) == (6, 3, 3)
    assert profile.peak(10, 20) == (2, 1, 3)
    # half-open intervals: a hold that ends at 20 and one that starts at 20 never overlap
    assert profile.peak(20, 25) == (1, 1, 0)
    assert profile.peak(30, 40) == (0, 0, 0)
    assert profile.peak(-10, 0) == (0, 0, 0)
    assert list(profile.releases(-1, 100)) == [10, 20, 30]


def test_adding_a_hold_in_place_matches_building_from_scratch():
    holds = [Hold(0, 10, 4, 2, 0), Hold(5, 20, 2, 1, 3)]
    profile = Profile.from_holds(holds)
    extra = Hold(7, 25, 1, 1, 1)
    profile.add(extra)
    rebuilt = Profile.from_holds([*holds, extra])
    for start in range(-2, 30):
        assert profile.peak(start, start + 3) == rebuilt.peak(start, start + 3)


def test_an_empty_calendar_offers_now_then_after_each_sibling():
    slots = find_slots(
        [(Profile.from_holds([]), Capacity(4, 8, None))], need(cores=2, duration=10, cores_max=4), 100, 1000, 3
    )
    # each offer holds what it offers (4 cores), so the next one starts when it ends
    assert [(slot.start, slot.cores) for slot in slots] == [(100, 4), (110, 4), (120, 4)]


def test_a_busy_calendar_offers_later_start_times():
    busy = [Hold(0, 3600, 180, 300, 0), Hold(3600, 7200, 150, 100, 0), Hold(7200, 9000, 100, 100, 0)]
    slots = find_slots(
        [(Profile.from_holds(busy), Capacity(200, 350, None))], need(cores=64, memory=64, duration=1800), 0, 86400, 3
    )
    assert [slot.start for slot in slots] == [7200, 9000, 10800]
    assert all(slot.cores == 64 for slot in slots)


def test_the_offer_gives_what_is_free_up_to_the_maximum_and_never_less_than_the_minimum():
    profile = Profile.from_holds([Hold(0, 100, 6, 0, 0)])
    first = find_slots([(profile, Capacity(8, 8, None))], need(cores=2, duration=10, cores_max=8), 0, 1000, 1)[0]
    assert (first.start, first.cores) == (0, 2)  # only 2 free now: the minimum, not more
    profile = Profile.from_holds([Hold(0, 100, 6, 0, 0)])
    later = find_slots([(profile, Capacity(8, 8, None))], need(cores=3, duration=10, cores_max=8), 0, 1000, 1)[0]
    assert (later.start, later.cores) == (100, 8)  # 3 do not fit before 100; then all 8 are free


def test_the_whole_duration_must_fit_not_just_the_start():
    # free at 0, but a big booking starts at 50: a 60-second slot cannot start before it ends
    profile = Profile.from_holds([Hold(50, 80, 4, 0, 0)])
    slots = find_slots([(profile, Capacity(4, 8, None))], need(cores=1, duration=60), 0, 1000, 1)
    assert slots[0].start == 80


def test_an_exact_start_time_is_offered_only_if_it_fits():
    profile = Profile.from_holds([Hold(0, 100, 4, 0, 0)])
    assert find_slots([(profile, Capacity(4, 8, None))], need(cores=1), 50, 50, 4) == []
    slots = find_slots(
        [(Profile.from_holds([Hold(0, 100, 4, 0, 0)]), Capacity(4, 8, None))], need(cores=1), 100, 100, 4
    )
    assert [slot.start for slot in slots] == [100]


def test_nothing_outside_the_horizon():
    profile = Profile.from_holds([Hold(0, 5000, 4, 0, 0)])
    assert find_slots([(profile, Capacity(4, 8, None))], need(cores=1), 0, 4999, 4) == []


def test_an_allocation_caps_what_one_user_holds_at_a_time():
    platform = Profile.from_holds([Hold(0, 100, 2, 0, 0)])
    mine = Profile.from_holds([Hold(0, 100, 2, 0, 0)])  # the user's own booking
    constraints = [(platform, Capacity(64, 64, None)), (mine, Capacity(3, None, None))]
    slots = find_slots(constraints, need(cores=2, duration=10, cores_max=8), 0, 1000, 2)
    # the platform has room now, but the user's allocation (3 cores) does not until 100
    assert [(slot.start, slot.cores) for slot in slots] == [(100, 3), (110, 3)]


def test_storage_is_held_for_its_lifetime_beyond_the_run():
    profile = Profile.from_holds([])
    wanted = need(cores=1, storage=60, duration=10, storage_duration=100)
    slots = find_slots([(profile, Capacity(8, 8, 100))], wanted, 0, 1000, 3)
    # compute would allow a start every 10 s, but the 60 GiB stay held for 100 s each
    assert [slot.start for slot in slots] == [0, 100, 200]
    assert slots[0].holds(wanted) == [Hold(0, 10, 1, 1, 0), Hold(0, 100, 0, 0, 60)]


def test_unlimited_resources_are_not_tracked():
    profile = Profile.from_holds([Hold(0, 100, 1, 10**6, 0)])
    slots = find_slots([(profile, Capacity(2, None, None))], need(cores=1, memory=500), 0, 100, 1)
    assert slots[0].start == 0


def _brute_force(
    holds: list[Hold], capacity: Capacity, wanted: Need, earliest: int, latest: int, count: int
) -> list[tuple[int, int]]:
    """Every integer start in order, checking every second of the window: obviously right, slow."""
    found: list[tuple[int, int]] = []
    held = list(holds)
    for start in range(earliest, latest + 1):
        if len(found) == count:
            break
        if found and start <= found[-1][0]:
            continue
        free = []
        for index, limit in enumerate(capacity.limits()):
            if limit is None:
                free.append(wanted.maxima()[index])
                continue
            length = wanted.windows()[index]
            used = max(
                sum(hold.amounts()[index] for hold in held if hold.start <= t < hold.end)
                for t in range(start, start + int(length))
            )
            free.append(limit - used)
        if all(f >= m for f, m in zip(free, wanted.minimums(), strict=True)):
            offered = [min(f, m) for f, m in zip(free, wanted.maxima(), strict=True)]
            found.append((start, offered[0]))
            held.append(Hold(start, start + wanted.duration, offered[0], offered[1], 0))
            if offered[2]:
                held.append(Hold(start, start + wanted.storage_duration, 0, 0, offered[2]))
    return found


@pytest.mark.parametrize("seed", range(12))
def test_the_sweep_agrees_with_brute_force_on_random_calendars(seed):
    rng = random.Random(seed)
    capacity = Capacity(8, 16, 20)
    holds = []
    for _ in range(rng.randint(5, 25)):
        start = rng.randint(0, 150)
        holds.append(
            Hold(start, start + rng.randint(1, 40), rng.randint(0, 6), rng.randint(0, 10), rng.choice([0, 0, 5, 10]))
        )
    wanted = Need(
        cores=rng.randint(1, 6),
        memory=rng.randint(1, 8),
        storage=rng.choice([0, 5]),
        cores_max=8,
        memory_max=rng.randint(8, 16),
        storage_max=10,
        duration=rng.randint(1, 30),
        storage_duration=rng.randint(1, 50),
    )
    expected = _brute_force(holds, capacity, wanted, 0, 200, 3)
    slots = find_slots([(Profile.from_holds(holds), capacity)], wanted, 0, 200, 3)
    assert [(int(slot.start), slot.cores) for slot in slots] == expected


def test_need_rejects_a_zero_duration():
    with pytest.raises(ValueError, match="positive duration"):
        need(duration=0)
