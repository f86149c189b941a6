"""Runs are tracked by process group, so a restarted server can stop what an earlier one left.

A run is started as the leader of a new session and process group; its handle
(``pgid:<pid>:<start time>``) is stored in the database before the run does anything. After a
``kill -9`` of the server, the new server finds each such handle of a session that was running and
stops that process tree and process group, unless the pid now belongs to another process (the start
time differs): then there is nothing of ours left to stop.

(With bubblewrap the run dies with the server anyway, ``--die-with-parent``; this is the second line
for runs without isolation and for a server that was stopped between the two.)
"""

from __future__ import annotations

import os
import signal

import psutil

__all__ = ["process_handle", "stop_recorded"]


def process_handle(pid: int) -> str:
    """``pgid:<pid>:<create time>`` for the leader of a run's process group."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        started = 0.0
    return f"pgid:{pid}:{started:.3f}"


def _parse(handle: str) -> tuple[int, float] | None:
    parts = handle.split(":")
    if len(parts) != 3 or parts[0] != "pgid":
        return None
    try:
        return int(parts[1]), float(parts[2])
    except ValueError:
        return None


def _group(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid:
                members.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def stop_recorded(handle: str | None, grace: float = 3.0) -> int:
    """Stop what is left of the run ``handle`` names; return how many processes were signalled.

    The leader is recognised by pid *and* start time, so a recycled pid is never signalled. The
    tree below the leader and every process still in its process group are asked to stop (SIGTERM),
    then killed after ``grace`` seconds.
    """
    parsed = _parse(handle or "")
    if parsed is None:
        return 0
    pid, started = parsed
    targets: dict[int, psutil.Process] = {}
    try:
        leader = psutil.Process(pid)
        if abs(leader.create_time() - started) < 0.5:
            targets[leader.pid] = leader
            targets.update({child.pid: child for child in leader.children(recursive=True)})
    except psutil.NoSuchProcess:
        pass
    # the group outlives its leader: members whose leader died are still ours (same pgid), unless
    # the pgid was recycled, which needs the leader's pid to be reused: then the leader check failed
    if targets or not psutil.pid_exists(pid):
        targets.update({member.pid: member for member in _group(pid) if member.pid != os.getpid()})
    targets.pop(os.getpid(), None)
    for process in targets.values():
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(targets.values()), timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(targets)
