"""Row 1 of issue 12: one ``offers`` call on a hosted platform with 1,000 / 10,000 / 100,000 bookings
inside the horizon: p50 and p99, and how the time grows with the bookings.

Goal: p50 <= 10 ms, p99 <= 30 ms at 100,000 bookings; growth no more than log n per query once the
calendar is loaded (log 100,000 / log 1,000 = 1.67x from 1,000 to 100,000 bookings).

Each size gets a real SQLite file filled in bulk with WAITING bookings of 1-7 cores for 30 min to
3.5 h spread over the 14-day horizon (capacity sized so the calendar is about half busy). The first
call loads the calendar (printed apart); then ``--rounds`` calls of ``HostedPlatform.offers`` for a
third of the cores for 4 h are timed, each followed by rejecting its offers so every round asks the
same question. In the same run, the old path (read every hold in the horizon, rebuild and sort a
``Profile``, sweep) is timed on the same database: the "before" figure and the ratio.

Usage: ``python bench/bench_offers.py [--sizes 1000,10000,100000] [--rounds 60]``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from _bookings import insert_bookings
from _common import ROOT, figure, ms, percentile

from execplanner_widgets.core.platform import PlatformContext
from execplanner_widgets.model import parse_request, utcnow
from jupyter_server_extension.hosted.calendar import Capacity, Profile, find_slots, to_seconds
from jupyter_server_extension.hosted.platform import HostedPlatform
from jupyter_server_extension.hosted.store import select_holds

HORIZON_DAYS = 14
OFFERS = 4


def capacity_for(count: int) -> int:
    """About twice the mean load: 4 cores x 2 h per booking on average, over the horizon."""
    mean = count * 4 * 2 / (HORIZON_DAYS * 24)
    return int(2 * mean) + 64


def fill(platform: HostedPlatform, count: int) -> None:
    """``count`` upcoming bookings of 200 users, 30 min to 3.5 h each, spread over the horizon."""
    rng = random.Random(11)
    now = utcnow()

    def slots():
        for _ in range(count):
            start = now + timedelta(seconds=int(rng.uniform(600, HORIZON_DAYS * 86400)))
            end = start + timedelta(seconds=int(rng.uniform(0.5, 3.5) * 3600))
            yield start, end, f"user{rng.randint(0, 199)}", False

    insert_bookings(platform, slots(), rng)


def old_path(platform: HostedPlatform, cores: int, need: object) -> float:
    """The calendar as it was: every hold in the horizon read and sorted for each question."""
    started = time.perf_counter()
    now = utcnow()
    high = now + timedelta(days=HORIZON_DAYS, hours=4)
    with platform.store.read() as session:
        holds = select_holds(session, platform.name, now, high, now)
    profile = Profile.from_holds(holds)
    find_slots(
        [(profile, Capacity(cores, 10**6, None))],
        need,
        to_seconds(now),
        to_seconds(now + timedelta(days=HORIZON_DAYS)),
        OFFERS,
    )  # type: ignore[arg-type]
    return time.perf_counter() - started


async def measure(count: int, rounds: int, old_rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        cores = capacity_for(count)
        platform = HostedPlatform.from_config(
            "bench",
            "Benchmark",
            {
                "cores": cores,
                "memory": 10**6,
                "horizon": f"P{HORIZON_DAYS}D",
                "offers": OFFERS,
                "offer_ttl": "PT1H",
                "local_roots": [str(ROOT / "tests" / "data")],
            },
            PlatformContext(data_dir=Path(folder)),
        )
        try:
            await platform.start()
            fill(platform, count)
            script = ROOT / "tests" / "data" / "hosted" / "sum_numbers.py"
            request = parse_request(
                {
                    "executable": {"kind": "python-script", "location": str(script)},
                    "compute": {"cores": {"min": cores // 3}, "memory": {"min": 8}},
                    "schedule": {"requested": {"duration": "PT4H"}},
                }
            )

            async def ask() -> tuple[float, int]:
                started = time.perf_counter()
                response = await platform.offers(request, user="someone")
                took = time.perf_counter() - started
                for offer in response.offers:  # give the time back: every round asks the same question
                    await platform.reject(offer.meta.uuid, user="someone")
                return took, len(response.offers)

            first, offered = await ask()
            times = [(await ask())[0] for _ in range(rounds)]
            from jupyter_server_extension.hosted.plan import plan_request

            plan, _ = plan_request(request, platform.options, utcnow())
            old = [old_path(platform, cores, plan.need) for _ in range(old_rounds)]  # type: ignore[union-attr]
            return {
                "first": first,
                "p50": percentile(times, 0.5),
                "p99": percentile(times, 0.99),
                "old": percentile(old, 0.5),
                "offered": offered,
            }
        finally:
            await platform.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--old-rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = {}
    for count in sizes:
        results[count] = result = asyncio.run(measure(count, args.rounds, args.old_rounds))
        print(
            f"   {count:>7,} bookings: first call (loads the calendar) {ms(result['first'])}, "
            f"{args.rounds} calls p50 {ms(result['p50'])} p99 {ms(result['p99'])} ({result['offered']:.0f} offers); "
            f"old path p50 {ms(result['old'])}",
            flush=True,
        )
    big, small = max(sizes), min(sizes)
    top = results[big]
    figure(f"offers p50 at {big:,} bookings", ms(top["p50"]), "<= 10 ms", top["p50"] <= 0.010)
    figure(f"offers p99 at {big:,} bookings", ms(top["p99"]), "<= 30 ms", top["p99"] <= 0.030)
    if big != small:
        growth, allowed = top["p50"] / results[small]["p50"], math.log(big) / math.log(small)
        figure(
            f"offers p50 growth {small:,} -> {big:,} bookings",
            f"{growth:.2f}x",
            f"<= {allowed:.2f}x (log n)",
            growth <= allowed,
        )
    figure(
        f"old path / new path p50 at {big:,} bookings", f"{top['old'] / top['p50']:.0f}x", "(before/after, same run)"
    )


if __name__ == "__main__":
    main()
