"""The Slurm test cluster comes up, and the command-line wrapper reads it (against a real slurmctld).

The parsing helpers are also tested on their own, with the formats Slurm documents.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from slurm_cluster import LIMITED_ACCOUNT, LIMITED_CORES, MAX_TIME_MINUTES, USER, slurm_cluster  # noqa: F401

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
    with pytest.raises(SlurmError, match="'no-such-slurm-command' is not installed"):
        asyncio.run(SlurmCLI(bin_dir="/nonexistent").run("no-such-slurm-command"))


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


def test_a_job_without_output_writes_into_the_clusters_folder_not_the_callers(slurm_cluster) -> None:  # noqa: F811
    """Slurm writes ``slurm-N.out`` into the submitting folder; the fixture submits from its own."""
    job = slurm_cluster.sbatch("--time=1", "--wrap", "echo no output option")
    out = slurm_cluster.root / "jobs" / f"slurm-{job}.out"
    deadline = time.monotonic() + 30
    while job in slurm_cluster.squeue_ids() or not out.exists():
        assert time.monotonic() < deadline, slurm_cluster.logs("slurmctld")
        time.sleep(0.3)
    assert out.read_text().strip() == "no output option"
    assert not (Path.cwd() / f"slurm-{job}.out").exists()


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

    limited = [row for row in await cli.associations(USER) if row.account == LIMITED_ACCOUNT and not row.user]
    assert limited[0].grp_tres == {"cpu": LIMITED_CORES}

    job = await cli.submit(["--time=5", "--cpus-per-task=1", "--output=/dev/null"], "#!/bin/sh\nsleep 60\n")
    found = await cli.job(job)
    assert found is not None and found.cpus == 1 and found.time_limit_minutes == 5
    await cli.cancel(job)

    start = time.time() + 3600
    await cli.create_reservation("cli-test", start, start + 600, 2, USER, "debug")
    reservations = {item.name: item for item in await cli.reservations()}
    assert reservations["cli-test"].cores == 2
    assert abs(reservations["cli-test"].start - int(start)) <= 1
    await cli.delete_reservation("cli-test")
    with pytest.raises(SlurmError, match="invalid"):
        await cli.delete_reservation("cli-test")
    estimate = await cli.estimate(["--cpus-per-task=1", "--time=1"])
    assert time.time() - 5 <= estimate <= time.time() + 600


def test_hostlists_and_holds_from_jobs_and_reservations() -> None:
    from jupyter_server_extension.hosted.executors.slurm.cli import SlurmJob, SlurmNode, SlurmReservation
    from jupyter_server_extension.hosted.executors.slurm.holds import expand_hostlist, job_holds, reservation_holds

    assert expand_hostlist("node[01-03,7],gpu1") == ["node01", "node02", "node03", "node7", "gpu1"]
    assert expand_hostlist("localhost") == ["localhost"]

    def job(ident: str, state: str, start: float, end: float, **extra) -> SlurmJob:
        fields = dict(name="x", reason="", user="u", account="a", partition="debug", reservation="", cpus=2)
        fields.update(extra)
        return SlurmJob(ident, state=state, memory_mib=1536, start=start, end=end, time_limit_minutes=10, **fields)

    now = 1_000_000.0
    jobs = [
        job("1", "RUNNING", now - 60, now + 540),
        job("2", "PENDING", now + 540, 0),  # Slurm's estimate: holds for its time limit from then
        job("3", "PENDING", 0, 0),  # no estimate: not placed
        job("4", "RUNNING", now, now + 60, reservation="theirs"),  # counted with its reservation
        job("5", "RUNNING", now, now + 60, name="execplanner-abc"),  # this platform's own
        job("6", "RUNNING", now, now + 60, partition="other"),
        job("7", "COMPLETED", now - 60, now - 1),
    ]
    holds = job_holds(jobs, "debug", "execplanner-", now, now, now + 7200)
    assert [(hold.start, hold.end, hold.cores, hold.memory) for hold in holds] == [
        (now, now + 540, 2, 2),
        (now + 540, now + 1140, 2, 2),
    ]
    nodes = [SlurmNode("n1", 4, 8192, "idle", (), ("debug",)), SlurmNode("n2", 4, 8192, "idle", (), ("debug",))]
    reservations = [
        SlurmReservation("theirs", now + 100, now + 200, "n1", 1, 2, "", "bob", "", "", "INACTIVE"),
        SlurmReservation("execplanner-x", now, now + 200, "n1", 1, 2, "", "root", "", "", "ACTIVE"),
        SlurmReservation("elsewhere", now, now + 200, "m[1-2]", 2, 8, "", "bob", "", "", "ACTIVE"),
    ]
    holds = reservation_holds(reservations, nodes, "execplanner-", now, now, now + 7200)
    assert [(hold.start, hold.end, hold.cores, hold.memory) for hold in holds] == [(now + 100, now + 200, 2, 4)]


def test_limit_reasons_read_like_sentences() -> None:
    from jupyter_server_extension.hosted.executors.slurm.cli import Association, SlurmNode, SlurmPartition
    from jupyter_server_extension.hosted.executors.slurm.limits import association_reasons, partition_reasons

    rows = [
        Association("root", "", "", {}, {}, {}, None),
        Association("gaia-dmp", "", "root", {"cpu": 64}, {}, {}, 7200.0),
        Association("gaia-dmp", "alice", "", {}, {"mem": 100 * 1024}, {}, None),
    ]
    reasons = association_reasons(rows, "gaia-dmp", "alice", cores=220, memory_gib=200, duration=3 * 3600)
    assert "needs 220 cores; your account gaia-dmp is limited to 64" in reasons
    assert "needs 200 GiB of memory; your association (alice in gaia-dmp) is limited to 100 GiB" in reasons
    assert "needs 3:00:00 of run time; your account gaia-dmp is limited to 2:00:00 per job (MaxWall)" in reasons
    assert association_reasons(rows, "gaia-dmp", "alice", cores=8, memory_gib=8, duration=60) == []
    assert "no association" in association_reasons(rows, "other", "alice", 1, 1, 60)[0]

    partition = SlurmPartition("debug", "UP", 3600.0, "n1", None, None)
    nodes = [SlurmNode("n1", 4, 8192, "idle", (), ("debug",)), SlurmNode("n2", 64, 8192, "down", (), ("debug",))]
    reasons = partition_reasons(partition, nodes, cores=8, memory_gib=9, duration=7200)
    assert reasons == [
        "needs 2:00:00 of run time; the Slurm partition debug allows at most 1:00:00 per job (MaxTime)",
        "needs 8 cores on one node; the largest node in the Slurm partition debug has 4",
        "needs 9 GiB of memory on one node; the largest node in the Slurm partition debug has 8 GiB",
    ]
