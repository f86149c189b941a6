"""Ask every platform at once: the federation of platforms behind "can I do this?".

``Federation.offers`` puts one question to all platforms concurrently, each under its own timeout,
and returns one :class:`PlatformResult` per platform in configuration order. A platform that fails,
hangs or answers garbage gives an ERROR result; it never spoils the others' answers, and the whole
call costs about the slowest timeout, not the sum of the latencies. ``stream_offers`` yields the
same results as they arrive, for user interfaces that fill in progressively.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from ..model import ExecutionRequest, OfferSetResponse, parse_request
from ..model.platform import PlatformList
from ..model.results import PlatformResult, ResultList
from .collector import pause_collector, resume_collector
from .platform import Platform, PlatformError
from .shared import share

__all__ = ["Federation", "UnknownPlatform"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0

T = TypeVar("T")

#: How many platforms' tasks a fan-out makes before letting the loop write their requests.
WAVE = 32


if sys.version_info >= (3, 11):

    async def _within(call: Awaitable[T], timeout: float) -> T:
        """``call`` under ``timeout`` in the caller's task (``wait_for`` makes a second task per platform)."""
        async with asyncio.timeout(timeout):
            return await call

else:  # pragma: no cover - Python 3.10

    async def _within(call: Awaitable[T], timeout: float) -> T:
        return await asyncio.wait_for(call, timeout)


def _expire(group: set[asyncio.Task[PlatformResult]], expired: set[asyncio.Task[Any]]) -> None:
    for task in list(group):
        if not task.done():
            expired.add(task)
            task.cancel()


class _FanOut:
    """One question put to many platforms: a task per platform, made in configuration order (by
    :meth:`start`, a wave at a time), and one deadline timer per distinct timeout (not one per
    platform): when it fires, the platforms of that timeout still running are cancelled and answer
    ERROR (timeout). Every finished task is counted in ``remaining``, noted in ``finished`` (unless
    ``ordered``: then ``tasks`` keeps them all in order; or ``deliver``: then each result is handed
    to it as its task ends) and announced by ``news``. One callback and one context for all tasks:
    nothing is allocated per platform beyond its task."""

    def __init__(
        self,
        federation: Federation,
        request: ExecutionRequest,
        user: str | None,
        names: Iterable[str] | None,
        *,
        ordered: bool,
        deliver: Callable[[PlatformResult], None] | None = None,
    ) -> None:
        self.federation = federation
        self.request = request
        self.user = user
        self.ordered = ordered
        self.deliver = deliver
        self.failure: BaseException | None = None
        self.expired: set[asyncio.Task[Any]] = set()
        self.group_of: dict[asyncio.Task[PlatformResult], set[asyncio.Task[PlatformResult]]] = {}
        self.groups: dict[float, set[asyncio.Task[PlatformResult]]] = {}
        self.tasks: list[asyncio.Task[PlatformResult]] = []
        self.finished: list[asyncio.Task[PlatformResult]] = []
        self.news = asyncio.Event()
        self.timers: list[asyncio.TimerHandle] = []
        self.context = contextvars.copy_context()  # the asker's, for every task's done callback
        self.platforms = federation._select(names)
        self.remaining = len(self.platforms)

    async def start(self) -> None:
        """Make the tasks, a wave of :data:`WAVE` at a time, then the deadline timers.

        The loop runs a wave's first steps, which write its requests, before the next wave is made:
        the first request leaves as soon as its task exists, not after all of them (making 1,000
        tasks takes some 15 ms, which the first answer used to wait for, and the others too). The
        collector is paused from the first task until the last wave's requests are written."""
        loop = asyncio.get_running_loop()
        platforms = self.platforms
        pause_collector()  # until every request is written (see core.collector)
        try:
            for first in range(0, len(platforms), WAVE):
                if first:
                    await asyncio.sleep(0)  # this wave's first steps run now, then this one goes on
                self._start(platforms[first : first + WAVE])
        finally:
            loop.call_soon(resume_collector)  # after the last wave's first steps
        now = loop.time()
        self.timers = [
            loop.call_at(now + timeout, _expire, group, self.expired) for timeout, group in self.groups.items()
        ]

    def _start(self, platforms: list[Platform]) -> None:
        """A task per platform, in configuration order, each in the group of its timeout."""
        loop = asyncio.get_running_loop()
        federation, request, user = self.federation, self.request, self.user
        groups, context = self.groups, self.context
        done, deliver = self._done, self.deliver
        for platform in platforms:
            timeout = federation.timeout_for(platform)
            settled = federation._settle(platform, platform.offers(request, user=user), timeout, self.expired)
            task = loop.create_task(settled if deliver is None else self._delivered(settled))
            group = groups.setdefault(timeout, set())
            group.add(task)
            self.group_of[task] = group
            task.add_done_callback(done, context=context)
            if self.ordered:
                self.tasks.append(task)

    async def _delivered(self, settled: Awaitable[PlatformResult]) -> PlatformResult:
        """The platform's result, handed to ``deliver`` in its own task, the moment it is known: a
        done callback, and a reader woken by it, would come after everything the loop had queued
        meanwhile (for 1,000 platforms answering together, the other answers)."""
        result = await settled
        if self.failure is None:
            try:
                self.deliver(result)  # type: ignore[misc]
            except BaseException as error:  # the reader cannot take more: stop asking
                self.failure = error
        return result

    def _done(self, task: asyncio.Task[PlatformResult]) -> None:
        group = self.group_of.pop(task, None)
        if group is not None:
            group.discard(task)
        self.remaining -= 1
        if not self.ordered and self.deliver is None:
            self.finished.append(task)
        self.news.set()

    def close(self) -> None:
        """Stop the deadline timers and cancel what still runs (the reader left, or was cancelled)."""
        for timer in self.timers:
            timer.cancel()
        for task in list(self.group_of):
            task.cancel()


class UnknownPlatform(KeyError):
    """No platform of that name is configured."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        known_list = ", ".join(sorted(known)) or "none"
        super().__init__(f"no platform named {name!r} is configured (configured: {known_list})")

    def __str__(self) -> str:
        return str(self.args[0])


class Federation:
    """The configured platforms, asked together."""

    def __init__(
        self,
        platforms: Iterable[Platform],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        timeouts: dict[str, float] | None = None,
    ) -> None:
        self.platforms: list[Platform] = list(platforms)
        names = [platform.name for platform in self.platforms]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"platform names must be unique; repeated: {', '.join(duplicates)}")
        self.timeout = timeout
        self.timeouts = dict(timeouts or {})
        self._by_name = {platform.name: platform for platform in self.platforms}

    def __iter__(self):
        return iter(self.platforms)

    def __len__(self) -> int:
        return len(self.platforms)

    def get(self, name: str) -> Platform:
        """The platform called ``name``; raises :class:`UnknownPlatform` if none is configured."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownPlatform(name, self._by_name) from None

    def timeout_for(self, platform: Platform) -> float:
        return self.timeouts.get(platform.name, self.timeout)

    def describe(self) -> PlatformList:
        return PlatformList(platform.describe() for platform in self.platforms)

    async def ask(self, platform: Platform, request: ExecutionRequest, *, user: str | None = None) -> PlatformResult:
        """One platform's answer, turned into a result whatever happens."""
        timeout = self.timeout_for(platform)
        return await self._settle(platform, _within(platform.offers(request, user=user), timeout), timeout)

    async def _settle(
        self,
        platform: Platform,
        call: Awaitable[Any],
        timeout: float,
        expired: set[asyncio.Task[Any]] | None = None,
    ) -> PlatformResult:
        """``call``'s answer as a result. A cancellation is a timeout when the fan-out's deadline
        put this task in ``expired`` (anything else cancelling it is passed on)."""
        started = time.perf_counter()
        status: Literal["YES", "NO", "ERROR"]
        response: OfferSetResponse | None = None
        error: str | None = None
        try:
            answer = await call
            if not isinstance(answer, OfferSetResponse):
                raise PlatformError(f"the platform answered {type(answer).__name__}, not an offer set")
            response, status = answer, answer.result
        except asyncio.TimeoutError:
            status, error = "ERROR", f"no answer within {timeout:g} s (timeout)"
        except PlatformError as failure:
            status, error = "ERROR", str(failure)
        except ValidationError as failure:
            status, error = (
                "ERROR",
                f"invalid answer: {failure.error_count()} problem(s), first: {failure.errors()[0]['msg']}",
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if expired is None or task not in expired:
                raise
            if hasattr(task, "uncancel"):  # Python 3.11+: this cancellation is handled here
                task.uncancel()
            status, error = "ERROR", f"no answer within {timeout:g} s (timeout)"
        except Exception as failure:  # a plugin's bug must not spoil the other platforms' answers
            log.exception("platform %s failed", platform.name)
            status, error = "ERROR", f"{type(failure).__name__}: {failure}"
        return PlatformResult(
            platform=platform.name,
            title=platform.title,
            status=status,
            response=response,
            error=error,
            elapsed=round(time.perf_counter() - started, 4),
        )

    def _select(self, names: Iterable[str] | None) -> list[Platform]:
        if names is None:
            return list(self.platforms)
        return [self.get(name) for name in names]

    async def offers(
        self, request: Any, *, user: str | None = None, platforms: Iterable[str] | None = None
    ) -> ResultList:
        """Every platform's answer, in configuration order."""
        request = share(parse_request(request))  # our own copy: platforms may share its encodings
        fan = _FanOut(self, request, user, platforms, ordered=True)
        try:
            await fan.start()
            while fan.remaining:
                await fan.news.wait()
                fan.news.clear()
            return ResultList(task.result() for task in fan.tasks)
        finally:
            fan.close()

    async def stream_offers(
        self, request: Any, *, user: str | None = None, platforms: Iterable[str] | None = None
    ) -> AsyncIterator[PlatformResult]:
        """Every platform's answer, as soon as it arrives."""
        batches = self.stream_offer_batches(request, user=user, platforms=platforms)
        try:
            async for batch in batches:
                for result in batch:
                    yield result
        finally:
            await batches.aclose()

    async def stream_offer_batches(
        self, request: Any, *, user: str | None = None, platforms: Iterable[str] | None = None
    ) -> AsyncIterator[list[PlatformResult]]:
        """Every platform's answer as it arrives, grouped: each list holds the answers that came
        while the reader was busy with the previous one (a single answer when it keeps up). For a
        server that sends them on: one write to the client per list, not per answer; and no answer
        is kept once passed on (a server sends them and forgets them)."""
        request = share(parse_request(request))
        fan = _FanOut(self, request, user, platforms, ordered=False)
        try:
            await fan.start()
            while fan.remaining or fan.finished:
                await fan.news.wait()
                fan.news.clear()
                batch = fan.finished[:]
                del fan.finished[:]
                yield [task.result() for task in batch]
                del batch
        finally:
            fan.close()

    async def deliver_offers(
        self,
        request: Any,
        deliver: Callable[[PlatformResult], None],
        *,
        user: str | None = None,
        platforms: Iterable[str] | None = None,
    ) -> None:
        """Every platform's answer handed to ``deliver`` as soon as it arrives, in the platform's own
        task: for a reader on another thread, which then gets the first answer before the loop has
        worked through the others that came with it. ``deliver`` must not block; if it raises, the
        questions still running are stopped and its error is raised here."""
        request = share(parse_request(request))
        fan = _FanOut(self, request, user, platforms, ordered=False, deliver=deliver)
        try:
            await fan.start()
            while fan.remaining and fan.failure is None:
                await fan.news.wait()
                fan.news.clear()
            if fan.failure is not None:
                raise fan.failure
        finally:
            fan.close()

    async def start(self) -> None:
        for platform in self.platforms:
            await platform.start()

    async def aclose(self) -> None:
        for platform in self.platforms:
            try:
                await platform.aclose()
            except Exception:  # closing one platform must not leave the others open
                log.exception("closing platform %s failed", platform.name)
