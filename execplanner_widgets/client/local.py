"""Local mode: the same federation in this process, on a private event loop thread."""

from __future__ import annotations

import asyncio
import inspect
import os
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from ..model import (
    ExecutionSession,
    SessionPhase,
    utcnow,
)
from ..model.identifiers import check_identifier
from ..model.platform import Calendar, PlatformDescription
from ..model.results import PlatformResult

if TYPE_CHECKING:
    from ..core.federation import Federation
    from ..model.status import JobStatus


from ..core.collector import collector_paused
from ..core.ledger import BookingLedger
from .bookings import BookingEntry, join_output, read_tail
from .discovery import Mode
from .errors import PlannerError

T = TypeVar("T")


class _EventLoopThread:
    """A private asyncio loop in a daemon thread: coroutines from synchronous code, kernel or not."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="execplanner-local", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def iterate(self, produce: Callable[[Callable[[T], None]], Coroutine[Any, Any, None]]) -> Iterator[T]:
        """Items as ``produce(put)`` puts them, from the loop, to this thread; leaving early cancels
        the producer. ``put`` only queues, so the producer may call it from anywhere on the loop."""
        items: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

        async def run() -> None:
            try:
                await produce(lambda item: items.put(("item", item)))
            except BaseException as error:  # handed to the consumer, which re-raises it
                items.put(("error", error))
                if isinstance(error, asyncio.CancelledError):
                    raise
            else:
                items.put(("end", None))

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        try:
            while True:
                kind, value = items.get()
                if kind == "item":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            future.cancel()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def _close_local(federation: Federation, runner: _EventLoopThread) -> None:
    """Close the platforms, then the loop (also run by a finalizer when a Planner is forgotten)."""
    if runner.loop.is_closed() or not runner.thread.is_alive():
        return
    try:
        runner.run(federation.aclose(), timeout=10)
    except Exception:  # closing must not raise at interpreter exit
        pass
    runner.close()


class LocalBackend:
    """The same federation the server would run, in this process."""

    mode: Mode = "local"

    def __init__(
        self,
        platforms_file: str | os.PathLike[str] | None,
        data_dir: str | os.PathLike[str] | None,
        user: str | None,
        reason: str,
    ) -> None:
        from ..core.config import build_federation, default_context, load_platforms_file, resolve_platforms_path

        path, is_demo = resolve_platforms_path(platforms_file)
        config = load_platforms_file(path)
        context = default_context(data_dir)
        context.config_dir = path.parent
        self.ledger = BookingLedger(context.data_dir)
        self.federation = build_federation(config, context)
        self.source = "the built-in demo federation" if is_demo else str(path)
        self.user = user if user is not None else _local_user()
        self.reason = reason
        self.runner = _EventLoopThread()
        self._finalizer = weakref.finalize(self, _close_local, self.federation, self.runner)
        try:
            self.runner.run(self.federation.start(), timeout=60)
        except BaseException:
            self.close()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T], platform: str | None = None) -> T:
        from ..core.federation import UnknownPlatform
        from ..core.platform import PlatformError

        try:
            return self.runner.run(coroutine)
        except UnknownPlatform as error:
            raise PlannerError(str(error), status=404, field="platform", platform=error.name) from None
        except PlatformError as error:
            raise PlannerError(str(error), status=error.status, platform=platform) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise PlannerError(
                f"{platform or 'the platform'} did not answer in time", status=504, platform=platform
            ) from None
        finally:
            # A call refused before it started (the planner was closed) never ran its coroutine:
            # close it, or Python warns at garbage collection that it was never awaited.
            if inspect.getcoroutinestate(coroutine) == inspect.CORO_CREATED:
                coroutine.close()

    def _timed(self, platform: str, make: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        async def call() -> T:
            target = self.federation.get(platform)
            return await asyncio.wait_for(make(target), self.federation.timeout_for(target))

        return self._call(call(), platform)

    def platforms(self) -> list[PlatformDescription]:
        return self.federation.describe()

    def offers(self, request: dict[str, Any], platforms: list[str] | None) -> list[PlatformResult]:
        with collector_paused():  # the loop thread builds the results while this one waits
            return self._call(self.federation.offers(request, user=self.user, platforms=platforms))

    def stream_offers(self, request: dict[str, Any], platforms: list[str] | None) -> Iterator[PlatformResult]:
        for name in platforms or []:
            self._call(_lookup(self.federation, name))  # unknown names fail before the stream starts
        # each answer is handed over in its platform's task, so that the first reaches this thread
        # before the loop has read the others that came with it
        return self.runner.iterate(
            lambda put: self.federation.deliver_offers(request, put, user=self.user, platforms=platforms)
        )

    def session(self, platform: str, uuid: str) -> ExecutionSession:
        check_identifier(uuid, "uuid")
        return self._timed(platform, lambda target: target.session(uuid, user=self.user))

    def update(self, platform: str, uuid: str, phase: SessionPhase) -> ExecutionSession:
        from ..model import phase_update

        check_identifier(uuid, "uuid")
        session = self._timed(platform, lambda target: target.update_session(uuid, phase_update(phase), user=self.user))
        if phase == SessionPhase.ACCEPTED and session.uuid:
            try:
                self.ledger.add(self.user, platform, session.uuid, utcnow().isoformat())
            except OSError:  # the booking stands; only the list of bookings misses it
                pass
        return session

    def log(self, platform: str, uuid: str, tail: int) -> str:
        """The end of a run's output, for platforms in this process that keep a session folder."""
        check_identifier(uuid, "uuid")
        self.session(platform, uuid)  # the owner check, as through the server
        target = self.federation.get(platform)
        session_dir = getattr(target, "session_dir", None)
        if session_dir is None:
            raise PlannerError(f"{target.title} does not serve the output of its runs", status=404, platform=platform)
        base = Path(session_dir(uuid)).resolve()
        folder = (base / "results").resolve()
        if not folder.is_relative_to(base):
            return ""
        return join_output(read_tail(folder / "stdout.txt", tail), read_tail(folder / "stderr.txt", tail))

    def bookings(self) -> list[BookingEntry]:
        """The bookings made by this user through local-mode planners on this data folder."""
        from ..core.platform import PlatformError

        entries = []
        for item in reversed(self.ledger.of(self.user)):
            entry = BookingEntry(platform=item["platform"], uuid=item["uuid"], booked=item.get("booked"))
            try:
                entry.title = self.federation.get(entry.platform).title
                entry.session = self.session(entry.platform, entry.uuid)
            except (KeyError, PlannerError, PlatformError) as error:
                entry.error = str(error)
            entries.append(entry)
        return entries

    def job(self, platform: str, job_id: str) -> JobStatus:
        from ..core.jobs import follow_job

        return self._timed(
            platform,
            lambda target: follow_job(target, job_id, user=self.user, timeout=self.federation.timeout_for(target)),
        )

    def describe(self) -> str:
        return f"local mode: {len(self.federation)} platform(s) from {self.source}, asked from this process ({self.reason})"

    def calendar(self, platform: str, hours: float) -> Calendar:
        async def read() -> Calendar:
            target = self.federation.get(platform)
            start = utcnow()
            return await target.calendar(start, start + timedelta(hours=hours), user=self.user)

        return self._call(read(), platform)

    def fetch(self, url: str, target: Path) -> Path:
        """Copy a result that a hosted platform in this process wrote (a ``file://`` URL)."""
        import shutil
        from urllib.parse import unquote

        parts = urlsplit(url)
        if parts.scheme != "file":
            raise PlannerError(f"in local mode results are files on this machine; cannot fetch {url}")
        shutil.copyfile(unquote(parts.path), target)
        return target

    def close(self) -> None:
        self._finalizer()


async def _lookup(federation: Federation, name: str) -> None:
    federation.get(name)


def _local_user() -> str | None:
    """Who is asking, in local mode: the login name (the server would use the Jupyter identity)."""
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no login name in some containers
        return None


# -------------------------------------------------------------------------------------- Planner
