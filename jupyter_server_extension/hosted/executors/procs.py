"""Process plumbing shared by the executors: start the task program, stop a whole process tree.

A notebook run is three processes deep (task program -> nbclient -> kernel, and the kernel starts
a session of its own), so stopping "the process" is not enough: the whole tree is collected
*before* anything is signalled, asked to stop (SIGTERM), and killed if it has not stopped after a
grace period. Nothing is left behind when a slot ends, a user cancels, or the server shuts down.

This module is also shipped to Dask workers by value, so it imports only the standard library and
psutil (which Dask requires).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil

__all__ = ["TASK_PROGRAM", "kill_descendants", "task_command", "task_environment", "terminate_tree"]

#: The task program's source, read once: run with ``python -I -c`` so it needs nothing installed.
TASK_PROGRAM = (Path(__file__).with_name("task.py")).read_text(encoding="utf-8")

#: Environment variables a task inherits from the server; nothing else (no tokens, no secrets).
_INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SHELL")


def task_command(spec_path: str, program: str = TASK_PROGRAM) -> list[str]:
    """The command line that runs the task program on ``spec_path``."""
    return [sys.executable, "-I", "-c", program, spec_path]


def task_environment(extra: dict[str, str], cores: int, runtime_dir: str) -> dict[str, str]:
    """A clean environment for user code: the basics, thread counts matching the booking, and
    the session's own variables. The server's environment (which may hold platform tokens) is
    not passed on."""
    environment = {key: os.environ[key] for key in _INHERITED if key in os.environ}
    threads = str(max(1, cores))
    environment.update(
        {
            "OMP_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "MPLBACKEND": "Agg",
            "PYTHONUNBUFFERED": "1",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "JUPYTER_RUNTIME_DIR": runtime_dir,
        }
    )
    environment.update(extra)
    return environment


def terminate_tree(pid: int) -> list[psutil.Process]:
    """Ask ``pid`` and every process below it to stop (SIGTERM); return the descendants.

    The tree is listed before anything is signalled, so a child whose parent dies first (and is
    re-parented) is still found. The caller waits for ``pid`` itself (it is the caller's child:
    only the caller may reap it) and then calls :func:`kill_descendants`.
    """
    try:
        root = psutil.Process(pid)
        descendants = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for process in (root, *descendants):
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    return descendants


def kill_descendants(descendants: list[psutil.Process], grace: float = 2.0) -> int:
    """Wait up to ``grace`` seconds for the listed processes to end, then kill the rest.

    Returns how many had to be killed. These are not our children, so psutil polls for them and
    never steals an exit status that belongs to someone else.
    """
    if not descendants:
        return 0
    _, alive = psutil.wait_procs(descendants, timeout=grace)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    if alive:
        psutil.wait_procs(alive, timeout=5)
    return len(alive)
