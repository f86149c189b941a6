"""``Planner.download`` fetches a finished session's results through the server (token only to the
server's origin), as it copies them in local mode: a hosted platform runs a real script."""

from __future__ import annotations

import pytest
from brokers import write_platforms
from jupyter_live import no_discovery_hints, run_jupyter_server

from execplanner_widgets import Planner, PlannerError
from execplanner_widgets.model import ResultItem

SCRIPT = """
import os, pathlib
out = pathlib.Path(os.environ["EXECPLANNER_OUTPUTS"])
out.mkdir(parents=True, exist_ok=True)
(out / "answer.txt").write_text("42\\n")
print("done")
"""

pytestmark = pytest.mark.timeout(240)


def request_for(script) -> dict:
    return {
        "executable": {"kind": "python-script", "location": str(script)},
        "compute": {"cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"duration": "PT5M"}},
    }


def book_and_run(planner: Planner, script) -> object:
    results = planner.offers(request_for(script))
    (result,) = results.yes
    session = planner.accept(result.offers[0])
    return planner.wait(session, timeout=120)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "answer.py"
    path.write_text(SCRIPT)
    return path


def test_download_through_the_server(tmp_path, monkeypatch, script):
    no_discovery_hints(monkeypatch, tmp_path)
    platforms = write_platforms(
        tmp_path / "platforms.yaml", [{"name": "box", "title": "Box", "hosted": {"cores": 2, "memory": 2}}]
    )
    with run_jupyter_server(tmp_path / "server", platforms) as server:
        with Planner(url=server.url, token=server.token) as planner:
            session = book_and_run(planner, script)
            assert str(session.phase) == "COMPLETED", session.messages
            answer = next(item for item in session.results if item.id.endswith("answer.txt"))
            assert answer.url.startswith(server.url)  # made absolute for the kernel
            path = planner.download(answer, to=tmp_path / "got")
            assert path.read_text() == "42\n"
            foreign = ResultItem(id="x", url="http://127.0.0.2:9/steal")
            with pytest.raises(PlannerError, match="refusing to download"):
                planner.download(foreign, to=tmp_path / "got")


def test_download_in_local_mode(tmp_path, monkeypatch, script):
    no_discovery_hints(monkeypatch, tmp_path)
    platforms = write_platforms(
        tmp_path / "platforms.yaml", [{"name": "box", "title": "Box", "hosted": {"cores": 2, "memory": 2}}]
    )
    with Planner(platforms, data_dir=tmp_path / "state") as planner:
        session = book_and_run(planner, script)
        answer = next(item for item in session.results if item.id.endswith("answer.txt"))
        assert answer.url.startswith("file://")
        assert planner.download(answer, to=tmp_path / "got").read_text() == "42\n"
        with pytest.raises(PlannerError, match="results are files on this machine"):
            planner.download("https://example.org/x", to=tmp_path / "got")
