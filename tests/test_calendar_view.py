"""The booking calendar: "when can I do this?" at a glance, through the proxy and the client."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from brokers import static_entry, write_platforms
from tornado.httpclient import HTTPClientError

from execplanner_widgets.html import calendar_html
from execplanner_widgets.model.platform import Calendar

BUSY = {
    "name": "busy",
    "title": "Busy <b>platform</b>",
    "hosted": {
        "cores": 100,
        "memory": 200,
        "reservations": [
            {"name": "first", "start": "PT1H", "duration": "PT2H", "cores": 80, "memory": 150},
            {"name": "second", "start": "PT5H", "duration": "PT1H", "cores": 100, "memory": 200},
        ],
    },
}


@pytest.fixture
def jp_server_config(tmp_path):
    platforms = write_platforms(tmp_path / "platforms.yaml", [BUSY, static_entry("static")], timeout=10)
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_server_extension": True}},
        "ExecPlanner": {"platforms_file": str(platforms), "data_dir": str(tmp_path / "data")},
    }


async def test_calendar_route_shows_reservations_as_steps(jp_fetch):
    response = await jp_fetch("execplanner", "api", "platforms", "busy", "calendar", params={"hours": "8"})
    calendar = Calendar.model_validate(json.loads(response.body))
    assert calendar.capacity == {"cores": 100, "memory": 200, "storage": 100}
    taken = [(step.cores, step.memory) for step in calendar.steps if step.end - step.start > timedelta(minutes=5)]
    assert taken == [(0, 0), (80, 150), (0, 0), (100, 200), (0, 0)]
    assert (calendar.end - calendar.start).total_seconds() == pytest.approx(8 * 3600, abs=2)
    free = [amount for _, _, amount in calendar.free("cores")]
    assert min(free) == 0 and max(free) == 100


@pytest.mark.parametrize(
    ("hours", "words"), [("soon", "must be a number"), ("0", "more than 0"), ("10000", "at most 336")]
)
async def test_bad_hours_are_400_naming_the_field(jp_fetch, hours, words):
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("execplanner", "api", "platforms", "busy", "calendar", params={"hours": hours})
    assert caught.value.code == 400
    body = json.loads(caught.value.response.body)
    assert body["field"] == "hours" and words in body["message"]


async def test_platforms_without_a_calendar_say_so(jp_fetch):
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("execplanner", "api", "platforms", "static", "calendar")
    assert caught.value.code == 404
    assert "does not publish a booking calendar" in json.loads(caught.value.response.body)["message"]
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch("execplanner", "api", "platforms", "nowhere", "calendar")
    assert caught.value.code == 404


def test_calendar_html_escapes_the_platform_title():
    calendar = Calendar.model_validate(
        {
            "platform": "busy",
            "title": "Busy <script>alert(1)</script>",
            "capacity": {"cores": 10, "memory": 20, "storage": None},
            "start": "2026-11-22T10:00:00Z",
            "end": "2026-11-22T12:00:00Z",
            "steps": [{"start": "2026-11-22T10:00:00Z", "end": "2026-11-22T12:00:00Z", "cores": 5, "memory": 20}],
        }
    )
    page = calendar_html(calendar)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "5 / 10" in page and "20 / 20" in page


def test_client_calendar_in_local_mode(tmp_path, monkeypatch):
    from execplanner_widgets import Planner

    path = write_platforms(tmp_path / "platforms.yaml", [BUSY])
    with Planner(path, data_dir=tmp_path / "state") as planner:
        calendar = planner.calendar("busy", hours=8)
        assert max(step.cores for step in calendar.steps) == 100
        with pytest.raises(ValueError, match="hours"):
            planner.calendar("busy", hours=0)
