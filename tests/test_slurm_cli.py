"""The Slurm test cluster comes up, and the command-line wrapper reads it (against a real slurmctld).

The parsing helpers are also tested on their own, with the formats Slurm documents.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from slurm_cluster import LIMITED_ACCOUNT, LIMITED_CORES, MAX_TIME_MINUTES, slurm_cluster  # noqa: F401

from jupyter_server_extension.hosted.executors.slurm.cli import (
    SlurmCLI,
    SlurmError,
    parse_duration,
    parse_oneliner,
    parse_test_only,
    parse_tres,
)


def test_parse_duration_formats() -> None:
    assert parse_duration("01:00:00") == 3600
    assert parse_duration("1-02:00:00") == 26 * 3600
    assert parse_duration("30") == 1800
    assert parse_duration("05:30") == 330
    assert parse_duration("2-12") == 60 * 3600
    assert parse_duration("UNLIMITED") is None
    assert parse_duration("") is None


def test_parse_tres_and_oneliner() -> None:
    assert parse_tres("cpu=64,mem=100G,node=2") == {"cpu": 64, "mem": 102400, "node": 2}
    assert parse_tres("mem=512M") == {"mem": 512}
    assert parse_tres("") == {}
    with pytest.raises(SlurmError):
        parse_tres("cpu=lots")
    record = parse_oneliner("ReservationName=r1 StartTime=2026-01-01T00:00:00 Comment=two words Users=root")
    assert record == {
        "ReservationName": "r1",
        "StartTime": "2026-01-01T00:00:00",
        "Comment": "two words",
        "Users": "root",
    }


def test_parse_test_only_line() -> None:
    moment = parse_test_only(
        "sbatch: Job 3 to start at 2026-12-06T19:50:10 using 4 processors on nodes n1 in partition p"
    )
    assert time.localtime(moment)[:6] == (2026, 12, 6, 19, 50, 10)
    with pytest.raises(SlurmError, match="no start estimate"):
        parse_test_only("sbatch: error: Batch job submission failed: Invalid account")


def test_missing_command_is_a_clear_error() -> None:
    cli = SlurmCLI(bin_dir="/nonexistent")
    cli._program  # noqa: B018 - the lookup itself is what is tested below
    with pytest.raises(SlurmError, match="not installed"):
        asyncio.run(SlurmCLI(environment={"PATH": "/nonexistent"}).run("no-such-slurm-command"))


def test_cluster_node_idle_and_a_plain_job_runs(slurm_cluster) -> None:  # noqa: F811
    slurm_cluster.clean()
    assert slurm_cluster.node_state() == "idle"
    out = slurm_cluster.root / "jobs" / "plain.out"
    job = slurm_cluster.sbatch("--time=1", f"--output={out}", "--wrap", "echo plain job ran")
    deadline = time.monotonic() + 30
    while job in slurm_cluster.squeue_ids() or not out.exists():
        assert time.monotonic() < deadline, slurm_cluster.logs("slurmctld")
        time.sleep(0.3)
    assert out.read_text().strip() == "plain job ran"


@pytest.mark.asyncio
async def test_cli_reads_the_cluster(slurm_cluster) -> None:  # noqa: F811
    slurm_cluster.clean()
    cli = SlurmCLI(slurm_cluster.environment)
    nodes = await cli.nodes("debug")
    assert [(node.name, node.cpus, node.memory_mib, node.usable) for node in nodes] == [("localhost", 4, 4096, True)]
    partition = await cli.partition("debug")
    assert partition.max_time == MAX_TIME_MINUTES * 60
    with pytest.raises(SlurmError, match="nope"):
        await cli.partition("nope")

    limited = [row for row in await cli.associations("root") if row.account == LIMITED_ACCOUNT and not row.user]
    assert limited[0].grp_tres == {"cpu": LIMITED_CORES}

    job = await cli.submit(["--time=5", "--cpus-per-task=1", "--output=/dev/null"], "#!/bin/sh\nsleep 60\n")
    found = await cli.job(job)
    assert found is not None and found.cpus == 1 and found.time_limit_minutes == 5
    await cli.cancel(job)

    start = time.time() + 3600
    await cli.create_reservation("cli-test", start, start + 600, 2, "root", "debug")
    reservations = {item.name: item for item in await cli.reservations()}
    assert reservations["cli-test"].cores == 2
    assert abs(reservations["cli-test"].start - int(start)) <= 1
    await cli.delete_reservation("cli-test")
    with pytest.raises(SlurmError, match="invalid"):
        await cli.delete_reservation("cli-test")
    estimate = await cli.estimate(["--cpus-per-task=1", "--time=1"])
    assert time.time() - 5 <= estimate <= time.time() + 600
