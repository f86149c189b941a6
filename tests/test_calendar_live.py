"""The in-memory calendar of a hosted platform stays equal to its database (hosted/calendar_live.py).

A real HostedPlatform on a real SQLite file goes through random offers, accepts, rejects and cancels;
after each step the calendar in memory must show, over many windows, exactly the usage that the
database rows give (read the old way, :meth:`BookingService.usage_peak`). A second platform object on
the same file (a second server) writes in between, and the first must notice and reload.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from test_hosted_platform import SCRIPT, later, make
from test_hosted_support import request_document

from execplanner_widgets.core.platform import SessionConflict
from execplanner_widgets.model import parse_request, utcnow
from execplanner_widgets.model.session import EnumValueUpdate
from jupyter_server_extension.hosted.calendar import to_seconds


async def assert_calendar_matches_database(platform, hours: int = 30) -> None:
    service = platform.service
    calendar = service.live.calendar
    assert not service.live.stale
    start = utcnow().replace(microsecond=0)
    for step in range(0, hours * 60, 37):
        low = start + timedelta(minutes=step)
        high = low + timedelta(minutes=95)
        expected = await service.usage_peak(low, high)
        assert calendar.peak(to_seconds(low), to_seconds(high)) == expected, (low, high)


@pytest.mark.asyncio
async def test_the_calendar_follows_every_change_and_reloads_after_another_server_wrote(tmp_path):
    rng = random.Random(4)
    first = make(tmp_path, cores=16, memory=64, offers=3)
    second = make(tmp_path, cores=16, memory=64, offers=3)  # another server, same database file
    try:
        offered: list[tuple[str, str]] = []  # (uuid, user)
        booked: list[tuple[str, str]] = []
        for round_ in range(14):
            platform = second if round_ % 5 == 4 else first
            user = rng.choice(["ann", "bob"])
            document = request_document(
                SCRIPT,
                cores={"min": rng.randint(1, 8)},
                memory=rng.randint(1, 8),
                duration=f"PT{rng.randint(1, 5)}H",
                start=later(rng.uniform(1, 6)),
            )
            response = await platform.offers(parse_request(document), user=user)
            if response.result == "YES":
                offered.extend((offer.meta.uuid, user) for offer in response.offers)
            action = rng.choice(["accept", "accept", "reject", "cancel", "none"])
            if action == "accept" and offered:
                uuid, owner = offered.pop(rng.randrange(len(offered)))
                try:
                    await first.update_session(uuid, EnumValueUpdate(path="phase", value="ACCEPTED"), user=owner)
                    booked.append((uuid, owner))
                except SessionConflict:
                    pass  # a sibling was accepted already: REJECTED
            elif action == "reject" and offered:
                uuid, owner = offered.pop(rng.randrange(len(offered)))
                try:
                    await first.update_session(uuid, EnumValueUpdate(path="phase", value="REJECTED"), user=owner)
                except SessionConflict:
                    pass
            elif action == "cancel" and booked:
                uuid, owner = booked.pop(rng.randrange(len(booked)))
                await first.update_session(uuid, EnumValueUpdate(path="phase", value="CANCELLED"), user=owner)
            # ask once more, so a calendar that must reload does (it reloads inside a decision)
            quick = request_document(SCRIPT, cores=1, duration="PT1H", start=later(1))
            await first.offers(parse_request(quick), user="carl")
            await assert_calendar_matches_database(first)
        assert first.service.live.reloads >= 2  # the first load, and after the other server wrote
    finally:
        await first.aclose()
        await second.aclose()
