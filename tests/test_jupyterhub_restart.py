"""The platform's server stops while a hub session is AVAILABLE, killed (SIGKILL) or shut down
cleanly (``HostedPlatform.aclose``): the notebook server on the hub keeps running, and the next
platform server takes the session over (``adopt``; at once after a clean shutdown), keeps it until
its slot ends, then brings the notebook back and stops the hub server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from brokers import write_platforms
from hub_fixture import LiveHub, executor_options, hub_platform_entry, live_hub_fixture  # noqa: F401 - live_hub
from jupyter_live import LiveServer, run_jupyter_server
from test_hosted_support import eventually, request_document

from execplanner_widgets.core.platform import PlatformContext
from execplanner_widgets.model import SessionPhase, parse_request
from jupyter_server_extension.hosted.executors.jupyterhub.executor import server_name
from jupyter_server_extension.hosted.platform import HostedPlatform

pytestmark = pytest.mark.timeout(300)


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _phase(server: LiveServer, uuid: str, phase: str) -> dict | None:
    session = server.get(f"execplanner/platforms/hub/sessions/{uuid}").json()
    assert session["phase"] != "FAILED", [item["message"] for item in session["meta"]["messages"]]
    return session if session["phase"] == phase else None


def test_a_killed_platform_server_leaves_the_hub_session_to_the_next_one(live_hub: LiveHub, tmp_path: Path):
    notebook = tmp_path / "analysis.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), notebook)
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        [hub_platform_entry(live_hub, "hub", owner="ada", offers=1, local_roots=[str(tmp_path)])],
    )
    request = {
        "executable": {"kind": "jupyter-notebook", "location": str(notebook)},
        "compute": {"cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"duration": "PT32S"}},
    }
    root = tmp_path / "server"
    with run_jupyter_server(root, platforms, base_url="/") as first:
        answer = first.post("execplanner/platforms/hub/direct", json=request)
        assert answer.status_code == 200, answer.text
        uuid = answer.json()["meta"]["uuid"]
        server = server_name(uuid)
        _wait(lambda: _phase(first, uuid, "AVAILABLE"), 120, "the session to become AVAILABLE")
        os.kill(first.pid, signal.SIGKILL)
        _wait(
            lambda: not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE,
            10,
            "the server to die",
        )
    assert live_hub.servers("ada")[server]["ready"], "the hub server outlives the platform's server"

    with run_jupyter_server(root, platforms, base_url="/") as second:
        still = _wait(lambda: _phase(second, uuid, "AVAILABLE"), 30, "the session to be seen")
        assert any(item["kind"] == "urn:execplanner:connector:web" for item in still["connectors"])
        done = _wait(lambda: _phase(second, uuid, "COMPLETED"), 120, "the slot to end")
        texts = [item["message"] for item in done["meta"]["messages"]]
        assert any("still runs" in text for text in texts), texts
        assert any(item["id"] == "analysis.ipynb" for item in done["results"])
        assert live_hub.wait_gone("ada", server)
        assert live_hub.token not in second.log() and live_hub.token not in str(done)


@pytest.mark.asyncio
async def test_a_clean_shutdown_leaves_the_hub_session_available_for_the_next_server(live_hub: LiveHub, tmp_path: Path):
    notebook = tmp_path / "analysis.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), notebook)
    options = {
        "executor": "jupyterhub",
        "cores": 4,
        "memory": 8,
        "offers": 1,
        "local_roots": [str(tmp_path)],
        "jupyterhub": executor_options(live_hub),
    }
    request = parse_request(request_document(notebook, kind="jupyter-notebook", duration="PT45S"))

    def platform() -> HostedPlatform:
        return HostedPlatform.from_config("hubby", "hub", options, PlatformContext(data_dir=tmp_path / "state"))

    async def phase(target: HostedPlatform, uuid: str, wanted: SessionPhase):
        session = await target.session(uuid, user="ada")
        assert session.phase is not SessionPhase.FAILED, [item.text for item in session.messages]
        return session if session.phase is wanted else None

    first = platform()
    try:
        answer = await first.offers(request, user="ada")
        uuid = answer.offers[0].meta.uuid
        server = server_name(uuid)
        await first.accept(uuid, user="ada")
        await eventually(lambda: phase(first, uuid, SessionPhase.AVAILABLE), timeout=120)
    finally:
        await first.aclose()  # a clean shutdown of the Jupyter server
    assert live_hub.servers("ada")[server]["ready"], "a clean shutdown leaves the notebook server running"

    second = platform()
    try:
        began = time.monotonic()
        texts = lambda session: [item.text for item in session.messages]  # noqa: E731

        async def taken_over():
            session = await second.session(uuid, user="ada")
            return session if any("still runs" in text for text in texts(session)) else None

        still = await eventually(taken_over, timeout=20)
        assert time.monotonic() - began < 20  # at once, not after the 45 s heartbeat
        assert still.phase is SessionPhase.AVAILABLE
        assert any("this server shut down; the run goes on" in text for text in texts(still))
        done = await eventually(lambda: phase(second, uuid, SessionPhase.COMPLETED), timeout=120)
        assert any(item.id == "analysis.ipynb" for item in done.results)
        assert live_hub.wait_gone("ada", server)
    finally:
        await second.aclose()
