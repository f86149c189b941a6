"""A server killed with SIGKILL during a run: the next server hands the run to the executor's ``adopt``.

Real ``jupyter server`` processes on 127.0.0.1 sharing one SQLite file: the first books a script that
sleeps far longer than it takes to kill the server, and is killed (-9) while it runs. The script keeps
running as an orphan. The second server sees at once that the runner's process is gone (same host,
dead pid; no 45 s wait for the heartbeat), and the subprocess executor stops the orphan's process
group and fails the session with a message that says so.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil
import pytest
from jupyter_live import run_jupyter_server
from test_hosted_support import DATA, eventually, request_document, write_platforms

from execplanner_widgets.core.platform import PlatformContext
from execplanner_widgets.model import SessionPhase, parse_request
from jupyter_server_extension.hosted.platform import HostedPlatform

pytestmark = pytest.mark.slow


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_run_orphaned_by_a_killed_server_is_stopped_by_the_next_one(tmp_path):
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        # without isolation: an isolated run dies with the server (test_isolation.py checks that)
        [
            {
                "name": "local",
                "hosted": {"cores": 2, "memory": 2, "offers": 1, "executor": "subprocess", "isolation": "none"},
            }
        ],
    )
    root = tmp_path / "server"
    request = request_document(DATA / "sleep_long.py", duration="PT5M")
    with run_jupyter_server(root, platforms, base_url="/") as first:
        answer = first.post("execplanner/platforms/local/direct", json=request)
        assert answer.status_code == 200, answer.text
        uuid = answer.json()["meta"]["uuid"]
        pid_file = root / "state" / "hosted" / "local" / uuid / "work" / "outputs" / "pid.txt"
        _wait(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "the script to start")
        orphan = int(pid_file.read_text())
        os.kill(first.pid, signal.SIGKILL)
        _wait(lambda: not _running(first.pid), 10, "the server to die")
    assert _running(orphan), "the script should outlive a killed server (that is what adopt is for)"

    started = time.monotonic()
    with run_jupyter_server(root, platforms, base_url="/") as second:

        def failed() -> dict | None:
            session = second.get(f"execplanner/platforms/local/sessions/{uuid}").json()
            return session if session["phase"] == "FAILED" else None

        session = _wait(failed, 40, "the session to fail")
        assert time.monotonic() - started < 40  # noticed from the dead pid, not after the heartbeat timeout
        texts = [item["message"] for item in session["meta"]["messages"]]
        assert any("takes the run over" in text for text in texts), texts
        assert any("the server restarted during the run; its 1 process(es) were stopped" in text for text in texts), (
            texts
        )
        _wait(lambda: not _running(orphan), 10, "the orphan to be stopped")
        headers = {"Authorization": f"token {second.token}", "Accept": "application/json"}
        job = httpx.get(f"{second.url}execplanner/platforms/local/jobs/{uuid}", headers=headers, timeout=30).json()
        assert job["phase"] == "ERROR" and "server restarted" in job["errorSummary"]["message"]
        assert job["errorSummary"]["type"] == "transient"  # not the user's code's fault: booking again may work


@pytest.mark.asyncio
async def test_a_clean_shutdown_still_stops_subprocess_runs(tmp_path):
    """The subprocess executor's runs cannot outlive the server (no ``survives_restart``): a clean
    shutdown stops them and ends their sessions FAILED, unlike Slurm's and JupyterHub's runs
    (tests/test_slurm_phases.py, tests/test_jupyterhub_restart.py), which are detached."""
    options = {"cores": 2, "memory": 2, "offers": 1, "executor": "subprocess", "isolation": "none"}
    options["local_roots"] = [str(DATA)]

    def platform() -> HostedPlatform:
        return HostedPlatform.from_config("local", "local", options, PlatformContext(data_dir=tmp_path / "state"))

    first = platform()
    try:
        answer = await first.offers(parse_request(request_document(DATA / "sleep_long.py", duration="PT5M")))
        uuid = answer.offers[0].meta.uuid
        await first.accept(uuid)
        pid_file = first.session_dir(uuid) / "work" / "outputs" / "pid.txt"

        async def started() -> bool:
            return pid_file.exists() and bool(pid_file.read_text().strip())

        await eventually(started, 60)
        pid = int(pid_file.read_text())
    finally:
        await first.aclose()
    assert not _running(pid), "a clean shutdown stops the subprocess run"
    second = platform()
    try:
        session = await second.session(uuid)
        assert session.phase is SessionPhase.FAILED
        assert any("the platform shut down during the run" in item.text for item in session.messages)
        assert not any("the run goes on" in item.text for item in session.messages)
    finally:
        await second.aclose()
