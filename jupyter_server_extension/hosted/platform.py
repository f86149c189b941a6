"""``HostedPlatform``: a platform that books and runs work itself, with a calendar and a scheduler.

It is a normal :class:`~execplanner_widgets.core.platform.Platform`: the server's proxy and an
in-process planner in a kernel call it directly, and the server layer
(``jupyter_server_extension.handlers.broker`` and ``.uws``) exposes it over HTTP as an IVOA
ExecutionBroker service with UWS jobs. It imports neither jupyter_server nor tornado.

Where things happen:

* what could never run: :mod:`.checks`; a request in the platform's terms: :mod:`.plan`;
* decisions about capacity: :mod:`.service` (serialised database transactions, the executor's
  booking hooks) and :mod:`.calendar`; storage: :mod:`.store` and :mod:`.tables`;
* running sessions at their booked times: :mod:`.runner` and :mod:`.run` with an executor plugin
  from :mod:`.executors`, on a private event loop (:mod:`.engine_loop`) so that runs survive
  whichever loop called us;
* documents: :mod:`.documents` (ExecutionBroker), :mod:`.jobs` and :mod:`.uws_documents` (UWS 1.1).

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

from execplanner_widgets.core.limits import Limits
from execplanner_widgets.core.platform import (
    Platform,
    PlatformContext,
    PlatformError,
    SessionConflict,
    SessionNotFound,
)
from execplanner_widgets.model import (
    ExecutionRequest,
    ExecutionSession,
    OfferSetResponse,
    UpdateModel,
    format_duration,
)
from execplanner_widgets.model.errors import FieldError, InvalidRequest
from execplanner_widgets.model.phases import ACTIVE_UWS_PHASES, USER_PHASES, UwsPhase
from execplanner_widgets.model.platform import Calendar, CalendarStep, PlatformDescription

from . import checks
from .calendar import Capacity
from .documents import Links, offerset_document, session_document
from .engine_loop import EngineLoop
from .executors import Executor, ExecutorContext, make_executor
from .jobs import ActionNotAllowed, JobStore, job_from_row, jobref_from_row
from .options import HostedOptions
from .plan import plan_request, precise_now
from .runner import MAX_SLEEP, Runner
from .service import BookingService
from .store import EventRow, OfferSetRow, SessionRow, Store, default_db_url
from .uws_documents import UwsJob, UwsJobRef

__all__ = ["HostedPlatform", "RequestRefused"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a capacity read from the executor (e.g. Dask workers) is trusted.
CAPACITY_TTL = 5.0
#: Longest wait for the scheduler, the runs and the executor to stop when the platform closes.
CLOSE_TIMEOUT = 60.0
#: Longest ``WAIT`` a UWS client gets, whatever it asks for.
MAX_WAIT = 60.0


class RequestRefused(PlatformError):
    """The platform answered NO to a request that was to run directly (``POST direct``, ``POST jobs``)."""

    status = 409

    def __init__(self, message: str, reasons: list[str], offerset: str | None) -> None:
        super().__init__(message)
        self.reasons = reasons
        self.offerset = offerset


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
        self.secrets_dir = Path(context.data_dir).expanduser() / "secrets" / name
        self.executor: Executor = make_executor(
            self.options,
            ExecutorContext(
                platform=name,
                options=self.options,
                workdir=self.workdir,
                log=logging.getLogger(f"{__name__}.{name}"),
                secrets_dir=self.secrets_dir,
            ),
        )
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"execplanner-db-{name}")
        self._engine = EngineLoop(name)
        self.service = BookingService(
            self.store, name, self.options, self.title, self.executor, self._db, self._engine.run
        )
        self.jobstore = JobStore(self.store, name, self.options.retention)
        self.runner_id = uuid_module.uuid4().hex[:16]
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
            self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.secrets_dir.chmod(0o700)
            self.service.install_reservations(precise_now())
            self._engine.start()
            assert self._engine.loop is not None
            asyncio.run_coroutine_threadsafe(self._start_runner(), self._engine.loop).result()
            self._started = True

    async def _start_runner(self) -> None:
        self._runner = Runner(self.service, self.executor, self.workdir, self.runner_id, self._db, self._changed)
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
        """Stop the scheduler and every run (no process is left behind), then the database.

        Runs whose engine keeps them going (Slurm jobs, hub servers: ``Executor.survives_restart``)
        are detached instead of stopped; the next server on the same database takes them over."""
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
        await self.store.aclose()

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

    def _named(self, user: str | None) -> None:
        """A caller the server cannot name owns nothing on a platform for several people: without a
        name, one person's sessions, results and jobs would be everybody's (403)."""
        if user is None and self.options.serves_many:
            raise PlatformError(
                f"{self.title} serves several people and cannot tell who you are: sign in as a named user "
                "(an anonymous or token-only caller owns nothing here)",
                status=403,
            )

    def allocation(self, user: str | None) -> Limits | None:
        return self.options.allocations.get(user) if user else None

    def _allocation_capacity(self, user: str | None) -> Capacity | None:
        return checks.allocation_capacity(self.allocation(user))

    def describe(self) -> PlatformDescription:
        opts = self.options
        limits: dict[str, Any] = {"storage": opts.storage, "duration": format_duration(opts.max_duration)}
        cached = self._capacity[1] if self._capacity else None
        cores = opts.cores if opts.cores is not None else (cached.cores if cached else None)
        memory = opts.memory if opts.memory is not None else (cached.memory if cached else None)
        known = self.executor.known_capacity() if cores is None or memory is None else None
        if known is not None:
            cores = cores if cores is not None else known[0]
            memory = memory if memory is not None else known[1]
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

    # ------------------------------------------------------------------ ExecutionBroker

    async def offers(self, request: ExecutionRequest, *, user: str | None = None) -> OfferSetResponse:
        """YES with up to ``options.offers`` offers at the earliest free times, or NO with reasons."""
        await self._ensure_started()
        self._named(user)
        capacity = await self.capacity()
        problems = checks.problems(request, self.options, capacity, self.allocation(user), self.executor, self.title)
        plan, timing = plan_request(request, self.options, precise_now())
        if plan is not None:
            plan.need = self.executor.fit(plan.need)
        problems.extend((checks.message(text, requirement="schedule.requested.start"), None) for text in timing)
        if plan is not None and not problems:
            refusals = await self.service.refusals(plan, user)
            problems.extend((checks.message(text, requirement="executor"), None) for text in refusals)
        if problems or plan is None:
            messages = [message for message, _ in problems] + [checks.nearest(capacity, self.options, self.title)]
            options = [option for _, option in problems if option is not None]
            rows = await self.service.refuse(
                request.to_broker(),
                [message.model_dump(mode="json", exclude_none=True) for message in messages],
                [option.model_dump(mode="json", exclude_none=True, by_alias=True) for option in options],
                user,
            )
        else:
            rows = await self.service.offer(request, plan, capacity, self._allocation_capacity(user), user)
            if self.options.offer_ttl.total_seconds() < MAX_SLEEP:
                # the scheduler looks at least every MAX_SLEEP seconds: it needs a wake-up (a sweep
                # of the database) only for offers that expire before its next look
                self._wake()
        return self._offerset_document(*rows)

    async def offerset(self, uuid: str, *, user: str | None = None) -> OfferSetResponse:
        """The offer set ``uuid``, with its offers as they are now (some may be accepted or expired)."""
        await self._ensure_started()
        self._named(user)
        return self._offerset_document(*await self._db(self.service.offerset_rows, uuid, user))

    def _offerset_document(
        self, row: OfferSetRow, sessions: list[tuple[SessionRow, list[EventRow]]]
    ) -> OfferSetResponse:
        now = precise_now()
        offers = [
            session_document(item, events, self.links, self.session_dir(item.uuid), now, self.name)
            for item, events in sessions
        ]
        return offerset_document(row, offers, self.links)

    async def session(self, uuid: str, *, user: str | None = None) -> ExecutionSession:
        await self._ensure_started()
        self._named(user)
        row, events = await self._db(self.service.session_rows, uuid, user)
        return session_document(row, events, self.links, self.session_dir(uuid), precise_now(), self.name)

    async def update_session(self, uuid: str, update: UpdateModel, *, user: str | None = None) -> ExecutionSession:
        """Accept, reject or cancel (``path: phase``); anything else is a 400 naming the field."""
        await self._ensure_started()
        self._named(user)
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
        if value not in {phase.value for phase in USER_PHASES}:
            raise InvalidRequest(
                [FieldError("value", f"a client can set the phase to ACCEPTED, REJECTED or CANCELLED, not {value!r}")],
                "update",
            )
        if value == "ACCEPTED":
            capacity = await self.capacity()
            row, events = await self.service.accept(uuid, user, capacity, self._allocation_capacity(user))
            if (row.start - precise_now()).total_seconds() < MAX_SLEEP:
                # the scheduler looks at least every MAX_SLEEP seconds and moves the booking on
                # then; a session that starts before that look needs it now
                self._wake()
        elif value == "REJECTED":
            row, events = await self.service.reject(uuid, user)
        else:
            stop, (row, events) = await self.service.cancel(uuid, user)
            if stop:
                self._stop_run(uuid)
            self._wake()
        # as the change left it, before the scheduler moves on
        return session_document(row, events, self.links, self.session_dir(uuid), precise_now(), self.name)

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
        self._named(user)
        row, _ = await self._db(self.service.session_rows, uuid, user)
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
        self._named(user)
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
        self._named(user)
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
        self._named(user)
        if await self._db(self.jobstore.delete, uuid, user):
            self._stop_run(uuid)
        await asyncio.to_thread(_remove_results, self.session_dir(uuid))
        self._wake()

    async def set_job_destruction(self, uuid: str, when: datetime, *, user: str | None = None) -> UwsJob:
        await self._ensure_started()
        self._named(user)
        await self._db(self.jobstore.set_destruction, uuid, user, when)
        self._wake()
        return await self.job(uuid, user=user)

    async def set_job_execution_duration(self, uuid: str, seconds: int, *, user: str | None = None) -> UwsJob:
        await self._ensure_started()
        self._named(user)
        await self._db(self.jobstore.set_execution_duration, uuid, user, seconds)
        self._wake()
        return await self.job(uuid, user=user)

    # ------------------------------------------------------------------------- checking

    async def calendar(self, start: datetime, end: datetime, *, user: str | None = None) -> Calendar:
        """The booking calendar between ``start`` and ``end``: bookings, live offers and reservations."""
        await self._ensure_started()
        self._named(user)
        capacity = await self.capacity()
        steps = await self.service.usage_steps(start, end)
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
        return await self.service.usage_peak(low, high)


def _remove_results(folder: Path) -> None:
    import shutil

    for part in ("results", "work", "runtime", "storage"):
        shutil.rmtree(folder / part, ignore_errors=True)
