"""The batch job of one session: the ``sbatch`` options that carry the booking, and the script.

The script runs the hosted task program (:mod:`..task`, the one the subprocess executor runs) on
the session's ``task.json`` in the staged session folder, so a notebook is executed with nbclient
and a script ``exec``'d exactly as on the other executors, with the same memory limit applied from
inside as well. Slurm enforces what was booked from outside: ``--cpus-per-task``, ``--mem`` and
``--time`` (the job ends TIMEOUT when it overruns), inside the session's reservation.

The job starts with a clean environment (``--export=NONE``), and the user's code runs in the same
isolation as on the subprocess executor (:mod:`..sandbox`: bubblewrap, its own session folder only,
an unprivileged user, no network by default, a clean environment), so nothing of the server's
environment, files or credentials reaches it.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping

from ..base import RunSpec
from .cli import slurm_timestamp

__all__ = ["SLURM_VARIABLES", "job_name", "job_script", "sbatch_arguments", "time_limit_minutes"]


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


#: Slurm's variables about the job, passed into an isolated run (the sandbox starts from nothing).
SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_PARTITION", "SLURM_CPUS_PER_TASK", "SLURM_MEM_PER_NODE")


def job_script(argv: list[str], environment: Mapping[str, str], sandbox_program: str | None = None) -> str:
    """A POSIX shell script that sets ``environment`` and becomes ``argv`` (the task program, or the
    sandbox that runs it). In a sandbox (``sandbox_program``, the bubblewrap binary in ``argv``),
    Slurm's own job variables are handed in with ``--setenv`` as the job sees them."""
    words = [shlex.quote(word) for word in argv]
    if sandbox_program is not None and sandbox_program in argv:
        at = argv.index(sandbox_program) + 1
        if "--clearenv" in argv[at:]:  # bubblewrap applies its options in order
            at = argv.index("--clearenv", at) + 1
        words[at:at] = [f'--setenv {name} "${{{name}:-}}"' for name in SLURM_VARIABLES]
    lines = ["#!/bin/sh", "# written by execplanner: runs one booked session (see task.json beside this file)"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(environment.items()) if key.isidentifier()]
    lines.append("exec " + " ".join(words))
    return "\n".join(lines) + "\n"
