"""The batch job of one session: the ``sbatch`` options that carry the booking, and the script.

The script runs the hosted task program (:mod:`..task`, the one the subprocess executor runs) on
the session's ``task.json`` in the staged session folder, so a notebook is executed with nbclient
and a script ``exec``'d exactly as on the other executors, with the same memory limit applied from
inside as well. Slurm enforces what was booked from outside: ``--cpus-per-task``, ``--mem`` and
``--time`` (the job ends TIMEOUT when it overruns), inside the session's reservation.

The job starts with a clean environment (``--export=NONE``; the script sets the same variables the
subprocess executor gives user code), so nothing of the server's environment reaches user code.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from pathlib import Path

from ..base import RunSpec
from .cli import slurm_timestamp

__all__ = ["job_name", "job_script", "sbatch_arguments", "time_limit_minutes"]


def job_name(prefix: str, session: str) -> str:
    """The Slurm job name (and reservation name) of a session: the platform's prefix and its id."""
    return f"{prefix}-{session}"


def time_limit_minutes(start: float, end: float) -> int:
    """Whole minutes from ``start`` to ``end`` (at least 1): Slurm's time limits are minutes, and a
    job in a reservation must end inside it, so this rounds down."""
    return max(1, math.floor((end - start) / 60))


def sbatch_arguments(
    spec: RunSpec,
    *,
    name: str,
    partition: str,
    account: str | None,
    reservation: str | None,
    begin: float | None,
    minutes: int,
    extra: list[str],
) -> list[str]:
    """``sbatch`` options for ``spec``; the booking's own options come last so that they win."""
    arguments = list(extra)
    arguments += [
        f"--job-name={name}",
        f"--partition={partition}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={spec.cores}",
        f"--mem={spec.memory_gib}G",
        f"--time={minutes}",
        f"--chdir={spec.workdir}",
        f"--output={spec.results / 'stdout.txt'}",
        f"--error={spec.results / 'stderr.txt'}",
        "--export=NONE",
        "--no-requeue",
        "--signal=TERM@30",
    ]
    if account:
        arguments.append(f"--account={account}")
    if reservation:
        arguments.append(f"--reservation={reservation}")
    if begin is not None:
        arguments.append(f"--begin={slurm_timestamp(begin)}")
    return arguments


def job_script(python: str, program: Path, task_file: Path, environment: Mapping[str, str]) -> str:
    """A POSIX shell script that sets the task's environment and becomes the task program."""
    lines = ["#!/bin/sh", "# written by execplanner: runs one booked session (see task.json beside this file)"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(environment.items()) if key.isidentifier()]
    lines.append(f"exec {shlex.quote(python)} -I {shlex.quote(str(program))} {shlex.quote(str(task_file))}")
    return "\n".join(lines) + "\n"
