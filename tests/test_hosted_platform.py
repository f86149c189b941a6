"""HostedPlatform in-process (no server): offers from the calendar, holds and expiry, accept and
reject, allocations, NO reasons, state after a restart, and no overbooking when two platform
objects (two "servers") share one SQLite file.

Sessions booked here start an hour or more ahead, so nothing runs: execution has its own tests.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from test_hosted_support import DATA, request_document

from execplanner_widgets.core.platform import PlatformContext, SessionConflict, SessionNotFound
from execplanner_widgets.model import InvalidRequest, SessionPhase, format_instant, parse_request, utcnow
from execplanner_widgets.model.session import EnumValueUpdate, StringValueUpdate
from jupyter_server_extension.hosted.platform import HostedPlatform, RequestRefused

SCRIPT = DATA / "sum_numbers.py"


def later(hours: float = 1) -> str:
    """A start window beginning ``hours`` from now (so the session waits instead of running)."""
    return f"{format_instant(utcnow() + timedelta(hours=hours))}/PT12H"


def make(tmp_path: Path, name: str = "gaia", **options) -> HostedPlatform:
    defaults = {"cores": 8, "memory": 16, "storage": 100, "offers": 3, "offer_ttl": "PT5M"}
    defaults.update(options)
    return HostedPlatform.from_config(name, f"{name} platform", defaults, PlatformContext(data_dir=tmp_path / "state"))


@pytest_asyncio.fixture
async def platforms(tmp_path):
    """Make platforms with ``platforms(**options)``; all are closed after the test."""
    made: list[HostedPlatform] = []

    def factory(name: str = "gaia", **options) -> HostedPlatform:
        platform = make(tmp_path, name, **options)
        made.append(platform)
        return platform

    yield factory
    for platform in made:
        await platform.aclose()


@pytest.mark.asyncio
async def test_a_busy_platform_offers_several_later_start_times(platforms):
    now = utcnow()
    gaia = platforms(
        cores=200,
        memory=350,
        reservations=[
            {"name": "survey", "start": "PT0S", "duration": "PT3H", "cores": 180, "memory": 300},
            {"name": "reprocessing", "start": "PT3H", "duration": "PT2H", "cores": 150},
        ],
    )
    request = parse_request(request_document(SCRIPT, cores={"min": 64, "max": 100}, memory=64, duration="PT2H"))
    response = await gaia.offers(request, user="alice")
    assert response.result == "YES"
    starts = [offer.start for offer in response.offers]
    assert len(starts) == 3 and starts == sorted(starts) and len(set(starts)) == 3
    # nothing fits while the survey holds 180 of 200 cores; 64 fit once it ends (50 free during
    # reprocessing is not enough), so the first offer starts after both reservations
    assert starts[0] >= now + timedelta(hours=5)
    for offer in response.offers:
        assert offer.phase is SessionPhase.OFFERED
        assert offer.kind.endswith("/session/scheduled-execution-session.yaml")
        assert offer.expires is not None and offer.expires > utcnow()
        assert 64 <= offer.cores <= 100
        assert offer.schedule.preparing.start is not None and offer.schedule.releasing.start == offer.end
        assert offer.messages and offer.messages[0].level == "INFO" and offer.messages[0].time is not None
    assert response.messages[0].text.startswith("3 offers")


@pytest.mark.asyncio
async def test_offers_hold_capacity_until_they_expire(platforms):
    small = platforms(cores=4, memory=8, offers=2, offer_ttl="PT2S")
    window = f"{format_instant(utcnow() + timedelta(hours=1))}/PT0S"  # exactly then
    request = parse_request(request_document(SCRIPT, cores=4, duration="PT10M", start=window))
    first = await small.offers(request, user="alice")
    assert first.result == "YES" and len(first.offers) == 1
    # the offer holds all 4 cores at that time: another user gets NO for the same start
    second = await small.offers(request, user="bob")
    assert second.result == "NO"
    assert "does not have 4 cores" in second.reasons[0]
    await asyncio.sleep(2.5)
    # expired: it no longer holds anything, and cannot be accepted
    third = await small.offers(request, user="bob")
    assert third.result == "YES"
    old = await small.session(first.offers[0].meta.uuid, user="alice")
    assert old.phase is SessionPhase.EXPIRED
    with pytest.raises(SessionConflict, match="expired"):
        await small.accept(first.offers[0].meta.uuid, user="alice")


@pytest.mark.asyncio
async def test_accept_books_one_offer_and_rejects_its_siblings(platforms):
    gaia = platforms()
    response = await gaia.offers(parse_request(request_document(SCRIPT, cores=2, start=later())), user="alice")
    chosen, *others = response.offers
    session = await gaia.accept(chosen.meta.uuid, user="alice")
    assert session.phase is SessionPhase.ACCEPTED
    assert "accepted" in session.messages[-1].text
    for other in others:
        sibling = await gaia.session(other.meta.uuid, user="alice")
        assert sibling.phase is SessionPhase.REJECTED
        assert "accepted" in sibling.messages[-1].text
        with pytest.raises(SessionConflict, match="REJECTED"):
            await gaia.accept(other.meta.uuid, user="alice")
    with pytest.raises(SessionConflict):
        await gaia.accept(chosen.meta.uuid, user="alice")
    offerset = await gaia.offerset(response.meta.uuid, user="alice")
    assert [offer.phase for offer in offerset.offers].count(SessionPhase.REJECTED) == len(others)
    # the runner moves it on to WAITING (its start is an hour away)
    for _ in range(40):
        if (await gaia.session(chosen.meta.uuid, user="alice")).phase is SessionPhase.WAITING:
            break
        await asyncio.sleep(0.1)
    assert (await gaia.session(chosen.meta.uuid, user="alice")).phase is SessionPhase.WAITING


@pytest.mark.asyncio
async def test_reject_releases_and_cancel_frees_a_booking(platforms):
    small = platforms(cores=2, offers=1)
    window = f"{format_instant(utcnow() + timedelta(hours=2))}/PT0S"
    request = parse_request(request_document(SCRIPT, cores=2, start=window))
    offer = (await small.offers(request, user="alice")).offers[0]
    assert (await small.offers(request, user="bob")).result == "NO"
    rejected = await small.reject(offer.meta.uuid, user="alice")
    assert rejected.phase is SessionPhase.REJECTED
    assert (await small.reject(offer.meta.uuid, user="alice")).phase is SessionPhase.REJECTED  # harmless twice
    booked = (await small.offers(request, user="bob")).offers[0]
    await small.accept(booked.meta.uuid, user="bob")
    assert (await small.offers(request, user="carol")).result == "NO"
    cancelled = await small.cancel(booked.meta.uuid, user="bob")
    assert cancelled.phase is SessionPhase.CANCELLED
    assert (await small.offers(request, user="carol")).result == "YES"
    with pytest.raises(SessionConflict, match="is CANCELLED"):
        await small.reject(booked.meta.uuid, user="bob")


@pytest.mark.asyncio
async def test_sessions_belong_to_their_user(platforms):
    gaia = platforms()
    offer = (await gaia.offers(parse_request(request_document(SCRIPT, start=later())), user="alice")).offers[0]
    with pytest.raises(SessionNotFound):
        await gaia.session(offer.meta.uuid, user="mallory")
    with pytest.raises(SessionNotFound):
        await gaia.accept(offer.meta.uuid, user="mallory")
    with pytest.raises(SessionNotFound):
        await gaia.session("no-such-session", user="alice")


@pytest.mark.asyncio
async def test_allocations_cap_what_a_user_asks_and_holds(platforms):
    gaia = platforms(
        cores=16, allocations={"alice": {"cores": 4}}, local_roots=[str(DATA)]
    )  # several users: named roots
    too_big = await gaia.offers(parse_request(request_document(SCRIPT, cores=6, start=later())), user="alice")
    assert too_big.result == "NO"
    assert any("your allocation on gaia platform" in reason and "6 cores" in reason for reason in too_big.reasons)
    assert any(option.path == "compute.cores.min" and option.max == 4 for option in too_big.meta.options)
    assert (
        await gaia.offers(parse_request(request_document(SCRIPT, cores=6, start=later())), user="bob")
    ).result == "YES"
    # alice books 4 cores for an hour from T; her next request cannot overlap it, although the platform could
    window = f"{format_instant(utcnow() + timedelta(hours=1))}/PT0S"
    first = (
        await gaia.offers(parse_request(request_document(SCRIPT, cores=4, duration="PT1H", start=window)), user="alice")
    ).offers[0]
    await gaia.accept(first.meta.uuid, user="alice")
    again = await gaia.offers(
        parse_request(request_document(SCRIPT, cores=2, duration="PT1H", start=window)), user="alice"
    )
    assert again.result == "NO"
    assert "your allocation" in again.reasons[0] and "would fit the platform itself" in again.reasons[0]
    assert (
        await gaia.offers(parse_request(request_document(SCRIPT, cores=2, duration="PT1H", start=window)), user="bob")
    ).result == "YES"


@pytest.mark.asyncio
async def test_no_answers_say_why(platforms, tmp_path):
    gaia = platforms(cores=8, memory=16, max_duration="PT2H", horizon="P1D")
    cases = [
        (request_document(SCRIPT, cores=64), "needs 64 cores; gaia platform has at most 8 cores"),
        (request_document(SCRIPT, duration="PT5H"), "allows at most 2h"),
        (
            request_document("docker.io/library/python:3.12", kind="docker-container"),
            "cannot run a docker-container executable",
        ),
        (request_document(tmp_path / "missing.py"), "no such file"),
        (request_document(SCRIPT, data=["s3://bucket/object"]), "fetches http(s) URLs and local paths"),
        (request_document(SCRIPT, start="2020-01-01T00:00:00Z/PT1H"), "is in the past"),
        (request_document(SCRIPT, start=later(48)), "more than 1d ahead"),
    ]
    for document, reason in cases:
        response = await gaia.offers(parse_request(document), user="alice")
        assert response.result == "NO", document
        assert any(reason in text for text in response.reasons), (reason, response.reasons)
        assert "the most gaia platform could offer" in response.reasons[-1]
        again = await gaia.offerset(response.meta.uuid, user="alice")
        assert again.result == "NO" and again.reasons == response.reasons
    container = await gaia.offers(parse_request(request_document("img", kind="docker-container")), user="alice")
    assert any(option.path == "executable.kind" for option in container.meta.options)


@pytest.mark.asyncio
async def test_a_platform_that_lists_containers_still_says_no_without_an_engine(platforms):
    gaia = platforms(accepts=["jupyter-notebook", "python-script", "docker-container"])
    response = await gaia.offers(parse_request(request_document("python:3.12", kind="docker-container")), user="alice")
    assert response.result == "NO"
    assert any(
        "container engine" in reason or "run notebooks and Python scripts only" in reason for reason in response.reasons
    )


@pytest.mark.asyncio
async def test_bad_updates_name_the_field(platforms):
    gaia = platforms()
    offer = (await gaia.offers(parse_request(request_document(SCRIPT, start=later())), user="alice")).offers[0]
    with pytest.raises(InvalidRequest) as error:
        await gaia.update_session(
            offer.meta.uuid, StringValueUpdate(path="executable.location", value="x"), user="alice"
        )
    assert error.value.errors[0].field == "path"
    with pytest.raises(InvalidRequest) as error:
        await gaia.update_session(offer.meta.uuid, EnumValueUpdate(path="phase", value="COMPLETED"), user="alice")
    assert error.value.errors[0].field == "value"


@pytest.mark.asyncio
async def test_direct_books_the_earliest_offer_or_says_why_not(platforms):
    gaia = platforms()
    session = await gaia.direct(parse_request(request_document(SCRIPT, start=later())), user="alice")
    assert session.phase is SessionPhase.ACCEPTED
    with pytest.raises(RequestRefused) as refused:
        await gaia.direct(parse_request(request_document(SCRIPT, cores=99)), user="alice")
    assert "99 cores" in refused.value.reasons[0]


@pytest.mark.asyncio
async def test_state_survives_a_restart(tmp_path):
    first = make(tmp_path)
    try:
        response = await first.offers(
            parse_request(request_document(SCRIPT, cores=8, duration="PT1H", start=later(3))), user="alice"
        )
        booked = await first.accept(response.offers[0].meta.uuid, user="alice")
        kept = (await first.offers(parse_request(request_document(SCRIPT, start=later(30))), user="bob")).offers[0]
    finally:
        await first.aclose()
    second = make(tmp_path)
    try:
        again = await second.session(booked.meta.uuid, user="alice")
        assert again.phase in (SessionPhase.ACCEPTED, SessionPhase.WAITING)
        assert [message.text for message in again.messages][: len(booked.messages)] == [
            message.text for message in booked.messages
        ]
        offerset = await second.offerset(response.meta.uuid, user="alice")
        assert {offer.phase for offer in offerset.offers[1:]} == {SessionPhase.REJECTED}
        assert (await second.session(kept.meta.uuid, user="bob")).phase is SessionPhase.OFFERED
        # the booking still holds all 8 cores at its time
        clash = await second.offers(
            parse_request(request_document(SCRIPT, cores=1, start=f"{format_instant(booked.start)}/PT0S")), user="carol"
        )
        assert clash.result == "NO"
    finally:
        await second.aclose()


@pytest.mark.asyncio
async def test_two_servers_on_one_database_never_overbook(tmp_path):
    """Two platform objects with their own engines and thread pools (as two servers would have)
    ask for and accept offers for the same instant at the same time: the database serialises them."""
    servers = [make(tmp_path, cores=4, offers=1), make(tmp_path, cores=4, offers=1)]
    try:
        window = f"{format_instant(utcnow() + timedelta(hours=1))}/PT0S"
        request = parse_request(request_document(SCRIPT, cores=1, duration="PT30M", start=window))
        answers = await asyncio.gather(*(servers[i % 2].offers(request, user=f"user{i}") for i in range(16)))
        offered = [(i, answer.offers[0]) for i, answer in enumerate(answers) if answer.result == "YES"]
        assert len(offered) == 4  # exactly the capacity, whichever server answered
        accepted = await asyncio.gather(
            *(servers[(i + 1) % 2].accept(offer.meta.uuid, user=f"user{i}") for i, offer in offered),
            return_exceptions=True,
        )
        assert all(not isinstance(item, Exception) for item in accepted), accepted
        start = offered[0][1].start
        peak = await servers[0].peak_usage(start, start + timedelta(minutes=30))
        assert peak[0] == 4
        again = await asyncio.gather(*(server.offers(request, user="late") for server in servers))
        assert {answer.result for answer in again} == {"NO"}
    finally:
        for server in servers:
            await server.aclose()


@pytest.mark.asyncio
async def test_describe_lists_limits_and_links(platforms):
    gaia = platforms(cores=200, memory=350)
    description = gaia.describe()
    assert description.kind == "hosted"
    assert description.limits["cores"] == 200 and description.limits["memory"] == 350
    assert description.accepts == ["jupyter-notebook", "python-script"]
    assert description.url is None  # in-process: no routes


def test_bad_options_in_the_platforms_file_name_the_entry_and_field(tmp_path):
    from test_hosted_support import write_platforms

    from execplanner_widgets.core.config import ConfigError, build_federation, load_platforms_file

    path = write_platforms(
        tmp_path / "platforms.yaml", [{"name": "gaia", "hosted": {"cores": 4, "executor": "docker"}}]
    )
    with pytest.raises(ConfigError) as error:
        build_federation(load_platforms_file(path), PlatformContext(data_dir=tmp_path))
    assert error.value.errors[0].field == "platforms[gaia].hosted.executor"
    installed = error.value.errors[0].message.split("installed executors: ", 1)[1]
    assert {"dask", "subprocess"} <= set(installed.split(", "))
    path = write_platforms(
        tmp_path / "platforms.yaml", [{"name": "gaia", "hosted": {"dask": {"scheduler": "tcp://127.0.0.1:8786"}}}]
    )
    with pytest.raises(ConfigError, match="executor: dask"):
        build_federation(load_platforms_file(path), PlatformContext(data_dir=tmp_path))
    path = write_platforms(
        tmp_path / "platforms.yaml",
        [{"name": "gaia", "hosted": {"executor": "dask", "dask": {"workers": 0, "nodes": 2}}}],
    )
    with pytest.raises(ConfigError) as error:
        build_federation(load_platforms_file(path), PlatformContext(data_dir=tmp_path))
    assert {item.field for item in error.value.errors} == {
        "platforms[gaia].hosted.dask.workers",
        "platforms[gaia].hosted.dask.nodes",
    }
    path = write_platforms(
        tmp_path / "platforms.yaml", [{"name": "gaia", "hosted": {"cores": 4, "db_url": "sqlite://"}}]
    )
    with pytest.raises(ConfigError, match="in-memory"):
        build_federation(load_platforms_file(path), PlatformContext(data_dir=tmp_path))


@pytest.mark.asyncio
async def test_reservations_hold_capacity_once_and_a_past_pattern_is_laid_again(tmp_path):
    options = {"cores": 10, "reservations": [{"name": "maintenance", "start": "PT0S", "duration": "PT2S", "cores": 10}]}
    first = make(tmp_path, **options)
    try:
        now = utcnow()
        assert (await first.peak_usage(now, now + timedelta(seconds=3)))[0] == 10
    finally:
        await first.aclose()
    again = make(tmp_path, **options)  # restarted while the reservation still runs: not added twice
    try:
        assert (await again.peak_usage(now, now + timedelta(seconds=3)))[0] == 10
    finally:
        await again.aclose()
    await asyncio.sleep(2.5)
    later_on = make(tmp_path, **options)  # restarted after it ended: the busy pattern starts again
    try:
        restart = utcnow()
        assert (await later_on.peak_usage(restart, restart + timedelta(seconds=3)))[0] == 10
    finally:
        await later_on.aclose()


@pytest.mark.asyncio
async def test_the_answer_to_a_request_is_the_offer_set_as_stored(platforms, monkeypatch):
    """``offers`` builds its answer from the rows it wrote (no second read): it must be the document
    ``offerset`` reads back, also when the executor adds a note to each offer after they are made."""
    gaia = platforms()
    request = parse_request(request_document(SCRIPT, cores={"min": 2}, memory=2, duration="PT1H"))
    answer = await gaia.offers(request, user="alice")
    assert answer.result == "YES" and len(answer.offers) == 3
    assert answer.to_wire() == (await gaia.offerset(answer.meta.uuid, user="alice")).to_wire()

    async def offer_note(self, need, start, user):
        return f"a note for {user}"

    monkeypatch.setattr(type(gaia.executor), "offer_note", offer_note)
    noted = await gaia.offers(request, user="alice")
    assert all(offer.messages[-1].message == "a note for alice" for offer in noted.offers)
    assert noted.to_wire() == (await gaia.offerset(noted.meta.uuid, user="alice")).to_wire()
    refused = await gaia.offers(parse_request(request_document(SCRIPT, cores={"min": 64})), user="alice")
    assert refused.result == "NO"
    assert refused.to_wire() == (await gaia.offerset(refused.meta.uuid, user="alice")).to_wire()
