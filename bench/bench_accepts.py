"""Row 3 of issue 12: accepts with 16 concurrent HTTP clients on SQLite and on PostgreSQL, and the
proof that nothing was overbooked (goal: >= 500 accepts/s, p99 <= 100 ms, 0 overbooked, PostgreSQL
at least as fast as SQLite).

A real ``jupyter server`` serves one hosted platform (64 cores). First each client asks for offers
(``POST requests``, one offer each, a 4-core hour somewhere in the next day), so that there is more
demand than room and the offers crowd the calendar; then all clients accept their offers at once
(``POST sessions/{uuid}`` with ``phase: ACCEPTED``), and only that phase is timed. Afterwards the
rows are read back from the database: at no instant may the accepted sessions (and live offers)
hold more than the platform has.

Each database is measured ``--rounds`` times (5), in turn, each run on a new server and database;
the figures are the medians, and no run may overbook. The clients are threads of this process,
whose own garbage collector is kept from pausing them all at once while accepts are timed
(``_load.clients_heap_frozen``).

Usage: ``python bench/bench_accepts.py [--clients 16] [--per-client 20] [--rounds 5] [--no-postgres]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import requests
from _common import figure, hosted_entry, jupyter_server, ms, percentile, postgres, write_platforms
from _load import checked, clients_heap_frozen
from bench_requests import request_in

from execplanner_widgets.model import format_instant, utcnow
from jupyter_server_extension.hosted.calendar import Profile, to_seconds
from jupyter_server_extension.hosted.store import SessionRow, Store, default_db_url, select_holds

CORES = 64
ACCEPT = {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}


def overbooked(url: str) -> tuple[int, int]:
    """(peak cores held at any instant by accepted sessions and live offers, accepted sessions)."""
    store = Store(url)
    try:
        now = utcnow()
        with store.read() as session:
            holds = select_holds(session, "bench", now - timedelta(days=1), now + timedelta(days=3), now)
            accepted = (
                session.query(SessionRow)
                .filter(SessionRow.platform == "bench", SessionRow.accepted.is_not(None))
                .count()
            )
        profile = Profile.from_holds(holds)
        return profile.peak(to_seconds(now - timedelta(days=1)), to_seconds(now + timedelta(days=3)))[0], accepted
    finally:
        store.dispose()


def run(db_url: str | None, clients: int, per_client: int, scratch: Path) -> dict[str, float]:
    options = {"cores": CORES, "memory": 10_000, "offers": 1, "offer_ttl": "PT30M", "horizon": "P1D"}
    root = scratch / "server"
    options["local_roots"] = [str(root)]
    if db_url:
        options["db_url"] = db_url
    platforms = write_platforms(scratch / "platforms.yaml", [hosted_entry("bench", **options)])
    window = f"{format_instant(utcnow() + timedelta(minutes=30))}/PT20H"
    request = request_in(root, cores=4, duration="PT1H", start=window)
    offers: list[list[str]] = [[] for _ in range(clients)]
    latencies: list[float] = []
    outcomes = {"accepted": 0, "conflict": 0, "error": 0}
    lock = threading.Lock()
    with jupyter_server(root, platforms) as server:
        headers = {"Authorization": f"token {server.token}"}
        base = server.url + "execplanner/platforms/bench/"

        def ask(index: int) -> None:
            with requests.Session() as session:
                for _ in range(per_client):
                    answer = checked(session.post(base + "requests", json=request, headers=headers, timeout=120)).json()
                    offers[index].extend(offer["meta"]["uuid"] for offer in answer.get("offers", []))

        def accept(index: int, barrier: threading.Barrier) -> None:
            with requests.Session() as session:
                session.get(server.url + "api/status", headers=headers, timeout=60)  # connect before the start
                barrier.wait()
                for uuid in offers[index]:
                    started = time.perf_counter()
                    response = session.post(base + f"sessions/{uuid}", json=ACCEPT, headers=headers, timeout=120)
                    took = time.perf_counter() - started
                    with lock:
                        latencies.append(took)
                        key = {200: "accepted", 409: "conflict"}.get(response.status_code, "error")
                        outcomes[key] += 1

        threads = [threading.Thread(target=ask, args=(index,)) for index in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        barrier = threading.Barrier(clients + 1)
        threads = [threading.Thread(target=accept, args=(index, barrier)) for index in range(clients)]
        with clients_heap_frozen():
            for thread in threads:
                thread.start()
            barrier.wait()
            started = time.perf_counter()
            for thread in threads:
                thread.join(600)
            elapsed = time.perf_counter() - started
    peak, accepted = overbooked(db_url or default_db_url(root / "state"))
    return {
        "rate": outcomes["accepted"] / elapsed,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "accepted": outcomes["accepted"],
        "conflicts": outcomes["conflict"],
        "errors": outcomes["error"],
        "offers": sum(len(items) for items in offers),
        "peak": peak,
        "rows": accepted,
    }


def report(label: str, result: dict[str, float]) -> None:
    """One run's line."""
    print(
        f"   {label}: {result['accepted']:.0f} accepted of {result['offers']:.0f} offers ({result['conflicts']:.0f} conflicts, "
        f"{result['errors']:.0f} errors), {result['rate']:.0f} accepts/s, p50 {ms(result['p50'])}, p99 {ms(result['p99'])}; "
        f"peak {result['peak']:.0f} of {CORES} cores",
        flush=True,
    )


def summary(label: str, results: list[dict[str, float]]) -> float:
    """The figures of ``label`` over its runs: median rate and p99, and the worst overbooking of
    any run (every run must have none); returns the median rate."""
    rate = statistics.median(result["rate"] for result in results)
    p99 = statistics.median(result["p99"] for result in results)
    runs = f"median of {len(results)}" if len(results) > 1 else "1 run"
    figure(f"accepts/s, 16 clients, {label} ({runs})", f"{rate:.0f}", ">= 500", rate >= 500)
    figure(f"accept p99, {label} ({runs})", ms(p99), "<= 100 ms", p99 <= 0.100)
    over = max(max(0, int(result["peak"]) - CORES) for result in results)
    errors = sum(result["errors"] for result in results)
    figure(f"cores overbooked, {label} (worst run)", str(over), "0", over == 0 and errors == 0)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each database, taken in turn")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"SQLite": [], "PostgreSQL": []}
    for _ in range(max(1, args.rounds)):  # in turn, so that both see the same moments of a noisy machine
        with tempfile.TemporaryDirectory() as scratch:
            results["SQLite"].append(run(None, args.clients, args.per_client, Path(scratch) / "sqlite"))
        report("SQLite", results["SQLite"][-1])
        if args.no_postgres:
            continue
        with postgres() as url, tempfile.TemporaryDirectory() as scratch:
            if url is None:
                print("   PostgreSQL: not available here (initdb/pg_ctl or psycopg missing); skipped")
                args.no_postgres = True
                continue
            results["PostgreSQL"].append(run(url, args.clients, args.per_client, Path(scratch) / "pg"))
        report("PostgreSQL", results["PostgreSQL"][-1])
    sqlite = summary("SQLite", results["SQLite"])
    if results["PostgreSQL"]:
        pg = summary("PostgreSQL", results["PostgreSQL"])
        # each PostgreSQL run against the SQLite run just before it: how far the machine moves one pair
        pairs = [b["rate"] / a["rate"] for a, b in zip(results["SQLite"], results["PostgreSQL"], strict=False)]
        spread = f"{min(pairs):.2f}-{max(pairs):.2f}x" if len(pairs) > 1 else f"{pairs[0]:.2f}x"
        value = f"{pg / sqlite:.2f}x (run against run: {spread})"
        figure("PostgreSQL / SQLite accepts/s (medians)", value, ">= 1.0x", pg >= sqlite)


if __name__ == "__main__":
    main()
