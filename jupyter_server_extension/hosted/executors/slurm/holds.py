"""Slurm's own load as calendar holds: other users' jobs and reservations on the partition's nodes.

* a running job holds its cores and memory from now until its expected end (start + time limit);
* a pending job holds them from Slurm's expected start (the backfill scheduler's estimate) for its
  time limit; a pending job without an estimate is not placed (Slurm has not decided either);
* a reservation holds its cores, and memory in proportion (reservations do not reserve memory,
  but jobs inside one need some), from its start to its end;
* jobs inside a reservation are not counted again, and this platform's own reservations and jobs
  (named with its prefix) are already bookings in the platform's database, so they are left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from ...calendar import Hold
from .cli import MIB_PER_GIB, SlurmJob, SlurmNode, SlurmReservation

__all__ = ["ACTIVE_JOB_STATES", "expand_hostlist", "job_holds", "reservation_holds"]

#: Job states that hold resources now.
ACTIVE_JOB_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING"}

_RANGE = re.compile(r"^([^\[]*)\[([^\]]+)\](.*)$")


def expand_hostlist(text: str) -> list[str]:
    """``node[01-03,7],gpu1`` -> ``[node01, node02, node03, node7, gpu1]`` (Slurm's hostlist notation)."""
    names: list[str] = []
    depth, current = 0, ""
    parts = []
    for char in text.strip():
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"[": 1, "]": -1}.get(char, 0)
        current += char
    parts.append(current)
    for part in filter(None, (item.strip() for item in parts)):
        match = _RANGE.match(part)
        if not match:
            names.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for item in ranges.split(","):
            if "-" in item:
                low, high = item.split("-", 1)
                width = len(low)
                names.extend(f"{prefix}{number:0{width}d}{suffix}" for number in range(int(low), int(high) + 1))
            else:
                names.append(f"{prefix}{item}{suffix}")
    return names


def _gib(mib: int) -> int:
    return math.ceil(mib / MIB_PER_GIB) if mib > 0 else 0


def job_holds(
    jobs: Iterable[SlurmJob], partition: str, own_prefix: str, now: float, low: float, high: float
) -> list[Hold]:
    """Holds for jobs on ``partition`` that are not in a reservation and not this platform's."""
    holds = []
    for job in jobs:
        if job.reservation or job.name.startswith(own_prefix):
            continue
        if partition not in job.partition.split(","):
            continue
        limit = (job.time_limit_minutes or 0) * 60
        if job.state in ACTIVE_JOB_STATES:
            if job.end <= now and job.state == "COMPLETING":
                continue  # ended: Slurm gives its cores back within seconds
            start = now
            # a job past its expected end (Slurm's OverTimeLimit) holds a minute more; this window
            # moves with "now", so it is kept short
            end = job.end if job.end > now else now + 60
        elif job.state == "PENDING" and job.start > 0 and limit:
            start, end = max(job.start, now), max(job.start, now) + limit
        else:
            continue
        end = min(end, high)
        if end <= low or start >= high or end <= start:
            continue
        holds.append(Hold(start=max(start, low), end=end, cores=job.cpus, memory=_gib(job.memory_mib)))
    return holds


def reservation_holds(
    reservations: Iterable[SlurmReservation],
    nodes: Iterable[SlurmNode],
    own_prefix: str,
    now: float,
    low: float,
    high: float,
) -> list[Hold]:
    """Holds for reservations (not this platform's) on any of ``nodes``."""
    by_name = {node.name: node for node in nodes}
    holds = []
    for reservation in reservations:
        if reservation.name.startswith(own_prefix):
            continue
        touched = [by_name[name] for name in expand_hostlist(reservation.nodes) if name in by_name]
        if not touched:
            continue
        node_cores = sum(node.cpus for node in touched)
        node_memory = sum(node.memory_mib for node in touched)
        cores = min(reservation.cores or node_cores, node_cores)
        memory = _gib(node_memory * cores // node_cores) if node_cores else 0
        start, end = max(reservation.start, now, low), min(reservation.end, high)
        if end > start:
            holds.append(Hold(start=start, end=end, cores=cores, memory=memory))
    return holds
