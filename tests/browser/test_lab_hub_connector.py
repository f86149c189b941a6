"""Issue 14 in a real browser: a notebook server booked on a real JupyterHub, opened from the app.

Everything is real: a JupyterHub on 127.0.0.1 (``tests/hub_fixture.py``: ``DummyAuthenticator``,
``SimpleLocalProcessSpawner``), ``jupyter lab`` with the ExecPlanner extension serving one hosted
platform whose executor is that hub, and headless Chromium. In JupyterLab a notebook shows the planner
app started from a request (a small notebook, 1 core, 3 minutes, as soon as possible); the test clicks
**Find offers**, **Select** and **Accept** on the hub's offer, waits until the job view shows the
session AVAILABLE with the time left and an **Open** button, and clicks it. A new tab opens at the hub's
login page; the test signs in as the hub user the platform maps the lab's owner to (``ada``) and lands
in JupyterLab on the hub, with the booked notebook open. The hub's API token must not appear anywhere in
the app's page, in the hub page or in the lab server's log. The booking is then cancelled from the app
and the hub server goes away.

With ``EXECPLANNER_SCREENSHOTS=docs/images`` the app with the **Open** button is saved as
``app-hub-open.png`` there; otherwise into the test's temporary folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from brokers import write_platforms
from hub_fixture import LiveHub, hub_platform_entry, live_hub_fixture  # noqa: F401 - the live_hub fixture
from lab_driver import IDLE, JOB_MS, OFFERS_MS, PAGE_LOAD_MS, AppView, LabPage, evidence_on_failure, expect, run_lab

from jupyter_server_extension.hosted.executors.jupyterhub.executor import server_name

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

REPOSITORY = Path(__file__).resolve().parents[2]
#: The notebook booked on the hub, and the one in the lab that books it.
BOOKED = "hub-analysis.ipynb"
DRIVER = "book-on-the-hub.ipynb"
MARKER = "Booked on the hub by the browser test"
#: Without a kernel in its metadata, JupyterLab asks which one (a dialog the test would have to answer).
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
#: A single-user server on a busy 2-core machine: the hub starts it, the executor stages the notebook.
AVAILABLE_MS = 180_000


def write_notebooks(folder: Path) -> None:
    """The notebook to book (with a line to recognise it by on the hub) and the notebook showing the
    app, started from a request for that notebook: 1 core, 1 GiB, 3 minutes, no start (= now)."""
    booked = folder / BOOKED
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_markdown_cell(f"# {MARKER}"), nbformat.v4.new_code_cell("1 + 1")],
            metadata={"kernelspec": KERNEL},
        ),
        booked,
    )
    request = {
        "executable": {"kind": "jupyter-notebook", "location": str(booked), "name": "Hub analysis"},
        "compute": {"cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"duration": "PT3M"}},
    }
    source = (
        f"from execplanner_widgets import Planner\nrequest = {request!r}\napp = Planner().app(request=request)\napp"
    )
    driver = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)], metadata={"kernelspec": KERNEL})
    nbformat.write(driver, folder / DRIVER)


def book_on_the_hub(app: AppView) -> Any:
    """Steps 4 and 5: find offers (one platform, the hub), book its first offer; returns the job step."""
    expect(app.step_title(3)).to_contain_text("1 core, 1 GiB memory")  # the form took the request's resources
    app.open_step(4, "Offers")
    offers = app.step(4)
    app.button("Find offers", offers).click()
    expect(offers.get_by_text(re.compile(r"^answered 1 of 1: \d+ YES"))).to_be_visible(timeout=OFFERS_MS)
    first = app.offer_rows("hub").first
    expect(first).to_contain_text("YES")
    app.button("Select", first).click()
    expect(first).to_have_attribute("data-state", "SELECTED")
    app.button("Accept", first).click()
    job = app.step(5)
    expect(job).to_be_visible()  # the app opened the job step by itself
    expect(job).to_contain_text("on hub")
    return job


def sign_in_to_the_hub(page: Any, hub: LiveHub, user: str) -> None:
    """The hub's own login form (DummyAuthenticator: any allowed user, the shared password)."""
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(hub.password)
    page.locator("input[name=password]").press("Enter")


def test_open_a_booked_hub_server_from_the_app(live_hub: LiveHub, context: Any, tmp_path: Path, images: Path) -> None:
    root = tmp_path / "lab"
    platforms = write_platforms(
        tmp_path / "platforms.yaml", [hub_platform_entry(live_hub, "hub", owner="ada", local_roots=[str(tmp_path)])]
    )
    with run_lab(root, platforms) as (server, notebooks):
        write_notebooks(notebooks)
        page = context.new_page()
        with evidence_on_failure(page, server, tmp_path, "hub"):
            lab = LabPage.open(page, server, DRIVER)
            lab.run_cells_through(0)
            app = lab.app_in_cell(0)
            expect(app.root).to_contain_text("Asking the platforms through this Jupyter server")
            job = book_on_the_hub(app)

            open_link = job.locator("a.ep-open")
            expect(open_link).to_be_visible(timeout=AVAILABLE_MS)
            expect(job.locator(".ep-phase")).to_have_text("AVAILABLE")
            expect(job.locator(".ep-timing")).to_have_text(re.compile(r"^\d+ (min|s) left$"))
            uuid = job.locator(".ep-job code").first.inner_text().strip()
            href = open_link.get_attribute("href") or ""
            hub_server = f"{live_hub.url}user/ada/{server_name(uuid)}/"
            assert href.startswith(hub_server), f"Open leads to {href}, not to ada's server {hub_server} on the hub"
            assert href.endswith(f"/lab/tree/execplanner/{uuid}/{BOOKED}"), f"Open does not open the notebook: {href}"
            assert open_link.get_attribute("target") == "_blank"
            app.screenshot(images / "app-hub-open.png")
            app_html = page.content()

            with context.expect_page(timeout=PAGE_LOAD_MS) as opened:
                open_link.click()
            hub_page = opened.value
            hub_page.set_default_timeout(PAGE_LOAD_MS)
            with evidence_on_failure(hub_page, server, tmp_path, "hub-page"):
                # a fresh profile: the hub asks who this is before it lets anyone into ada's server
                hub_page.locator("input[name=username]").wait_for(timeout=PAGE_LOAD_MS)
                assert "/hub/login" in hub_page.url, f"the hub did not ask for a login: {hub_page.url}"
                sign_in_to_the_hub(hub_page, live_hub, "ada")
                hub_page.wait_for_url("**/lab/tree/**", timeout=PAGE_LOAD_MS)
                assert hub_page.url.split("?")[0] == href, f"after the login the hub went to {hub_page.url}"
                panel = hub_page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
                expect(panel).to_be_visible(timeout=PAGE_LOAD_MS)
                expect(
                    hub_page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabLabel")
                ).to_have_text(BOOKED, timeout=PAGE_LOAD_MS)
                expect(panel.get_by_role("heading", name=MARKER)).to_be_visible(timeout=PAGE_LOAD_MS)
                # a working server: the notebook's kernel starts there (no kernel dialog, the kernelspec says which)
                hub_page.get_by_text(IDLE, exact=True).wait_for(timeout=PAGE_LOAD_MS)
                hub_html = hub_page.content()
                hub_page.close()

            # back in the app: cancel from the job view (with its confirmation); the hub server goes
            app.button("Cancel", job).click()
            app.button("Yes, cancel", job).click()
            assert app.final_phase(JOB_MS) == "CANCELLED"
            assert live_hub.wait_gone("ada", server_name(uuid), timeout=60)
            app_html += page.content()
            assert lab.dialogs == [], f"the page opened dialogs: {lab.dialogs}"

        assert live_hub.token not in app_html, "the hub's API token reached the app's page"
        assert live_hub.token not in hub_html, "the hub's API token reached the hub server's page"
        assert live_hub.token not in server.log(), "the hub's API token is in the lab server's log"
