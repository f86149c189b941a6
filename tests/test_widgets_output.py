"""A running job shows the tail of its output: a hosted platform runs a real script that prints,
``GET .../sessions/{uuid}/log?tail=N`` serves the end of its stdout and stderr to the session's owner
only (no link is followed), ``Planner.log`` reads it in both modes, and the job view shows it."""

from __future__ import annotations

import os

import httpx
import pytest
from brokers import write_platforms
from jupyter_live import no_discovery_hints, run_jupyter_server
from widget_support import WAIT, wait_for

from execplanner_widgets import Planner
from execplanner_widgets.widgets import JobMonitor

pytestmark = pytest.mark.timeout(240)

SCRIPT = """
import sys, time
for step in range(1, 400):
    print(f"step {step} <b>of</b> 400", flush=True)
    if step == 5:
        print("warning: slow", file=sys.stderr, flush=True)
    time.sleep(0.05)
"""

BOX = [{"name": "box", "title": "Box", "hosted": {"cores": 2, "memory": 2}}]


def start(planner: Planner, script) -> object:
    request = {
        "executable": {"kind": "python-script", "location": str(script)},
        "compute": {"cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"duration": "PT5M"}},
    }
    (result,) = planner.offers(request).yes
    return planner.accept(result.offers[0])


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "count.py"
    path.write_text(SCRIPT)
    return path


def test_the_job_view_shows_the_output_tail_through_the_server(tmp_path, monkeypatch, script):
    no_discovery_hints(monkeypatch, tmp_path)
    with run_jupyter_server(tmp_path / "server", write_platforms(tmp_path / "platforms.yaml", BOX)) as server:
        with Planner(url=server.url, token=server.token) as planner:
            session = start(planner, script)
            monitor = JobMonitor(planner, session, platform="box", poll=0.2)
            wait_for(lambda: "step 8 " in monitor.output, WAIT, "the output tail in the job view")
            assert "--- stderr ---" in monitor.output and "warning: slow" in monitor.output
            assert "Output (last lines)" in monitor.view.value and "&lt;b&gt;of&lt;/b&gt;" in monitor.view.value
            assert len(planner.log(session, tail=3).splitlines()) <= 3 + 2
            url = f"{server.url}execplanner/api/platforms/box/sessions/{session.uuid}/log"
            assert httpx.get(url, timeout=10).status_code == 403  # authenticated
            auth = {"Authorization": f"token {server.token}"}
            bad = httpx.get(url, params={"tail": "all"}, headers=auth, timeout=10)
            assert bad.status_code == 400 and bad.json()["field"] == "tail"
            assert (
                httpx.get(
                    url.replace(session.uuid, "0" * 8 + "-0000-4000-8000-" + "0" * 12), headers=auth, timeout=10
                ).status_code
                == 404
            )
            monitor.cancel()
            assert monitor.wait(WAIT)
            monitor.close()


def test_output_in_local_mode_and_no_link_is_followed(tmp_path, monkeypatch, script):
    no_discovery_hints(monkeypatch, tmp_path)
    with Planner(write_platforms(tmp_path / "platforms.yaml", BOX), data_dir=tmp_path / "state") as planner:
        session = start(planner, script)
        wait_for(lambda: "step 3 " in planner.log(session), WAIT, "output in local mode")
        planner.cancel(session)
        stdout = tmp_path / "state"
        found = [path for path in stdout.rglob("stdout.txt") if session.uuid in str(path)]
        assert found, "the run's stdout file"
        secret = tmp_path / "secret.txt"
        secret.write_text("do not show me\n")
        found[0].unlink()
        os.symlink(secret, found[0])  # what user code could do to its own results folder
        assert "do not show me" not in planner.log(session)
        with pytest.raises(ValueError, match="tail"):
            planner.log(session, tail=0)


RESULTS_SCRIPT = """
import os, pathlib
out = pathlib.Path(os.environ["EXECPLANNER_OUTPUTS"])
out.mkdir(parents=True, exist_ok=True)
(out / "groups.csv").write_text("group,stars\\n<b>A</b>,12\\nB,7\\n")
(out / "plot.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script><rect width="10" height="10"/></svg>')
"""


def test_results_are_previewed_in_place(tmp_path, monkeypatch):
    no_discovery_hints(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "make.py"
    script.write_text(RESULTS_SCRIPT)
    with Planner(write_platforms(tmp_path / "platforms.yaml", BOX), data_dir=tmp_path / "state") as planner:
        session = planner.wait(start(planner, script), timeout=120)
        assert str(session.phase) == "COMPLETED", session.messages
        monitor = JobMonitor(planner, session, platform="box")
        names = [item.id for item in session.results]
        csv_index = next(i for i, name in enumerate(names) if name.endswith("groups.csv"))
        svg_index = next(i for i, name in enumerate(names) if name.endswith("plot.svg"))
        assert f'data-ep="preview:{csv_index}"' in monitor.view.value  # a Preview button per result
        monitor.channel.box.value = f"preview:{csv_index}|1"
        assert monitor.wait_preview(WAIT)
        preview = monitor.preview.value
        assert "<table" in preview and "&lt;b&gt;A&lt;/b&gt;" in preview and "<b>A</b>" not in preview
        assert (tmp_path / "results").is_dir()  # saved next to the notebook
        monitor.show_result(svg_index)
        assert monitor.wait_preview(WAIT)
        assert 'src="data:image/svg+xml;base64,' in monitor.preview.value and "<script" not in monitor.preview.value
        monitor.close()
