"""HTML reprs for front ends without widgets: readable summaries, and nothing from a platform or a
record ever becomes markup (the injection test uses a real broker whose title and NO message carry
``<script>``, ``<b>`` and ``<img onerror>``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import escape
from html.parser import HTMLParser

import pytest
from widget_support import DATA, HOSTILE_REASON, HOSTILE_TITLE, platforms  # noqa: F401 - fixture

from execplanner_widgets import html as reprs
from execplanner_widgets.model import ExecutionSession, OfferSetResponse, parse_request
from execplanner_widgets.ossr import read_record

NOTEBOOK_REQUEST = {
    "executable": {"kind": "jupyter-notebook", "location": "analysis.ipynb", "meta": {"name": "Analysis"}},
    "compute": {"cores": {"min": 2, "max": 4}, "memory": {"min": 4}},
    "storage": [{"size": {"min": 20}, "schedule": {"available": {"duration": "PT4H"}}}],
    "data": [
        {"meta": {"name": "images"}, "required": True},
        {"meta": {"name": "catalogue"}, "location": "https://example.org/cat.fits"},
    ],
    "schedule": {"requested": {"duration": "PT1H"}},
}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)


def markup_of(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    return parser


def assert_inert(text: str) -> None:
    """No script, image or event handler came through as markup; the hostile text shows as text."""
    parsed = markup_of(text)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not [name for name, _ in parsed.attributes if name.startswith("on")]
    assert not [
        value
        for name, value in parsed.attributes
        if name == "href" and value and value.lower().startswith(("javascript", "data"))
    ]


def session(**extra) -> ExecutionSession:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    document = {
        "meta": {
            "uuid": "0b6f0c5e-1111-4a4a-8888-123456789abc",
            "name": "big",
            "messages": [{"level": "INFO", "message": "offered <b>now</b>"}],
        },
        "phase": "OFFERED",
        "expires": (now + timedelta(minutes=10)).isoformat(),
        "executable": {"kind": "jupyter-notebook", "location": "analysis.ipynb"},
        "compute": {"cores": {"min": 2, "max": 8}, "memory": {"min": 4, "max": 16}},
        "schedule": {"available": {"start": f"{now.isoformat()}/PT0S", "duration": "PT1H"}},
    }
    document.update(extra)
    return ExecutionSession.model_validate(document)


# ------------------------------------------------------------------------------------- basics


def test_escape_and_safe_links():
    assert reprs.esc('<a href="x">&</a>') == "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
    assert reprs.esc(None) == "&ndash;"
    assert reprs.safe_href("https://example.org/a?b=1") == "https://example.org/a?b=1"
    assert reprs.safe_href("results/output.fits") == "results/output.fits"
    assert reprs.safe_href("/user/me/lab") == "/user/me/lab"
    for bad in (
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>",
        "//evil.example/x",
        "java\nscript:x",
        "",
        None,
        "vbscript:x",
    ):
        assert reprs.safe_href(bad) is None, bad
    assert reprs.link("javascript:alert(1)", "click") == "click"
    assert 'target="_blank"' in reprs.link("https://example.org", "site") and 'rel="noopener noreferrer"' in reprs.link(
        "https://example.org"
    )


def test_start_times_and_countdowns_read_as_people_say_them():
    now = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
    assert reprs.when(now, now) == "now"
    assert reprs.when(now.replace(hour=14), now) == "today 14:00 UTC"
    assert reprs.when(now + timedelta(days=1, hours=-2), now) == "tomorrow 08:00 UTC"
    assert reprs.when(now + timedelta(days=3), now) == "Wed 25 Nov 10:00 UTC"
    assert reprs.when(None) == "-"
    assert reprs.countdown(now + timedelta(minutes=9, seconds=58), now) == "9m 58s"
    assert reprs.countdown(now - timedelta(seconds=1), now) == "expired"


# ----------------------------------------------------------------------------------- models


def test_request_html_shows_resources_and_the_shopping_list():
    request = parse_request(NOTEBOOK_REQUEST)
    text = request._repr_html_()
    assert text == reprs.request_html(request)
    for expected in (
        "Analysis",
        "jupyter-notebook",
        "2-4",
        "4 GiB",
        "20 GiB, kept 4h",
        "1h",
        "Still to find: images",
        "to find",
        "located",
    ):
        assert expected in text, expected
    assert 'href="https://example.org/cat.fits"' in text


def test_session_html_shows_phase_resources_links_and_messages_escaped():
    offer = session(
        connectors=[
            {"protocol": "HTTPS", "location": "https://big.example.org/lab"},
            {"protocol": "JS", "location": "javascript:alert(1)"},
        ],
        results=[
            {"id": "spectrum.fits", "url": "https://big.example.org/results/spectrum.fits"},
            {"id": "<script>x</script>", "url": "data:text/html,boom"},
        ],
    )
    text = offer._repr_html_()
    assert text == reprs.session_html(offer)
    assert "OFFERED" in text and "2-8" in text and "4-16 GiB" in text and "Expires" in text
    assert (
        'href="https://big.example.org/lab"' in text and 'href="https://big.example.org/results/spectrum.fits"' in text
    )
    assert "javascript:alert(1)" in text and "&lt;script&gt;x&lt;/script&gt;" in text  # shown as text only
    assert "offered &lt;b&gt;now&lt;/b&gt;" in text
    assert "ExecutionBroker document" in text and "0b6f0c5e-1111-4a4a-8888-123456789abc" in text
    assert_inert(text)


def test_offerset_html_for_no_lists_the_reasons_as_text():
    response = OfferSetResponse.model_validate(
        {"result": "NO", "meta": {"messages": [{"level": "WARN", "message": HOSTILE_REASON}]}}
    )
    text = response._repr_html_()
    assert text == reprs.offerset_html(response)
    assert "NO" in text and "&lt;b&gt;no&lt;/b&gt; room" in text
    assert_inert(text)
    yes = OfferSetResponse.model_validate({"result": "YES", "offers": [session().model_dump(mode="json")]})
    assert "Expires in" in yes._repr_html_()


def test_executables_html_escapes_record_strings():
    record = read_record(
        {
            "@type": "SoftwareSourceCode",
            "name": "<script>alert('record')</script>",
            "executables": [
                {"name": "<img src=x onerror=alert(3)>", "type": "notebook", "description": "<b>bold</b> claim"}
            ],
        }
    )
    text = record._repr_html_()
    assert "&lt;img src=x onerror=alert(3)&gt;" in text and "&lt;b&gt;bold&lt;/b&gt; claim" in text
    assert_inert(text)
    assert "External Compton tutorial" in read_record(DATA / "agnpy")._repr_html_()


# ---------------------------------------------------------------- real answers, hostile platform


def test_platform_answers_with_markup_show_as_text(platforms):  # noqa: F811 - fixture
    request = parse_request(NOTEBOOK_REQUEST | {"data": []})
    results = platforms.planner.offers(request)
    by_name = {result.platform: result for result in results}
    assert by_name["hostile"].status == "NO" and by_name["down"].status == "ERROR" and by_name["big"].status == "YES"
    hostile = by_name["hostile"]._repr_html_()
    assert hostile == reprs.result_html(by_name["hostile"])
    table = reprs.results_html(results)
    for text in (hostile, table):
        assert (
            "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;Hostile&lt;/b&gt; &amp;amp; co" not in text
        )  # escaped once, not twice
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;Hostile&lt;/b&gt; &amp; co" in text
        assert escape(HOSTILE_TITLE) in text
        assert "&lt;b&gt;no&lt;/b&gt; room &lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert_inert(text)
        assert "<b>Hostile</b>" not in text and "<b>no</b>" not in text
    small = reprs.result_html(by_name["small"])
    assert "needs 2 cores" in small and "Could offer instead" in small and "compute.cores.min" in small
    assert "Big static platform" in table and "YES" in table and "ERROR" in table


def test_planner_html_lists_platforms_and_survives_a_failing_planner(platforms):  # noqa: F811 - fixture
    text = reprs.planner_html(platforms.planner)
    assert "ExecPlanner" in text and "Big static platform" in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert_inert(text)

    class Unreachable:
        def describe_mode(self):
            return "server mode at http://127.0.0.1:1/"

        def platforms(self):
            raise ConnectionError("<b>connection refused</b>")

    broken = reprs.planner_html(Unreachable())
    assert "Cannot list the platforms: &lt;b&gt;connection refused&lt;/b&gt;" in broken


def test_app_html_summarises_the_whole_flow(platforms):  # noqa: F811 - fixture
    request = parse_request(NOTEBOOK_REQUEST | {"data": []})
    results = platforms.planner.offers(request)
    booked = platforms.planner.accept(next(r for r in results if r.platform == "big").offers[0], platform="big")
    text = reprs.app_html(
        platforms.planner, record=read_record(DATA / "agnpy"), request=request, results=results, session=booked
    )
    for expected in (
        "ExecPlanner",
        "External Compton tutorial",
        "Request",
        "Offers",
        "ACCEPTED",
        "https://big.example.org/start",
    ):
        assert expected in text, expected
    assert_inert(text)


@pytest.mark.parametrize(
    "value", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "' onmouseover='alert(1)"]
)
def test_badges_and_links_cannot_be_broken_out_of(value):
    for text in (reprs.badge(value), reprs.link("https://example.org/" + value, value), reprs.link(value)):
        assert_inert(text)


def test_file_paths_are_text_and_web_urls_are_links():
    from execplanner_widgets.html import web_link

    assert web_link("/srv/data/stars.csv") == "/srv/data/stars.csv"
    assert web_link("record/analysis.ipynb") == "record/analysis.ipynb"
    assert web_link("https://example.org/a.ipynb").startswith('<a href="https://example.org/a.ipynb"')
    assert "<a" not in web_link("javascript:alert(1)")


def test_times_are_shown_in_the_users_zone_with_utc_on_hover(monkeypatch):
    """Issue 15.5: no UTC ISO strings in the UI; the local zone, with the UTC instant on hover."""
    import time

    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        now = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
        assert reprs.when(now.replace(hour=14), now) == "today 15:00 CET"
        assert reprs.when(now + timedelta(days=1, hours=-2), now) == "tomorrow 09:00 CET"
        shown = reprs.moment_html(now.replace(hour=14), now)
        assert (
            shown == '<time datetime="2026-11-22T14:00:00+00:00" title="2026-11-22 14:00:00 UTC">today 15:00 CET</time>'
        )
        offer = session()
        rows = dict(reprs.session_rows(offer))
        assert "CET" in rows["Start"] and "UTC" in rows["Start"] and "T" not in rows["Start"].split(">")[1][:12]
        assert reprs.relative(now + timedelta(hours=2, minutes=10, seconds=40), now) == "in 2 h 10 min"
        assert reprs.relative(now - timedelta(minutes=3, seconds=5), now) == "3 min ago"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_finished_connector_is_text_not_a_link():
    """Issue 15.7: the connector link of a finished hosted job opened its raw UWS XML."""
    done = session(
        phase="COMPLETED",
        connectors=[{"protocol": "HTTP", "status": "FINISHED", "location": "/execplanner/platforms/x/jobs/1"}],
    )
    live = session(
        phase="AVAILABLE",
        connectors=[{"protocol": "HTTPS", "status": "AVAILABLE", "location": "https://hub.example.org/user/a/lab"}],
    )
    assert "<a " not in dict(reprs.session_rows(done))["Connectors"]
    assert 'href="https://hub.example.org/user/a/lab"' in dict(reprs.session_rows(live))["Connectors"]
