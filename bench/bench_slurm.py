"""Slurm benchmark: "when can I do this?" with 1,000 jobs in Slurm's queue, and accept -> RUNNING.

Starts the same throwaway single-node Slurm the tests use (tests/slurm_cluster.py: munged, MariaDB,
slurmdbd, slurmctld, slurmd in a temporary folder) and prints, measured in this one run:

1. ``HostedPlatform.offers`` on a ``slurm`` platform while Slurm's queue holds 1,000 jobs of other
   users (one running on the whole node, 999 pending with Slurm's start estimates): every call
   reads the queue (``squeue --json``), the reservations and the partition afresh. Goal: under 2 s
   per call on a 2-core machine.
2. The time from ``accept`` of a slot that starts now to the job RUNNING: on the ``slurm`` executor
   (the Slurm job's own state RUNNING, read with ``squeue``) against the ``subprocess`` executor
   (the session's phase RUNNING) on the same machine. Goal: Slurm within 5 s of the subprocess
   executor (the scheduler runs every second here; a production slurmctld's intervals add to it).

The machine's load average is printed before and after, since both figures depend on it.

Usage: ``python bench/bench_slurm.py [--jobs 1000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from slurm_cluster import ensure_slurm_executor, missing_programs, running_cluster  # noqa: E402
from test_hosted_support import DATA, request_document  # noqa: E402

from execplanner_widgets.core.platform import PlatformContext  # noqa: E402
from execplanner_widgets.model import SessionPhase, parse_request  # noqa: E402
from jupyter_server_extension.hosted.platform import HostedPlatform  # noqa: E402

OFFERS_GOAL = 2.0
RUNNING_GOAL = 5.0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def fill_queue(cluster, count: int, folder: Path) -> None:
    """One job on the whole node for an hour, then ``count - 1`` small pending jobs behind it."""
    cluster.sbatch("--cpus-per-task=4", "--time=60", "--output=/dev/null", "--wrap", "sleep 3600")

    def submit(index: int) -> None:
        cluster.sbatch(
            f"--job-name=other-{index}", "--cpus-per-task=1", "--time=30", "--output=/dev/null", "--wrap", "true"
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(count - 1)))


async def wait_for(check, timeout: float = 120, interval: float = 0.05) -> float:
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if await check():
            return time.perf_counter() - began
        await asyncio.sleep(interval)
    raise TimeoutError("gave up waiting")


async def offers_with_busy_queue(cluster, state: Path, rounds: int) -> list[float]:
    hpc = HostedPlatform.from_config(
        "hpc",
        "Slurm platform",
        {
            "executor": "slurm",
            "slurm": {"partition": cluster.partition, "environment": cluster.environment},
            "offers": 3,
        },
        PlatformContext(data_dir=state),
    )
    request = parse_request(request_document(DATA / "sum_numbers.py", cores=2, duration="PT30M"))
    times = []
    try:
        await hpc.offers(request, user="warm-up")  # starts the engine, reads the capacity once
        for index in range(rounds):
            hpc.executor.snapshot.invalidate()  # every call reads Slurm's queue afresh
            began = time.perf_counter()
            response = await hpc.offers(request, user=f"user{index}")
            times.append(time.perf_counter() - began)
            assert response.result == "YES", response.reasons
    finally:
        await hpc.aclose()
    return times


async def accept_to_running(options: dict, state: Path, running) -> float:
    platform = HostedPlatform.from_config("p", "platform", options, PlatformContext(data_dir=state))
    try:
        worker = state / "sleeper.py"
        worker.parent.mkdir(parents=True, exist_ok=True)
        worker.write_text("import time\ntime.sleep(20)\n")
        response = await platform.offers(parse_request(request_document(worker, cores=1, duration="PT2M")), user="u")
        assert response.result == "YES", response.reasons
        began = time.perf_counter()
        session = await platform.accept(response.offers[0].meta.uuid, user="u")
        await wait_for(lambda: running(platform, session.meta.uuid))
        elapsed = time.perf_counter() - began
        await platform.cancel(session.meta.uuid, user="u")
        return elapsed
    finally:
        await platform.aclose()


async def main_async(jobs: int, rounds: int) -> None:
    print(f"machine: {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as folder:
        root = Path(folder)
        ensure_slurm_executor(root / "entry-points")
        with running_cluster(root / "slurm") as cluster:
            os.environ.update(cluster.environment)
            began = time.perf_counter()
            fill_queue(cluster, jobs, root)
            queued = len(cluster.squeue_ids())
            print(f"queue: {queued} jobs submitted by plain sbatch in {time.perf_counter() - began:.1f} s")

            times = await offers_with_busy_queue(cluster, root / "offers", rounds)
            print(f"1. offers with {queued} jobs in Slurm's queue ({rounds} calls, every one reading Slurm afresh)")
            print(
                f"   median {statistics.median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms "
                f"(goal: under {OFFERS_GOAL:.0f} s per call)"
            )

            cluster.clean()

            async def slurm_running(platform, uuid) -> bool:
                output = cluster.run("squeue", "--noheader", "--format=%j|%T").stdout
                return f"bench-{uuid}|RUNNING" in output

            async def phase_running(platform, uuid) -> bool:
                return (await platform.session(uuid, user="u")).phase is SessionPhase.RUNNING

            slurm_options = {
                "executor": "slurm",
                "slurm": {
                    "partition": cluster.partition,
                    "environment": cluster.environment,
                    "prefix": "bench",
                    "poll_interval": 0.5,
                },
                "offers": 1,
            }
            local_options = {"executor": "subprocess", "cores": 2, "memory": 2, "offers": 1}
            slurm_times, local_times = [], []
            for index in range(3):
                slurm_times.append(await accept_to_running(slurm_options, root / f"slurm-{index}", slurm_running))
                local_times.append(await accept_to_running(local_options, root / f"local-{index}", phase_running))
            slurm, local = statistics.median(slurm_times), statistics.median(local_times)
            print("2. accept of a slot that starts now -> RUNNING (median of 3)")
            print(f"   slurm executor (Slurm job RUNNING): {slurm:.2f} s")
            print(f"   subprocess executor (session RUNNING): {local:.2f} s")
            print(
                f"   difference {slurm - local:+.2f} s, ratio {slurm / local:.1f}x (goal: within {RUNNING_GOAL:.0f} s)"
            )
            cluster.clean()
    print(f"machine: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    missing = missing_programs()
    if missing:
        sys.exit(f"bench_slurm needs Slurm installed: missing {', '.join(missing)}")
    asyncio.run(main_async(arguments.jobs, arguments.rounds))


if __name__ == "__main__":
    main()
