"""My bookings: ``Planner.bookings()`` and the app's My bookings section list the user's sessions on
every platform, kept by the server (server mode) or the data folder (local mode), so a booking made
from another kernel, or before a kernel restart, is listed with its phase as the platform reports it.

Two ``Planner`` objects stand for two kernels: each has its own connection and its own memory of
offers; only the server (or the data folder) is shared. The server is a real ``jupyter server``."""

from __future__ import annotations

import json

import httpx
import pytest
from brokers import answer_yes, run_broker, static_entry, write_platforms
from jupyter_live import run_jupyter_server
from widget_support import RUN_FOR, WAIT, click, make_planner, view_rows, wait_for

from execplanner_widgets import Planner
from execplanner_widgets.widgets import PlannerApp

pytestmark = pytest.mark.timeout(240)

REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "analysis.ipynb"}, "compute": {"cores": {"min": 1}}}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("bookings-server")
    with run_broker(answer_yes(offers=2, run_for=RUN_FOR)) as remote:
        path = write_platforms(
            root / "platforms.yaml",
            [static_entry("big", title="Big static platform"), remote.entry("remote", title="Remote broker")],
            timeout=10,
        )
        with run_jupyter_server(root / "server", path) as server:
            yield server


def test_a_booking_made_in_another_kernel_is_listed_with_its_phase(live):
    first = Planner(url=live.url, token=live.token)  # "kernel 1"
    try:
        offer = next(result for result in first.offers(REQUEST) if result.platform == "remote").offers[0]
        booked = first.accept(offer)
    finally:
        first.close()
    second = Planner(url=live.url, token=live.token)  # "kernel 2", started after kernel 1 ended
    try:
        listed = second.bookings()
        assert [(entry.platform, entry.uuid) for entry in listed][:1] == [("remote", booked.uuid)]
        assert listed[0].title == "Remote broker" and listed[0].session is not None and listed[0].error is None
        wait_for(
            lambda: str(second.bookings()[0].session.phase) == "COMPLETED",
            RUN_FOR + WAIT,
            "the phase as the platform says",
        )
        assert "Remote broker" in listed._repr_html_() and "data-ep" not in listed._repr_html_()
        app = PlannerApp(second)
        app.steps.selected_index = 5  # opening My bookings reads the list
        assert app.bookings.wait(WAIT)
        rows = view_rows(app.bookings.table.value)
        assert rows[0]["data-phase"] == "COMPLETED" and booked.uuid in rows[0]["text"]
        click(app.bookings, rows[0]["buttons"]["Follow"])  # follow it in the job step
        assert app.job.session.uuid == booked.uuid and app.steps.selected_index == 4
        app.close()
    finally:
        second.close()


def test_the_bookings_route_is_authenticated_and_described(live):
    answer = httpx.get(live.url + "execplanner/api/bookings", timeout=10)
    assert answer.status_code == 403
    answer = httpx.get(
        live.url + "execplanner/api/bookings", headers={"Authorization": f"token {live.token}"}, timeout=10
    )
    assert answer.status_code == 200 and isinstance(answer.json(), list)
    described = httpx.get(
        live.url + "execplanner/api/openapi.json", headers={"Authorization": f"token {live.token}"}, timeout=10
    ).json()
    assert described["paths"]["/bookings"]["get"]["operationId"] == "listBookings"


def test_local_mode_keeps_the_list_in_the_data_folder(tmp_path):
    path = write_platforms(tmp_path / "platforms.yaml", [static_entry("big", title="Big static platform")], timeout=10)
    first = make_planner(path, tmp_path / "data")
    try:
        booked = first.accept(first.offers(REQUEST)[0].offers[0])
        listed = first.bookings()
        assert [entry.uuid for entry in listed] == [booked.uuid] and str(listed[0].session.phase) == "ACCEPTED"
        first.cancel(booked, platform="big")
        assert str(first.bookings()[0].session.phase) == "CANCELLED"
    finally:
        first.close()
    second = make_planner(path, tmp_path / "data")  # a new kernel on the same data folder
    try:
        listed = second.bookings()  # still listed; a static platform keeps its sessions in memory only, and says so
        assert (
            [entry.uuid for entry in listed] == [booked.uuid]
            and listed[0].session is None
            and booked.uuid in listed[0].error
        )
        assert "Big static platform" in listed._repr_html_()
    finally:
        second.close()
    stored = json.loads((tmp_path / "data" / "bookings.json").read_text())
    assert [entry["uuid"] for entries in stored.values() for entry in entries] == [booked.uuid]
