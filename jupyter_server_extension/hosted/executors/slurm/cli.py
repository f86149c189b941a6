"""Talking to Slurm through its documented machine-readable interfaces, asynchronously.

Every call is one Slurm command run as a subprocess (never a shell) with a timeout:

* ``sinfo --json`` (nodes), ``squeue --json`` (jobs), ``sacct --json`` (finished jobs): the OpenAPI
  documents Slurm prints itself (Slurm >= 21.08). In 22.05 these ignore filter options, so filtering
  happens here;
* ``scontrol --oneliner show partition|reservation``: one record per line of ``Key=Value`` pairs
  (``scontrol`` has no ``--json`` before 23.02);
* ``sacctmgr --parsable2 --noheader show assoc format=...``: ``|``-separated fields in the order asked;
* ``sbatch --parsable`` (the job id) and ``sbatch --test-only`` (Slurm's start estimate, one
  documented line on stderr);
* ``scontrol create|delete reservation``, ``scancel``.

A command that fails, times out or is missing raises :class:`SlurmError` with the command and
Slurm's own message; output that does not parse raises it too. Nothing here knows about sessions.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

__all__ = [
    "Association",
    "SlurmCLI",
    "SlurmError",
    "SlurmJob",
    "SlurmNode",
    "SlurmPartition",
    "SlurmReservation",
    "parse_duration",
    "parse_oneliner",
    "parse_tres",
]

MIB_PER_GIB = 1024

#: Node states in which a node takes no work.
UNUSABLE_NODE_STATES = {"down", "drain", "drained", "draining", "fail", "failing", "future", "unknown", "maint"}


class SlurmError(RuntimeError):
    """A Slurm command failed, timed out, is missing, or printed what could not be read."""

    def __init__(self, message: str, command: str | None = None, stderr: str | None = None) -> None:
        super().__init__(message)
        self.command = command
        self.stderr = stderr or ""


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class SlurmNode:
    """One node: what it has, and whether it takes work."""

    name: str
    cpus: int
    memory_mib: int
    state: str
    flags: tuple[str, ...]
    partitions: tuple[str, ...]

    @property
    def usable(self) -> bool:
        states = {self.state.lower(), *(flag.lower() for flag in self.flags)}
        return not states & UNUSABLE_NODE_STATES


@dataclass(frozen=True)
class SlurmPartition:
    """A partition's limits. ``max_time`` in seconds (``None``: unlimited)."""

    name: str
    state: str
    max_time: float | None
    nodes: str
    max_cpus_per_node: int | None
    max_mem_per_node_mib: int | None
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SlurmJob:
    """A job as ``squeue --json`` or ``sacct --json`` shows it. Times are epoch seconds (0: unknown)."""

    job_id: str
    name: str
    state: str
    reason: str
    user: str
    account: str
    partition: str
    reservation: str
    cpus: int
    memory_mib: int
    start: float
    end: float
    time_limit_minutes: int | None
    exit_code: int | None = None


@dataclass(frozen=True)
class SlurmReservation:
    """An advance reservation. Times are epoch seconds."""

    name: str
    start: float
    end: float
    nodes: str
    node_count: int
    cores: int
    partition: str
    users: str
    accounts: str
    flags: str
    state: str


@dataclass(frozen=True)
class Association:
    """One row of ``sacctmgr show assoc``: the limits set on it (``None``: not set here)."""

    account: str
    user: str
    parent: str
    grp_tres: Mapping[str, int]
    max_tres: Mapping[str, int]
    max_tres_per_node: Mapping[str, int]
    max_wall: float | None


# ------------------------------------------------------------------------------ parsing


def parse_duration(text: str) -> float | None:
    """Seconds in a Slurm time limit (``[D-]HH:MM:SS``, ``MM:SS``, ``MM``); ``None`` for unlimited or empty."""
    value = text.strip()
    if not value or value.upper() in {"UNLIMITED", "INFINITE", "NONE", "N/A", "(NULL)"}:
        return None
    days = 0
    if "-" in value:
        day_text, value = value.split("-", 1)
        days = int(day_text)
        parts = [int(part) for part in value.split(":")]
        while len(parts) < 3:
            parts.append(0)  # D-HH, D-HH:MM
        hours, minutes, seconds = parts[:3]
    else:
        parts = [int(part) for part in value.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts[:3]
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


_MEMORY_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2, "P": 1024**3}


def _memory_mib(text: str) -> int:
    value = text.strip().upper()
    if value and value[-1] in _MEMORY_UNITS:
        return math.ceil(float(value[:-1]) * _MEMORY_UNITS[value[-1]])
    return math.ceil(float(value))


def parse_tres(text: str) -> dict[str, int]:
    """``cpu=64,mem=100G,node=2`` -> ``{"cpu": 64, "mem": 102400, "node": 2}`` (memory in MiB)."""
    result: dict[str, int] = {}
    for item in text.split(","):
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        key = key.strip().lower()
        if not value.strip():
            continue
        try:
            result[key] = _memory_mib(value) if key == "mem" else int(float(value))
        except ValueError as error:
            raise SlurmError(f"cannot read the TRES value {item!r}") from error
    return result


_ONELINER_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")


def parse_oneliner(line: str) -> dict[str, str]:
    """``Key=Value Key2=Value with spaces`` (``scontrol --oneliner``) -> a dict.

    A value runs until the next `` Key=``, so values with spaces (comments, reasons) stay whole.
    """
    matches = list(_ONELINER_KEY.finditer(line))
    record: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(line)
        record[match.group(1)] = line[match.end() : end].strip()
    return record


def _slurm_time(text: str) -> float:
    """An ``scontrol`` timestamp (local time of the machine, ``YYYY-MM-DDTHH:MM:SS``) as epoch seconds."""
    try:
        return datetime.fromisoformat(text.strip()).astimezone().timestamp()
    except ValueError as error:
        raise SlurmError(f"cannot read the Slurm time {text!r}") from error


def _int(value: object, default: int = 0) -> int:
    """Slurm's JSON numbers: ints, ``null``, or (newer versions) ``{"set": .., "number": ..}``."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return default
        value = value.get("number", default)
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _optional_int(text: str) -> int | None:
    if not text or text.upper() in {"UNLIMITED", "NONE", "N/A", "(NULL)"}:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _state(value: object) -> str:
    if isinstance(value, list):  # newer versions: a list of flags, the base state first
        return str(value[0]) if value else ""
    if isinstance(value, dict):  # sacct: {"current": "COMPLETED", "reason": ...}
        return _state(value.get("current", ""))
    return str(value or "")


def _job_memory(job: Mapping) -> int:
    """MiB a job holds (allocated on its nodes if running, else what it asked for)."""
    allocated = ((job.get("job_resources") or {}).get("allocated_nodes")) or []
    total = sum(_int(node.get("memory_allocated")) for node in allocated if isinstance(node, Mapping))
    if total:
        return total
    per_node = _int(job.get("memory_per_node"))
    if per_node:
        return per_node * max(1, _int(job.get("node_count"), 1))
    per_cpu = _int(job.get("memory_per_cpu"))
    if per_cpu:
        return per_cpu * max(1, _int(job.get("cpus"), 1))
    return parse_tres(str(job.get("tres_req_str") or "")).get("mem", 0)


def job_from_squeue(job: Mapping) -> SlurmJob:
    limit = job.get("time_limit")
    return SlurmJob(
        job_id=str(job.get("job_id")),
        name=str(job.get("name") or ""),
        state=_state(job.get("job_state")),
        reason=str(job.get("state_reason") or ""),
        user=str(job.get("user_name") or ""),
        account=str(job.get("account") or ""),
        partition=str(job.get("partition") or ""),
        reservation=str(job.get("resv_name") or ""),
        cpus=_int(job.get("cpus"), 1),
        memory_mib=_job_memory(job),
        start=float(_int(job.get("start_time"))),
        end=float(_int(job.get("end_time"))),
        time_limit_minutes=_int(limit) if limit is not None else None,
        exit_code=_exit_code(job.get("exit_code")),
    )


def _exit_code(value: object) -> int | None:
    if isinstance(value, Mapping):
        if "return_code" in value:
            return _int(value.get("return_code"))
        return None
    if value is None:
        return None
    code = _int(value)
    return code >> 8 if code > 255 else code  # squeue shows the wait() status


def job_from_sacct(job: Mapping) -> SlurmJob:
    times = job.get("time") or {}
    reservation = job.get("reservation") or {}
    tres = (job.get("tres") or {}).get("allocated") or (job.get("tres") or {}).get("requested") or []
    cpus = next((_int(item.get("count")) for item in tres if item.get("type") == "cpu"), 1)
    memory = next((_int(item.get("count")) for item in tres if item.get("type") == "mem"), 0)
    state = job.get("state") or {}
    return SlurmJob(
        job_id=str(job.get("job_id")),
        name=str(job.get("name") or ""),
        state=_state(state),
        reason=str(state.get("reason") or "") if isinstance(state, Mapping) else "",
        user=str(job.get("user") or ""),
        account=str(job.get("account") or ""),
        partition=str(job.get("partition") or ""),
        reservation=str(reservation.get("name") or "") if isinstance(reservation, Mapping) else "",
        cpus=cpus,
        memory_mib=memory,
        start=float(_int(times.get("start"))),
        end=float(_int(times.get("end"))),
        time_limit_minutes=_int(times.get("limit")) if times.get("limit") is not None else None,
        exit_code=_exit_code(job.get("exit_code")),
    )


def node_from_sinfo(node: Mapping) -> SlurmNode:
    state = node.get("state")
    flags = tuple(str(flag) for flag in (node.get("state_flags") or []))
    if isinstance(state, list):  # newer versions: ["IDLE", "DRAIN"]
        flags = tuple(str(flag) for flag in state[1:]) + flags
    return SlurmNode(
        name=str(node.get("name") or node.get("hostname")),
        cpus=_int(node.get("cpus")),
        memory_mib=_int(node.get("real_memory")),
        state=_state(state),
        flags=flags,
        partitions=tuple(str(name) for name in (node.get("partitions") or [])),
    )


def _reservation(record: Mapping[str, str]) -> SlurmReservation:
    tres = parse_tres(record.get("TRES", ""))
    cores = _optional_int(record.get("CoreCnt", "")) or tres.get("cpu", 0)
    return SlurmReservation(
        name=record.get("ReservationName", ""),
        start=_slurm_time(record.get("StartTime", "")),
        end=_slurm_time(record.get("EndTime", "")),
        nodes=record.get("Nodes", ""),
        node_count=_optional_int(record.get("NodeCnt", "")) or 0,
        cores=cores,
        partition=record.get("PartitionName", ""),
        users=record.get("Users", ""),
        accounts=record.get("Accounts", ""),
        flags=record.get("Flags", ""),
        state=record.get("State", ""),
    )


_TEST_ONLY = re.compile(r"to start at (\S+)")


def parse_test_only(stderr: str) -> float:
    """The start time in ``sbatch --test-only``'s line (``Job N to start at 2026-...``), epoch seconds."""
    match = _TEST_ONLY.search(stderr)
    if not match:
        raise SlurmError(f"sbatch --test-only gave no start estimate: {stderr.strip()[:300]}", "sbatch", stderr)
    return _slurm_time(match.group(1))


def slurm_timestamp(moment: float | datetime) -> str:
    """A time as Slurm commands take it (machine-local ``YYYY-MM-DDTHH:MM:SS``)."""
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, tz=timezone.utc)
    return moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


# ------------------------------------------------------------------------------ commands


class SlurmCLI:
    """Runs Slurm's commands. ``environment`` is added to the server's (``SLURM_CONF``, say)."""

    def __init__(
        self, environment: Mapping[str, str] | None = None, timeout: float = 30.0, bin_dir: str | None = None
    ) -> None:
        self.environment = dict(environment or {})
        self.timeout = timeout
        self.bin_dir = bin_dir

    def _program(self, name: str) -> str:
        path = os.pathsep.join(filter(None, [self.bin_dir, os.environ.get("PATH", ""), "/usr/bin", "/usr/local/bin"]))
        found = shutil.which(name, path=path)
        if found is None:
            raise SlurmError(f"the Slurm command {name!r} is not installed on this server", name)
        return found

    async def run(self, *command: str, stdin: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        """Run one command; (stdout, stderr) on exit code 0, else :class:`SlurmError` with Slurm's message."""
        program = self._program(command[0])
        environment = dict(os.environ)
        environment.update(self.environment)
        process = await asyncio.create_subprocess_exec(
            program,
            *command[1:],
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
        try:
            out, err = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None), timeout or self.timeout
            )
        except BaseException as error:  # timed out, or cancelled: never leave the command running
            if process.returncode is None:
                process.kill()
                await asyncio.shield(process.wait())
            if isinstance(error, asyncio.TimeoutError):
                limit = timeout or self.timeout
                raise SlurmError(f"{command[0]} did not answer within {limit:g} s", command[0]) from None
            raise
        stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if process.returncode != 0:
            message = _last_error(stderr) or stdout.strip()[:300] or f"exit code {process.returncode}"
            raise SlurmError(f"{' '.join(command[:3])} failed: {message}", command[0], stderr)
        return stdout, stderr

    async def _json(self, *command: str) -> dict:
        stdout, _ = await self.run(*command)
        try:
            document = json.loads(stdout)
        except json.JSONDecodeError as error:
            raise SlurmError(f"{command[0]} --json printed no JSON ({error.msg})", command[0]) from None
        errors = [item for item in document.get("errors") or [] if item]
        if errors:
            raise SlurmError(f"{command[0]} reported: {errors[0]}", command[0])
        return document

    # -- reading -----------------------------------------------------------------------------

    async def nodes(self, partition: str | None = None) -> list[SlurmNode]:
        document = await self._json("sinfo", "--json")
        nodes = [node_from_sinfo(node) for node in document.get("nodes") or []]
        return [node for node in nodes if partition is None or partition in node.partitions]

    async def partition(self, name: str) -> SlurmPartition:
        stdout, _ = await self.run("scontrol", "--oneliner", "show", "partition", name)
        for line in stdout.splitlines():
            record = parse_oneliner(line)
            if record.get("PartitionName") == name:
                return SlurmPartition(
                    name=name,
                    state=record.get("State", ""),
                    max_time=parse_duration(record.get("MaxTime", "")),
                    nodes=record.get("Nodes", ""),
                    max_cpus_per_node=_optional_int(record.get("MaxCPUsPerNode", "")),
                    max_mem_per_node_mib=_optional_int(record.get("MaxMemPerNode", "")),
                    raw=record,
                )
        raise SlurmError(f"Slurm has no partition named {name!r}", "scontrol")

    async def jobs(self) -> list[SlurmJob]:
        """Every job slurmctld still knows (pending, running, and recently ended)."""
        document = await self._json("squeue", "--json")
        return [job_from_squeue(job) for job in document.get("jobs") or []]

    async def job(self, job_id: str) -> SlurmJob | None:
        """The job from ``squeue`` (live), else from ``sacct`` (accounting), else ``None``."""
        for job in await self.jobs():
            if job.job_id == job_id:
                return job
        return await self.accounted_job(job_id)

    async def accounted_job(self, job_id: str) -> SlurmJob | None:
        try:
            document = await self._json("sacct", "--json", "-X", "-j", job_id)
        except SlurmError:
            return None
        for job in document.get("jobs") or []:
            if str(job.get("job_id")) == job_id:
                return job_from_sacct(job)
        return None

    async def reservations(self) -> list[SlurmReservation]:
        stdout, _ = await self.run("scontrol", "--oneliner", "show", "reservation")
        found = []
        for line in stdout.splitlines():
            if line.startswith("ReservationName="):
                found.append(_reservation(parse_oneliner(line)))
        return found

    async def associations(self, user: str | None = None) -> list[Association]:
        """Association rows (of ``user`` and the accounts above them; all when ``user`` is None)."""
        fields = "Account,User,ParentName,GrpTRES,MaxTRES,MaxTRESPerNode,MaxWall"
        stdout, _ = await self.run("sacctmgr", "--parsable2", "--noheader", "show", "assoc", f"format={fields}")
        rows = []
        for line in stdout.splitlines():
            parts = line.split("|")
            if len(parts) != 7:
                continue
            account, assoc_user, parent, grp, maximum, per_node, wall = parts
            if user is not None and assoc_user not in ("", user):
                continue
            rows.append(
                Association(
                    account=account,
                    user=assoc_user,
                    parent=parent,
                    grp_tres=parse_tres(grp),
                    max_tres=parse_tres(maximum),
                    max_tres_per_node=parse_tres(per_node),
                    max_wall=parse_duration(wall),
                )
            )
        return rows

    async def estimate(self, arguments: list[str]) -> float:
        """Slurm's start estimate for a job with these ``sbatch`` options (``--test-only``), epoch seconds."""
        _, stderr = await self.run("sbatch", "--test-only", *arguments, "--wrap", "true")
        return parse_test_only(stderr)

    # -- changing ----------------------------------------------------------------------------

    async def submit(self, arguments: list[str], script: str) -> str:
        """Submit ``script`` (given on stdin) with ``arguments``; the job id."""
        stdout, _ = await self.run("sbatch", "--parsable", *arguments, stdin=script)
        job_id = stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(f"sbatch printed no job id: {stdout.strip()[:200]}", "sbatch")
        return job_id

    async def cancel(self, job_id: str) -> None:
        await self.run("scancel", job_id)

    async def create_reservation(
        self,
        name: str,
        start: float,
        end: float,
        cores: int,
        users: str,
        partition: str,
        accounts: str | None = None,
        flags: str | None = None,
    ) -> None:
        arguments = [
            f"ReservationName={name}",
            f"StartTime={slurm_timestamp(start)}",
            f"EndTime={slurm_timestamp(end)}",
            f"TRES=cpu={cores}",
            f"PartitionName={partition}",
            f"Users={users}",
        ]
        if accounts:
            arguments.append(f"Accounts={accounts}")
        if flags:
            arguments.append(f"Flags={flags}")
        await self.run("scontrol", "create", "reservation", *arguments)

    async def delete_reservation(self, name: str) -> None:
        await self.run("scontrol", "delete", f"ReservationName={name}")


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower() or "fatal" in line.lower() or "denied" in line.lower():
            return re.sub(r"^\w+: (error|fatal): ", "", line)[:300]
    return lines[-1][:300] if lines else ""
