"""Python's cyclic garbage collector, paused while a federation's question goes out and while the
kernel reads all of its answers.

Why: the answers of 1,000 platforms become some 40,000 container objects (pydantic models, their
field dictionaries and sets), and all of them live on as the result the scientist asked for.
CPython counts container objects as they are made: it runs a young collection every 700 of them
and, as they survive into the oldest generation, a full collection that walks every object of
the process, which in a notebook kernel (IPython, numpy, pandas) takes tens of milliseconds.
Measured on the 1,000-platform fan-out, that was half of the kernel's CPU time. Models read from
JSON make no reference cycles, so those collections find nothing in them; paused while the
answers are read, the collector makes one young collection afterwards instead of dozens, and
the full collections that the new objects would have triggered mostly never come.

Two places pause it. A fan-out pauses it from the moment it makes its tasks until every request
has been written (the server too: tens of milliseconds), so that a collection owed by earlier work
runs while the platforms think, not before the last request leaves. The kernel pauses it while it
reads a whole federation's answers into the result it returns (never across a ``yield`` to user
code), so a pause lasts at most as long as that call; cyclic garbage that other threads make
meanwhile is collected when it ends. Pauses nest and may overlap across threads: the collector
resumes when the last one ends, and only if it was running when the first began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused", "pause_collector", "resume_collector"]

_lock = threading.Lock()
_pauses = 0
_resume = False


def pause_collector() -> None:
    """Pause the collector until the matching :func:`resume_collector`."""
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1


def resume_collector() -> None:
    """End one pause; the collector runs again when the last pause has ended."""
    global _pauses
    with _lock:
        _pauses -= 1
        if _pauses == 0 and _resume:
            gc.enable()


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector paused for the ``with`` block (see the module's docstring)."""
    pause_collector()
    try:
        yield
    finally:
        resume_collector()
