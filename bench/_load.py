"""Closed-loop HTTP load for the server benchmarks: N client threads, keep-alive sessions, bounded."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests


@contextmanager
def clients_heap_frozen() -> Iterator[None]:
    """Keep this process's garbage collector from stopping every client thread at once.

    The clients of a benchmark are threads of one process, which holds a large heap (the project,
    SQLAlchemy, pydantic, the answers of earlier runs). A full collection of it takes 50-70 ms on
    the 2-core machine and stops all the clients together, which a fleet of real clients (many
    processes) never does; it landed in whichever run was timed at that moment and decided one
    side of a ratio (the first PostgreSQL run of ``bench_accepts`` lost 15 %). What exists now is
    collected and frozen (the collector no longer walks it); what the clients make meanwhile is
    still collected."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def hammer(
    clients: int, seconds: float, call: Callable[[requests.Session, int], Any], *, limit: int = 100_000
) -> tuple[int, float, list[float], list[str]]:
    """Run ``call(session, client)`` in a loop on ``clients`` threads for ``seconds`` (at most
    ``limit`` calls in all); return (calls done, elapsed, latencies, errors)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    done = [0]
    stop_at = time.perf_counter() + seconds

    def worker(index: int) -> None:
        with requests.Session() as session:
            while time.perf_counter() < stop_at:
                with lock:
                    if done[0] >= limit:
                        return
                    done[0] += 1
                started = time.perf_counter()
                try:
                    call(session, index)
                except Exception as error:  # counted and reported, never hides a failure
                    with lock:
                        errors.append(repr(error)[:200])
                    continue
                took = time.perf_counter() - started
                with lock:
                    latencies.append(took)

    threads = [threading.Thread(target=worker, args=(index,), daemon=True) for index in range(clients)]
    with clients_heap_frozen():
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 120)
        elapsed = time.perf_counter() - started
    return len(latencies), elapsed, latencies, errors


def checked(response: requests.Response, *codes: int) -> requests.Response:
    if response.status_code not in (codes or (200,)):
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:200]}")
    return response
