"""``HostedPlatform``: a platform that books and runs work itself, with a calendar and a scheduler.

It is a normal :class:`~execplanner_widgets.platforms.base.Platform`: the server's proxy and an
in-process planner in a kernel call it directly, and :mod:`.handlers` exposes it over HTTP as an
IVOA ExecutionBroker service with UWS jobs. It imports neither jupyter_server nor tornado.

Where things happen:

* decisions about capacity: :mod:`.booking` (serialised database transactions) and :mod:`.calendar`;
* running sessions at their booked times: :mod:`.runner` with an executor from :mod:`.executors`,
  on a private event loop (:mod:`.engine_loop`) so that runs survive whichever loop called us;
* documents: :mod:`.documents` (ExecutionBroker) and :mod:`.uws` (UWS 1.1).

The database work is synchronous SQLAlchemy, run in the platform's own small thread pool so that
neither the server's loop nor its default executor waits on it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import mimetypes
import threading
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from execplanner_widgets.model import (
    ExecutionRequest,
    ExecutionSession,
    MessageItem,
    OfferSetResponse,
    OptionItem,
    UpdateModel,
    canonical_kind,
    format_duration,
    human_duration,
    short_kind,
)
from execplanner_widgets.model.errors import FieldError, InvalidRequest
from execplanner_widgets.model.platform import Calendar, CalendarStep, PlatformDescription
from execplanner_widgets.core.platform import (
    Platform,
    PlatformContext,
    PlatformError,
    SessionConflict,
    SessionNotFound,
)
from execplanner_widgets.core.limits import Limits, check_request

from .booking import Bookings, plan_request, precise_now
from .calendar import Capacity
from .documents import Links, offerset_document, session_document
from .engine_loop import EngineLoop
from .executors import Executor, make_executor
from .jobs import ActionNotAllowed, JobStore
from .options import HostedOptions
from .runner import Runner
from .staging import StagingError, resolve_location
from .store import Store, default_db_url
from .uws import ACTIVE_UWS_PHASES, UwsJob, UwsJobRef, UwsPhase, job_from_row, jobref_from_row

__all__ = ["HostedPlatform", "RequestRefused"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a capacity read from the executor (e.g. Dask workers) is trusted.
CAPACITY_TTL = 5.0
#: Longest wait for the scheduler, the runs and the executor to stop when the platform closes.
CLOSE_TIMEOUT = 60.0
#: Longest ``WAIT`` a UWS client gets, whatever it asks for.
MAX_WAIT = 60.0
SETTABLE_PHASES = ("ACCEPTED", "REJECTED", "CANCELLED")


class RequestRefused(PlatformError):
    """The platform answered NO to a request that was to run directly (``POST direct``, ``POST jobs``)."""

    status = 409

    def __init__(self, message: str, reasons: list[str], offerset: str | None) -> None:
        super().__init__(message)
        self.reasons = reasons
        self.offerset = offerset


def _message(text: str, level: str = "WARN", **values: Any) -> MessageItem:
    return MessageItem(
        time=precise_now().replace(microsecond=0),
        level=level,
        message=text,
        values={k: str(v) for k, v in values.items()} or None,
    )


class HostedPlatform(Platform):
    """A platform this host runs itself: booking calendar, executors and UWS jobs."""

    kind = "hosted"

    def __init__(
        self,
        name: str,
        title: str | None = None,
        *,
        options: HostedOptions | None = None,
        context: PlatformContext,
        description: str | None = None,
    ) -> None:
        super().__init__(name, title, description=description)
        self.options = options or HostedOptions()
        self.context = context
        self.store = Store(self.options.db_url or context.db_url or default_db_url(context.data_dir))
        self.workdir = Path(self.options.workdir or Path(context.data_dir) / "hosted" / name).expanduser()
        self.links = Links(self._public_base())
        self.bookings = Bookings(self.store, name, self.options, self.title)
        self.jobstore = JobStore(self.bookings)
        self.executor: Executor = make_executor(self.options)
        self.runner_id = uuid_module.uuid4().hex[:16]
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"execplanner-db-{name}")
        self._engine = EngineLoop(name)
        self._runner: Runner | None = None
        self._start_lock = threading.Lock()
        self._started = False
        self._closed = False
        self._pool_closed = False
        self._capacity: tuple[float, Capacity] | None = None
        self._version = 0

    @classmethod
    def from_config(
        cls, name: str, title: str | None, options: dict[str, Any], context: PlatformContext
    ) -> HostedPlatform:
        options = dict(options or {})
        description = options.pop("description", None)
        return cls(name, title, options=HostedOptions.model_validate(options), context=context, description=description)

    def _public_base(self) -> str | None:
        """Where our routes are: the configured public URL, the host's base URL when a server
        serves us, else ``None`` (in-process: results are ``file://`` URIs)."""
        if self.options.public_url:
            return self.options.public_url.rstrip("/") + "/"
        base = self.context.base_url or "/"
        if base.rstrip("/").endswith("execplanner/platforms"):
            return base.rstrip("/") + f"/{self.name}/"
        return None

    def __repr__(self) -> str:
        return f"<HostedPlatform {self.name!r}: {self.title} ({self.options.executor})>"

    # ------------------------------------------------------------------------- lifecycle

    async def _db(self, function: Callable[..., T], *args: Any) -> T:
        """Run a database function in the platform's own threads (never on the caller's loop)."""
        if self._pool_closed:
            raise PlatformError(f"the hosted platform {self.name} has been closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(function, *args))

    def _start_sync(self) -> None:
        with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise PlatformError(f"the hosted platform {self.name} has been closed")
            try:
                self.store.create_all(self.name)
            except Exception as error:
                raise PlatformError(f"{self.name} cannot use its database {self.store.safe_url}: {error}") from None
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.bookings.install_reservations(precise_now())
            self._engine.start()
            assert self._engine.loop is not None
            asyncio.run_coroutine_threadsafe(self._start_runner(), self._engine.loop).result()
            self._started = True

    async def _start_runner(self) -> None:
        self._runner = Runner(self.bookings, self.executor, self.workdir, self.runner_id, self._db, self._changed)
        self._runner.start()

    def _changed(self) -> None:
        self._version += 1

    async def _ensure_started(self) -> None:
        if not self._started:
            await self._db(self._start_sync)

    async def start(self) -> None:
        """Create the tables and start the scheduler (also done lazily on first use)."""
        await self._ensure_started()

    async def aclose(self) -> None:
        """Stop the scheduler and every run (no process is left behind), then the database."""
        with self._start_lock:
            self._closed = True
            started, self._started = self._started, False
        if started and self._engine.loop is not None:
            steps = ([self._runner.aclose] if self._runner is not None else []) + [self.executor.aclose]
            for step in steps:
                try:  # bounded: closing must never hang the host (runs are stopped within their grace)
                    await asyncio.wait_for(self._engine.run(step()), CLOSE_TIMEOUT)
                except Exception:
                    log.exception("hosted platform %s: closing %s failed", self.name, step.__qualname__)
        self._engine.stop()
        self._pool_closed = True
        self._pool.shutdown(wait=True)
        self.store.dispose()

    def _wake(self) -> None:
        if self._runner is not None:
            self._engine.call_soon(self._runner.wake)

    def _stop_run(self, uuid: str) -> None:
        if self._runner is not None:
            self._engine.call_soon(self._runner.stop_session, uuid)

    def session_dir(self, uuid: str) -> Path:
        return self.workdir / uuid

    # -------------------------------------------------------------------------- capacity

    async def capacity(self) -> Capacity:
        """Cores, memory and storage this platform books out (options first, else the executor's)."""
        cached = self._capacity
        if cached is not None and time.monotonic() - cached[0] < CAPACITY_TTL:
            return cached[1]
        cores, memory = self.options.cores, self.options.memory
        if cores is None or memory is None:
            await self._ensure_started()
            found_cores, found_memory = await self._engine.run(self.executor.capacity())
            cores = found_cores if cores is None else cores
            memory = found_memory if memory is None else memory
        capacity = Capacity(cores=cores, memory=memory, storage=self.options.storage)
        self._capacity = (time.monotonic(), capacity)
        return capacity

    def allocation(self, user: str | None) -> Limits | None:
        return self.options.allocations.get(user) if user else None

    @staticmethod
    def _allocation_capacity(limits: Limits | None) -> Capacity | None:
        if limits is None or (limits.cores is None and limits.memory is None and limits.storage is None):
            return None
        return Capacity(cores=limits.cores, memory=limits.memory, storage=limits.storage)

    def describe(self) -> PlatformDescription:
        opts = self.options
        limits: dict[str, Any] = {"storage": opts.storage, "duration": format_duration(opts.max_duration)}
        cached = self._capacity[1] if self._capacity else None
        cores = opts.cores if opts.cores is not None else (cached.cores if cached else None)
        memory = opts.memory if opts.memory is not None else (cached.memory if cached else None)
        if cores is None and opts.executor == "subprocess":
            import os

            import psutil

            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            memory = memory if memory is not None else psutil.virtual_memory().total // 1024**3
        if cores is not None:
            limits["cores"] = cores
        if memory is not None:
            limits["memory"] = memory
        return PlatformDescription(
            name=self.name,
            title=self.title,
            kind=self.kind,
            description=self.description,
            accepts=opts.accepts_short,
            limits=limits,
            url=self.links.base,
            executor=self.executor.name,
            offers=opts.offers,
            offer_ttl=format_duration(opts.offer_ttl),
            horizon=format_duration(opts.horizon),
            jobs=self.links.jobs(),
        )

    # ------------------------------------------------------------------------- the checks

    def _problems(
        self, request: ExecutionRequest, user: str | None, capacity: Capacity
    ) -> list[tuple[MessageItem, OptionItem | None]]:
        """Every reason this platform could never run ``request``, whatever the calendar says."""
        opts = self.options
        limits = Limits(
            cores=capacity.cores, memory=capacity.memory, storage=capacity.storage, duration=opts.max_duration
        )
        problems = check_request(request, limits, opts.accepts, who=self.title)
        allocation = self.allocation(user)
        if allocation is not None:
            seen = {(message.values or {}).get("requirement") for message, _ in problems}
            for message, option in check_request(request, allocation, None, who=f"your allocation on {self.title}"):
                requirement = (message.values or {}).get("requirement")
                if requirement in ("cores", "memory", "storage", "duration") and requirement not in seen:
                    problems.append((message, option))
        kind = short_kind(request.executable.kind)
        if canonical_kind(request.executable.kind, "executable") in opts.accepts:
            reason = self.executor.unsupported(kind)
            if reason:
                problems.append((_message(reason, requirement="executable.kind"), None))
        location = getattr(request.executable, "location", None)
        if kind in ("jupyter-notebook", "python-script"):
            if not location:
                problems.append(
                    (
                        _message(
                            f"the {kind} has no location: give its URL or path", requirement="executable.location"
                        ),
                        None,
                    )
                )
            else:
                try:
                    resolve_location(str(location), opts.local_roots)
                except StagingError as error:
                    problems.append((_message(str(error), requirement="executable.location"), None))
        for item in request.data:
            where = item.location_hint
            if not where:
                continue
            try:
                resolve_location(where, opts.local_roots)
            except StagingError as error:
                label = item.name or short_kind(item.kind)
                problems.append((_message(f"data item {label!r}: {error}", requirement="data"), None))
        return problems

    def _nearest(self, capacity: Capacity) -> MessageItem:
        opts = self.options
        parts = [f"{capacity.cores} cores", f"{capacity.memory} GiB memory"]
        if capacity.storage:
            parts.append(f"{capacity.storage} GiB storage")
        kinds = ", ".join(opts.accepts_short)
        return _message(
            f"the most {self.title} could offer: {', '.join(parts)} for up to {human_duration(opts.max_duration)}, "
            f"starting within {human_duration(opts.horizon)}, running {kinds}",
            "INFO",
            requirement="nearest",
        )

    # ------------------------------------------------------------------ ExecutionBroker

    async def offers(self, request: ExecutionRequest, *, user: str | None = None) -> OfferSetResponse:
        """YES with up to ``options.offers`` offers at the earliest free times, or NO with reasons."""
        await self._ensure_started()
        capacity = await self.capacity()
        problems = self._problems(request, user, capacity)
        plan, timing = plan_request(request, self.options, precise_now())
        problems.extend((_message(text, requirement="schedule.requested.start"), None) for text in timing)
        if problems or plan is None:
            messages = [message for message, _ in problems] + [self._nearest(capacity)]
            options = [option for _, option in problems if option is not None]
            uuid = await self._db(
                self.bookings.refuse,
                request.to_broker(),
                [message.model_dump(mode="json", exclude_none=True) for message in messages],
                [option.model_dump(mode="json", exclude_none=True, by_alias=True) for option in options],
                user,
            )
        else:
            allocation = self._allocation_capacity(self.allocation(user))
            uuid = await self._db(self.bookings.offer, request, plan, capacity, allocation, user)
        self._wake()
        return await self.offerset(uuid, user=user)

    async def offerset(self, uuid: str, *, user: str | None = None) -> OfferSetResponse:
        """The offer set ``uuid``, with its offers as they are now (some may be accepted or expired)."""
        await self._ensure_started()
        row, sessions = await self._db(self.bookings.offerset_rows, uuid, user)
        now = precise_now()
        offers = [
            session_document(item, events, self.links, self.session_dir(item.uuid), now, self.name)
            for item, events in sessions
        ]
        return offerset_document(row, offers, self.links)

    async def session(self, uuid: str, *, user: str | None = None) -> ExecutionSession:
        await self._ensure_started()
        row, events = await self._db(self.bookings.session_rows, uuid, user)
        return session_document(row, events, self.links, self.session_dir(uuid), precise_now(), self.name)

    async def update_session(self, uuid: str, update: UpdateModel, *, user: str | None = None) -> ExecutionSession:
        """Accept, reject or cancel (``path: phase``); anything else is a 400 naming the field."""
        await self._ensure_started()
        if getattr(update, "path", None) != "phase":
            raise InvalidRequest(
                [
                    FieldError(
                        "path", f"only 'phase' can be updated on {self.name}, not {getattr(update, 'path', None)!r}"
                    )
                ],
                "update",
            )
        value = str(getattr(update, "value", "")).upper()
        if value not in SETTABLE_PHASES:
            raise InvalidRequest(
                [FieldError("value", f"a client can set the phase to ACCEPTED, REJECTED or CANCELLED, not {value!r}")],
                "update",
            )
        if value == "ACCEPTED":
            capacity = await self.capacity()
            allocation = self._allocation_capacity(self.allocation(user))
            await self._db(self.bookings.accept, uuid, user, capacity, allocation)
        elif value == "REJECTED":
            await self._db(self.bookings.reject, uuid, user)
        else:
            if await self._db(self.bookings.cancel, uuid, user):
                self._stop_run(uuid)
        self._wake()
        return await self.session(uuid, user=user)

    async def direct(self, request: ExecutionRequest, *, user: str | None = None) -> ExecutionSession:
        """``POST direct``: book the earliest offer at once; :class:`RequestRefused` if there is none."""
        response = await self.offers(request, user=user)
        if response.result != "YES" or not response.offers:
            reasons = response.reasons
            raise RequestRefused(
                f"{self.title} cannot run this request: {reasons[0] if reasons else 'no reason given'}",
                reasons,
                response.meta.uuid if response.meta else None,
            )
        first = response.offers[0]
        assert first.meta is not None and first.meta.uuid is not None
        return await self.accept(first.meta.uuid, user=user)

    # --------------------------------------------------------------------------- results

    async def result_file(self, uuid: str, result_id: str, *, user: str | None = None) -> tuple[Path, str]:
        """The file of result ``result_id`` of session ``uuid`` and its MIME type."""
        await self._ensure_started()
        row, _ = await self._db(self.bookings.session_rows, uuid, user)
        for item in row.results or []:
            if item["id"] == result_id:
                base = (self.session_dir(uuid) / "results").resolve()
                path = (base / item["path"]).resolve()
                if not path.is_relative_to(base) or not path.is_file():
                    break
                return path, item.get("mime-type") or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        raise SessionNotFound(f"session {uuid} has no result {result_id!r}")

    # ------------------------------------------------------------------------------ UWS

    async def submit_job(self, request: ExecutionRequest, *, user: str | None = None, run_id: str | None = None) -> str:
        """UWS ``POST jobs``: book the earliest offer and run it; returns the job id."""
        session = await self.direct(request, user=user)
        assert session.meta is not None and session.meta.uuid is not None
        if run_id:
            await self._db(self.jobstore.set_run_id, session.meta.uuid, user, run_id)
        return session.meta.uuid

    async def job(self, uuid: str, *, user: str | None = None) -> UwsJob:
        await self._ensure_started()
        row, events = await self._db(self.jobstore.job, uuid, user)
        return job_from_row(row, events, self.links, self.session_dir(uuid))

    async def jobs(
        self,
        *,
        user: str | None = None,
        phases: Iterable[UwsPhase] | None = None,
        after: datetime | None = None,
        last: int | None = None,
    ) -> list[UwsJobRef]:
        await self._ensure_started()
        rows = await self._db(self.jobstore.jobs, user, set(phases) if phases else None, after, last)
        return [jobref_from_row(row, self.links) for row in rows]

    async def wait_job(
        self, uuid: str, *, user: str | None = None, timeout: float, phase: UwsPhase | None = None
    ) -> UwsJob:
        """UWS ``WAIT``: return when the job leaves ``phase`` (default: its current phase), or after
        ``timeout`` seconds (at most :data:`MAX_WAIT`; negative means the most allowed)."""
        job = await self.job(uuid, user=user)
        initial = phase or job.phase
        if job.phase != initial or job.phase not in ACTIVE_UWS_PHASES:
            return job
        limit = MAX_WAIT if timeout < 0 else min(timeout, MAX_WAIT)
        deadline = time.monotonic() + limit
        version = self._version
        last_read = time.monotonic()
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(0.1, remaining))
            if self._version == version and time.monotonic() - last_read < 1.0:
                continue  # nothing changed here; still look at the database every second (other servers)
            version, last_read = self._version, time.monotonic()
            job = await self.job(uuid, user=user)
            if job.phase != initial:
                return job
        return await self.job(uuid, user=user)

    async def abort_job(self, uuid: str, *, user: str | None = None) -> UwsJob:
        """``PHASE=ABORT``: cancel a QUEUED or EXECUTING job (403 otherwise)."""
        job = await self.job(uuid, user=user)
        if job.phase not in (UwsPhase.QUEUED, UwsPhase.EXECUTING):
            raise ActionNotAllowed(
                f"the job {uuid} is {job.phase.value}; only a QUEUED or EXECUTING job can be aborted"
            )
        try:
            await self.cancel(uuid, user=user)
        except SessionConflict as error:  # it finished meanwhile
            raise ActionNotAllowed(str(error)) from None
        return await self.job(uuid, user=user)

    async def run_job(self, uuid: str, *, user: str | None = None) -> UwsJob:
        """``PHASE=RUN``: jobs are booked to run already; allowed (and a no-op) until they finish."""
        job = await self.job(uuid, user=user)
        if job.phase not in (UwsPhase.QUEUED, UwsPhase.EXECUTING):
            raise ActionNotAllowed(f"the job {uuid} is {job.phase.value}; it cannot be run again (submit a new job)")
        return job

    async def delete_job(self, uuid: str, *, user: str | None = None) -> None:
        """UWS ``DELETE``: abort if running, remove the job and its results."""
        await self._ensure_started()
        if await self._db(self.jobstore.delete, uuid, user):
            self._stop_run(uuid)
        await asyncio.to_thread(_remove_results, self.session_dir(uuid))
        self._wake()

    async def set_job_destruction(self, uuid: str, when: datetime, *, user: str | None = None) -> UwsJob:
        await self._ensure_started()
        await self._db(self.jobstore.set_destruction, uuid, user, when)
        self._wake()
        return await self.job(uuid, user=user)

    async def set_job_execution_duration(self, uuid: str, seconds: int, *, user: str | None = None) -> UwsJob:
        await self._ensure_started()
        await self._db(self.jobstore.set_execution_duration, uuid, user, seconds)
        self._wake()
        return await self.job(uuid, user=user)

    # ------------------------------------------------------------------------- checking

    async def calendar(self, start: datetime, end: datetime, *, user: str | None = None) -> Calendar:
        """The booking calendar between ``start`` and ``end``: bookings, live offers and reservations."""
        await self._ensure_started()
        capacity = await self.capacity()
        steps = await self._db(self.bookings.usage_steps, start, end)
        return Calendar(
            platform=self.name,
            title=self.title,
            capacity={"cores": capacity.cores, "memory": capacity.memory, "storage": capacity.storage},
            start=start,
            end=end,
            steps=[
                CalendarStep(start=low, end=high, cores=cores, memory=memory, storage=storage)
                for low, high, cores, memory, storage in steps
            ],
        )

    async def peak_usage(self, low: datetime, high: datetime) -> tuple[int, int, int]:
        """Most cores, memory (GiB) and storage (GiB) held at once in ``[low, high)``."""
        await self._ensure_started()
        return await self._db(self.bookings.usage_peak, low, high)


def _remove_results(folder: Path) -> None:
    import shutil

    for part in ("results", "work", "runtime", "storage"):
        shutil.rmtree(folder / part, ignore_errors=True)
