"""A hosted platform with the ``slurm`` executor, against a real single-node Slurm (tests/slurm_cluster.py).

The node has 4 cores and 4 GiB; the account ``gaia-dmp`` is limited to 2 cores. Jobs are seconds
long, except the wall-time test: Slurm's time limits are whole minutes and it checks them about
every 30 seconds, so that one takes a minute and a half.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from slurm_cluster import LIMITED_ACCOUNT, LIMITED_CORES, ensure_slurm_executor, slurm_cluster  # noqa: F401
from slurm_cluster import USER as UNIX_USER
from test_hosted_support import DATA, eventually, request_document

from execplanner_widgets.core.platform import PlatformContext, SessionConflict
from execplanner_widgets.model import ExecutionSession, SessionPhase, format_instant, parse_request, utcnow
from jupyter_server_extension.hosted.platform import HostedPlatform

USER = "alice"
PREFIX = "eptest"


def slurm_options(cluster, roots: list[Path], **slurm) -> dict:
    """A Slurm platform on the test cluster that may stage files from ``roots``."""
    block = {"partition": cluster.partition, "prefix": PREFIX, "poll_interval": 0.5, "environment": cluster.environment}
    block.update(slurm)
    return {
        "executor": "slurm",
        "slurm": block,
        "storage": 10,
        "offers": 1,
        "offer_ttl": "PT1M",
        "local_roots": [str(root) for root in roots],
    }


@pytest_asyncio.fixture
async def slurm_platforms(slurm_cluster, tmp_path):  # noqa: F811
    """Make Slurm-backed platforms with ``factory(**slurm_options)``; all closed and the cluster cleaned after."""
    ensure_slurm_executor(tmp_path / "entry-points")
    slurm_cluster.clean()
    made: list[HostedPlatform] = []

    def factory(name: str = "hpc", data_dir: Path | None = None, hosted: dict | None = None, **slurm) -> HostedPlatform:
        options = slurm_options(slurm_cluster, [tmp_path, DATA], **slurm)
        options.update(hosted or {})
        platform = HostedPlatform.from_config(
            name, f"{name} platform", options, PlatformContext(data_dir=data_dir or tmp_path / "state")
        )
        made.append(platform)
        return platform

    yield factory
    for platform in made:
        await platform.aclose()
    slurm_cluster.clean()


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


async def book(platform: HostedPlatform, document: dict) -> ExecutionSession:
    response = await platform.offers(parse_request(document), user=USER)
    assert response.result == "YES", response.reasons
    return await platform.accept(response.offers[0].meta.uuid, user=USER)


async def finished(platform: HostedPlatform, uuid: str, timeout: float = 120) -> ExecutionSession:
    async def final() -> ExecutionSession | None:
        session = await platform.session(uuid, user=USER)
        return session if session.is_final else None

    return await eventually(final, timeout)


def own_reservations(cluster) -> list[str]:
    return [name for name in cluster.reservation_names() if name.startswith(f"{PREFIX}-")]


def own_jobs(cluster) -> list[str]:
    output = cluster.run("squeue", "--noheader", "--format=%i|%j|%T").stdout
    return [line for line in output.splitlines() if f"|{PREFIX}-" in line]


def texts(session: ExecutionSession) -> str:
    return "\n".join(message.text for message in session.messages)


@pytest.mark.asyncio
async def test_capacity_is_read_from_the_partitions_node(slurm_platforms, slurm_cluster):  # noqa: F811
    hpc = slurm_platforms()
    capacity = await hpc.capacity()
    assert (capacity.cores, capacity.memory) == (slurm_cluster.cpus, slurm_cluster.memory_mib // 1024)
    # and a request larger than the node is a NO that says so
    too_big = parse_request(request_document(DATA / "sum_numbers.py", cores=slurm_cluster.cpus + 1))
    response = await hpc.offers(too_big, user=USER)
    assert response.result == "NO"


@pytest.mark.asyncio
async def test_a_plain_sbatch_job_outside_the_platform_pushes_offers_later(slurm_platforms, slurm_cluster, tmp_path):  # noqa: F811
    hpc = slurm_platforms()
    request = parse_request(request_document(DATA / "sum_numbers.py", cores=2, duration="PT5M"))
    before = await hpc.offers(request, user=USER)
    assert before.result == "YES"
    assert before.offers[0].start <= utcnow() + timedelta(minutes=1)
    await hpc.reject(before.offers[0].meta.uuid, user=USER)

    # someone who never heard of this project takes the whole node for 10 minutes
    job = slurm_cluster.sbatch(
        "--cpus-per-task=4", "--time=10", f"--output={tmp_path / 'other.out'}", "--wrap", "sleep 600"
    )
    deadline = time.monotonic() + 30
    while "RUNNING" not in slurm_cluster.run("squeue", "--noheader", "--format=%T", f"--jobs={job}").stdout:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.3)
    await asyncio.sleep(1.1)  # past the executor's snapshot of the queue

    after = await hpc.offers(request, user=USER)
    assert after.result == "YES"
    assert after.offers[0].start >= utcnow() + timedelta(minutes=9), after.offers[0].start
    await hpc.reject(after.offers[0].meta.uuid, user=USER)

    # a second one waits behind it: Slurm's backfill scheduler expects it to start when the first
    # ends, and the platform's offers move behind that expected run too
    pending = slurm_cluster.sbatch("--cpus-per-task=4", "--time=10", "--output=/dev/null", "--wrap", "sleep 600")
    deadline = time.monotonic() + 30
    while True:
        squeue = json.loads(slurm_cluster.run("squeue", "--json").stdout)
        expected = next(job["start_time"] for job in squeue["jobs"] if str(job["job_id"]) == pending)
        if expected:
            break
        assert time.monotonic() < deadline, "Slurm gave the pending job no expected start"
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.1)
    behind = await hpc.offers(request, user=USER)
    assert behind.result == "YES"
    assert behind.offers[0].start >= utcnow() + timedelta(minutes=19), behind.offers[0].start


@pytest.mark.asyncio
async def test_no_with_the_associations_limit_partition_maxtime_and_node_size(slurm_platforms, slurm_cluster):  # noqa: F811
    hpc = slurm_platforms(account=LIMITED_ACCOUNT)
    three = parse_request(request_document(DATA / "sum_numbers.py", cores=LIMITED_CORES + 1))
    response = await hpc.offers(three, user=USER)
    assert response.result == "NO"
    assert any(
        f"needs {LIMITED_CORES + 1} cores; your account {LIMITED_ACCOUNT} is limited to {LIMITED_CORES}" in reason
        for reason in response.reasons
    ), response.reasons

    long = parse_request(request_document(DATA / "sum_numbers.py", cores=1, duration="PT2H"))
    response = await hpc.offers(long, user=USER)
    assert response.result == "NO"
    assert any("allows at most 1:00:00 per job (MaxTime)" in reason for reason in response.reasons), response.reasons

    # within the limits: YES
    fine = parse_request(request_document(DATA / "sum_numbers.py", cores=LIMITED_CORES))
    assert (await hpc.offers(fine, user=USER)).result == "YES"


@pytest.mark.asyncio
async def test_accept_reserves_the_slot_and_the_job_runs_inside_it_to_completed(slurm_platforms, slurm_cluster):  # noqa: F811
    hpc = slurm_platforms()
    document = request_document(
        DATA / "sum_numbers.py", cores=2, duration="PT3M", data=[DATA / "numbers.csv"], arguments=["sum"]
    )
    session = await book(hpc, document)
    uuid = session.meta.uuid
    reservation = f"{PREFIX}-{uuid}"
    assert own_reservations(slurm_cluster) == [reservation]
    line = slurm_cluster.run("scontrol", "--oneliner", "show", "reservation", reservation).stdout
    assert "CoreCnt=2" in line and f"Users={UNIX_USER}" in line

    done = await finished(hpc, uuid)
    assert done.phase is SessionPhase.COMPLETED, texts(done)
    history = texts(done)
    assert f"in reservation {reservation}" in history and "COMPLETED" in history
    results = {item.id for item in done.results}
    assert {"outputs/total.txt", "stdout.txt"} <= results, results
    stdout = (hpc.session_dir(uuid) / "results" / "stdout.txt").read_text()
    assert "sum=" in stdout
    # the job ran in the reservation, with the booked cores and memory
    job_id = re.search(r"submitted to Slurm as job (\d+)", history).group(1)  # not "2" of "2 core(s)" in "job 25"
    squeue = json.loads(slurm_cluster.run("squeue", "--json").stdout)  # ended jobs stay listed (MinJobAge)
    job = next(item for item in squeue["jobs"] if str(item["job_id"]) == job_id)
    assert (job["resv_name"], job["cpus"], job["memory_per_node"], job["job_state"]) == (
        reservation,
        2,
        1024,
        "COMPLETED",
    )
    job = await hpc.job(uuid, user=USER)  # the UWS view of the same session
    assert job.phase.value == "COMPLETED"
    # released once it ended
    await eventually(lambda: _async(not own_reservations(slurm_cluster)), 30)


async def _async(value):
    return value


@pytest.mark.slow
@pytest.mark.asyncio
async def test_overrunning_the_wall_time_ends_timeout_then_failed_with_the_reason(
    slurm_platforms,
    slurm_cluster,  # noqa: F811
    tmp_path,
):
    hpc = slurm_platforms()
    sleeper = script(tmp_path, "overrun.py", "import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    session = await book(hpc, request_document(sleeper, cores=1, duration="PT2M"))
    done = await finished(hpc, session.meta.uuid, timeout=240)
    assert done.phase is SessionPhase.FAILED, texts(done)
    assert "TIMEOUT" in texts(done)
    assert "wall time" in texts(done)


@pytest.mark.asyncio
async def test_cancel_removes_the_job_and_the_reservation(slurm_platforms, slurm_cluster, tmp_path):  # noqa: F811
    hpc = slurm_platforms()
    sleeper = script(tmp_path, "sleeper.py", "import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    session = await book(hpc, request_document(sleeper, cores=1, duration="PT5M"))
    uuid = session.meta.uuid
    await eventually(lambda: _async(any("RUNNING" in line for line in own_jobs(slurm_cluster))), 60)
    assert own_reservations(slurm_cluster) == [f"{PREFIX}-{uuid}"]
    await hpc.cancel(uuid, user=USER)
    done = await finished(hpc, uuid, timeout=60)
    assert done.phase is SessionPhase.CANCELLED, texts(done)
    await eventually(lambda: _async(not own_reservations(slurm_cluster) and not own_jobs(slurm_cluster)), 30)


@pytest.mark.asyncio
async def test_a_booking_cancelled_before_it_starts_releases_its_reservation(slurm_platforms, slurm_cluster):  # noqa: F811
    hpc = slurm_platforms()
    later = f"{format_instant(utcnow() + timedelta(minutes=30))}/PT1H"
    session = await book(hpc, request_document(DATA / "sum_numbers.py", cores=1, duration="PT5M", start=later))
    assert own_reservations(slurm_cluster) == [f"{PREFIX}-{session.meta.uuid}"]
    await hpc.cancel(session.meta.uuid, user=USER)
    await eventually(lambda: _async(not own_reservations(slurm_cluster)), 30)


@pytest.mark.asyncio
async def test_offers_reserve_nothing_in_slurm_and_their_expiry_frees_the_time(slurm_platforms, slurm_cluster):  # noqa: F811
    hpc = slurm_platforms(hosted={"offer_ttl": "PT2S"})
    whole_node = parse_request(request_document(DATA / "sum_numbers.py", cores=4, duration="PT5M"))
    first = await hpc.offers(whole_node, user=USER)
    assert first.result == "YES"
    assert own_reservations(slurm_cluster) == []  # an offer holds in the platform's calendar only
    held = await hpc.offers(whole_node, user="bob")
    assert held.offers[0].start > first.offers[0].start  # the live offer holds the node
    await hpc.reject(held.offers[0].meta.uuid, user="bob")
    await asyncio.sleep(2.5)
    assert (await hpc.session(first.offers[0].meta.uuid, user=USER)).phase is SessionPhase.EXPIRED
    again = await hpc.offers(whole_node, user="bob")
    assert again.offers[0].start <= first.offers[0].start + timedelta(seconds=5)
    assert own_reservations(slurm_cluster) == []


@pytest.mark.asyncio
async def test_two_concurrent_accepts_of_the_same_slot_make_one_reservation(slurm_platforms, slurm_cluster, tmp_path):  # noqa: F811
    shared = tmp_path / "shared-state"
    first, second = slurm_platforms("hpc", data_dir=shared), slurm_platforms("hpc", data_dir=shared)
    later = f"{format_instant(utcnow() + timedelta(minutes=30))}/PT1H"
    response = await first.offers(
        parse_request(request_document(DATA / "sum_numbers.py", cores=4, duration="PT5M", start=later)), user=USER
    )
    uuid = response.offers[0].meta.uuid
    outcomes = await asyncio.gather(
        first.accept(uuid, user=USER), second.accept(uuid, user=USER), return_exceptions=True
    )
    assert sum(isinstance(item, ExecutionSession) for item in outcomes) == 1, outcomes
    assert sum(isinstance(item, SessionConflict) for item in outcomes) == 1, outcomes
    assert own_reservations(slurm_cluster) == [f"{PREFIX}-{uuid}"]
    # a second request for the same time cannot take the reserved node either
    other = await second.offers(
        parse_request(request_document(DATA / "sum_numbers.py", cores=4, duration="PT5M", start=later)), user="bob"
    )
    assert other.result == "NO" or other.offers[0].start >= response.offers[0].end


CRASHING_SERVER = """
import asyncio, json, sys
from execplanner_widgets.core.platform import PlatformContext
from execplanner_widgets.model import parse_request
from jupyter_server_extension.hosted.platform import HostedPlatform
from pathlib import Path

options, data_dir, document = json.loads(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])

async def main():
    platform = HostedPlatform.from_config("hpc", "hpc platform", options, PlatformContext(data_dir=data_dir))
    response = await platform.offers(parse_request(document), user="alice")
    session = await platform.accept(response.offers[0].meta.uuid, user="alice")
    while True:
        current = await platform.session(session.meta.uuid, user="alice")
        if any("submitted to Slurm as job" in message.text for message in current.messages):
            print(session.meta.uuid, flush=True)
            await asyncio.sleep(3600)  # killed here, as a crashing server would be
        await asyncio.sleep(0.2)

asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_a_restarted_server_keeps_following_the_running_slurm_job(slurm_platforms, slurm_cluster, tmp_path):  # noqa: F811
    """The first server is a separate process killed with SIGKILL while its Slurm job runs; the
    next one (same database) adopts the job from its id and follows it to COMPLETED."""
    state = tmp_path / "restart-state"
    worker = script(
        tmp_path,
        "worker.py",
        """
        import os, time
        time.sleep(12)
        open(os.path.join(os.environ["EXECPLANNER_OUTPUTS"], "done.txt"), "w").write("survived\\n")
        print("finished", flush=True)
        """,
    )
    options = slurm_options(slurm_cluster, [tmp_path, DATA])
    environment = dict(os.environ)
    registration = ensure_slurm_executor(tmp_path / "entry-points")
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parent), registration, environment.get("PYTHONPATH", "")])
    )
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CRASHING_SERVER,
            json.dumps(options),
            str(state),
            json.dumps(request_document(worker, cores=1, duration="PT3M")),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,
    )
    try:
        uuid = await asyncio.wait_for(asyncio.to_thread(first.stdout.readline), 90)
        uuid = uuid.strip()
        assert uuid, "the first server did not submit the job"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    jobs = own_jobs(slurm_cluster)
    assert len(jobs) == 1 and jobs[0].split("|")[2] in ("PENDING", "RUNNING", "CONFIGURING"), jobs

    second = slurm_platforms("hpc", data_dir=state)
    done = await finished(second, uuid, timeout=120)
    assert done.phase is SessionPhase.COMPLETED, texts(done)
    assert "following Slurm job" in texts(done) and "takes the run over" in texts(done)
    assert (second.session_dir(uuid) / "results" / "outputs" / "done.txt").read_text() == "survived\n"


@pytest.mark.asyncio
async def test_without_reservations_the_job_is_submitted_at_its_slot_and_offers_carry_slurms_estimate(
    slurm_platforms,
    slurm_cluster,  # noqa: F811
):
    from jupyter_server_extension.hosted.calendar import Need

    hpc = slurm_platforms(reservations=False)
    session = await book(
        hpc, request_document(DATA / "sum_numbers.py", cores=1, duration="PT2M", data=[DATA / "numbers.csv"])
    )
    assert own_reservations(slurm_cluster) == []
    done = await finished(hpc, session.meta.uuid)
    assert done.phase is SessionPhase.COMPLETED, texts(done)
    assert "in reservation" not in texts(done)  # submitted with --begin, into no reservation

    need = Need(
        cores=2, memory=1, storage=0, cores_max=2, memory_max=1, storage_max=0, duration=300, storage_duration=300
    )
    start, note = await hpc.executor.estimate(need, USER)
    assert utcnow() - timedelta(seconds=5) <= start <= utcnow() + timedelta(minutes=5)
    assert note.startswith("Slurm's own estimate: a job of this size would start at") and "not a reservation" in note


@pytest.mark.asyncio
async def test_an_unreachable_slurm_is_a_clear_platform_error(tmp_path):
    from execplanner_widgets.core.platform import PlatformError

    ensure_slurm_executor(tmp_path / "entry-points")
    options = {
        "executor": "slurm",
        "slurm": {
            "partition": "debug",
            "command_timeout": 2,
            "environment": {"SLURM_CONF": str(tmp_path / "none.conf")},
        },
    }
    hpc = HostedPlatform.from_config("hpc", "hpc", options, PlatformContext(data_dir=tmp_path / "state"))
    try:
        with pytest.raises(PlatformError, match="Slurm did not answer"):
            await hpc.offers(parse_request(request_document(DATA / "sum_numbers.py")), user=USER)
    finally:
        await hpc.aclose()


def test_slurm_options_are_checked_and_named(tmp_path):
    from execplanner_widgets.core.config import ConfigError, build_federation, default_context, load_platforms_file

    ensure_slurm_executor(tmp_path / "entry-points")
    example = Path(__file__).resolve().parents[1] / "examples" / "platforms-slurm.yaml"
    federation = build_federation(load_platforms_file(example), default_context(tmp_path / "state"))
    assert "cluster" in repr(federation.get("cluster"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "platforms:\n  - name: hpc\n    hosted:\n      executor: slurm\n"
        "      slurm: {poll_interval: -1, sbatch_args: [--wrap=rm], colour: blue, account: 'a b'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        build_federation(load_platforms_file(bad), default_context(tmp_path / "state"))
    text = str(caught.value)
    for field in (
        "hosted.slurm.partition",
        "hosted.slurm.poll_interval",
        "hosted.slurm.sbatch_args",
        "hosted.slurm.colour",
        "hosted.slurm.account",
    ):
        assert field in text, text


@pytest.mark.asyncio
async def test_user_code_in_the_slurm_job_is_isolated(slurm_platforms, tmp_path, monkeypatch):
    """The job's user code runs in the platform's sandbox: not as the server's user where the server
    is root, without the server's environment, without the files next to the session; Slurm's job
    variables are handed in."""
    monkeypatch.setenv("EXECPLANNER_TEST_SECRET", "server-only")  # the server's environment
    secret = tmp_path / "secret.txt"
    secret.write_text("server-only")
    probe = script(
        tmp_path,
        "probe.py",
        f"""
        import os
        print("uid", os.getuid())
        print("secret variable", os.environ.get("EXECPLANNER_TEST_SECRET"))
        print("secret file", os.path.exists({str(secret)!r}))
        print("job", os.environ.get("SLURM_JOB_ID"))
        """,
    )
    hpc = slurm_platforms()
    session = await book(hpc, request_document(probe, cores=1, duration="PT2M"))
    done = await finished(hpc, session.meta.uuid)
    assert done.phase is SessionPhase.COMPLETED, texts(done)
    lines = (hpc.session_dir(session.meta.uuid) / "results" / "stdout.txt").read_text().splitlines()
    if hpc.executor.sandbox.mode == "none":
        pytest.skip(f"no sandbox on this machine: {hpc.executor.sandbox.describe()}")
    assert "secret variable None" in lines and "secret file False" in lines, lines
    if os.getuid() == 0:
        assert "uid 0" not in lines, lines
    job = next(line.split()[1] for line in lines if line.startswith("job "))
    assert job.isdigit() and f"Slurm job {job}" in texts(done)


@pytest.mark.asyncio
async def test_memory_beyond_the_booking_fails_the_job_with_the_reason(slurm_platforms):
    """Slurm gives the job --mem of the booking, and the run cannot allocate past it; a failing
    script's own error line is the session's reason, as on the subprocess executor."""
    hpc = slurm_platforms()
    session = await book(hpc, request_document(DATA / "allocate.py", memory=1, duration="PT2M"))
    done = await finished(hpc, session.meta.uuid)
    assert done.phase is SessionPhase.FAILED, texts(done)
    last = done.messages[-1].text
    assert "MemoryError" in last and "booked memory limit is 1 GiB" in last and "FAILED" in last, last
    job = await hpc.job(session.meta.uuid, user=USER)
    assert job.phase.value == "ERROR" and job.error_summary and "MemoryError" in job.error_summary.message
    failing = await book(hpc, request_document(DATA / "failing.py", duration="PT2M"))
    done = await finished(hpc, failing.meta.uuid)
    assert done.phase is SessionPhase.FAILED and "exit code" in done.messages[-1].text, texts(done)


@pytest.mark.asyncio
async def test_a_reservation_slurm_refuses_is_an_executor_refusal_with_slurms_reason(slurm_platforms, slurm_cluster):  # noqa: F811
    from datetime import timezone

    from jupyter_server_extension.hosted.executors import BookedSlot, ExecutorRefused

    hpc = slurm_platforms()
    start = utcnow().astimezone(timezone.utc) + timedelta(hours=1)
    too_big = BookedSlot("refused-session", USER, start, start + timedelta(minutes=10), 64, 1, 0)
    with pytest.raises(ExecutorRefused, match="Slurm would not reserve 64 cores then: .+") as refused:
        await hpc.executor.booked(too_big)
    assert too_big.handle is None and "scontrol" in refused.value.reason
    assert own_reservations(slurm_cluster) == []
    # releasing a slot whose reservation is already gone is quiet
    await hpc.executor.released(too_big)
