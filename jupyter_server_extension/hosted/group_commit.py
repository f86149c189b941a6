"""Group commit: the calendar decisions that arrive together share one write transaction.

Every decision that can change a platform's calendar (an offer, an accept) runs in a serialised
write transaction (:meth:`.store.Store.write`), and taking that turn costs more than most
decisions themselves: a pooled connection, ``BEGIN IMMEDIATE`` (or the lock row on PostgreSQL), the
generation bump, and the commit, which on PostgreSQL are round trips to the server. When many
clients ask at once, the decisions that queued while one transaction ran are therefore taken
together in the next one, in the order they arrived, each seeing the ones before it, exactly as if
they had run one after the other, and committed once.

A step is a function of the open session. It may raise :class:`SessionConflict` or
:class:`SessionNotFound` for its own caller, *after* writing what its refusal means (an offer marked
REJECTED or EXPIRED): those writes are kept and the other steps go on. Any other exception rolls
the whole transaction back; the steps of that batch are then retried one transaction each, so only
the faulty one fails, with its own error.

Batches are taken on the caller's event loop where the store can write there
(:meth:`.store.Store.on_loop`: PostgreSQL through psycopg), else in the platform's database threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from execplanner_widgets.core.platform import SessionConflict, SessionNotFound

from .store import StaleCalendar, Store

__all__ = ["GroupCommit", "MAX_BATCH"]

T = TypeVar("T")

#: The most steps one transaction takes (a bound on how long the platform's turn is held).
MAX_BATCH = 64
#: Refusals a step may raise for its caller, keeping what it wrote.
_KEPT = (SessionConflict, SessionNotFound)


@dataclass
class _Step:
    run: Callable[[Session], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    hint: Any = None


class GroupCommit:
    """The write queue of one platform: :meth:`run` a step; queued steps commit together."""

    def __init__(
        self,
        store: Store,
        platform: str,
        db: Callable[..., Awaitable[Any]],
        prepare: Callable[[Session, list[Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.platform = platform
        self._db = db  # runs a function in the platform's database threads
        # reads, for the whole batch at once, what its steps will read (their hints say what)
        self._prepare = prepare
        self._pending: list[_Step] = []
        self._draining = False
        self._lock = threading.Lock()
        self._drainer: asyncio.Future[Any] | None = None
        self.transactions = 0  # for tests and benchmarks: how many transactions the steps took
        self.steps = 0

    @property
    def busy(self) -> bool:
        """Whether a drainer is taking batches (a step queued now joins its queue)."""
        return self._draining

    async def run(self, step: Callable[[Session], T], hint: Any = None) -> T:
        """Run ``step(session)`` in a write transaction of the platform (shared with the steps
        queued beside it) and return its result once that transaction has committed. ``hint``
        tells ``prepare`` what the step will read, so a batch reads it in one query, not one each."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._pending.append(_Step(step, loop, future, hint))
            start = not self._draining
            self._draining = True
        if start:  # this caller starts the drainer, and waits only for its own step
            on_loop = self.store.writes_on(loop)
            self._drainer = asyncio.ensure_future(self._drain_on_loop() if on_loop else self._db(self._drain))
            self._drainer.add_done_callback(self._drainer_done)
        return await future

    def _drainer_done(self, drainer: asyncio.Future[Any]) -> None:
        """The drainer could not run (the platform closed its threads, or its loop stopped): fail
        what is queued, so that no caller waits for ever and the next one starts a drainer."""
        if not drainer.cancelled() and drainer.exception() is None:
            return
        error = RuntimeError("the platform stopped taking bookings") if drainer.cancelled() else drainer.exception()
        with self._lock:
            batch, self._pending, self._draining = self._pending, [], False
        for step in batch:
            _settle(step, None, error)

    def _next_batch(self) -> list[_Step]:
        """The next steps in arrival order (none: the drainer ends, and the next caller starts one)."""
        with self._lock:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if not batch:
                self._draining = False
            return batch

    def _drain(self, connection: Connection | None = None, once: bool = False) -> bool:
        """Commit batches until nothing is queued (one drainer at a time): in a database thread, or
        on the caller's loop through the ``connection`` the store lends there for the whole drain.
        True once the queue is empty (and this drainer has ended). False, with the drainer still
        on duty, when it stopped on the loop because the calendar must be reloaded (the steps it
        had not taken are queued first again), or after one batch if ``once``."""
        while batch := self._next_batch():
            try:
                left = self._commit(batch, connection)
            except BaseException as error:  # never leave a caller waiting
                for step in batch:
                    _settle(step, None, error)
                if isinstance(error, asyncio.CancelledError):  # the loop is going: the rest fail too
                    raise
                left = []
            if left:
                with self._lock:
                    self._pending[:0] = left
                return False
            if once:
                return False
        return True

    async def _drain_on_loop(self) -> None:
        """:meth:`_drain` on the caller's loop (its statements are awaited there, see
        :meth:`.store.Store.on_loop`); the batch that finds the calendar in need of a reload is
        taken in a database thread, and the loop goes on with the next. What it cannot start fails
        in :meth:`_drainer_done`."""
        while not await self.store.on_loop(self._drain):
            if await self._db(self._drain, None, True):
                return

    def _commit(self, batch: list[_Step], connection: Connection | None = None, reconnect: bool = True) -> list[_Step]:
        """Take ``batch`` in one transaction and settle its steps; return those it did not take
        because, on the loop, the calendar must first be reloaded (:class:`.store.StaleCalendar`)."""
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            with self.store.write(self.platform, connection) as session:
                hints = [step.hint for step in batch if step.hint is not None]
                if hints and self._prepare is not None:
                    self._prepare(session, hints)
                for step in batch:
                    try:
                        outcomes.append((step.run(session), None))
                    except _KEPT as refusal:
                        outcomes.append((None, refusal))
        except StaleCalendar:
            return batch
        except Exception as error:
            if reconnect and getattr(error, "connection_invalidated", False):
                # the database dropped the connection (a restart, an idle timeout) and nothing was
                # committed: the same batch again, once, on a new connection
                return self._commit(batch, connection, reconnect=False)
            if len(batch) == 1:
                _settle(batch[0], None, error)
                return []
            for index, step in enumerate(batch):  # one transaction each: only the faulty step fails
                if self._commit([step], connection):
                    return batch[index:]  # (the rollback left the calendar to reload)
            return []
        self.transactions += 1
        self.steps += len(batch)
        for step, (value, error) in zip(batch, outcomes, strict=True):
            _settle(step, value, error)
        return []


def _settle(step: _Step, value: Any, error: BaseException | None) -> None:
    """Hand a step's outcome to its caller's loop (once; a caller that went away is skipped)."""

    def settle() -> None:
        if step.future.done():
            return
        if error is not None:
            step.future.set_exception(error)
        else:
            step.future.set_result(value)

    try:
        step.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the caller's loop closed meanwhile: nobody is waiting any more
        pass
