"""Group commit on a real SQLite file: decisions that arrive together share one write transaction,
in arrival order, each seeing the ones before it; a refusal keeps what it wrote; a faulty step fails
alone; and booking through it under 24 concurrent accepts never overbooks."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from test_hosted_support import DATA, request_document

from execplanner_widgets.core.platform import PlatformContext, SessionConflict
from execplanner_widgets.model import SessionPhase, format_instant, parse_request, utcnow
from jupyter_server_extension.hosted.calendar_live import LiveCalendar
from jupyter_server_extension.hosted.group_commit import MAX_BATCH, GroupCommit
from jupyter_server_extension.hosted.platform import HostedPlatform
from jupyter_server_extension.hosted.store import OfferSetRow, Store, default_db_url


def offerset(uuid: str) -> OfferSetRow:
    return OfferSetRow(
        uuid=uuid, platform="p", created=datetime.now(timezone.utc), result="NO", messages=[], options=[], request={}
    )


@pytest.fixture
def queue(tmp_path):
    store = Store(default_db_url(tmp_path))
    store.create_all("p")
    pool = ThreadPoolExecutor(max_workers=4)

    async def db(function, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(function, *args))

    yield store, GroupCommit(store, "p", db)
    pool.shutdown(wait=True)
    store.dispose()


async def between(writes: GroupCommit, first: str, middle, last: str) -> list:
    """Queue a step that adds offer set ``first``, then ``middle``, then one that adds ``last``,
    all at once (so they share a batch); their outcomes, exceptions included."""
    return await asyncio.gather(
        writes.run(lambda session: session.add(offerset(first))),
        writes.run(middle),
        writes.run(lambda session: session.add(offerset(last))),
        return_exceptions=True,
    )


def count(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(OfferSetRow)) or 0)


@pytest.mark.asyncio
async def test_steps_queued_together_commit_in_one_transaction_in_arrival_order(queue):
    store, writes = queue
    seen: list[int] = []

    def step(index: int, session):
        seen.append(int(session.scalar(select(func.count()).select_from(OfferSetRow)) or 0))
        session.add(offerset(f"s{index}"))
        session.flush()
        return index

    results = await asyncio.gather(*(writes.run(functools.partial(step, index)) for index in range(40)))
    assert results == list(range(40))
    assert seen == list(range(40))  # each step saw every earlier one
    assert count(store) == 40
    assert writes.steps == 40
    assert writes.transactions < 40  # they shared transactions (all 40 queued before the first ran)


@pytest.mark.asyncio
async def test_a_batch_is_bounded(queue):
    store, writes = queue
    steps = [writes.run(functools.partial(lambda i, s: s.add(offerset(f"b{i}")), index)) for index in range(150)]
    await asyncio.gather(*steps)
    assert count(store) == 150
    assert writes.transactions >= -(-150 // MAX_BATCH)


@pytest.mark.asyncio
async def test_a_refusal_keeps_its_writes_and_the_others_go_on(queue):
    store, writes = queue

    def refuse(session):
        session.add(offerset("refused-but-recorded"))
        session.flush()
        raise SessionConflict("no room")

    outcomes = await between(writes, "before", refuse, "after")
    assert isinstance(outcomes[1], SessionConflict) and "no room" in str(outcomes[1])
    with store.read() as session:
        assert set(session.scalars(select(OfferSetRow.uuid))) == {"before", "refused-but-recorded", "after"}


@pytest.mark.asyncio
async def test_a_faulty_step_fails_alone(queue):
    store, writes = queue

    def faulty(session):
        session.add(offerset("never"))
        session.flush()
        raise ValueError("a bug in one step")

    outcomes = await between(writes, "one", faulty, "two")
    assert isinstance(outcomes[1], ValueError)
    with store.read() as session:
        assert set(session.scalars(select(OfferSetRow.uuid))) == {"one", "two"}  # the bug's row rolled back


@pytest.mark.asyncio
async def test_concurrent_accepts_through_group_commit_never_overbook(hosted_db_url, tmp_path):
    """24 offers for 1 core each on a 4-core platform, all accepted at once: 4 are booked at any
    instant, whatever batches the accepts were grouped in (the offers crowd one hour); on SQLite
    (batches in a database thread) and on PostgreSQL (batches on this loop)."""
    platform = HostedPlatform.from_config(
        "tight",
        "Tight",
        {"cores": 4, "offers": 1, "horizon": "P1D", "db_url": hosted_db_url},
        PlatformContext(data_dir=tmp_path),
    )
    try:
        window = f"{format_instant(utcnow() + timedelta(hours=2))}/PT1H"
        request = parse_request(request_document(DATA / "sum_numbers.py", cores=1, duration="PT1H", start=window))
        answers = await asyncio.gather(*(platform.offers(request, user=f"u{i}") for i in range(24)))
        offered = [(i, answer.offers[0]) for i, answer in enumerate(answers) if answer.result == "YES"]
        booked = await asyncio.gather(
            *(platform.accept(offer.meta.uuid, user=f"u{i}") for i, offer in offered), return_exceptions=True
        )
        assert all(not isinstance(item, BaseException) for item in booked), booked
        assert all(item.phase is SessionPhase.ACCEPTED for item in booked)
        assert platform.service.writes.transactions < platform.service.writes.steps
        start = min(offer.start for _, offer in offered)
        end = max(offer.start for _, offer in offered) + timedelta(hours=1)
        assert (await platform.peak_usage(start, end))[0] <= 4
    finally:
        await platform.aclose()


@pytest.mark.asyncio
async def test_two_offers_of_one_set_accepted_in_one_batch_book_once(hosted_db_url, tmp_path):
    """Both offers of one request accepted at the same moment land in one batch (read ahead
    together): the first is booked, the second finds itself REJECTED by it and is refused."""
    platform = HostedPlatform.from_config(
        "pair",
        "Pair",
        {"cores": 8, "offers": 2, "horizon": "P1D", "db_url": hosted_db_url},
        PlatformContext(data_dir=tmp_path),
    )
    try:
        window = f"{format_instant(utcnow() + timedelta(hours=2))}/PT6H"
        request = parse_request(request_document(DATA / "sum_numbers.py", cores=8, duration="PT1H", start=window))
        answer = await platform.offers(request, user="alice")
        first, second = answer.offers
        for _ in range(500):  # the drainer that took the offer lets go: the two accepts start a new one
            if not platform.service.writes.busy:
                break
            await asyncio.sleep(0.01)
        before = platform.service.writes.transactions
        outcomes = await asyncio.gather(
            platform.accept(first.meta.uuid, user="alice"),
            platform.accept(second.meta.uuid, user="alice"),
            return_exceptions=True,
        )
        assert platform.service.writes.transactions == before + 1  # one batch
        assert outcomes[0].phase is SessionPhase.ACCEPTED
        assert isinstance(outcomes[1], SessionConflict) and "REJECTED" in str(outcomes[1])
        assert (await platform.session(second.meta.uuid, user="alice")).phase is SessionPhase.REJECTED
        history = (await platform.session(first.meta.uuid, user="alice")).meta.messages
        assert [item.message.split(":")[0] for item in history][:2] == ["offered", "accepted"]
    finally:
        await platform.aclose()


@pytest.mark.asyncio
async def test_on_postgresql_the_batch_that_reloads_goes_to_a_thread_and_the_rest_stay_on_the_loop(postgres_url):
    """Writes run on the loop where the driver allows (PostgreSQL through psycopg); the batch that
    finds the calendar stale is taken in a database thread (reloading reads every booking), and
    the steps queued behind it meanwhile are taken on the loop again, not left to the thread."""
    store = Store(postgres_url)
    store.create_all("gc-loop")
    live = LiveCalendar("gc-loop")
    store.watch("gc-loop", live)
    pool = ThreadPoolExecutor(max_workers=2)

    async def db(function, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(function, *args))

    writes = GroupCommit(store, "gc-loop", db)
    where: list[tuple[str, int]] = []

    def step(name: str, pause: float, session):
        live.current(session, utcnow())
        where.append((name, threading.get_ident()))
        time.sleep(pause)  # the first one holds its thread while the others queue
        return name

    try:
        assert live.stale and store.writes_on(asyncio.get_running_loop())
        first = asyncio.ensure_future(writes.run(functools.partial(step, "reload", 0.3)))
        await asyncio.sleep(0.1)
        rest = [writes.run(functools.partial(step, f"s{index}", 0)) for index in range(5)]
        assert await asyncio.gather(first, *rest) == ["reload", "s0", "s1", "s2", "s3", "s4"]
        loop_thread = threading.get_ident()
        assert where[0][0] == "reload" and where[0][1] != loop_thread
        assert [thread for name, thread in where[1:]] == [loop_thread] * 5
        assert live.reloads == 1 and writes.transactions == 2
    finally:
        await store.aclose()
        pool.shutdown(wait=True)
