"""The app inside a real IPython kernel (jupyter_client, no browser): Find offers returns at once, the
kernel runs the next cell while a slow platform thinks, and the answers reach the front end as widget
updates sent from the background thread. This is what "never freezes the kernel" means in practice."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

import pytest
from brokers import answer_yes, run_broker, static_entry, write_platforms
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.timeout(180)

SLOW = 4.0  # seconds the slow platform takes to answer
BOUND = 60.0  # no wait in this module is longer


@pytest.fixture
def kernel(tmp_path: Path):
    manager, client = start_new_kernel(startup_timeout=BOUND, cwd=str(tmp_path))
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def run(client, code: str) -> dict[str, Any]:
    """Execute ``code``; return its stdout, errors, display data and how long the reply took."""
    started = time.monotonic()
    msg_id = client.execute(code)
    out: dict[str, Any] = {"stdout": "", "errors": [], "display": [], "comm": []}
    while True:
        message = client.get_iopub_msg(timeout=BOUND)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            out["stdout"] += content["text"]
        elif kind == "error":
            out["errors"].append("\n".join(content["traceback"]))
        elif kind == "display_data":
            out["display"].append(content["data"])
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=BOUND)
    out["status"] = reply["content"]["status"]
    out["seconds"] = time.monotonic() - started
    return out


def widget_update_with(client, text: str) -> dict[str, Any]:
    """The first comm update (from any thread) whose state mentions ``text``."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        try:
            message = client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if message["msg_type"] == "comm_msg" and text in str(message["content"]["data"].get("state", {})):
            return message
    raise AssertionError(f"no widget update mentioning {text!r} within {BOUND:g} s")


def test_find_offers_leaves_the_kernel_free_and_updates_the_front_end(kernel, tmp_path):
    with run_broker(answer_yes(delay=SLOW)) as slow:
        path = write_platforms(
            tmp_path / "platforms.yaml",
            [static_entry("fast", title="Fast"), slow.entry("slow", title="Slow")],
            timeout=30,
        )
        setup = run(
            kernel,
            "from execplanner_widgets import Planner\n"
            "from execplanner_widgets.widgets import PlannerApp, widgets_available\n"
            f"planner = Planner(platforms_file={str(path)!r}, mode='local', data_dir={str(tmp_path / 'data')!r})\n"
            "app = PlannerApp(planner, request={'executable': {'kind': 'docker-container', 'image': 'x'}})\n"
            "shown = app.show()\n"
            "print(widgets_available(), shown is app)\n",
        )
        assert setup["status"] == "ok", setup["errors"]
        assert setup["stdout"].split() == ["True", "True"], setup["stdout"][:3000]
        widget, snapshot = setup["display"][:2]  # the live app, and its static snapshot for exports
        assert "application/vnd.jupyter.widget-view+json" in widget
        assert "execplanner-snapshot" in snapshot["text/html"] and "ExecPlanner" in snapshot["text/html"]

        click = run(kernel, "app.offers.find_button.click()\nprint(app.offers.busy)")
        assert click["status"] == "ok" and click["stdout"].strip() == "True"
        assert click["seconds"] < SLOW  # the click handler did not wait for the slow platform
        meanwhile = run(kernel, "print(sum(range(10)), app.offers.answered < 2, app.offers.busy)")
        assert meanwhile["stdout"].split() == ["45", "True", "True"]  # another cell ran while asking

        update = widget_update_with(kernel, "answered 2 of 2: 2 YES")
        assert "2 offers" in str(update["content"]["data"]["state"])
        done = run(kernel, "app.offers.wait(30)\nprint(app.offers.answered, [r.platform for r in app.offers.results])")
        assert done["stdout"].split()[0] == "2" and "'slow'" in done["stdout"]
        run(kernel, "app.close(); planner.close()")


def test_ending_the_kernel_releases_the_offers_it_holds(tmp_path):
    """Bug 1: closing the kernel must release the user's unaccepted offers (REJECTED on the platform)."""
    with run_broker(answer_yes(offers=2)) as remote:
        path = write_platforms(tmp_path / "platforms.yaml", [remote.entry("remote", title="Remote")], timeout=30)
        manager, client = start_new_kernel(startup_timeout=BOUND, cwd=str(tmp_path))
        try:
            found = run(
                client,
                "from execplanner_widgets import Planner\n"
                "from execplanner_widgets.widgets import PlannerApp\n"
                f"planner = Planner(platforms_file={str(path)!r}, mode='local', data_dir={str(tmp_path / 'data')!r})\n"
                "app = PlannerApp(planner, request={'executable': {'kind': 'docker-container', 'image': 'x'}})\n"
                "app.offers.find(); app.offers.wait(30)\n"
                "print(len(app.offers.book.open_offers()))\n",
            )
            assert found["status"] == "ok", found["errors"]
            assert found["stdout"].split() == ["2"]
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=False)  # an ordinary shutdown, as JupyterLab's
        rejected = [
            r
            for r in remote.requests
            if r.method == "POST" and "/sessions/" in r.path and r.json().get("value") == "REJECTED"
        ]
        assert len(rejected) == 2
