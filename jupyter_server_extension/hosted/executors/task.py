"""The program that runs one session's executable inside the limits it booked.

Executors start it as ``python -I -c <this file's source> task.json``: the file is self-contained
(standard library, plus nbclient and nbformat for notebooks) so that a Dask worker on another
machine can run it without this project installed, and ``-I`` keeps the session's working folder
off ``sys.path`` (a user's ``json.py`` cannot replace the real one here).

Limits are applied to this process before anything of the user's runs, and are inherited by what
it starts (the script, or the notebook's kernel):

* cores: the process's CPU affinity, the booked number of CPUs taken round-robin from those this
  machine lets us use (a 200-core booking on a 2-CPU machine gets both CPUs);
* memory: ``RLIMIT_AS``, so allocating beyond the booking fails with ``MemoryError`` in the
  user's code instead of pushing the machine into swap.

A python-script replaces this process (``exec``), so its exit code is the script's. A notebook is
executed with nbclient and written to the results after every cell, so a run stopped at the end of
its slot still leaves the cells that did finish.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def cpu_set(cores: int, offset: int) -> set[int]:
    """``cores`` CPUs (at most all of them), starting at ``offset``, round-robin over the usable ones."""
    usable = sorted(os.sched_getaffinity(0))
    count = max(1, min(cores, len(usable)))
    return {usable[(offset + index) % len(usable)] for index in range(count)}


def apply_limits(spec: dict) -> None:
    """CPU affinity and the address-space limit for this process and its children."""
    if hasattr(os, "sched_setaffinity") and spec.get("cores"):
        try:
            os.sched_setaffinity(0, cpu_set(int(spec["cores"]), int(spec.get("cpu_offset", 0))))
        except OSError as error:  # a container may forbid it: run anyway, and say so
            print(f"execplanner: CPU affinity not applied: {error}", file=sys.stderr)
    memory = spec.get("memory_bytes")
    if memory:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(memory), int(memory)))


def run_script(spec: dict) -> None:
    """Become the user's script: same PID, same limits, its own exit code."""
    os.execv(sys.executable, [sys.executable, spec["entry"], *[str(arg) for arg in spec.get("arguments", [])]])


def _kernel_name(notebook: object) -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    wanted = ((getattr(notebook, "metadata", {}) or {}).get("kernelspec") or {}).get("name")
    try:
        known = KernelSpecManager().find_kernel_specs()
    except Exception:
        known = {}
    return wanted if wanted in known else "python3"


def run_notebook(spec: dict) -> int:
    """Execute the notebook with nbclient; write it (as far as it got) to ``notebook_out``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(spec["entry"], as_version=4)
    output = spec["notebook_out"]

    def save(**_: object) -> None:
        nbformat.write(notebook, output)

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    client = NotebookClient(
        notebook,
        timeout=None,
        kernel_name=_kernel_name(notebook),
        resources={"metadata": {"path": os.getcwd()}},
        on_cell_executed=save,
    )
    try:
        client.execute()
    except CellExecutionError as error:
        print(f"execplanner: a cell failed:\n{error}", file=sys.stderr)
        return 1
    finally:
        save()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: task.py TASK.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    apply_limits(spec)
    if spec["kind"] == "python-script":
        run_script(spec)
        return 127  # only reached if exec failed, which raises first
    if spec["kind"] == "jupyter-notebook":
        return run_notebook(spec)
    print(f"execplanner: cannot run a {spec['kind']!r} executable", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
