"""Closed-loop HTTP load for the server benchmarks: N client threads, keep-alive sessions, bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests


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
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    return len(latencies), time.perf_counter() - started, latencies, errors


def checked(response: requests.Response, *codes: int) -> requests.Response:
    if response.status_code not in (codes or (200,)):
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:200]}")
    return response
