"""What a Dask worker runs for one session (shipped to workers by value: nothing to install there).

The worker may be on another machine, so the session's staged working folder travels with the
task as bytes, is unpacked into a temporary folder, run with the same task program as the
``subprocess`` executor (same CPU affinity and memory limit, applied on the worker), and what the
run produced comes back as bytes. The worker enforces the slot's deadline itself and polls a
Dask ``Event`` so that a cancel reaches it; on either, the whole process tree is stopped.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import PurePosixPath
from typing import Any

from .procs import kill_descendants, task_command, task_environment, terminate_tree

__all__ = ["pack_folder", "run_on_worker", "safe_relative"]

POLL_SECONDS = 0.5


def safe_relative(name: str) -> str:
    """``name`` if it is a plain relative path inside a folder; refuses ``..`` and absolute paths."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(part in ("..", "") for part in path.parts):
        raise ValueError(f"refusing the path {name!r}: not inside the working folder")
    return str(path)


def _unpack(root: str, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        target = os.path.join(root, safe_relative(name))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(content)


def pack_folder(root: str, prefix: str, limit: int, into: dict[str, bytes], skipped: list[str]) -> None:
    """Read the files under ``root`` into ``into`` (names prefixed), while the total stays within
    ``limit`` bytes; the names of files that do not fit go to ``skipped``."""
    total = sum(len(content) for content in into.values())
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            size = os.path.getsize(path)
            if total + size > limit:
                skipped.append(prefix + relative)
                continue
            with open(path, "rb") as handle:
                into[prefix + relative] = handle.read()
            total += size


def _stop_requested(name: str) -> bool:
    try:
        from distributed import Event

        return bool(Event(name).is_set())
    except Exception:  # no scheduler to ask (it went away): keep running until the deadline
        return False


def run_on_worker(
    task: dict[str, Any], files: dict[str, bytes], program: str, stop_name: str, deadline: float, limit: int
) -> dict[str, Any]:
    """Run one session on this worker; return its exit code, why it was stopped, and its files."""
    with tempfile.TemporaryDirectory(prefix="execplanner-") as root:
        work, results, runtime = (os.path.join(root, name) for name in ("work", "results", "runtime"))
        for folder in (work, results, runtime, os.path.join(work, "outputs")):
            os.makedirs(folder, exist_ok=True)
        _unpack(work, files)
        task = dict(task)
        task["entry"] = os.path.join(work, safe_relative(task["entry"]))
        task["notebook_out"] = os.path.join(results, safe_relative(task["notebook_out"]))
        task_file = os.path.join(root, "task.json")
        import json

        with open(task_file, "w", encoding="utf-8") as handle:
            json.dump(task, handle)
        environment = task_environment(
            {"EXECPLANNER_OUTPUTS": os.path.join(work, "outputs"), "EXECPLANNER_SESSION": str(task.get("session", ""))},
            int(task.get("cores") or 1),
            runtime,
        )
        with (
            open(os.path.join(results, "stdout.txt"), "wb") as out,
            open(os.path.join(results, "stderr.txt"), "wb") as err,
        ):
            process = subprocess.Popen(
                task_command(task_file, program),
                cwd=work,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        reason = None
        while True:
            try:
                process.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.time() >= deadline:
                reason = "timeout"
                break
            if _stop_requested(stop_name):
                reason = "cancelled"
                break
        if reason is not None:
            descendants = terminate_tree(process.pid)
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            kill_descendants(descendants)
        produced: dict[str, bytes] = {}
        skipped: list[str] = []
        pack_folder(results, "", limit, produced, skipped)
        pack_folder(os.path.join(work, "outputs"), "outputs/", limit, produced, skipped)
        return {"code": process.returncode, "reason": reason, "files": produced, "skipped": skipped}
