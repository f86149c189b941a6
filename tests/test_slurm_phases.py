"""A Slurm platform's sessions follow the Slurm job, against a real single-node Slurm (tests/slurm_cluster.py):

* phases: a job Slurm holds PENDING shows the session WAITING (UWS QUEUED), then RUNNING when Slurm
  starts it, then COMPLETED; cancelling a session whose job waits in Slurm's queue cancels the job;
* a clean shutdown of the server (``HostedPlatform.aclose``) leaves the running job to Slurm, and the
  next server on the same database follows it at once to COMPLETED;
* without reservations, each offer says that its start is Slurm's estimate, not a reservation.

The job is held with ``sbatch --hold`` (the platform's ``sbatch_args``) and released with
``scontrol release``, so the test decides when Slurm starts it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401 - the shared cluster fixture
from test_hosted_support import DATA, eventually, request_document
from test_slurm_executor import book, finished, own_jobs, own_reservations, script, slurm_platforms, texts  # noqa: F401

from execplanner_widgets.model import ExecutionSession, SessionPhase, parse_request
from jupyter_server_extension.hosted.platform import HostedPlatform
from jupyter_server_extension.hosted.store import events_of

USER = "alice"

pytestmark = pytest.mark.timeout(300)


async def _phase(platform: HostedPlatform, uuid: str, phase: SessionPhase) -> ExecutionSession | None:
    session = await platform.session(uuid, user=USER)
    if session.is_final and phase is not session.phase:
        raise AssertionError(f"ended {session.phase}: {texts(session)}")
    return session if session.phase is phase else None


async def _pending_in_slurm(platform: HostedPlatform, uuid: str) -> ExecutionSession | None:
    """WAITING because Slurm holds the job (before the booked start a session is WAITING too)."""
    session = await _phase(platform, uuid, SessionPhase.WAITING)
    return session if session is not None and "is PENDING" in texts(session) else None


def _job_id(cluster: Any) -> str:
    jobs = own_jobs(cluster)
    assert len(jobs) == 1, jobs
    return jobs[0].split("|")[0]


def _job_state(cluster: Any, job_id: str) -> tuple[str, str]:
    squeue = json.loads(cluster.run("squeue", "--json").stdout)  # --json lists every job (filters ignored)
    job = next(item for item in squeue["jobs"] if str(item["job_id"]) == job_id)
    state = job["job_state"]
    return (state[0] if isinstance(state, list) else state), str(job.get("state_reason", ""))


@pytest.mark.asyncio
async def test_a_job_slurm_holds_pending_shows_waiting_then_running_then_completed(
    slurm_platforms,  # noqa: F811
    slurm_cluster,  # noqa: F811
    tmp_path,
):
    hpc = slurm_platforms(sbatch_args=["--hold"])
    worker = script(tmp_path, "worker.py", "import time\ntime.sleep(6)\nprint('worked', flush=True)\n")
    session = await book(hpc, request_document(worker, cores=1, duration="PT3M"))
    uuid = session.meta.uuid

    waiting = await eventually(lambda: _pending_in_slurm(hpc, uuid), 60)
    job_id = _job_id(slurm_cluster)
    assert _job_state(slurm_cluster, job_id)[0] == "PENDING"
    assert "is PENDING" in texts(waiting) and "handing the run to the slurm executor" in texts(waiting)
    assert "running on the slurm executor" not in texts(waiting)
    assert (await hpc.job(uuid, user=USER)).phase.value == "QUEUED"  # UWS follows through model.phases
    await asyncio.sleep(3)  # several scheduler rounds: the runner does not claim the WAITING run again
    assert len(own_jobs(slurm_cluster)) == 1 and (await hpc.session(uuid, user=USER)).phase is SessionPhase.WAITING

    slurm_cluster.run("scontrol", "release", job_id)
    running = await eventually(lambda: _phase(hpc, uuid, SessionPhase.RUNNING), 60)
    assert f"Slurm job {job_id} is RUNNING" in texts(running)
    assert (await hpc.job(uuid, user=USER)).phase.value == "EXECUTING"
    done = await finished(hpc, uuid)
    assert done.phase is SessionPhase.COMPLETED, texts(done)

    # the phases the history went through, in order (each event records the phase it was written in)
    with hpc.store.read() as db:
        history = [event.phase for event in events_of(db, [uuid])[uuid]]
    seen = [phase for index, phase in enumerate(history) if index == 0 or history[index - 1] != phase]
    run = [phase for phase in seen[seen.index("PREPARING") :] if phase != "RELEASING"]
    assert run == ["PREPARING", "WAITING", "RUNNING", "COMPLETED"], seen


@pytest.mark.asyncio
async def test_cancelling_a_session_whose_job_waits_in_slurms_queue_cancels_the_job(
    slurm_platforms,  # noqa: F811
    slurm_cluster,  # noqa: F811
):
    hpc = slurm_platforms(sbatch_args=["--hold"])
    session = await book(hpc, request_document(DATA / "sum_numbers.py", cores=1, duration="PT3M"))
    uuid = session.meta.uuid
    await eventually(lambda: _pending_in_slurm(hpc, uuid), 60)
    job_id = _job_id(slurm_cluster)
    await hpc.cancel(uuid, user=USER)
    done = await finished(hpc, uuid, timeout=60)
    assert done.phase is SessionPhase.CANCELLED, texts(done)
    assert _job_state(slurm_cluster, job_id)[0] == "CANCELLED"
    await eventually(lambda: _async(not own_reservations(slurm_cluster)), 30)


async def _async(value: Any) -> Any:
    return value


@pytest.mark.asyncio
async def test_a_clean_shutdown_leaves_the_slurm_job_running_and_the_next_server_follows_it(
    slurm_platforms,  # noqa: F811
    slurm_cluster,  # noqa: F811
    tmp_path,
):
    state = tmp_path / "restart-state"
    worker = script(
        tmp_path,
        "worker.py",
        """
        import os, time
        time.sleep(10)
        open(os.path.join(os.environ["EXECPLANNER_OUTPUTS"], "done.txt"), "w").write("survived\\n")
        """,
    )
    first = slurm_platforms("hpc", data_dir=state)
    session = await book(first, request_document(worker, cores=1, duration="PT3M"))
    uuid = session.meta.uuid
    await eventually(lambda: _phase(first, uuid, SessionPhase.RUNNING), 60)
    job_id = _job_id(slurm_cluster)

    await first.aclose()  # a clean shutdown of the Jupyter server
    assert _job_state(slurm_cluster, job_id)[0] == "RUNNING"  # not cancelled
    assert own_reservations(slurm_cluster), "the reservation stays with the session"

    second = slurm_platforms("hpc", data_dir=state)
    began = time.monotonic()

    async def taken_over() -> bool:
        return "takes the run over" in texts(await second.session(uuid, user=USER))

    await eventually(taken_over, 20)
    assert time.monotonic() - began < 20  # at once, not after the 45 s heartbeat
    done = await finished(second, uuid, timeout=120)
    assert done.phase is SessionPhase.COMPLETED, texts(done)
    history = texts(done)
    assert "this server shut down; the run goes on" in history and f"following Slurm job {job_id}" in history
    assert "shut down during the run" not in history
    assert (second.session_dir(uuid) / "results" / "outputs" / "done.txt").read_text() == "survived\n"


@pytest.mark.asyncio
async def test_without_reservations_every_offer_says_its_start_is_slurms_estimate(
    slurm_platforms,  # noqa: F811
    slurm_cluster,  # noqa: F811
):
    request = parse_request(request_document(DATA / "sum_numbers.py", cores=2, duration="PT5M"))
    estimating = slurm_platforms("estimates", reservations=False, hosted={"offers": 2})
    answer = await estimating.offers(request, user=USER)
    assert answer.result == "YES" and len(answer.offers) == 2
    for offer in answer.offers:
        notes = [message.text for message in offer.messages if "Slurm's own estimate" in message.text]
        assert len(notes) == 1, texts(offer)
        assert "this is an estimate, not a reservation" in notes[0]

    reserving = slurm_platforms("reserving")
    answer = await reserving.offers(request, user=USER)
    assert answer.result == "YES"
    assert not any("estimate" in message.text for offer in answer.offers for message in offer.messages)
