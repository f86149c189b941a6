"""Executors are plugins: the entry-point group ``execplanner.executors`` maps a name to a class.

The built-in ``subprocess`` and ``dask`` executors are registered the same way as any third-party
one, so a new executor is one module and one entry-point line. Classes are loaded lazily (Dask is an
optional extra, and the task program that runs user code must not pay for imports it does not need).
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

from .base import (
    EXECUTABLE_KINDS,
    BookedSlot,
    Executor,
    ExecutorContext,
    ExecutorRefused,
    RunOutcome,
    RunReport,
    RunSpec,
)

if TYPE_CHECKING:
    from ..options import HostedOptions

__all__ = [
    "ENTRY_POINT_GROUP",
    "EXECUTABLE_KINDS",
    "BookedSlot",
    "Executor",
    "ExecutorContext",
    "ExecutorRefused",
    "RunOutcome",
    "RunReport",
    "RunSpec",
    "executor_class",
    "executor_names",
    "make_executor",
]

ENTRY_POINT_GROUP = "execplanner.executors"


class UnknownExecutor(ValueError):
    """No installed executor has that name (the message lists the installed ones)."""


def executor_names() -> list[str]:
    """The names of the installed executors, sorted."""
    return sorted({entry.name for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)})


def executor_class(name: str) -> type[Executor]:
    """The executor class registered as ``name``; :class:`UnknownExecutor` naming the installed ones."""
    found = [entry for entry in metadata.entry_points(group=ENTRY_POINT_GROUP) if entry.name == name]
    if not found:
        installed = ", ".join(executor_names()) or "none"
        raise UnknownExecutor(f"unknown executor {name!r}; installed executors: {installed}")
    try:
        cls = found[0].load()
    except Exception as error:  # a broken plugin: say which, not a traceback
        raise UnknownExecutor(f"the executor plugin {name!r} failed to load: {type(error).__name__}: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise UnknownExecutor(f"the executor plugin {name!r} ({found[0].value}) is not an Executor subclass")
    return cls


def make_executor(options: HostedOptions, context: ExecutorContext) -> Executor:
    """The executor the options name, with its own (already validated) options."""
    cls = executor_class(options.executor)
    return cls(options.executor_options, context)
