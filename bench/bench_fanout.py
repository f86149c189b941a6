"""Fan-out benchmark: asking N platforms costs about the slowest one, not the sum.

Runs N ExecutionBroker services on 127.0.0.1 with known latencies (tests/brokers.py) and asks them
all, three ways, printing ratios measured in this one run (no thresholds: the figures are for
reading, and for the report):

1. in-process, ``Federation.offers``: total time / slowest latency, and / sum of latencies;
2. in-process, ``Federation.stream_offers``: when the fastest answer arrives / fastest latency, and
   how long a hanging platform holds the call / its timeout;
3. through the proxy of a real ``jupyter server`` with the kernel client (``Planner``, server mode):
   total / slowest, and stream first answer / fastest.

Usage: ``python bench/bench_fanout.py [--platforms 8] [--slowest 0.8] [--rounds 3] [--no-server]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from brokers import answer_yes, hang, run_broker, write_platforms

from execplanner_widgets.core.config import build_federation, load_platforms_file
from execplanner_widgets.core.platform import PlatformContext

REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 1}}}
HANG_TIMEOUT = 1.0


def latencies(count: int, slowest: float) -> list[float]:
    """``count`` latencies spread evenly up to ``slowest`` (the fastest is slowest / count)."""
    return [round(slowest * (index + 1) / count, 3) for index in range(count)]


async def in_process(path: Path, state: Path, rounds: int) -> dict[str, list[float]]:
    federation = build_federation(load_platforms_file(path), PlatformContext(data_dir=state))
    timings: dict[str, list[float]] = {"total": [], "first": [], "hung": []}
    names = [platform.name for platform in federation if platform.name != "stuck"]
    try:
        await federation.offers(REQUEST, platforms=names[:1])  # warm up the HTTP clients
        for _ in range(rounds):
            started = time.perf_counter()
            results = await federation.offers(REQUEST, platforms=names)
            timings["total"].append(time.perf_counter() - started)
            assert all(result.status == "YES" for result in results), [r.error for r in results]
            started = time.perf_counter()
            async for _result in federation.stream_offers(REQUEST, platforms=names):
                timings["first"].append(time.perf_counter() - started)
                break
            started = time.perf_counter()
            results = await federation.offers(REQUEST, platforms=[names[0], "stuck"])
            timings["hung"].append(time.perf_counter() - started)
            assert results[1].status == "ERROR"
    finally:
        await federation.aclose()
    return timings


def through_proxy(path: Path, root: Path, rounds: int) -> dict[str, list[float]]:
    from jupyter_live import run_jupyter_server

    from execplanner_widgets import Planner

    timings: dict[str, list[float]] = {"total": [], "first": []}
    with run_jupyter_server(root, path) as server, Planner(url=server.url, token=server.token) as planner:
        names = [p.name for p in planner.platforms() if p.name != "stuck"]
        planner.offers(REQUEST, platforms=names[:1])
        for _ in range(rounds):
            started = time.perf_counter()
            results = planner.offers(REQUEST, platforms=names)
            timings["total"].append(time.perf_counter() - started)
            assert all(result.status == "YES" for result in results)
            started = time.perf_counter()
            stream = planner.stream_offers(REQUEST, platforms=names)
            next(stream)
            timings["first"].append(time.perf_counter() - started)
            stream.close()
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platforms", type=int, default=8)
    parser.add_argument("--slowest", type=float, default=0.8, help="latency of the slowest platform, seconds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-server", action="store_true", help="skip the run through a real jupyter server")
    args = parser.parse_args(argv)
    delays = latencies(args.platforms, args.slowest)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        brokers = [stack.enter_context(run_broker(answer_yes(delay=delay))) for delay in delays]
        stuck = stack.enter_context(run_broker(hang()))
        entries = [broker.entry(f"p{index}") for index, broker in enumerate(brokers)]
        entries.append(stuck.entry("stuck", timeout=HANG_TIMEOUT))
        path = write_platforms(Path(scratch) / "platforms.yaml", entries, timeout=30)
        local = asyncio.run(in_process(path, Path(scratch) / "state", args.rounds))
        proxy = None if args.no_server else through_proxy(path, Path(scratch) / "server", args.rounds)

    slowest, fastest, total_latency = max(delays), min(delays), sum(delays)
    median = statistics.median
    print(
        f"{args.platforms} platforms, latencies {fastest:g}..{slowest:g} s (sum {total_latency:.2f} s), {args.rounds} round(s), medians:"
    )
    print(
        f"  in-process offers:    total {median(local['total']):.3f} s = {median(local['total']) / slowest:.2f} x slowest, "
        f"{median(local['total']) / total_latency:.2f} x sum"
    )
    print(
        f"  in-process stream:    first answer {median(local['first']):.3f} s = {median(local['first']) / fastest:.2f} x fastest"
    )
    print(
        f"  hanging platform:     call held {median(local['hung']):.3f} s = {median(local['hung']) / HANG_TIMEOUT:.2f} x its timeout"
    )
    if proxy is not None:
        print(
            f"  proxy + Planner:      total {median(proxy['total']):.3f} s = {median(proxy['total']) / slowest:.2f} x slowest, "
            f"{median(proxy['total']) / total_latency:.2f} x sum"
        )
        print(
            f"  proxy stream:         first answer {median(proxy['first']):.3f} s = {median(proxy['first']) / fastest:.2f} x fastest"
        )


if __name__ == "__main__":
    main()
