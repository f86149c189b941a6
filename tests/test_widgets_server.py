"""The same app through the Jupyter server's proxy (server mode): a real ``jupyter server`` process with
the extension, platforms behind it on 127.0.0.1, the kernel client calling it with ``httpx``."""

from __future__ import annotations

import pytest
from brokers import answer_no, answer_yes, run_broker, static_entry, write_platforms
from jupyter_live import run_jupyter_server
from widget_support import HOSTILE_REASON, HOSTILE_TITLE, RUN_FOR, WAIT, book_and_cancel, row_of, wait_for

from execplanner_widgets.widgets import PlannerApp

pytestmark = pytest.mark.timeout(240)

REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "analysis.ipynb"}, "compute": {"cores": {"min": 2}}}


@pytest.fixture(scope="module")
def server_planner(tmp_path_factory):
    from execplanner_widgets import Planner

    root = tmp_path_factory.mktemp("widgets-server")
    with run_broker(answer_yes(offers=2, run_for=RUN_FOR)) as remote, run_broker(answer_no(HOSTILE_REASON)) as hostile:
        path = write_platforms(
            root / "platforms.yaml",
            [
                static_entry("big", title="Big static platform"),
                static_entry("small", title="Small static platform", cores=1, memory=2),
                remote.entry("remote", title="Remote broker"),
                hostile.entry("hostile", title=HOSTILE_TITLE),
            ],
            timeout=10,
        )
        with run_jupyter_server(root / "server", path) as live:
            planner = Planner(url=live.url, token=live.token)
            try:
                yield planner
            finally:
                planner.close()


def test_the_app_books_and_follows_a_job_through_the_server(server_planner):
    assert server_planner.mode == "server"
    app = PlannerApp(server_planner, request=REQUEST, poll=0.2)
    assert "server" in app.header.value
    app.offers.find_button.click()
    assert app.offers.wait(WAIT)
    assert app.offers.error == ""
    assert {result.platform: result.status for result in app.offers.results} == {
        "big": "YES",
        "small": "NO",
        "remote": "YES",
        "hostile": "NO",
    }
    assert "answered 4 of 4" in app.offers.progress_text.value
    assert "needs 2 cores" in row_of(app.offers, "small")["text"]
    table = app.offers.table.value
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in table and "<script>" not in table
    assert "&lt;b&gt;no&lt;/b&gt; room" in table and "<b>no</b>" not in table
    app.offers.select("remote", 1)
    app.offers.accept_button.click()
    assert app.offers.wait(WAIT) and app.job.platform == "remote"
    wait_for(lambda: app.job.phase == "COMPLETED", RUN_FOR + WAIT, "the job to complete through the server")
    assert "COMPLETED" in app.job.view.value
    app.close()


def test_cancel_through_the_server(server_planner):
    app = PlannerApp(server_planner, request=REQUEST, poll=0.2)
    assert str(book_and_cancel(app, "big").phase) == "CANCELLED"
    app.close()
