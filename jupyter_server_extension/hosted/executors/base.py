"""What every executor offers the runner: which kinds it runs, its capacity, and ``run``.

The runner owns the calendar and the phases; an executor only runs one staged executable inside
its booked limits and returns how it ended. Keeping the interface this small is what lets the same
runner drive a local subprocess or a Dask cluster.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

__all__ = ["Executor", "RunOutcome", "RunSpec", "EXECUTABLE_KINDS"]

#: Short kinds the executors here know how to run.
EXECUTABLE_KINDS = ("jupyter-notebook", "python-script")


@dataclass
class RunSpec:
    """One run: what to start, where, with which limits, and until when.

    ``workdir`` holds the staged executable and data (the run's current directory);
    ``results`` is where everything the user may download ends up.
    """

    session: str
    kind: Literal["jupyter-notebook", "python-script"]
    entry: Path
    workdir: Path
    results: Path
    cores: int
    memory_gib: int
    deadline: datetime
    arguments: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    cpu_offset: int = 0

    @property
    def executed_notebook(self) -> str:
        """File name of the executed notebook among the results."""
        return f"{self.entry.stem}.executed.ipynb"


@dataclass
class RunOutcome:
    """How a run ended. ``message`` is one sentence for the session's history."""

    status: Literal["completed", "failed", "timeout", "cancelled"]
    message: str
    exit_code: int | None = None


class Executor(abc.ABC):
    """Runs staged executables; one instance per hosted platform."""

    name: str = "executor"

    def unsupported(self, kind: str) -> str | None:
        """Why this executor cannot run the short ``kind``, or ``None`` if it can (notebooks and
        Python scripts; containers are answered with what is missing)."""
        if kind in EXECUTABLE_KINDS:
            return None
        return (
            container_reason(kind) or f"cannot run a {kind} executable: this platform runs notebooks and Python scripts"
        )

    async def start(self) -> None:
        """Connect to what runs the work (a cluster, say). Called once, lazily."""

    @abc.abstractmethod
    async def capacity(self) -> tuple[int, int]:
        """(cores, memory GiB) that this executor has, used when the options do not say."""

    @abc.abstractmethod
    async def run(self, spec: RunSpec, stop: asyncio.Event) -> RunOutcome:
        """Run ``spec`` until it ends, ``stop`` is set, or its deadline passes; never leave a process behind."""

    async def aclose(self) -> None:
        """Release connections and clusters."""


def container_reason(kind: str) -> str | None:
    """The NO reason for container kinds, which no executor here starts."""
    import shutil

    if kind == "docker-container":
        engines = [name for name in ("docker", "podman") if shutil.which(name)]
        if not engines:
            return "cannot run a docker-container executable: no container engine (docker or podman) is installed here"
        return (
            "cannot run a docker-container executable: this platform's executors run notebooks and Python scripts only"
        )
    if kind == "singularity-container":
        if not any(shutil.which(name) for name in ("singularity", "apptainer")):
            return "cannot run a singularity-container executable: neither singularity nor apptainer is installed here"
        return "cannot run a singularity-container executable: this platform's executors run notebooks and Python scripts only"
    return None
