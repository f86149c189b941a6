"""A hub-backed platform served by a real ``jupyter server`` with the extension, used through the
kernel client (``Planner``) as the app uses it: the session document carries the web connector once
the session is AVAILABLE, a cancel stops the hub server, and neither the answers nor the server's
log contain the hub token. The browser test that clicks **Open** belongs to the widgets' tests; it
uses the same set-up (``hub_platform_entry``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest
from brokers import write_platforms
from hub_fixture import LiveHub, hub_platform_entry, live_hub_fixture  # noqa: F401 - the live_hub fixture
from jupyter_live import no_discovery_hints, run_jupyter_server

from execplanner_widgets import Planner
from execplanner_widgets.model import SessionPhase
from jupyter_server_extension.hosted.documents import WEB_CONNECTOR
from jupyter_server_extension.hosted.executors.jupyterhub.executor import server_name

pytestmark = pytest.mark.timeout(300)


def wait_for(planner: Planner, session: object, phase: SessionPhase, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while True:
        current = planner.session(session)
        if current.phase is phase:
            return current
        assert current.phase is not SessionPhase.FAILED, [item.text for item in current.messages]
        assert time.monotonic() < deadline, f"still {current.phase} after {timeout} s"
        time.sleep(0.5)


def test_the_app_sees_an_available_session_with_a_connector(live_hub: LiveHub, tmp_path: Path, monkeypatch):
    no_discovery_hints(monkeypatch, tmp_path)
    notebook = tmp_path / "analysis.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), notebook)
    platforms = write_platforms(
        tmp_path / "platforms.yaml", [hub_platform_entry(live_hub, "hub", owner="ada", local_roots=[str(tmp_path)])]
    )
    request = {
        "executable": {"kind": "jupyter-notebook", "location": str(notebook)},
        "compute": {"cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"duration": "PT10M"}},
    }
    with run_jupyter_server(tmp_path / "server", platforms) as server:
        answers = []
        with Planner(url=server.url, token=server.token) as planner:
            results = planner.offers(request)
            (result,) = results.yes
            answers.append(results)
            session = planner.accept(result.offers[0])
            uuid = session.meta.uuid
            available = wait_for(planner, session, SessionPhase.AVAILABLE)
            answers.append(available)
            (connector,) = [item for item in available.connectors if item.kind == WEB_CONNECTOR]
            assert connector.status == "AVAILABLE"
            assert connector.location == (
                f"{live_hub.url}user/ada/{server_name(uuid)}/lab/tree/execplanner/{uuid}/analysis.ipynb"
            )
            answers.append(planner.job(session))
            planner.cancel(session)
            cancelled = wait_for(planner, session, SessionPhase.CANCELLED)
            answers.append(cancelled)
            assert live_hub.wait_gone("ada", server_name(uuid))
        text = json.dumps([repr(item) for item in answers]) + server.log()
        assert live_hub.token not in text
