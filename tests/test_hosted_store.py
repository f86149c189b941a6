"""The store: real SQLite files with writers serialised by the database itself, times kept in UTC,
clear errors for unusable URLs, and the same booking rules on a real PostgreSQL server (started
here in a temporary folder when PostgreSQL and psycopg are installed; skipped otherwise)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from test_hosted_support import DATA, request_document

from execplanner_widgets.core.platform import PlatformContext, SessionConflict
from execplanner_widgets.model import SessionPhase, format_instant, parse_request, utcnow
from jupyter_server_extension.hosted.calendar_live import LiveCalendar
from jupyter_server_extension.hosted.platform import HostedPlatform
from jupyter_server_extension.hosted.store import LockRow, OfferSetRow, SessionRow, Store, default_db_url


def test_writers_are_serialised_by_the_database_not_by_python(tmp_path):
    """Two Store objects (two engines, as two servers have) on one file: the second writer waits
    for the first to commit, because SQLite's write lock is taken at BEGIN IMMEDIATE."""
    url = default_db_url(tmp_path)
    first, second = Store(url), Store(url)
    first.create_all("gaia")
    second.create_all("gaia")
    times: dict[str, float] = {}
    holding = threading.Event()

    def slow_writer() -> None:
        with first.write("gaia") as session:
            holding.set()
            time.sleep(0.6)
            session.add(
                OfferSetRow(
                    uuid="a",
                    platform="gaia",
                    created=datetime.now(timezone.utc),
                    result="NO",
                    messages=[],
                    options=[],
                    request={},
                )
            )
            times["first_commit"] = time.monotonic()

    def quick_writer() -> None:
        holding.wait(5)
        with second.write("gaia") as session:
            times["second_begin"] = time.monotonic()
            assert session.get(OfferSetRow, "a") is not None  # it sees the first writer's row

    threads = [threading.Thread(target=slow_writer), threading.Thread(target=quick_writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert times["second_begin"] >= times["first_commit"]
    with second.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.scalars(select(LockRow.platform)).all() == ["gaia"]
    first.dispose()
    second.dispose()


def test_times_are_kept_as_aware_utc(tmp_path):
    store = Store(default_db_url(tmp_path))
    store.create_all("gaia")
    moment = datetime(2026, 11, 22, 14, 0, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    with store.write("gaia") as session:
        session.add(
            OfferSetRow(uuid="t", platform="gaia", created=moment, result="NO", messages=[], options=[], request={})
        )
    with store.read() as session:
        stored = session.get(OfferSetRow, "t").created
    assert stored == moment and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive datetimes"):
        with store.write("gaia") as session:
            session.add(
                OfferSetRow(
                    uuid="n",
                    platform="gaia",
                    created=datetime(2026, 1, 1),
                    result="NO",
                    messages=[],
                    options=[],
                    request={},
                )
            )
    store.dispose()


def test_unusable_database_urls_are_explained():
    with pytest.raises(ValueError, match="not an in-memory SQLite database"):
        Store("sqlite://")
    with pytest.raises(ValueError, match="cannot use the database"):
        Store("nosuchdialect://user:secret@host/db")
    try:
        Store("nosuchdialect://user:secret@host/db")
    except ValueError as error:
        assert "secret" not in str(error)


# ------------------------------------------------------------------------------ PostgreSQL


def servers_sharing(name: str, url: str, folder, cores: int) -> list[HostedPlatform]:
    """Two servers' views of one platform ``name`` on the database ``url`` (one offer per request)."""
    return [
        HostedPlatform.from_config(
            name,
            "On PostgreSQL",
            {"cores": cores, "offers": 1, "db_url": url},
            PlatformContext(data_dir=folder / f"s{i}"),
        )
        for i in range(2)
    ]


@pytest.mark.asyncio
async def test_bookings_on_postgresql_never_overbook(postgres_url, tmp_path):
    servers = servers_sharing("pg", postgres_url, tmp_path, cores=3)
    try:
        window = f"{format_instant(utcnow() + timedelta(hours=1))}/PT0S"
        request = parse_request(request_document(DATA / "sum_numbers.py", cores=1, duration="PT30M", start=window))
        answers = await asyncio.gather(*(servers[i % 2].offers(request, user=f"user{i}") for i in range(12)))
        offered = [(i, answer.offers[0]) for i, answer in enumerate(answers) if answer.result == "YES"]
        assert len(offered) == 3
        booked = await asyncio.gather(
            *(servers[(i + 1) % 2].accept(offer.meta.uuid, user=f"user{i}") for i, offer in offered)
        )
        assert all(session.phase is SessionPhase.ACCEPTED for session in booked)
        start = offered[0][1].start
        assert (await servers[0].peak_usage(start, start + timedelta(minutes=30)))[0] == 3
    finally:
        for server in servers:
            await server.aclose()
    # a new platform object on the same database (a restart) sees the bookings
    again = HostedPlatform.from_config(
        "pg", "On PostgreSQL", {"cores": 3, "db_url": postgres_url}, PlatformContext(data_dir=tmp_path / "s0")
    )
    try:
        session = await again.session(offered[0][1].meta.uuid, user=f"user{offered[0][0]}")
        assert session.phase in (SessionPhase.ACCEPTED, SessionPhase.WAITING)
    finally:
        await again.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_database_from_before_the_executor_columns_gets_them_and_keeps_its_bookings(
    database, tmp_path, request
):
    """No migration tool: columns added since a database was made are added when a platform starts;
    sessions booked before count as booked by the executor (those that ended, as released)."""
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else default_db_url(tmp_path)
    options = {"cores": 4, "offers": 1, "db_url": url}
    first = HostedPlatform.from_config("old", "Old", options, PlatformContext(data_dir=tmp_path))
    later = f"{format_instant(utcnow() + timedelta(hours=2))}/PT0S"
    try:
        waiting = (await first.offers(parse_request(request_document(DATA / "sum_numbers.py", start=later)))).offers[0]
        await first.accept(waiting.meta.uuid)
        cancelled = (await first.offers(parse_request(request_document(DATA / "sum_numbers.py", start=later)))).offers[
            0
        ]
        await first.accept(cancelled.meta.uuid)
        await first.cancel(cancelled.meta.uuid)
    finally:
        await first.aclose()
    new_columns = ("slot_state", "slot_handle", "run_handle", "runner_host", "runner_pid", "connector")
    store = Store(url)
    with store.engine.begin() as connection:
        for column in new_columns:
            connection.execute(text(f"ALTER TABLE hosted_sessions DROP COLUMN {column}"))
    store.dispose()
    second = HostedPlatform.from_config("old", "Old", options, PlatformContext(data_dir=tmp_path))
    try:
        assert (await second.session(waiting.meta.uuid)).phase in (SessionPhase.ACCEPTED, SessionPhase.WAITING)
        with second.store.read() as session:
            states = dict(session.execute(select(SessionRow.uuid, SessionRow.slot_state)).all())
        assert states[waiting.meta.uuid] == "booked" and states[cancelled.meta.uuid] == "released"
    finally:
        await second.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_an_offer_made_before_the_platform_shrank_is_not_booked(database, tmp_path, request):
    """Offers hold their slot, but accepting checks again against the platform as it is now: an
    offer for 3 cores made on a 4-core platform, accepted after a restart with 2 cores, is refused
    (409, "no longer has"), while one that still fits is booked. The re-check reads the live
    calendar, brought in step with the database by the accept's own transaction."""
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else default_db_url(tmp_path)
    later = f"{format_instant(utcnow() + timedelta(hours=2))}/PT0S"
    before = HostedPlatform.from_config(
        "shrinks", "Shrinks", {"cores": 4, "offers": 1, "db_url": url}, PlatformContext(data_dir=tmp_path)
    )
    try:
        big = await before.offers(parse_request(request_document(DATA / "sum_numbers.py", cores=3, start=later)))
        small = await before.offers(parse_request(request_document(DATA / "sum_numbers.py", cores=1, start=later)))
        assert big.result == small.result == "YES"
    finally:
        await before.aclose()
    after = HostedPlatform.from_config(
        "shrinks", "Shrinks", {"cores": 2, "offers": 1, "db_url": url}, PlatformContext(data_dir=tmp_path)
    )
    try:
        with pytest.raises(SessionConflict, match="no longer has 3 cores free"):
            await after.accept(big.offers[0].meta.uuid)
        refused = await after.session(big.offers[0].meta.uuid)
        assert refused.phase is SessionPhase.REJECTED
        assert "could not be booked" in refused.meta.messages[-1].message
        booked = await after.accept(small.offers[0].meta.uuid)
        assert booked.phase is SessionPhase.ACCEPTED
    finally:
        await after.aclose()


@pytest.mark.asyncio
async def test_postgresql_bookings_are_written_on_the_callers_loop_and_survive_a_dropped_connection(
    postgres_url, tmp_path
):
    """psycopg has an asyncio side: the write transactions run on the loop that asks (no thread
    hand-off per round trip); a connection the server dropped is replaced, and the booking made."""
    platform = HostedPlatform.from_config(
        "pg-loop",
        "On PostgreSQL",
        {"cores": 4, "offers": 1, "db_url": postgres_url},
        PlatformContext(data_dir=tmp_path),
    )
    sqlite = Store(default_db_url(tmp_path))
    try:
        loop = asyncio.get_running_loop()
        assert platform.store.writes_on(loop) and not sqlite.writes_on(loop)
        window = f"{format_instant(utcnow() + timedelta(hours=1))}/PT0S"
        request = parse_request(request_document(DATA / "sum_numbers.py", cores=1, duration="PT30M", start=window))
        first = await platform.offers(request, user="ann")
        assert first.result == "YES"
        assert platform.service.writes.transactions >= 1
        # the server ends every other connection (as a restart or an idle timeout would)
        with platform.store.engine.connect() as connection:
            ended = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )
            ).scalar()
        assert ended >= 1
        booked = await platform.accept(first.offers[0].meta.uuid, user="ann")
        assert booked.phase is SessionPhase.ACCEPTED
    finally:
        sqlite.dispose()
        await platform.aclose()


@pytest.mark.asyncio
async def test_a_platform_asked_from_a_second_loop_writes_in_its_threads_meanwhile(postgres_url, tmp_path):
    """An asyncio connection belongs to its loop: while the first loop that wrote is open, a caller
    on another loop (a kernel's thread, say) is served through the database threads, and both see
    one calendar."""
    platform = HostedPlatform.from_config(
        "pg-two-loops",
        "On PostgreSQL",
        {"cores": 1, "offers": 1, "db_url": postgres_url},
        PlatformContext(data_dir=tmp_path),
    )
    try:
        window = f"{format_instant(utcnow() + timedelta(hours=2))}/PT0S"
        request = parse_request(request_document(DATA / "sum_numbers.py", cores=1, duration="PT30M", start=window))
        here = await platform.offers(request, user="ann")
        assert here.result == "YES"

        def elsewhere():
            async def ask():
                assert not platform.store.writes_on(asyncio.get_running_loop())
                return await platform.offers(request, user="bob")

            return asyncio.run(ask())

        there = await asyncio.to_thread(elsewhere)
        # ann's live offer holds the only core at that instant: bob's comes later or not at all
        assert there.result == "NO" or all(offer.start != here.offers[0].start for offer in there.offers)
        assert (await platform.accept(here.offers[0].meta.uuid, user="ann")).phase is SessionPhase.ACCEPTED
    finally:
        await platform.aclose()


@pytest.mark.asyncio
async def test_postgresql_writes_reload_a_stale_calendar_in_a_thread_not_on_the_loop(
    postgres_url, tmp_path, monkeypatch
):
    """Reloading the calendar reads and sorts every booking: where writes run on the loop, a write
    that finds the calendar stale (at first use, or after another server wrote) is taken in a
    database thread, and the writes after it on the loop again."""
    calls: list[tuple[int, bool]] = []
    current = LiveCalendar.current

    def watched(self, session, now):
        calls.append((threading.get_ident(), self.stale))
        return current(self, session, now)

    monkeypatch.setattr(LiveCalendar, "current", watched)
    servers = servers_sharing("pg-reload", postgres_url, tmp_path, cores=4)
    loop_thread = threading.get_ident()
    try:
        window = f"{format_instant(utcnow() + timedelta(hours=3))}/PT0S"
        request = parse_request(request_document(DATA / "sum_numbers.py", cores=1, duration="PT30M", start=window))
        assert (await servers[0].offers(request, user="ann")).result == "YES"  # first use: a load
        for _ in range(500):  # the thread that took it lets go (a step queued before would go there too)
            if not servers[0].service.writes.busy:
                break
            await asyncio.sleep(0.01)
        assert (await servers[0].offers(request, user="ann")).result == "YES"
        assert (await servers[1].offers(request, user="bob")).result == "YES"  # the other server writes
        assert (await servers[0].offers(request, user="ann")).result == "YES"  # so this one reloads
        mine = list(calls)
        reloads = [thread for thread, stale in mine if stale]
        assert len(reloads) == 3  # servers[0] twice, servers[1] once
        assert loop_thread not in reloads
        assert (loop_thread, False) in mine  # the write between them ran on the loop
        assert servers[0].service.live.reloads == 2
    finally:
        for server in servers:
            await server.aclose()


WITHOUT_GREENLET = """
import asyncio, json, sys
sys.modules["greenlet"] = None  # as in an install without the postgres extra: importing it fails
from pathlib import Path
from execplanner_widgets.core.config import platform_classes
from execplanner_widgets.core.platform import PlatformContext
from execplanner_widgets.model import parse_request
from jupyter_server_extension.hosted.platform import HostedPlatform

assert not getattr(platform_classes()["hosted"], "broken", False)

async def main(url, folder):
    platform = HostedPlatform.from_config(
        "pg-no-greenlet", "T", {"cores": 2, "offers": 1, "db_url": url}, PlatformContext(data_dir=Path(folder))
    )
    try:
        assert not platform.store.writes_on(asyncio.get_running_loop())
        request = parse_request(json.loads(sys.argv[3]))
        answer = await platform.offers(request, user="ann")
        assert answer.result == "YES", answer
        booked = await platform.accept(answer.offers[0].meta.uuid, user="ann")
        print(booked.phase.value)
    finally:
        await platform.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_without_greenlet_hosted_platforms_load_and_book_on_postgresql_in_threads(postgres_url, tmp_path):
    """SQLAlchemy's asyncio extension needs greenlet, which a plain install (without the postgres
    extra) lacks: the hosted platforms still load, and PostgreSQL writes run in threads."""
    window = f"{format_instant(utcnow() + timedelta(hours=4))}/PT0S"
    request = request_document(DATA / "sum_numbers.py", cores=1, duration="PT10M", start=window)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_GREENLET, postgres_url, str(tmp_path), json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ACCEPTED"
