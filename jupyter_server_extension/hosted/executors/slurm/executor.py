"""The ``slurm`` executor: a hosted platform whose calendar, bookings and runs are a Slurm cluster's.

* capacity: the partition's usable nodes (cores, memory) from ``sinfo``;
* the calendar: Slurm's own load (other users' running and pending jobs, reservations) is added to
  every question as holds (:mod:`.holds`);
* NO reasons: the partition's MaxTime, node sizes and the account's association limits (:mod:`.limits`);
* accept: the slot becomes an advance reservation named after the session (``scontrol create
  reservation``, which needs SlurmUser or an operator); without that privilege
  (``reservations: false``) nothing is held in Slurm and the job is submitted with ``--begin``;
* run: ``sbatch`` into the reservation (cores, memory, wall time), the job id is reported as the run's
  handle, and the job is followed with ``squeue``/``sacct`` until it ends; a server that restarts
  :meth:`~SlurmExecutor.adopt`\\ s the job from its id;
* release: the session's jobs are cancelled and its reservation deleted;
* a clean shutdown of the server leaves running jobs to Slurm (:attr:`~SlurmExecutor.survives_restart`):
  the next server follows them again at once;
* offers of a platform that may not reserve (``reservations: false``) carry Slurm's own start
  estimate (``sbatch --test-only``) in their messages, marked as an estimate, not a reservation.

Slurm job states map to the session's phase (:meth:`~.base.RunReport.phase`): PENDING -> WAITING,
RUNNING -> RUNNING, COMPLETING -> RELEASING, COMPLETED -> COMPLETED, FAILED / OUT_OF_MEMORY /
NODE_FAIL -> FAILED, TIMEOUT -> FAILED with the wall-time reason, CANCELLED -> CANCELLED (when this
platform cancelled it) or FAILED (when someone else did).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import math
import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from execplanner_widgets.model.phases import SessionPhase

from ..base import BookedSlot, Executor, ExecutorContext, ExecutorRefused, RunOutcome, RunReport, RunSpec
from ..local import describe_exit
from ..procs import TASK_PROGRAM
from ..sandbox import Sandbox, choose_sandbox
from .cli import (
    MIB_PER_GIB,
    SlurmCLI,
    SlurmError,
    SlurmJob,
    SlurmNode,
    SlurmPartition,
    SlurmReservation,
    slurm_timestamp,
)
from .holds import ACTIVE_JOB_STATES, job_holds, reservation_holds
from .jobscript import job_name, job_script, sbatch_arguments, time_limit_minutes
from .limits import association_reasons, partition_reasons

if TYPE_CHECKING:
    from ...calendar import Hold, Need

__all__ = ["SlurmExecutor", "SlurmOptions", "outcome_of"]

GIB = 1024**3

#: States after which a job holds nothing any more.
FINAL_JOB_STATES = {
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "CANCELLED",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "PREEMPTED",
    "DEADLINE",
    "REVOKED",
}


#: Partition and account names: one word (they become ``Key=Value`` arguments of Slurm commands).
SLURM_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$"


class SlurmOptions(BaseModel):
    """``hosted: {executor: slurm, slurm: {...}}``: which part of the cluster, as whom, and how."""

    model_config = ConfigDict(extra="forbid")

    partition: str = Field(
        pattern=SLURM_NAME, description="The Slurm partition sessions run in (its nodes are the platform's capacity)"
    )
    account: str | None = Field(
        default=None,
        pattern=SLURM_NAME,
        description="Slurm account jobs are charged to; none means the Unix user's default account",
    )
    accounts: dict[str, str] = Field(
        default_factory=dict, description="Per platform user, the Slurm account their sessions are charged to"
    )
    reservations: bool = Field(
        default=True,
        description="Book accepted slots as Slurm advance reservations (needs SlurmUser or operator); "
        "false: offers are Slurm's estimates and jobs are submitted with --begin",
    )
    prefix: str = Field(
        default="execplanner",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$",
        description="Start of the names of this platform's reservations and jobs (they are left out of its load)",
    )
    poll_interval: float = Field(default=2.0, gt=0, le=300, description="Seconds between looks at a running job")
    command_timeout: float = Field(default=30.0, gt=0, le=600, description="Seconds a Slurm command may take")
    sbatch_args: list[str] = Field(
        default_factory=list, description="Extra sbatch options (e.g. --qos=...); the booking's own options win"
    )
    python: str | None = Field(
        default=None, description="The Python on the compute nodes that runs the task program (default: the server's)"
    )
    environment: dict[str, str] = Field(
        default_factory=dict, description="Variables for the Slurm commands the server runs (e.g. SLURM_CONF)"
    )
    pending_estimates: bool = Field(default=True, description="Count pending jobs at the start Slurm expects for them")

    @field_validator("accounts")
    @classmethod
    def _account_names(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for user, account in value.items():
            if not re.match(SLURM_NAME, account):
                raise ValueError(f"the account of {user!r} ({account!r}) is not a Slurm account name")
        return value

    @field_validator("sbatch_args")
    @classmethod
    def _options_only(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.startswith("-"):
                raise ValueError(f"{item!r} is not an sbatch option (options start with '-')")
            if item.split("=", 1)[0] in ("--wrap", "--test-only", "--parsable"):
                raise ValueError(f"{item.split('=', 1)[0]} is set by the platform and cannot be given here")
        return value


class _Snapshot:
    """Jobs and reservations read once and shared for a short while: every question, accept and
    followed job looks at the same cluster, and a busy cluster's queue is read once per interval."""

    def __init__(self, cli: SlurmCLI, ttl: float) -> None:
        self.cli = cli
        self.ttl = ttl
        self._lock = asyncio.Lock()
        self._jobs: tuple[float, list[SlurmJob]] | None = None
        self._reservations: tuple[float, list[SlurmReservation]] | None = None

    def invalidate(self) -> None:
        self._jobs = self._reservations = None

    async def jobs(self) -> list[SlurmJob]:
        async with self._lock:
            if self._jobs is None or time.monotonic() - self._jobs[0] > self.ttl:
                self._jobs = (time.monotonic(), await self.cli.jobs())
            return self._jobs[1]

    async def reservations(self) -> list[SlurmReservation]:
        async with self._lock:
            if self._reservations is None or time.monotonic() - self._reservations[0] > self.ttl:
                self._reservations = (time.monotonic(), await self.cli.reservations())
            return self._reservations[1]


class SlurmExecutor(Executor):
    """Puts a Slurm partition behind a hosted platform (see the module docstring)."""

    Options = SlurmOptions
    name = "slurm"
    survives_restart = True  # a job runs on in Slurm; adopt() follows it from its id
    reports_phases = True  # PENDING -> WAITING, RUNNING, COMPLETING -> RELEASING

    def __init__(self, options: SlurmOptions, context: ExecutorContext) -> None:
        super().__init__(options, context)
        self.options: SlurmOptions = options
        self.cli = SlurmCLI(options.environment, timeout=options.command_timeout)
        self.snapshot = _Snapshot(self.cli, ttl=min(1.0, options.poll_interval / 2))
        self.unix_user = getpass.getuser()
        hosted = context.options
        #: user code runs isolated inside the job as on the subprocess executor (bubblewrap must be
        #: installed on the compute nodes too; the probe looks at the server's machine)
        self.sandbox: Sandbox = choose_sandbox(
            hosted.isolation, multi_user=hosted.serves_many, platform=context.platform
        )
        self._default_account: str | None = None

    # ---------------------------------------------------------------------- reading

    async def _partition(self) -> tuple[SlurmPartition, list[SlurmNode]]:
        try:
            partition, nodes = await asyncio.gather(
                self.cli.partition(self.options.partition), self.cli.nodes(self.options.partition)
            )
        except SlurmError as error:
            from execplanner_widgets.core.platform import PlatformError

            raise PlatformError(f"Slurm did not answer: {error}") from None
        return partition, nodes

    async def capacity(self) -> tuple[int, int]:
        """The usable nodes of the partition: their cores and memory (GiB)."""
        _, nodes = await self._partition()
        usable = [node for node in nodes if node.usable]
        return sum(node.cpus for node in usable), sum(node.memory_mib for node in usable) // MIB_PER_GIB

    async def external_holds(self, low: datetime, high: datetime) -> list[Hold]:
        now = time.time()
        try:
            jobs, reservations, nodes = await asyncio.gather(
                self.snapshot.jobs(), self.snapshot.reservations(), self.cli.nodes(self.options.partition)
            )
        except SlurmError as error:
            from execplanner_widgets.core.platform import PlatformError

            raise PlatformError(f"Slurm did not answer: {error}") from None
        own = f"{self.options.prefix}-"
        if not self.options.pending_estimates:
            jobs = [job for job in jobs if job.state != "PENDING"]
        span = (now, low.timestamp(), high.timestamp())
        return job_holds(jobs, self.options.partition, own, *span) + reservation_holds(reservations, nodes, own, *span)

    async def account_for(self, user: str | None) -> str:
        """The Slurm account a platform user's sessions are charged to."""
        if user is not None and user in self.options.accounts:
            return self.options.accounts[user]
        if self.options.account:
            return self.options.account
        if self._default_account is None:
            stdout, _ = await self.cli.run(
                "sacctmgr", "--parsable2", "--noheader", "show", "user", self.unix_user, "format=DefaultAccount"
            )
            self._default_account = stdout.strip().splitlines()[0] if stdout.strip() else ""
        return self._default_account

    async def refusals(self, need: Need, user: str | None) -> list[str]:
        try:
            partition, nodes = await asyncio.gather(
                self.cli.partition(self.options.partition), self.cli.nodes(self.options.partition)
            )
        except SlurmError as error:
            return [f"Slurm did not answer, so this platform cannot promise anything now: {error}"]
        reasons = partition_reasons(partition, nodes, need.cores, need.memory, need.duration)
        return reasons + await self._association_reasons(need, user)

    async def _association_reasons(self, need: Need, user: str | None) -> list[str]:
        """NO reasons from ``sacctmgr``; none (and a warning in the log) where the cluster keeps no
        accounts, since Slurm does not enforce association limits there either."""
        try:
            account = await self.account_for(user)
            if not account:
                return []
            rows = await self.cli.associations(self.unix_user)
        except SlurmError as error:
            self.context.log.warning("Slurm association limits not checked: %s", error)
            return []
        return association_reasons(rows, account, self.unix_user, need.cores, need.memory, need.duration)

    async def estimate(self, need: Need, user: str | None, begin: datetime | None = None) -> tuple[datetime, str]:
        """Slurm's own start estimate for a job of this size (``sbatch --test-only``), not before
        ``begin`` when given, and the sentence that marks an offer as such: without reservations
        nothing is held in Slurm, so an offer is what Slurm expects, not a promise."""
        arguments = [
            f"--partition={self.options.partition}",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={need.cores}",
            f"--time={max(1, math.ceil(need.duration / 60))}",
        ]
        if need.memory:
            arguments.append(f"--mem={need.memory}G")
        if begin is not None and begin.timestamp() > time.time() + 1:
            arguments.append(f"--begin={slurm_timestamp(begin)}")
        account = await self._account_or_none(user)
        if account:
            arguments.append(f"--account={account}")
        moment = datetime.fromtimestamp(await self.cli.estimate(arguments), tz=timezone.utc)
        note = (
            f"Slurm's own estimate: a job of this size would start at {moment:%Y-%m-%d %H:%M:%S}Z; "
            "this is an estimate, not a reservation: this platform cannot reserve time in Slurm, so the job "
            "is submitted at the offered start and may wait for others"
        )
        return moment, note

    async def offer_note(self, need: Need, start: datetime, user: str | None) -> str | None:
        """Without reservations every offer is marked as Slurm's estimate (none with reservations:
        the accepted slot is then held in Slurm)."""
        if self.options.reservations:
            return None
        try:
            _, note = await self.estimate(need, user, begin=start)
        except SlurmError as error:
            return (
                f"this is an estimate, not a reservation: this platform cannot reserve time in Slurm, "
                f"and Slurm gave no start estimate ({error})"
            )
        return note

    # ---------------------------------------------------------------------- booking

    def reservation_name(self, session: str) -> str:
        return job_name(self.options.prefix, session)

    async def booked(self, slot: BookedSlot) -> None:
        """Create the session's advance reservation (idempotent: a retry finds it)."""
        if not self.options.reservations:
            return
        name = self.reservation_name(slot.session)
        self.snapshot.invalidate()
        start = max(slot.start.timestamp(), time.time() + 1)
        try:
            if any(item.name == name for item in await self.cli.reservations()):
                slot.handle = name  # a retry: it was made already
                return
            await self.cli.create_reservation(
                name, start, slot.end.timestamp(), slot.cores, self.unix_user, self.options.partition
            )
        except SlurmError as error:
            raise ExecutorRefused(f"Slurm would not reserve {slot.cores} cores then: {error}") from None
        finally:
            self.snapshot.invalidate()
        slot.handle = name
        self.context.log.info("Slurm reservation %s created for session %s", name, slot.session)

    async def released(self, slot: BookedSlot) -> None:
        """Cancel the session's jobs still in Slurm and delete its reservation (both may be gone)."""
        name = self.reservation_name(slot.session)
        self.snapshot.invalidate()
        for job in await self.cli.jobs():
            if job.name == name and job.state not in FINAL_JOB_STATES:
                try:
                    await self.cli.cancel(job.job_id)
                except SlurmError as error:
                    self.context.log.warning("Slurm job %s of %s: %s", job.job_id, slot.session, error)
        if slot.handle or self.options.reservations:
            try:
                await self.cli.delete_reservation(slot.handle or name)
            except SlurmError as error:
                if "invalid" not in str(error).lower():  # already gone (expired, or deleted by an admin)
                    raise
        self.snapshot.invalidate()

    # ---------------------------------------------------------------------- running

    async def run(self, spec: RunSpec, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        spec.results.mkdir(parents=True, exist_ok=True)
        folder = spec.workdir.parent
        runtime = folder / "runtime"
        runtime.mkdir(parents=True, exist_ok=True)
        task_file = folder / "task.json"
        task_file.write_text(
            json.dumps(
                {
                    "kind": spec.kind,
                    "entry": str(spec.entry),
                    "arguments": spec.arguments,
                    "notebook_out": str(spec.results / spec.executed_notebook),
                    "cores": spec.cores,
                    "cpu_offset": 0,
                    "memory_bytes": spec.memory_gib * GIB,
                }
            ),
            encoding="utf-8",
        )
        command = [self.options.python or sys.executable, "-I", "-c", TASK_PROGRAM, str(task_file)]
        argv, environment = self.sandbox.command(
            command, spec, session_dir=folder, file_size_bytes=max(1, self.context.options.storage) * GIB
        )
        sandboxed = self.sandbox.support.bubblewrap if self.sandbox.mode == "bubblewrap" else None
        script = job_script(argv, environment, sandboxed)
        (folder / "job.sh").write_text(script, encoding="utf-8")
        await asyncio.to_thread(self.sandbox.prepare, folder)  # the run's user owns its folder

        now = time.time()
        begin = max(now, spec.start.timestamp() if spec.start else now)
        reservation = self.reservation_name(spec.session) if self.options.reservations else None
        end = spec.deadline.timestamp()
        if reservation:
            found = [item for item in await self.snapshot.reservations() if item.name == reservation]
            if not found:  # released already (cancelled meanwhile), or an administrator deleted it
                self.snapshot.invalidate()
                found = [item for item in await self.cli.reservations() if item.name == reservation]
            if not found:
                return RunOutcome("failed", f"the Slurm reservation {reservation} of this session no longer exists")
            end = min(end, found[0].end)
        if end - begin < 60:
            return RunOutcome(
                "failed", "less than a minute of the booked slot was left, and Slurm's time limits are minutes"
            )
        arguments = sbatch_arguments(
            spec,
            name=job_name(self.options.prefix, spec.session),
            partition=self.options.partition,
            account=await self._account_or_none(spec.user),
            reservation=reservation,
            begin=begin if begin > now + 1 else None,
            minutes=time_limit_minutes(begin, end),
            extra=self.options.sbatch_args,
        )
        try:
            job_id = await self.cli.submit(arguments, script)
        except SlurmError as error:
            return RunOutcome("failed", f"Slurm refused the job: {error}")
        self.snapshot.invalidate()
        await report.handle(job_id)
        where = f" in reservation {reservation}" if reservation else ""
        await report.progress(f"submitted to Slurm as job {job_id}{where} (partition {self.options.partition})")
        return await self.follow(job_id, spec, stop, report)

    async def _account_or_none(self, user: str | None) -> str | None:
        try:
            return await self.account_for(user) or None
        except SlurmError as error:  # no accounting: Slurm charges the user's default, if any
            self.context.log.warning("no Slurm account looked up for %s: %s", user, error)
            return None

    async def adopt(self, spec: RunSpec, handle: str, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        """Follow the Slurm job an earlier server submitted (its id is the handle) to its end."""
        job_id = handle.strip()
        if not job_id.isdigit():
            return RunOutcome("failed", f"the server restarted, and {handle!r} is not a Slurm job id")
        await report.progress(f"following Slurm job {job_id} again after a server restart")
        return await self.follow(job_id, spec, stop, report)

    async def follow(self, job_id: str, spec: RunSpec, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        """Watch job ``job_id`` until it ends; cancel it when ``stop`` is set (or it never started in its slot)."""
        last: tuple[str, str] | None = None
        cancelled_at: float | None = None
        missing = errors = 0
        while True:
            if stop.is_set() and cancelled_at is None:
                cancelled_at = time.monotonic()
                await self._cancel(job_id)
            try:
                job = await self._job(job_id)
                errors = 0
            except SlurmError as error:
                errors += 1
                if errors >= 30:
                    return RunOutcome("failed", f"lost contact with Slurm while following job {job_id}: {error}")
                job = None
                missing = 0
            else:
                missing = 0 if job is not None else missing + 1
                if job is None and missing >= 5:
                    return RunOutcome("failed", f"Slurm no longer knows job {job_id} (not in squeue nor sacct)")
            if job is not None:
                if (job.state, job.reason) != last:
                    last = (job.state, job.reason)
                    phase = JOB_PHASES.get(job.state)
                    if phase is None:
                        await report.progress(describe_state(job))
                    else:
                        await report.phase(phase, describe_state(job))
                if job.state in FINAL_JOB_STATES:
                    return outcome_of(job, spec, cancelled=cancelled_at is not None)
                if job.state == "PENDING" and cancelled_at is None and time.time() > spec.deadline.timestamp():
                    await self._cancel(job_id)
                    return RunOutcome(
                        "timeout", f"Slurm job {job_id} never started before the booked slot ended ({job.reason})"
                    )
            if cancelled_at is not None and time.monotonic() - cancelled_at > 120:
                return RunOutcome("cancelled", f"stopped on request; Slurm job {job_id} was cancelled")
            if stop.is_set():
                await asyncio.sleep(self.options.poll_interval)
                continue
            try:
                await asyncio.wait_for(stop.wait(), self.options.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def _job(self, job_id: str) -> SlurmJob | None:
        for job in await self.snapshot.jobs():
            if job.job_id == job_id:
                return job
        return await self.cli.accounted_job(job_id)

    async def _cancel(self, job_id: str) -> None:
        try:
            await self.cli.cancel(job_id)
        except SlurmError as error:
            self.context.log.warning("cancelling Slurm job %s: %s", job_id, error)
        self.snapshot.invalidate()


#: Slurm job states the session's phase follows (others are history lines only).
JOB_PHASES = {
    "PENDING": SessionPhase.WAITING,
    "RUNNING": SessionPhase.RUNNING,
    "COMPLETING": SessionPhase.RELEASING,
}


def describe_state(job: SlurmJob) -> str:
    """One history line for a job state Slurm reports."""
    reason = f" ({job.reason})" if job.reason and job.reason != "None" else ""
    if job.state == "PENDING":
        return f"Slurm job {job.job_id} is PENDING{reason}: waiting for its start"
    if job.state in ACTIVE_JOB_STATES and job.state != "COMPLETING":
        return f"Slurm job {job.job_id} is {job.state} with {job.cpus} core(s)"
    if job.state == "COMPLETING":
        return f"Slurm job {job.job_id} is COMPLETING: Slurm is releasing its node"
    return f"Slurm job {job.job_id} ended {job.state}{reason}"


def outcome_of(job: SlurmJob, spec: RunSpec, *, cancelled: bool) -> RunOutcome:
    """How a finished job ended, as the session's outcome."""
    stderr = spec.results / "stderr.txt"
    state, ident = job.state, job.job_id
    if state == "COMPLETED":
        outcome = describe_exit(spec, job.exit_code or 0, stderr)
        return RunOutcome(outcome.status, f"{outcome.message} (Slurm job {ident} COMPLETED)", outcome.exit_code)
    if state == "FAILED":
        outcome = describe_exit(spec, job.exit_code or 1, stderr)
        return RunOutcome("failed", f"{outcome.message} (Slurm job {ident} FAILED)", outcome.exit_code)
    if state == "TIMEOUT":
        minutes = job.time_limit_minutes
        limit = f"its wall time of {minutes} minute(s)" if minutes else "its wall time"
        return RunOutcome("timeout", f"Slurm job {ident} ran past {limit} and was stopped by Slurm (TIMEOUT)")
    if state == "CANCELLED":
        if cancelled:
            return RunOutcome("cancelled", f"stopped on request; Slurm job {ident} was cancelled")
        return RunOutcome(
            "failed",
            f"Slurm job {ident} was cancelled outside this platform (scancel by its owner or an administrator)",
        )
    if state == "OUT_OF_MEMORY":
        return RunOutcome(
            "failed",
            f"Slurm job {ident} used more than its {spec.memory_gib} GiB of memory and was stopped (OUT_OF_MEMORY)",
        )
    detail = f": {job.reason}" if job.reason and job.reason != "None" else ""
    return RunOutcome("failed", f"Slurm job {ident} ended {state}{detail}")
