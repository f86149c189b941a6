"""Real runs: notebooks (nbclient) and scripts as subprocesses with CPU affinity and a memory limit,
data staged from a real HTTP server and from local paths, a run stopped at the end of its slot, a
cancelled run, storage removed after its lifetime, a clean shutdown, and a run on a Dask cluster.

Slots are seconds long and the work tiny: this is a 2-core machine.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import psutil
import pytest
import pytest_asyncio
from test_hosted_support import DATA, data_server, eventually, request_document  # noqa: F401 - data_server is a fixture

from execplanner_widgets.core.platform import PlatformContext
from execplanner_widgets.model import ExecutionSession, SessionPhase, format_instant, parse_request, utcnow
from jupyter_server_extension.hosted.executors import ExecutorContext
from jupyter_server_extension.hosted.executors.local import SubprocessExecutor
from jupyter_server_extension.hosted.options import HostedOptions
from jupyter_server_extension.hosted.platform import HostedPlatform

USER = "alice"


@pytest_asyncio.fixture
async def platforms(tmp_path):
    made: list[HostedPlatform] = []

    def factory(name: str = "local", **options) -> HostedPlatform:
        # private_urls: the tests stage from a data server on 127.0.0.1
        defaults = {"cores": 2, "memory": 4, "storage": 10, "offers": 1, "offer_ttl": "PT1M", "private_urls": True}
        defaults.update(options)
        platform = HostedPlatform.from_config(
            name, f"{name} platform", defaults, PlatformContext(data_dir=tmp_path / "state")
        )
        made.append(platform)
        return platform

    yield factory
    for platform in made:
        await platform.aclose()


async def book(platform: HostedPlatform, document: dict) -> ExecutionSession:
    response = await platform.offers(parse_request(document), user=USER)
    assert response.result == "YES", response.reasons
    return await platform.accept(response.offers[0].meta.uuid, user=USER)


async def finished(platform: HostedPlatform, uuid: str, timeout: float = 90) -> ExecutionSession:
    async def final() -> ExecutionSession | None:
        session = await platform.session(uuid, user=USER)
        return session if session.is_final else None

    return await eventually(final, timeout)


def result_path(session: ExecutionSession, result_id: str) -> Path:
    item = next(result for result in session.results if result.id == result_id)
    return Path(unquote(urlsplit(item.url).path))


async def running_pid(platform: HostedPlatform, uuid: str) -> int:
    """The PID that ``sleep_long.py`` writes once it runs."""
    pid_file = platform.session_dir(uuid) / "work" / "outputs" / "pid.txt"

    async def written() -> bool:
        return pid_file.exists() and pid_file.read_text().strip() != ""

    await eventually(written, 30)
    return int(pid_file.read_text())


def phases_in_history(session: ExecutionSession) -> list[str]:
    seen: list[str] = []
    for message in session.messages:
        phase = (message.values or {}).get("phase")
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
    return seen


@pytest.mark.asyncio
async def test_a_notebook_runs_with_data_downloaded_over_http(platforms, data_server):  # noqa: F811 - the fixture
    local = platforms()
    booked = await book(
        local,
        request_document(
            DATA / "sum_numbers.ipynb", kind="jupyter-notebook", data=[f"{data_server}/numbers.csv"], duration="PT2M"
        ),
    )
    session = await finished(local, booked.meta.uuid)
    assert session.phase is SessionPhase.COMPLETED, [m.text for m in session.messages]
    assert phases_in_history(session) == [
        "OFFERED",
        "ACCEPTED",
        "WAITING",
        "PREPARING",
        "RUNNING",
        "RELEASING",
        "COMPLETED",
    ]
    assert all(message.time is not None and message.level for message in session.messages)
    assert any("fetched numbers.csv" in message.text and data_server in message.text for message in session.messages)
    executed = nbformat.read(result_path(session, "sum_numbers.executed.ipynb"), as_version=4)
    outputs = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs]
    assert any(output.get("data", {}).get("text/plain") == "12" for output in outputs)
    assert any("total is 12" in output.get("text", "") for output in outputs)
    assert result_path(session, "outputs/total.txt").read_text() == "12"
    notebook = next(result for result in session.results if result.id.endswith(".ipynb"))
    assert notebook.mime_type == "application/x-ipynb+json" and notebook.size > 0
    # the working folder (inputs) is gone; the results stay
    assert not (local.session_dir(booked.meta.uuid) / "work").exists()


@pytest.mark.asyncio
async def test_a_script_runs_on_its_booked_cpus_with_local_data_and_arguments(platforms):
    local = platforms(cores=200)  # 200 booked cores map onto this machine's CPUs
    booked = await book(
        local, request_document(DATA / "sum_numbers.py", cores=1, data=[DATA / "numbers.csv"], arguments=["sum"])
    )
    session = await finished(local, booked.meta.uuid)
    assert session.phase is SessionPhase.COMPLETED, [m.text for m in session.messages]
    stdout = result_path(session, "stdout.txt").read_text()
    assert "sum=12" in stdout
    cpus = json.loads(stdout.split("cpus", 1)[1].strip())
    assert len(cpus) == 1 and cpus[0] in os.sched_getaffinity(0)
    assert result_path(session, "outputs/total.txt").read_text().strip() == "12"


@pytest.mark.asyncio
async def test_memory_beyond_the_booking_fails_with_a_clear_message(platforms):
    local = platforms()
    booked = await book(local, request_document(DATA / "allocate.py", memory=1))
    session = await finished(local, booked.meta.uuid)
    assert session.phase is SessionPhase.FAILED
    assert "MemoryError" in session.messages[-1].text and "booked memory limit is 1 GiB" in session.messages[-1].text
    job = await local.job(booked.meta.uuid, user=USER)
    assert job.phase.value == "ERROR" and job.error_summary and "MemoryError" in job.error_summary.message


@pytest.mark.asyncio
async def test_a_failing_script_reports_its_own_message(platforms):
    local = platforms()
    session = await finished(local, (await book(local, request_document(DATA / "failing.py"))).meta.uuid)
    assert session.phase is SessionPhase.FAILED
    assert "the input catalogue is empty" in session.messages[-1].text


@pytest.mark.asyncio
async def test_a_run_is_stopped_when_its_slot_ends(platforms):
    # without isolation: the pid the script writes is the host's (an isolated run has its own PID
    # namespace; isolated runs being stopped are covered by test_isolation.py)
    local = platforms(isolation="none")
    booked = await book(local, request_document(DATA / "sleep_long.py", duration="PT3S"))
    started = utcnow()
    session = await finished(local, booked.meta.uuid, timeout=40)
    assert session.phase is SessionPhase.FAILED
    assert "stopped at the end of its booked slot" in session.messages[-1].text
    assert (utcnow() - started) < timedelta(seconds=25)  # 3 s slot + grace, not the script's 60 s
    pid = int(result_path(session, "outputs/pid.txt").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "woke up" not in result_path(session, "stdout.txt").read_text()


@pytest.mark.asyncio
async def test_cancelling_a_running_session_stops_it(platforms):
    # without isolation: the pid the script writes is the host's (an isolated run has its own PID
    # namespace; isolated runs being stopped are covered by test_isolation.py)
    local = platforms(isolation="none")
    booked = await book(local, request_document(DATA / "sleep_long.py", duration="PT2M"))
    pid = await running_pid(local, booked.meta.uuid)
    cancelling = await local.cancel(booked.meta.uuid, user=USER)
    assert "stopping the run" in cancelling.messages[-1].text
    session = await finished(local, booked.meta.uuid, timeout=30)
    assert session.phase is SessionPhase.CANCELLED
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.asyncio
async def test_storage_folders_are_made_and_removed_after_their_lifetime(platforms):
    local = platforms()
    storage = [{"meta": {"name": "scratch"}, "size": {"min": 2}, "schedule": {"available": {"duration": "PT4S"}}}]
    booked = await book(
        local, request_document(DATA / "sum_numbers.py", data=[DATA / "numbers.csv"], storage=storage, duration="PT2S")
    )
    assert booked.storage[0].size.min == 2
    session = await finished(local, booked.meta.uuid)
    assert session.phase is SessionPhase.COMPLETED
    assert any("created 1 storage folder(s): scratch" in m.text for m in session.messages)
    folder = local.session_dir(booked.meta.uuid) / "storage"

    async def removed() -> bool:
        current = await local.session(booked.meta.uuid, user=USER)
        return not folder.exists() and any("storage removed" in m.text for m in current.messages)

    await eventually(removed, 20)


@pytest.mark.asyncio
async def test_closing_the_platform_leaves_no_process_behind(platforms):
    # without isolation: the pid the script writes is the host's (an isolated run has its own PID
    # namespace; isolated runs being stopped are covered by test_isolation.py)
    local = platforms(isolation="none")
    booked = await book(local, request_document(DATA / "sleep_long.py", duration="PT2M"))
    pid = await running_pid(local, booked.meta.uuid)
    await local.aclose()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    reopened = HostedPlatform.from_config("local", "again", {"cores": 2, "memory": 4}, local.context)
    try:
        session = await reopened.session(booked.meta.uuid, user=USER)
        assert session.phase is SessionPhase.FAILED and "shut down" in session.messages[-1].text
    finally:
        await reopened.aclose()


@pytest.mark.asyncio
async def test_a_session_waits_for_its_booked_start(platforms):
    local = platforms()
    start = utcnow() + timedelta(seconds=6)
    booked = await book(
        local,
        request_document(DATA / "sum_numbers.py", data=[DATA / "numbers.csv"], start=f"{format_instant(start)}/PT0S"),
    )
    assert booked.start == start

    async def waiting() -> bool:
        return (await local.session(booked.meta.uuid, user=USER)).phase is SessionPhase.WAITING

    await eventually(waiting, 5, interval=0.1)
    assert utcnow() < start  # it waits for its time, it does not start at once
    session = await finished(local, booked.meta.uuid)
    assert session.phase is SessionPhase.COMPLETED
    job = await local.job(booked.meta.uuid, user=USER)
    assert job.start_time >= start


def test_the_subprocess_executor_knows_what_it_cannot_run(tmp_path):
    options = HostedOptions()
    context = ExecutorContext("local", options, tmp_path, logging.getLogger("test"), tmp_path / "secrets")
    executor = SubprocessExecutor(SubprocessExecutor.Options(), context)
    assert executor.unsupported("python-script") is None
    assert "container engine" in executor.unsupported("docker-container") or "only" in executor.unsupported(
        "docker-container"
    )
    assert "singularity" in executor.unsupported("singularity-container")


@pytest.mark.asyncio
async def test_a_script_runs_on_a_dask_cluster(platforms):
    pytest.importorskip("distributed")
    dask = platforms("cluster", executor="dask", cores=None, memory=None, dask={"workers": 1, "threads_per_worker": 2})
    capacity = await dask.capacity()
    assert capacity.cores == 2  # read from the local cluster's worker threads
    assert capacity.memory >= 1
    booked = await book(
        dask, request_document(DATA / "sum_numbers.py", data=[DATA / "numbers.csv"], arguments=["dask"])
    )
    session = await finished(dask, booked.meta.uuid)
    assert session.phase is SessionPhase.COMPLETED, [m.text for m in session.messages]
    assert any("dask (local cluster)" in m.text for m in session.messages)
    assert "dask=12" in result_path(session, "stdout.txt").read_text()
    assert result_path(session, "outputs/total.txt").read_text().strip() == "12"


@pytest.mark.asyncio
async def test_a_notebook_runs_in_a_dask_worker_process(platforms, data_server):  # noqa: F811 - the fixture
    """Worker processes get the task by value (pickled code, staged files as bytes) over TCP on 127.0.0.1."""
    pytest.importorskip("distributed")
    dask = platforms(
        "workers", executor="dask", cores=2, memory=4, dask={"workers": 1, "threads_per_worker": 1, "processes": True}
    )
    booked = await book(
        dask,
        request_document(
            DATA / "sum_numbers.ipynb", kind="jupyter-notebook", data=[f"{data_server}/numbers.csv"], duration="PT2M"
        ),
    )
    session = await finished(dask, booked.meta.uuid)
    assert session.phase is SessionPhase.COMPLETED, [m.text for m in session.messages]
    executed = nbformat.read(result_path(session, "sum_numbers.executed.ipynb"), as_version=4)
    assert any(
        output.get("data", {}).get("text/plain") == "12"
        for cell in executed.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert result_path(session, "outputs/total.txt").read_text() == "12"
