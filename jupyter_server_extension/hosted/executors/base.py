"""The executor plugin API: what runs a booked session, and how it takes part in booking.

An executor is a class registered under the entry-point group ``execplanner.executors``; the
platforms file names it (``hosted: {executor: dask, dask: {workers: 2}}``) and its typed
:attr:`Executor.Options` validate the block under its own name. The booking service and the runner
own the calendar and the phases; an executor is asked at a few well-defined moments:

* while answering a request: :meth:`~Executor.unsupported` (kinds), :meth:`~Executor.refusals`
  (NO reasons from the engine's own limits) and :meth:`~Executor.external_holds` (load the engine
  reports itself, added to the calendar for that question);
* after an accept is committed: :meth:`~Executor.booked` (may refuse with :class:`ExecutorRefused`,
  which undoes the accept), and :meth:`~Executor.released` once that slot is over for any reason;
* while answering a request: :meth:`~Executor.offer_note` (a sentence added to each offer, such as
  "this start is Slurm's estimate, not a reservation");
* at run time: :meth:`~Executor.run`, which reports through :class:`RunReport`, and after a server
  restart :meth:`~Executor.adopt` for a run an earlier server started.

Two class attributes say how the engine behaves: :attr:`~Executor.survives_restart` (a run goes on
in the engine without this server, so a clean shutdown leaves it for the next server instead of
stopping it) and :attr:`~Executor.reports_phases` (the executor says when the job waits in the
engine's queue, runs and is released, through :meth:`RunReport.phase`).

Every hook has a default, so a minimal executor only implements :meth:`~Executor.run`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from execplanner_widgets.model.phases import SessionPhase

if TYPE_CHECKING:
    from ..calendar import Hold, Need
    from ..options import HostedOptions

__all__ = [
    "EXECUTABLE_KINDS",
    "BookedSlot",
    "Executor",
    "ExecutorContext",
    "ExecutorRefused",
    "NoOptions",
    "RunOutcome",
    "RunReport",
    "RunSpec",
    "container_reason",
    "machine_capacity",
]

#: Short kinds the built-in executors know how to run.
EXECUTABLE_KINDS = ("jupyter-notebook", "python-script")

GIB = 1024**3


class NoOptions(BaseModel):
    """Options of an executor that takes none: any key under its name is an error."""

    model_config = ConfigDict(extra="forbid")


class ExecutorRefused(Exception):
    """Raised by :meth:`Executor.booked`: the engine will not hold this slot (the accept is undone)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ExecutorContext:
    """What an executor knows about the platform it serves.

    ``secrets_dir`` is a folder for the executor's own credentials (tokens, keys), outside every
    session folder; executors that isolate user code must not make it visible to that code.
    """

    platform: str
    options: HostedOptions
    workdir: Path
    log: logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]
    secrets_dir: Path


@dataclass
class RunSpec:
    """One run: what to start, where, with which limits, for whom, and when.

    ``workdir`` holds the staged executable and data (the run's current directory); ``results`` is
    where everything the user may download ends up. ``start`` is when the booked time begins and
    ``deadline`` when it ends (the run is stopped then).
    """

    session: str
    kind: Literal["jupyter-notebook", "python-script"]
    entry: Path
    workdir: Path
    results: Path
    cores: int
    memory_gib: int
    deadline: datetime
    arguments: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    cpu_offset: int = 0
    user: str | None = None
    start: datetime | None = None

    @property
    def executed_notebook(self) -> str:
        """File name of the executed notebook among the results."""
        return f"{self.entry.stem}.executed.ipynb"


@dataclass
class RunOutcome:
    """How a run ended. ``message`` is one sentence for the session's history."""

    status: Literal["completed", "failed", "timeout", "cancelled"]
    message: str
    exit_code: int | None = None


@dataclass
class BookedSlot:
    """A booked slot, as :meth:`Executor.booked` and :meth:`Executor.released` see it.

    ``start``/``end`` is the whole time the compute is held (preparation + run + release).
    ``handle`` is the executor's own name for what it made (a Slurm reservation, say): set it in
    :meth:`Executor.booked`; it is stored with the session and given back to :meth:`Executor.released`,
    also after a restart.
    """

    session: str
    user: str | None
    start: datetime
    end: datetime
    cores: int
    memory_gib: int
    storage_gib: int
    handle: str | None = None


class RunReport:
    """How a run tells the platform what happens; the runner's subclass stores it.

    This base does nothing, so an executor can be run on its own (in a test, say).
    """

    async def handle(self, text: str) -> None:
        """Remember the engine's id for this run (a process group, a Slurm job id, a server name),
        so that a later server can :meth:`Executor.adopt` the run after a crash."""

    async def available(self, url: str, title: str | None = None) -> None:
        """The session can be used interactively at ``url`` now: it becomes AVAILABLE with a connector."""

    async def progress(self, text: str) -> None:
        """Add one sentence to the session's history."""

    async def phase(self, phase: SessionPhase, text: str) -> None:
        """The engine says where the job is: WAITING (queued in the engine, a Slurm job PENDING),
        RUNNING, or RELEASING (the engine is cleaning up, a Slurm job COMPLETING). The session moves
        there when that move is allowed (:mod:`execplanner_widgets.model.phases`); ``text`` goes to its
        history either way. Only executors with :attr:`Executor.reports_phases` need it."""


class Executor:
    """Runs staged executables for one hosted platform; every hook but :meth:`run` has a default."""

    #: The executor's typed options (the block under its name in ``hosted:``); extra keys forbidden.
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: A short description for messages ("running on the subprocess executor").
    name: str = "executor"
    #: A run goes on in the engine when this server stops (a Slurm job, a hub's notebook server) and
    #: :meth:`adopt` follows it again from its handle: a clean shutdown then detaches such runs
    #: (the next server takes them over at once) instead of stopping them.
    survives_restart: ClassVar[bool] = False
    #: The executor reports the job's phases itself (:meth:`RunReport.phase`): the runner does not
    #: write RUNNING when it hands the run over, the executor does when the engine starts the job.
    reports_phases: ClassVar[bool] = False

    def __init__(self, options: BaseModel, context: ExecutorContext) -> None:
        self.options = options
        self.context = context

    # ---------------------------------------------------------------------- answering

    def unsupported(self, kind: str) -> str | None:
        """Why this executor cannot run the short ``kind``, or ``None`` if it can (notebooks and
        Python scripts; containers are answered with what is missing)."""
        if kind in EXECUTABLE_KINDS:
            return None
        return (
            container_reason(kind) or f"cannot run a {kind} executable: this platform runs notebooks and Python scripts"
        )

    def known_capacity(self) -> tuple[int, int] | None:
        """(cores, memory GiB) when they are known without starting anything (cheap, sync), else ``None``."""
        return None

    async def capacity(self) -> tuple[int, int]:
        """(cores, memory GiB) this executor has, used when the options do not say."""
        known = self.known_capacity()
        if known is None:
            from execplanner_widgets.core.platform import PlatformError

            raise PlatformError(
                f"the {self.name} executor cannot tell its capacity: set 'cores' and 'memory' in the platform's hosted options"
            )
        return known

    async def external_holds(self, low: datetime, high: datetime) -> list[Hold]:
        """Load in ``[low, high)`` that the engine itself reports (other users' jobs, reservations)."""
        return []

    async def refusals(self, need: Need, user: str | None) -> list[str]:
        """NO reasons from the engine's own limits for ``need`` by ``user`` (none by default)."""
        return []

    async def offer_note(self, need: Need, start: datetime, user: str | None) -> str | None:
        """A sentence for the messages of an offer of ``need`` starting at ``start`` (what the offer
        means in this engine, e.g. that its start is an estimate), or ``None``. The booking service
        asks only executors that override this hook, once per offer, after the offers are made."""
        return None

    def fit(self, need: Need) -> Need:
        """``need`` in the shapes this engine really gives (a hub's server profiles, say): what is
        offered and booked. Unchanged by default; a need no shape fits is left for :meth:`refusals`."""
        return need

    # ------------------------------------------------------------------------ booking

    async def booked(self, slot: BookedSlot) -> None:
        """An accept was committed; hold the slot in the engine (set ``slot.handle``) or raise
        :class:`ExecutorRefused` to undo the accept."""

    async def released(self, slot: BookedSlot) -> None:
        """The booked slot is over (cancelled, ended, failed, deleted): give back what :meth:`booked` took."""

    # ------------------------------------------------------------------------ running

    async def start(self) -> None:
        """Connect to what runs the work (a cluster, say). Called once, lazily."""

    async def aclose(self) -> None:
        """Release connections and clusters."""

    async def run(self, spec: RunSpec, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        """Run ``spec`` until it ends, ``stop`` is set, or its deadline passes; never leave a process behind."""
        raise NotImplementedError

    async def adopt(self, spec: RunSpec, handle: str, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        """A run that an earlier server started (``handle`` is what it reported): follow it to its
        end, or stop it and say so. The default cannot follow anything."""
        return RunOutcome("failed", "the server restarted during the run, and this executor cannot take a run over")


def machine_capacity() -> tuple[int, int]:
    """This machine's usable CPUs and its memory in GiB."""
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores, max(1, psutil.virtual_memory().total // GIB)


def container_reason(kind: str) -> str | None:
    """The NO reason for container kinds, which the built-in executors do not start."""
    import shutil

    if kind == "docker-container":
        engines = [name for name in ("docker", "podman") if shutil.which(name)]
        if not engines:
            return "cannot run a docker-container executable: no container engine (docker or podman) is installed here"
        return (
            "cannot run a docker-container executable: this platform's executors run notebooks and Python scripts only"
        )
    if kind == "singularity-container":
        if not any(shutil.which(name) for name in ("singularity", "apptainer")):
            return "cannot run a singularity-container executable: neither singularity nor apptainer is installed here"
        return (
            "cannot run a singularity-container executable: "
            "this platform's executors run notebooks and Python scripts only"
        )
    return None
