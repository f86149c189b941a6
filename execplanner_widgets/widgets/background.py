"""Work that must not freeze the kernel: asking platforms, booking, polling a session, ticking clocks.

A button's click handler runs on the kernel's main thread; while it runs, no other cell and no other
widget event can. Anything that waits on a network (or on a platform's scheduler) therefore runs in a
:class:`Worker` thread and updates the widgets as answers arrive; ipywidgets sends those updates
through the kernel's thread-safe IOPub channel.

Every worker can be waited for with a bound (``wait(timeout)``), which is what tests and scripts use
instead of sleeping, and every loop (:class:`Repeater`) stops on request, so closing a widget never
leaves a thread polling behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Repeater", "Worker"]

log = logging.getLogger(__name__)


class Worker:
    """Runs one job at a time in a daemon thread; reports failures instead of raising them."""

    def __init__(self, name: str, on_error: Callable[[BaseException], None] | None = None) -> None:
        self.name = name
        self.on_error = on_error
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self, target: Callable[..., Any], *args: Any) -> bool:
        """Start ``target(*args)`` unless a job is already running; say whether it started."""
        with self._lock:
            if self.busy:
                return False
            self._thread = threading.Thread(target=self._run, args=(target, args), name=self.name, daemon=True)
            self._thread.start()
            return True

    def _run(self, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            target(*args)
        except BaseException as error:  # shown in the widget; a thread must never die silently
            log.debug("%s failed", self.name, exc_info=True)
            if self.on_error is not None:
                try:
                    self.on_error(error)
                except Exception:  # pragma: no cover - the error display itself failed
                    log.exception("%s: reporting an error failed", self.name)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the current job; True if nothing is running any more."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not self.busy


class Repeater:
    """Calls ``step()`` every ``interval`` seconds in a thread until it returns False or ``stop()``.

    ``step`` may return a number to change the interval (back-off while nothing changes).
    """

    def __init__(self, name: str, step: Callable[[], bool | float], interval: float) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the loop unless it is running; a loop that was asked to stop is replaced at once."""
        if self.running and not self._stop.is_set():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,), name=self.name, daemon=True)
        self._thread.start()

    def _loop(self, stop: threading.Event) -> None:
        interval = self.interval
        while not stop.wait(interval):
            try:
                outcome = self.step()
            except Exception:  # one failed step (a network hiccup) must not end the loop
                log.debug("%s: step failed", self.name, exc_info=True)
                continue
            if outcome is False:
                return
            if isinstance(outcome, (int, float)) and not isinstance(outcome, bool) and outcome > 0:
                interval = float(outcome)

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Ask the loop to end and wait up to ``timeout`` seconds; True if it has ended."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not self.running
