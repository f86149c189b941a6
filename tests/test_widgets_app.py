"""The composed app, driven as a user would (clicks and typed values), against real platforms:
record -> shopping list -> resources -> Find offers -> Accept -> the job COMPLETED; what blocks the
flow and how it says so; work in the background; the HTML fallback and the sidebar."""

from __future__ import annotations

from pathlib import Path

import pytest
from brokers import answer_no, answer_yes, run_broker, static_entry, write_platforms
from IPython.core.formatters import DisplayFormatter
from IPython.display import HTML
from sidecar import Sidecar
from widget_support import (  # noqa: F401 - fixture
    DATA,
    RUN_FOR,
    WAIT,
    book_and_cancel,
    click,
    make_planner,
    platforms,
    row_of,
    text_of,
    view_rows,
    wait_for,
)

from execplanner_widgets.widgets import PlannerApp, widgets_available
from execplanner_widgets.widgets import app as app_module

AGNPY = DATA / "agnpy"
BASKET = [
    {"name": "M87 images", "url": "https://data.example.org/m87/images.tar"},
    "https://data.example.org/m87/other.fits",
]


def test_the_whole_flow_from_record_to_a_completed_job(platforms):  # noqa: F811 - fixture
    app = PlannerApp(platforms.planner, record=AGNPY, basket=BASKET, poll=0.1)
    assert app.steps.selected_index == 0 and "local mode" in app.header.value
    assert "Pick an executable first" in app.offers.status.value

    click(app.executables, "pick:0")  # External Compton tutorial
    assert app.steps.selected_index == 1 and app.steps.titles[0] == "1. Executable: External Compton tutorial"
    assert app.steps.titles[1] == "2. Data: 1 still to find"

    app.shopping.rows[0].basket.value = 0  # "M87 images" from the basket
    assert app.shopping.complete and app.steps.titles[1] == "2. Data: complete"
    assert app.resources.source.data[0].location == "https://data.example.org/m87/images.tar"
    assert (
        app.offers.blocked == ""
        and app.request.summary() == "jupyter-notebook, 2-4 cores, 4 GiB memory, 20 GiB storage, 1h"
    )

    app.offers.find_button.click()
    assert app.offers.wait(WAIT)
    assert app.steps.titles[3] == "4. Offers: 3 offers"
    assert {result.platform: result.status for result in app.offers.results} == {
        "big": "YES", "small": "NO", "remote": "YES", "hostile": "NO", "down": "ERROR"
    }  # fmt: skip
    app.offers.select("remote")
    app.offers.accept_button.click()
    assert app.offers.wait(WAIT)
    assert app.steps.selected_index == 4 and app.job.platform == "remote"
    assert app.session is not None and app.session.uuid == app.offers.accepted.uuid
    wait_for(lambda: app.job.phase == "COMPLETED", RUN_FOR + WAIT, "the job to complete")
    assert "COMPLETED" in app.job.view.value and app.steps.titles[4] == "5. Job: COMPLETED"
    assert str(app.session.phase) == "COMPLETED"
    posted = [r.json() for r in platforms.remote.requests if r.method == "POST" and r.path.endswith("/requests")]
    assert posted[0]["data"][0]["location"] == "https://data.example.org/m87/images.tar"
    app.close()


def test_missing_data_blocks_the_flow_and_says_which(platforms):  # noqa: F811 - fixture
    app = PlannerApp(platforms.planner, record=AGNPY)
    app.executables.select("External Compton tutorial")
    app.steps.selected_index = 3
    app.offers.find_button.click()
    assert app.offers.busy is False and app.offers.results == []
    assert "Still to find: images (step 2)." in app.offers.status.value
    assert app.offers.request is None and app.offers.find_button.disabled
    assert platforms.remote.requests == []  # no platform was asked
    app.shopping.set_location("images", "/data/m87")
    assert app.offers.blocked == "" and not app.offers.find_button.disabled and app.offers.find() is True
    assert app.offers.wait(WAIT) and app.offers.answered == 5
    app.close()


def test_bad_units_block_the_flow_with_the_reason(platforms):  # noqa: F811 - fixture
    app = PlannerApp(platforms.planner, record=AGNPY)
    app.executables.select("Demo container")
    assert app.steps.selected_index == 2  # no data to find: straight to the resources
    app.resources.memory.minimum.value = "8 gigs"
    assert "unknown size unit 'gigs'" in app.resources.memory.message.value.replace("&#x27;", "'")
    assert app.offers.blocked.startswith("Correct the resources first (step 3): compute.memory: unknown size unit")
    assert app.steps.titles[2] == "3. Resources: needs attention"
    app.offers.find_button.click()
    assert app.offers.results == [] and "Correct the resources first" in app.offers.status.value
    app.resources.memory.minimum.value = "8Gi"
    assert app.offers.blocked == "" and app.request.min_memory == 8
    app.close()


def test_no_reasons_and_hostile_strings_show_as_text_in_the_app(platforms):  # noqa: F811 - fixture
    app = PlannerApp(
        platforms.planner,
        request={"executable": {"kind": "docker-container", "image": "x"}, "compute": {"cores": {"min": 2}}},
    )
    assert app.steps.selected_index == 2 and app.offers.blocked == ""
    app.offers.find()
    assert app.offers.wait(WAIT)
    assert "needs 2 cores; this platform has at most 1 cores" in row_of(app.offers, "small")["text"]
    hostile = row_of(app.offers, "hostile")
    click(app.offers, hostile["buttons"]["Details"])
    shown = [app.offers.table.value, app.offers.details.value, app._repr_html_(), app.snapshot_html()]
    for value in shown:
        assert (
            "<script>" not in value
            and "<img" not in value
            and "<b>Hostile</b>" not in value
            and "<b>no</b>" not in value
        )
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;Hostile&lt;/b&gt; &amp; co" in app.offers.table.value
    assert "&lt;b&gt;no&lt;/b&gt; room &lt;script&gt;alert(1)&lt;/script&gt;" in app.offers.details.value
    assert "&lt;b&gt;no&lt;/b&gt; room" in app._repr_html_()
    app.close()


def test_cancel_from_the_app_cancels_the_booking(platforms):  # noqa: F811 - fixture
    app = PlannerApp(
        platforms.planner, request={"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}}, poll=0.2
    )
    assert str(book_and_cancel(app, "big").phase) == "CANCELLED"
    app.close()


def test_find_offers_works_in_the_background(tmp_path: Path):
    """While a slow platform thinks, Find offers has returned, the fast answer is shown, and the
    progress says how many have answered."""
    with run_broker(answer_yes(delay=3.0)) as slow:
        path = write_platforms(
            tmp_path / "platforms.yaml",
            [static_entry("fast", title="Fast"), slow.entry("slow", title="Slow")],
            timeout=20,
        )
        planner = make_planner(path, tmp_path / "data")
        try:
            app = PlannerApp(planner, request={"executable": {"kind": "docker-container", "image": "x"}})
            assert app.offers.find() is True
            assert app.offers.busy is True  # the click handler returned; the work goes on
            wait_for(lambda: app.offers.answered == 1, WAIT, "the fast platform's answer")
            assert app.offers.busy is True and app.offers.results[0].platform == "fast"
            assert "answered 1 of 2" in app.offers.progress_text.value and app.offers.progress.value == 1
            assert app.steps.titles[3] == "4. Offers: answered 1 of 2"
            assert app.offers.find() is False  # one search at a time
            assert app.offers.wait(WAIT)
            assert app.offers.answered == 2 and app.offers.busy is False
            assert "answered 2 of 2: 2 YES" in app.offers.progress_text.value
            app.close()
        finally:
            planner.close()


# ------------------------------------------------------------------------------- how it shows


def test_without_a_kernel_the_app_falls_back_to_html(platforms):  # noqa: F811 - fixture
    app = PlannerApp(platforms.planner, record=AGNPY)
    assert widgets_available() is False
    shown = app.show()
    assert isinstance(shown, HTML)
    assert (
        "ExecPlanner" in shown.data
        and "External Compton tutorial" in shown.data
        and "Big static platform" in shown.data
    )
    data, _ = DisplayFormatter().format(app.offers)
    assert "application/vnd.jupyter.widget-view+json" in data  # a single step shows as a widget
    app.close()


def test_the_sidebar_is_a_sidecar_titled_execplanner(platforms, monkeypatch):  # noqa: F811 - fixture
    monkeypatch.setattr(app_module, "widgets_available", lambda: True)
    app = PlannerApp(platforms.planner, record=AGNPY)
    sidebar = app.show(sidebar=True)
    assert isinstance(sidebar, Sidecar) and sidebar.title == "ExecPlanner" and sidebar.anchor == "right"
    assert app.show(sidebar=True) is sidebar  # shown again in the same sidebar
    assert app.show() is app
    app.close()


def test_an_unreachable_planner_still_shows_an_app():
    class Unreachable:
        mode = "server"

        def describe_mode(self):
            raise ConnectionError("no server at http://127.0.0.1:1/")

        def platforms(self):
            raise ConnectionError("no server at http://127.0.0.1:1/")

    app = PlannerApp(Unreachable(), record=AGNPY)
    assert "cannot describe the planner" in app.header.value
    assert "Cannot list the platforms" in app._repr_html_()
    app.close()


def test_the_header_says_how_the_platforms_are_asked_in_words_not_runtime_files():
    """Bug 9: the header said "server mode: the ExecPlanner proxy ... runtime file of server pid 16581"."""

    class ServerPlanner:  # the real server-mode planner is tested in test_widgets_server.py; this is its description only
        mode = "server"
        server_url = "http://127.0.0.1:8888/"

        def describe_mode(self):
            return "server mode: the ExecPlanner proxy of the Jupyter server at http://127.0.0.1:8888/ (found via runtime file of server pid 16581, 4 platform(s))"

        def platforms(self):
            return []

    app = PlannerApp(ServerPlanner(), record=AGNPY)
    shown = text_of(app.header.value)
    assert shown.endswith("Asking the platforms through this Jupyter server (http://127.0.0.1:8888/).")
    assert "runtime file" not in shown and "runtime file of server pid 16581" in app.header.value  # on hover only
    app.close()


def test_the_offers_title_follows_the_table(platforms):  # noqa: F811 - fixture
    """Bug 3: the step title kept "Offers: 0 offers" (or any count) after the table cleared."""
    app = PlannerApp(platforms.planner, request={"executable": {"kind": "docker-container", "image": "x"}})
    app.offers.find()
    assert app.offers.wait(WAIT) and app.steps.titles[3].startswith("4. Offers: ") and "offer" in app.steps.titles[3]
    app.resources.cores.minimum.value = "2"  # a changed request clears the table
    assert app.offers.book.entries == [] and app.steps.titles[3] == "4. Offers"
    app.close()


def test_a_relative_data_path_is_read_from_the_notebooks_folder(platforms, tmp_path, monkeypatch):  # noqa: F811 - fixture
    """Bug 2: relative paths were resolved against the server's folder; the kernel's folder is the notebook's."""
    notebook_folder = tmp_path / "analysis"
    (notebook_folder / "data").mkdir(parents=True)
    (notebook_folder / "data" / "m87.fits").write_bytes(b"SIMPLE")
    monkeypatch.chdir(notebook_folder)
    app = PlannerApp(platforms.planner, record=AGNPY)
    app.executables.select("External Compton tutorial")
    app.shopping.set_location("images", "data/m87.fits")
    assert app.shopping.complete and app.shopping.rows[0].message.value == ""
    assert app.request.data[0].location == str(notebook_folder / "data" / "m87.fits")
    app.offers.find()
    assert app.offers.wait(WAIT)
    posted = [r.json() for r in platforms.remote.requests if r.method == "POST" and r.path.endswith("/requests")]
    assert posted[-1]["data"][0]["location"] == str(notebook_folder / "data" / "m87.fits")
    app.shopping.set_location("images", "data/missing.fits")  # a data problem is said as one, where it was typed
    assert (
        "no such file here" in app.shopping.rows[0].message.value
        and str(notebook_folder) in app.shopping.rows[0].message.value
    )
    app.close()


def test_when_the_platforms_cannot_reach_the_data_the_banner_says_so(tmp_path):
    """Bug 2: every platform said "cannot copy ... no such file" and the banner said "change the resources"."""
    with run_broker(answer_no("cannot copy /srv/images: no such file or directory")) as broker:
        path = write_platforms(tmp_path / "p.yaml", [broker.entry("remote", title="Remote")], timeout=10)
        planner = make_planner(path, tmp_path / "data")
        try:
            app = PlannerApp(planner, request={"executable": {"kind": "docker-container", "image": "x"}})
            app.offers.find()
            assert app.offers.wait(WAIT)
            assert "can reach the data as given" in app.offers.status.value and "step 2" in app.offers.status.value
            assert "change the resources" not in app.offers.status.value
            app.close()
        finally:
            planner.close()


def test_the_snapshot_for_exports_holds_the_offers_and_the_job(platforms, monkeypatch):  # noqa: F811 - fixture
    """Bug 8: an exported notebook showed nothing for the app; its static snapshot shows offers and job."""
    monkeypatch.setattr(app_module, "widgets_available", lambda: True)
    app = PlannerApp(
        platforms.planner, request={"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}}, poll=0.1
    )
    assert app.show() is app and app._snapshot is not None
    app.offers.find()
    assert app.offers.wait(WAIT)
    snapshot = app._snapshot_html
    assert 'class="execplanner-snapshot"' in snapshot and "Big static platform" in snapshot and "<svg" in snapshot
    assert "data-ep=" not in snapshot and "onclick" not in snapshot  # static: nothing to click in an export
    app.offers.select("remote")
    app.offers.accept()
    assert app.offers.wait(WAIT)
    wait_for(lambda: "COMPLETED" in app._snapshot_html, RUN_FOR + WAIT, "the snapshot to show the finished job")
    assert "execplanner-snapshot{display:none}" in app.header.value  # the live app hides it in JupyterLab
    app.close()


def test_my_bookings_lists_what_was_booked(platforms):  # noqa: F811 - fixture
    app = PlannerApp(
        platforms.planner, request={"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}}, poll=0.2
    )
    app.offers.find()
    assert app.offers.wait(WAIT)
    app.offers.select("big")
    app.offers.accept()
    assert app.offers.wait(WAIT)
    app.steps.selected_index = 5
    assert app.bookings.wait(WAIT)
    rows = view_rows(app.bookings.table.value)
    assert len(rows) == 1 and rows[0]["data-phase"] == "ACCEPTED" and app.offers.accepted.uuid in rows[0]["text"]
    assert set(rows[0]["buttons"]) >= {"Follow", "Cancel"}
    click(app.bookings, rows[0]["buttons"]["Cancel"])  # asks first
    assert app.bookings.confirm.layout.display == ""
    app.bookings.confirm.children[1].click()
    assert app.bookings.wait(WAIT)
    assert str(platforms.planner.session(app.offers.accepted, platform="big").phase) == "CANCELLED"
    assert view_rows(app.bookings.table.value)[0]["data-phase"] == "CANCELLED"
    app.close()


@pytest.mark.parametrize("bad", [{"executable": {"kind": ""}}, "no-such-file.json"])
def test_a_bad_starting_request_is_an_error_a_scientist_can_read(platforms, bad):  # noqa: F811 - fixture
    with pytest.raises(ValueError) as caught:
        PlannerApp(platforms.planner, request=bad)
    assert "Traceback" not in str(caught.value) and (
        "executable" in str(caught.value) or "no such file" in str(caught.value)
    )
