"""NO reasons from Slurm's own limits: the partition's MaxTime, node sizes, and association limits.

A hosted session is one process tree on one node, so the request's minimum must fit the largest
usable node of the partition; its run time must fit the partition's MaxTime; and its cores, memory
and wall time must fit every limit on the association chain of the account it runs under (the
user's association, the account's, and the accounts above it), as ``sacctmgr`` reports them.
Each reason is one sentence a scientist can act on, e.g. "needs 220 cores; your account gaia-dmp is
limited to 64".
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .cli import MIB_PER_GIB, Association, SlurmNode, SlurmPartition

__all__ = ["association_reasons", "format_seconds", "partition_reasons"]


def format_seconds(seconds: float) -> str:
    """``5400`` -> ``1:30:00``; days as ``2-00:00:00`` (Slurm's own notation)."""
    total = int(math.ceil(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def partition_reasons(
    partition: SlurmPartition, nodes: Iterable[SlurmNode], cores: int, memory_gib: int, duration: float
) -> list[str]:
    """Why the partition cannot take a job of ``cores``, ``memory_gib`` and ``duration`` seconds."""
    reasons: list[str] = []
    name = partition.name
    if partition.state.upper() not in ("UP", ""):
        reasons.append(f"the Slurm partition {name} is {partition.state} and takes no jobs")
    if partition.max_time is not None and duration > partition.max_time:
        reasons.append(
            f"needs {format_seconds(duration)} of run time; the Slurm partition {name} allows at most "
            f"{format_seconds(partition.max_time)} per job (MaxTime)"
        )
    usable = [node for node in nodes if node.usable]
    if not usable:
        reasons.append(f"the Slurm partition {name} has no node that takes work now (all down or drained)")
        return reasons
    largest_cores = max(node.cpus for node in usable)
    if partition.max_cpus_per_node is not None:
        largest_cores = min(largest_cores, partition.max_cpus_per_node)
    largest_memory = max(node.memory_mib for node in usable) // MIB_PER_GIB
    if partition.max_mem_per_node_mib is not None:
        largest_memory = min(largest_memory, partition.max_mem_per_node_mib // MIB_PER_GIB)
    if cores > largest_cores:
        reasons.append(
            f"needs {cores} cores on one node; the largest node in the Slurm partition {name} has {largest_cores}"
        )
    if memory_gib > largest_memory:
        reasons.append(
            f"needs {memory_gib} GiB of memory on one node; the largest node in the Slurm partition {name} "
            f"has {largest_memory} GiB"
        )
    return reasons


def association_chain(rows: list[Association], account: str, user: str) -> list[Association]:
    """The user's association under ``account``, then ``account`` and the accounts above it."""
    chain = [row for row in rows if row.account == account and row.user == user]
    accounts = {row.account: row for row in rows if not row.user}
    seen: set[str] = set()
    current: str | None = account
    while current and current not in seen:
        seen.add(current)
        row = accounts.get(current)
        if row is None:
            break
        chain.append(row)
        current = row.parent or None
    return chain


def association_reasons(
    rows: list[Association], account: str, user: str, cores: int, memory_gib: int, duration: float
) -> list[str]:
    """Why the association limits of ``user`` under ``account`` refuse this job (none if they allow it)."""
    if not any(row.account == account and row.user == user for row in rows):
        return [f"the Slurm user {user} has no association with the account {account}, so Slurm would refuse the job"]
    reasons: list[str] = []
    for row in association_chain(rows, account, user):
        who = f"your account {row.account}" if not row.user else f"your association ({row.user} in {row.account})"
        limits = {}
        for source in (row.grp_tres, row.max_tres):
            for key in ("cpu", "mem"):
                if key in source:
                    limits[key] = min(limits.get(key, source[key]), source[key])
        if "cpu" in limits and cores > limits["cpu"]:
            reasons.append(f"needs {cores} cores; {who} is limited to {limits['cpu']}")
        if "mem" in limits and memory_gib * MIB_PER_GIB > limits["mem"]:
            reasons.append(f"needs {memory_gib} GiB of memory; {who} is limited to {limits['mem'] / MIB_PER_GIB:g} GiB")
        per_node = row.max_tres_per_node
        if "cpu" in per_node and cores > per_node["cpu"]:
            reasons.append(f"needs {cores} cores on one node; {who} is limited to {per_node['cpu']} per node")
        if row.max_wall is not None and duration > row.max_wall:
            reasons.append(
                f"needs {format_seconds(duration)} of run time; {who} is limited to "
                f"{format_seconds(row.max_wall)} per job (MaxWall)"
            )
    return list(dict.fromkeys(reasons))
