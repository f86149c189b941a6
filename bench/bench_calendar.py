"""Booking-calendar benchmark: "when can I do this?" stays fast with 100,000 bookings.

Prints figures measured in this one run (no thresholds; they are for reading and the report):

1. the sweep alone (:func:`find_slots` on a :class:`Profile`) on a busy calendar of 1,000,
   10,000 and 100,000 bookings, where a big request only fits after the last booking, so every
   release instant is a candidate: time per search and the growth 100,000 / 1,000;
2. a naive scan on the same calendars (for every candidate start, look at every booking), at
   sizes where it finishes in reasonable time: naive / sweep at each size;
3. end to end through ``HostedPlatform.offers`` on a real SQLite file: a year of 100,000
   bookings and a 14-day horizon, against a year of 1,000 bookings: the time index means the
   question reads only the bookings near the horizon.

Usage: ``python bench/bench_calendar.py [--rounds 3] [--naive 1000,3000,10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bookings import insert_bookings

from execplanner_widgets.core.platform import PlatformContext
from execplanner_widgets.model import parse_request, utcnow
from jupyter_server_extension.hosted.calendar import Capacity, Hold, Need, Profile, find_slots
from jupyter_server_extension.hosted.calendar_index import BookingCalendar
from jupyter_server_extension.hosted.platform import HostedPlatform

CAPACITY = Capacity(cores=200, memory=350, storage=None)
BIG = Need(
    cores=190,
    memory=64,
    storage=0,
    cores_max=190,
    memory_max=64,
    storage_max=0,
    duration=4 * 3600,
    storage_duration=4 * 3600,
)
OFFERS = 4


def busy_calendar(count: int, seed: int = 7) -> list[Hold]:
    """``count`` bookings of 1-40 cores for 30 min to 6 h, packed so that about 120 cores are in
    use at any time: a 190-core request for 4 h does not fit until the calendar ends, so every
    release instant is a candidate (the worst case for both algorithms)."""
    rng = random.Random(seed)
    mean_cores, mean_hours = 20.5, 3.25
    span = count * mean_cores * mean_hours * 3600 / 120
    holds = []
    for _ in range(count):
        start = rng.uniform(0, span)
        holds.append(Hold(start, start + rng.uniform(0.5, 6) * 3600, rng.randint(1, 40), rng.randint(1, 8), 0))
    return holds


def sweep(holds: list[Hold]) -> list[float]:
    profile = Profile.from_holds(holds)
    return [slot.start for slot in find_slots([(profile, CAPACITY)], BIG, 0.0, 1e12, OFFERS)]


def naive(holds: list[Hold]) -> list[float]:
    """For each candidate start (now, then every booking's end), scan every booking for overlaps
    and sweep just those: the obvious algorithm, O(bookings) per candidate."""
    held = list(holds)
    found: list[float] = []
    candidates = [0.0, *sorted({hold.end for hold in holds})]
    index = 0
    while index < len(candidates) and len(found) < OFFERS:
        start = candidates[index]
        index += 1
        if found and start <= found[-1]:
            continue
        end = start + BIG.duration
        events: list[tuple[float, int]] = []
        for hold in held:
            if hold.start < end and hold.end > start:
                events.append((max(hold.start, start), hold.cores))
                events.append((hold.end, -hold.cores))
        events.sort(key=lambda item: (item[0], item[1]))
        used = peak = 0
        for _, delta in events:
            used += delta
            peak = max(peak, used)
        if CAPACITY.cores - peak >= BIG.cores:
            found.append(start)
            held.append(Hold(start, end, BIG.cores, BIG.memory, 0))
            bisect.insort(candidates, end, lo=index)  # the sibling offer's end is a candidate too
    return found


def best_of(rounds: int, function: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


# ------------------------------------------------------------------------------- end to end


def fill_database(platform: HostedPlatform, future: int, past: int, horizon_days: int = 14) -> None:
    """``future`` accepted bookings in the next ``horizon_days`` days and ``past`` finished ones
    over the year before, written in bulk (as a platform that has been busy for a year has).
    4,000 upcoming bookings of 1-7 cores for 30 min to 3.5 h keep about 100 of 200 cores busy."""
    rng = random.Random(11)
    now = utcnow()

    def slots():
        for index in range(future + past):
            if index < future:
                offset, finished = rng.uniform(0, horizon_days * 86400), False
            else:
                offset, finished = -rng.uniform(7 * 3600, 365 * 86400), True
            start = now + timedelta(seconds=int(offset))
            end = start + timedelta(seconds=int(rng.uniform(0.5, 3.5) * 3600))
            yield start, end, "bench", finished

    insert_bookings(platform, slots(), rng)


async def end_to_end(future: int, past: int, rounds: int) -> tuple[float, int]:
    """Seconds per ``offers()`` call (best of ``rounds``) on a calendar of ``future`` + ``past`` bookings."""
    with tempfile.TemporaryDirectory() as folder:
        platform = HostedPlatform.from_config(
            "bench",
            "Benchmark",
            {
                "cores": 200,
                "memory": 350,
                "horizon": "P14D",
                "offers": OFFERS,
                "local_roots": [str(Path(__file__).resolve().parents[1] / "tests" / "data")],
            },
            PlatformContext(data_dir=Path(folder)),
        )
        try:
            await platform.start()
            fill_database(platform, future, past)
            script = Path(__file__).resolve().parents[1] / "tests" / "data" / "hosted" / "sum_numbers.py"
            request = parse_request(
                {
                    "executable": {"kind": "python-script", "location": str(script)},
                    "compute": {"cores": {"min": 64}, "memory": {"min": 64}},
                    "schedule": {"requested": {"duration": "PT4H"}},
                }
            )
            times, offered = [], 0
            for _ in range(rounds):
                started = time.perf_counter()
                response = await platform.offers(request, user="someone")
                times.append(time.perf_counter() - started)
                offered = len(response.offers)
                for offer in response.offers:  # give the time back, so every round asks the same question
                    await platform.reject(offer.meta.uuid, user="someone")
            return min(times), offered
        finally:
            await platform.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--naive", default="1000,3000,10000", help="calendar sizes at which to run the naive scan too")
    args = parser.parse_args()
    naive_sizes = [int(size) for size in args.naive.split(",") if size]

    print("1. The sweep on a busy calendar (a 190-core, 4 h request fits only after the last booking)")
    sweep_times: dict[int, float] = {}
    for count in sorted({1_000, 10_000, 100_000, *naive_sizes}):
        holds = busy_calendar(count)
        seconds, starts = best_of(args.rounds, lambda holds=holds: sweep(holds))
        sweep_times[count] = seconds
        print(f"   {count:>7} bookings: {seconds * 1000:9.1f} ms for {len(starts)} offers")  # type: ignore[arg-type]
    growth = sweep_times[100_000] / sweep_times[1_000]
    print(
        f"   100,000 / 1,000 bookings: {growth:.0f}x the time for 100x the bookings (a scan per candidate would be ~10,000x)"
    )

    print("1b. The incremental calendar (calendar_index.BookingCalendar), loaded once, same questions")
    for count in sorted({1_000, 10_000, 100_000}):
        holds = busy_calendar(count)
        started = time.perf_counter()
        calendar = BookingCalendar.load((index, [hold], None, None) for index, hold in enumerate(holds))
        loaded = time.perf_counter() - started
        seconds, starts = best_of(
            args.rounds,
            lambda calendar=calendar: [s.start for s in calendar.find_slots(BIG, CAPACITY, 0.0, 1e12, OFFERS)],
        )
        same = "same offers" if starts == sweep(holds) else "DIFFERENT offers"
        print(
            f"   {count:>7} bookings: {seconds * 1000:9.1f} ms per question ({same}; loaded once in {loaded * 1000:.0f} ms); "
            f"sweep / index = {sweep_times[count] / seconds:.1f}x"
        )
    print(
        "   (this worst case has no fit until the calendar ends: the index jumps past each busy stretch, the sweep visits every release)"
    )

    print("2. A naive scan (every booking, for every candidate start) on the same calendars")
    for count in naive_sizes:
        holds = busy_calendar(count)
        seconds, starts = best_of(1, lambda holds=holds: naive(holds))
        check = sweep(holds)
        same = "same offers" if starts == check else "DIFFERENT offers"
        print(
            f"   {count:>7} bookings: {seconds * 1000:9.1f} ms ({same}); naive / sweep = {seconds / sweep_times[count]:.0f}x"
        )

    print("3. HostedPlatform.offers end to end on SQLite (14-day horizon; a year of finished bookings behind)")
    cases = {
        "1,000 upcoming": (1_000, 0),
        "4,000 upcoming": (4_000, 0),
        "4,000 upcoming + 96,000 past (100,000)": (4_000, 96_000),
    }
    results = {label: asyncio.run(end_to_end(future, past, args.rounds)) for label, (future, past) in cases.items()}
    for label, (seconds, offered) in results.items():
        print(f"   {label:>40}: {seconds * 1000:8.1f} ms per request ({offered} offers)")
    full, same_window = results["4,000 upcoming + 96,000 past (100,000)"][0], results["4,000 upcoming"][0]
    print(f"   100,000 bookings / the same 4,000 upcoming alone: {full / same_window:.2f}x (the index skips the past)")
    print(f"   100,000 bookings / 1,000 bookings: {full / results['1,000 upcoming'][0]:.1f}x")


if __name__ == "__main__":
    main()
