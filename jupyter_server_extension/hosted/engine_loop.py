"""A private event loop in a background thread, where a hosted platform's engine lives.

The same ``HostedPlatform`` is driven by the Jupyter server's loop, by a kernel that runs the
planner in-process, and by tests that make a new loop for every test. The scheduler loop, the
running sessions and the Dask client must outlive any one caller's loop, so they run here; callers
on any loop (or thread) submit coroutines with :meth:`EngineLoop.run` and await the result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["EngineLoop"]

T = TypeVar("T")


class EngineLoop:
    """An asyncio loop running forever in a daemon thread, until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name=f"execplanner-{self.name}", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Schedule ``coroutine`` on the engine loop; the returned future belongs to the caller's loop."""
        if self.loop is None:
            coroutine.close()
            raise RuntimeError(f"the engine of {self.name} is not running")
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the engine loop and wait for it from the caller's loop."""
        return await self.submit(coroutine)

    def call_soon(self, callback: Any, *args: Any) -> None:
        """Call ``callback`` on the engine loop (thread-safe; ignored once stopped)."""
        if self.loop is not None and self.running:
            self.loop.call_soon_threadsafe(callback, *args)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and wait for its thread."""
        if self.loop is not None and self.running:
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self.loop = None
        self._ready.clear()
