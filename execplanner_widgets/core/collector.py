"""Python's cyclic garbage collector, paused while a federation's question goes out, while the
kernel reads all of its answers and while the server relays them.

Why: the answers of 1,000 platforms become some 40,000 container objects (pydantic models, their
field dictionaries and sets), and all of them live on as the result the scientist asked for.
CPython counts container objects as they are made: it runs a young collection every 700 of them
and, as they survive into the oldest generation, a full collection that walks every object of
the process, which in a notebook kernel (IPython, numpy, pandas) takes tens of milliseconds.
Measured on the 1,000-platform fan-out, that was half of the kernel's CPU time. Models read from
JSON make no reference cycles, so those collections find nothing in them; paused while the
answers are read, the collector makes one young collection afterwards instead of dozens, and
the full collections that the new objects would have triggered mostly never come.

Three places pause it:

* A fan-out pauses it from the moment it makes its tasks until every request has been written
  (the server too: tens of milliseconds), so that a collection owed by earlier work runs while
  the platforms think, not before the last request leaves.
* The kernel pauses it while it reads a whole federation's answers into the result it returns
  (never across a ``yield`` to user code), so a pause lasts at most as long as that call; cyclic
  garbage that other threads make meanwhile is collected when it ends. Reading the server's
  answer, it collects the young generation between chunks (:func:`collect_young`), while it waits
  for the server anyway: the collection the pause put off is not all left for after the last answer.
* The server holds it while it relays one question's answers (:func:`collector_held`, for at most
  a second or so): the collections that 1,000 answers' objects would trigger on the way (about
  10 % of the server's work for such a question) run after the answer has left.

Pauses nest and may overlap across threads and requests: the collector resumes when the last one
ends, and only if it was running when the first began. Pauses that keep overlapping (a busy server
whose questions never stop) do not keep it off: a pause that begins when the collector has been
off for :data:`MAX_PAUSED_SECONDS` first runs a full collection.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from time import monotonic

__all__ = ["collect_young", "collector_held", "collector_paused", "pause_collector", "resume_collector"]

#: The longest the collector stays off in a row while pauses keep overlapping (see the module's docstring).
MAX_PAUSED_SECONDS = 2.0
#: How many young objects :func:`collect_young` lets pile up before it collects them.
YOUNG_BATCH = 2000

_lock = threading.Lock()
_pauses = 0
_resume = False
_since = 0.0  # when the collector last ran (or the first pause began), while paused


def pause_collector() -> None:
    """Pause the collector until the matching :func:`resume_collector`."""
    global _pauses, _resume, _since
    overdue = False
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
            _since = monotonic()
        elif _resume and monotonic() - _since > MAX_PAUSED_SECONDS:
            overdue = True  # overlapping pauses have kept it off too long
            _since = monotonic()  # so that a pause in another thread does not collect as well
        _pauses += 1
    if overdue:  # outside the lock: finalisers that the collection runs may pause or resume too
        gc.collect()
        _since = monotonic()  # the clock starts again once it has run


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


@asynccontextmanager
async def collector_held(seconds: float) -> AsyncIterator[None]:
    """The collector paused for the ``async with`` block, but for at most ``seconds`` (0: not at
    all): a server relaying a question's answers must not keep it off while a slow platform thinks."""
    if seconds <= 0:
        yield
        return
    held = True

    def end() -> None:
        nonlocal held
        if held:
            held = False
            resume_collector()

    pause_collector()
    timer = asyncio.get_running_loop().call_later(seconds, end)
    try:
        yield
    finally:
        timer.cancel()
        end()


def collect_young() -> None:
    """While the collector is paused (and only if it was running before), collect the young
    generation once it holds :data:`YOUNG_BATCH` objects: for a reader about to wait for more data,
    so that this work is done while it waits. Older generations are left alone (no full collection
    over everything a notebook holds)."""
    if _pauses and _resume and gc.get_count()[0] >= YOUNG_BATCH:
        gc.collect(0)
