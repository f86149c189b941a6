"""StaticPlatform: YES offers that say exactly what is offered, NO answers that say why."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from execplanner_widgets import SessionPhase, parse_request
from execplanner_widgets.core.platform import SessionConflict, SessionNotFound
from execplanner_widgets.platforms.static import StaticOptions, StaticPlatform


def run(coroutine):
    return asyncio.run(coroutine)


def platform(**options) -> StaticPlatform:
    return StaticPlatform("cesga", "CESGA cloud", options=StaticOptions.model_validate(options))


def request(**compute):
    document = {"executable": {"kind": compute.pop("kind", "docker-container"), "image": "docker.io/x:1"}}
    duration = compute.pop("duration", None)
    storage = compute.pop("storage", None)
    if compute:
        document["compute"] = compute
    if duration:
        document["schedule"] = {"requested": {"duration": duration}}
    if storage:
        document["storage"] = [{"size": {"min": storage}}]
    return parse_request(document)


def test_yes_offer_fills_in_the_maximum_it_gives():
    answer = run(platform(cores=32, memory=64).offers(request(cores={"min": 4, "max": 16}, memory={"min": 8})))
    assert answer.result == "YES"
    offer = answer.offers[0]
    assert offer.phase is SessionPhase.OFFERED
    assert (offer.compute.cores.min, offer.compute.cores.max) == (4, 16)
    assert (offer.compute.memory.min, offer.compute.memory.max) == (8, 8)
    assert offer.expires > offer.start
    assert offer.schedule.available.duration == timedelta(hours=1)


def test_flavours_round_a_request_up_as_openstack_does():
    cloud = platform(
        cores=32,
        memory=64,
        flavours=[{"name": "m1.large", "cores": 4, "memory": 8}, {"name": "m1.xlarge", "cores": 8, "memory": 16}],
    )
    offer = run(cloud.offers(request(cores={"min": 3}, memory={"min": "5G"}))).offers[0]
    assert (offer.cores, offer.memory) == (4, 8)
    assert "m1.large" in offer.messages[0].text
    bigger = run(cloud.offers(request(cores={"min": 5}))).offers[0]
    assert bigger.cores == 8


def test_flavour_larger_than_the_requested_maximum_is_no():
    cloud = platform(flavours=[{"name": "m1.xlarge", "cores": 8, "memory": 16}])
    answer = run(cloud.offers(request(cores={"min": 2, "max": 4})))
    assert answer.result == "NO"
    assert any("more than the maximum asked for" in reason for reason in answer.reasons)


def test_no_carries_one_message_per_unmet_requirement_and_the_nearest_offer():
    cloud = platform(accepts=["docker-container"], cores=32, memory=64, storage=100, duration="PT12H")
    answer = run(
        cloud.offers(
            request(kind="jupyter-notebook", cores={"min": 220}, memory={"min": "360G"}, storage="2T", duration="2d")
        )
    )
    assert answer.result == "NO" and answer.offers == []
    reasons = answer.reasons
    assert "cannot run a jupyter-notebook executable; this platform runs docker-container" in reasons
    assert "needs 220 cores; this platform has at most 32 cores" in reasons
    assert "needs 336 GiB of memory; this platform has at most 64 GiB of memory" in reasons
    assert "needs 1863 GiB of storage; this platform has at most 100 GiB of storage" in reasons
    assert "needs 2d; this platform allows at most 12h" in reasons
    assert reasons[-1].startswith("the most this platform could offer: 32 cores, 64 GiB memory, 100 GiB storage")
    options = {option.path: option for option in answer.meta.options}
    assert options["compute.cores.min"].max == 32
    assert options["compute.memory.min"].max == 64
    assert answer.to_wire()["meta"]["messages"][0]["level"] == "WARN"


def test_allocations_tighten_the_limits_for_one_user():
    cloud = platform(cores=32, memory=64, allocations={"alice": {"cores": 8}})
    assert run(cloud.offers(request(cores={"min": 16}), user="bob")).result == "YES"
    answer = run(cloud.offers(request(cores={"min": 16}), user="alice"))
    assert answer.result == "NO"
    assert "needs 16 cores; your allocation on CESGA cloud has at most 8 cores" in answer.reasons


def test_missing_data_is_a_reason():
    document = {
        "executable": {"kind": "docker-container"},
        "data": [{"meta": {"name": "images"}, "required": True}],
    }
    answer = run(platform().offers(parse_request(document)))
    assert answer.result == "NO"
    assert "the data item 'images' has no location yet: find it before running" in answer.reasons


def test_accept_books_one_and_reject_or_late_accept_conflict():
    cloud = platform(cores=8, url="https://cloud.example.org/dashboard")

    async def scenario():
        first = (await cloud.offers(request(cores={"min": 1}))).offers[0]
        accepted = await cloud.accept(first.uuid)
        assert accepted.phase is SessionPhase.ACCEPTED
        assert accepted.connectors[0].location == "https://cloud.example.org/dashboard"
        with pytest.raises(SessionConflict):
            await cloud.accept(first.uuid)
        second = (await cloud.offers(request(cores={"min": 1}))).offers[0]
        assert (await cloud.reject(second.uuid)).phase is SessionPhase.REJECTED
        with pytest.raises(SessionConflict, match="REJECTED to ACCEPTED"):
            await cloud.accept(second.uuid)
        cancelled = await cloud.cancel(first.uuid)
        assert cancelled.phase is SessionPhase.CANCELLED
        with pytest.raises(SessionNotFound):
            await cloud.session("no-such-session")

    run(scenario())


def test_expired_offers_cannot_be_accepted():
    cloud = platform(offer_ttl="PT0S")

    async def scenario():
        offer = (await cloud.offers(request())).offers[0]
        with pytest.raises(SessionConflict, match="EXPIRED"):
            await cloud.accept(offer.uuid)
        assert (await cloud.session(offer.uuid)).phase is SessionPhase.EXPIRED

    run(scenario())


def test_describe_lists_kinds_limits_and_flavours():
    cloud = platform(
        accepts=["uri://docker-container"],
        cores=32,
        memory=64,
        duration="PT12H",
        flavours=[{"name": "s", "cores": 1, "memory": 2}],
    )
    description = cloud.describe()
    assert description.accepts == ["docker-container"]
    assert description.limits == {"cores": 32, "memory": 64, "duration": "PT12H"}
    assert description.model_dump()["flavours"][0]["name"] == "s"


def test_bad_options_are_refused():
    with pytest.raises(ValueError):
        StaticOptions.model_validate({"cores": -1})
    with pytest.raises(ValueError):
        StaticOptions.model_validate({"memory": "lots"})


def test_offers_that_ended_long_ago_are_forgotten(monkeypatch):
    from execplanner_widgets.platforms import static

    cloud = platform(offer_ttl="PT0S")

    async def scenario():
        kept = (await cloud.offers(request())).offers[0]
        assert (await cloud.session(kept.uuid)).phase is SessionPhase.EXPIRED
        monkeypatch.setattr(static, "FORGET_AFTER", timedelta(0))  # offers made from now on end at once
        old = (await cloud.offers(request())).offers[0]
        (await cloud.offers(request())).offers[0]  # the next question forgets the one that ended
        with pytest.raises(SessionNotFound):
            await cloud.session(old.uuid)
        assert (await cloud.session(kept.uuid)).phase is SessionPhase.EXPIRED  # its hour is not over

    run(scenario())


def test_accepted_sessions_are_kept_and_cancelled_ones_forgotten(monkeypatch):
    from execplanner_widgets.platforms import static

    monkeypatch.setattr(static, "FORGET_AFTER", timedelta(0))
    cloud = platform()

    async def scenario():
        offer = (await cloud.offers(request())).offers[0]
        await cloud.accept(offer.uuid)
        cloud._forget_ended(offer.expires + timedelta(days=2))  # long after the offer would have ended
        assert (await cloud.session(offer.uuid)).phase is SessionPhase.ACCEPTED
        assert (await cloud.cancel(offer.uuid)).phase is SessionPhase.CANCELLED
        (await cloud.offers(request())).offers[0]
        with pytest.raises(SessionNotFound):
            await cloud.session(offer.uuid)

    run(scenario())


def test_an_expired_offer_reads_expired_with_the_time_it_expired():
    cloud = platform(offer_ttl="PT0S")

    async def scenario():
        offer = (await cloud.offers(request())).offers[0]
        first, second = await cloud.session(offer.uuid), await cloud.session(offer.uuid)
        assert first.phase is second.phase is SessionPhase.EXPIRED
        assert first.messages[-1].time == second.messages[-1].time == offer.expires
        assert [m.message for m in second.messages].count("the offer expired before it was accepted") == 1

    run(scenario())
