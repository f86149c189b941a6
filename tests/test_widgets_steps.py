"""Each step widget on its own, without a browser: buttons are pressed with ``.click()``, values set
as a user would type them, and the assertions are on the widgets' own state (traitlets and the
HTML they show). Platforms are real (static platforms and brokers on 127.0.0.1)."""

from __future__ import annotations

import re
from datetime import timedelta
from io import BytesIO

import pytest
from astropy.io.votable import parse as parse_votable
from pyvo.dal import DALResults

from execplanner_widgets.model import ExecutionSession, RucioDataResource, SimpleDataResource, parse_request
from execplanner_widgets.ossr import read_record
from execplanner_widgets.widgets import ExecutableList, JobMonitor, OfferBrowser, ResourceForm, ShoppingList, basket_item
from widget_support import DATA, HOSTILE_REASON, RUN_FOR, WAIT, platforms, text_of, wait_for  # noqa: F401 - fixture

AGNPY = DATA / "agnpy"

OBSCORE = b"""<?xml version="1.0"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">
<RESOURCE type="results"><INFO name="QUERY_STATUS" value="OK"/>
<TABLE><FIELD name="obs_publisher_did" datatype="char" arraysize="*"/><FIELD name="access_url" datatype="char" arraysize="*"/>
<DATA><TABLEDATA>
<TR><TD>ivo://example/m87?img1</TD><TD>https://data.example.org/m87/img1.fits</TD></TR>
<TR><TD>ivo://example/m87?img2</TD><TD>https://data.example.org/m87/img2.fits</TD></TR>
</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"""


def compton_request():
    return read_record(AGNPY).entry("External Compton tutorial").to_request()


# ------------------------------------------------------------------------------- executables


def test_executable_list_shows_name_kind_description_and_a_select_button():
    listing = ExecutableList(AGNPY)
    assert [row.entry.name for row in listing.rows] == ["External Compton tutorial", "Demo container", "Synchrotron fit script"]
    first = listing.rows[0]
    assert "External Compton tutorial" in first.text.value and "jupyter-notebook" in first.text.value
    assert "broad line region" in first.text.value
    assert all(row.button.description == "Select" for row in listing.rows)
    assert "agnpy" in listing.title.value and "3 executable(s)" in listing.title.value


def test_the_filter_box_narrows_the_list():
    listing = ExecutableList(AGNPY)
    listing.filter_box.value = "docker"
    assert [entry.name for entry in listing.visible] == ["Demo container"]
    assert len(listing.rows_box.children) == 1
    listing.filter_box.value = "NOTEBOOK compton"
    assert [entry.name for entry in listing.visible] == ["External Compton tutorial"]
    listing.filter_box.value = "gravitational waves"
    assert listing.visible == [] and "No executable matches" in listing.status.value
    listing.filter = ""
    assert listing.filter_box.value == "" and len(listing.rows_box.children) == 3


def test_select_sets_the_selection_and_its_request():
    listing = ExecutableList(AGNPY)
    listing.rows[1].button.click()
    assert listing.selected.name == "Demo container"
    assert listing.request.executable.image.locations == ["docker.io/example/agnpy:0.4.0"]
    assert listing.rows[1].button.description == "Selected" and listing.rows[0].button.description == "Select"
    assert "Selected: Demo container" in listing.status.value
    assert listing.select("Synchrotron fit script").min_cores == 1
    with pytest.raises(KeyError, match="Demo container"):
        listing.select("nothing like it")


def test_an_executable_with_bad_requirements_is_explained_not_used():
    listing = ExecutableList(
        {"@type": "SoftwareSourceCode", "executables": [{"name": "greedy", "type": "notebook", "compute-resources": [{"minmemory": "8 gigs"}]}]}
    )
    assert listing.filter_box.layout.display == "none"  # one entry: nothing to filter
    listing.rows[0].button.click()
    assert listing.selected.name == "greedy" and listing.request is None
    assert "gigs" in listing.error and "greedy cannot be used" in listing.status.value


def test_records_load_in_the_background_and_failures_are_shown(tmp_path):
    listing = ExecutableList()
    assert "No record loaded yet" in listing.title.value
    listing.load_button.click()
    assert "Give the path or URL" in listing.status.value
    listing.source_box.value = str(tmp_path / "nothing.json")
    listing.load_button.click()
    assert listing.wait(WAIT)
    assert "no such file" in listing.error and "no such file" in listing.status.value
    listing.load(str(DATA / "zenodo-notebooks.json"))
    assert listing.wait(WAIT)
    assert [entry.name for entry in listing.entries] == ["hdbscan", "proper-motions"]
    assert listing.load_button.disabled is False and listing.error == ""


# ------------------------------------------------------------------------------ shopping list


def test_required_items_without_location_are_marked_to_find():
    shopping = ShoppingList(compton_request())
    assert shopping.complete is False and shopping.missing == ["images"]
    assert "Still to find: images" in shopping.summary.value
    images, calibration = shopping.rows
    assert "to find" in images.state.value and "optional" in calibration.state.value
    assert images.basket.layout.display == "none"  # an empty basket offers nothing to pick


def test_typing_a_location_completes_the_list_and_clearing_it_undoes_that():
    shopping = ShoppingList(compton_request())
    shopping.rows[0].location.value = "  https://data.example.org/m87/  "
    assert shopping.complete is True and shopping.missing == []
    assert shopping.request.data[0].location == "https://data.example.org/m87/"
    assert "located" in shopping.rows[0].state.value
    assert "Every required data item has a location" in shopping.summary.value
    shopping.rows[0].location.value = ""
    assert shopping.complete is False and "Still to find: images" in shopping.summary.value
    shopping.rows[0].location.value = "line one\nline two"
    assert "one line of text" in shopping.rows[0].message.value and shopping.complete is False
    shopping.set_location("images", "/data/m87")
    assert shopping.complete is True and shopping.request.data[0].location == "/data/m87"


def test_the_basket_offers_query_rows_dicts_and_data_resources():
    rows = list(DALResults(parse_votable(BytesIO(OBSCORE))))
    rucio = RucioDataResource.model_validate({"kind": "rucio", "meta": {"name": "lake copy"}, "rucio": {"scope": "m87", "object": "img1.fits"}})
    shopping = ShoppingList(compton_request(), basket=[*rows, {"title": "my upload", "path": "/home/me/m87.fits"}, rucio, {"nothing": "here"}])
    assert [item.label for item in shopping.basket_items] == ["ivo://example/m87?img1", "ivo://example/m87?img2", "my upload", "lake copy"]
    assert "item 5: it has no location" in shopping.basket_status.value
    images = shopping.rows[0]
    assert images.basket.layout.display == "" and len(images.basket.options) == 5
    images.basket.value = 1
    item = shopping.request.data[0]
    assert isinstance(item, SimpleDataResource) and item.location == "https://data.example.org/m87/img2.fits"
    assert item.name == "images"  # the item keeps its place on the list
    assert images.location.value == "https://data.example.org/m87/img2.fits" and images.basket.value == -1
    assert shopping.complete is True
    shopping.pick("images", 3)
    assert isinstance(shopping.request.data[0], RucioDataResource) and shopping.request.data[0].location_hint == "m87:img1.fits"
    assert shopping.request.data[0].name == "images"
    shopping.set_location(0, "https://mirror.example.org/img1.fits")  # typing over a Rucio item: a plain URL now
    assert isinstance(shopping.request.data[0], SimpleDataResource)
    with pytest.raises(IndexError):
        shopping.pick(0, 9)
    with pytest.raises(KeyError, match="images, calibration"):
        shopping.set_location("spectra", "x")


def test_basket_items_are_read_or_refused_with_a_reason():
    assert basket_item("https://example.org/a.fits").data["location"] == "https://example.org/a.fits"
    assert basket_item({"name": "n", "url": "s3://bucket/key"}).label == "n"
    with pytest.raises(ValueError, match="no location"):
        basket_item({"name": "only a name"})
    with pytest.raises(ValueError, match="basket item"):
        basket_item({"kind": "S3-data-resource", "bucket": 7, "meta": "not a mapping"})
    with pytest.raises(ValueError, match="expected a URL"):
        basket_item(3.14)


def test_a_request_without_data_needs_no_shopping():
    shopping = ShoppingList(parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    assert shopping.complete is True and "needs no data" in shopping.summary.value
    empty = ShoppingList()
    assert empty.complete is False and "Pick an executable first" in empty.summary.value


# ------------------------------------------------------------------------------ resource form


def test_the_form_is_prefilled_from_the_executables_requirements():
    form = ResourceForm(compton_request())
    assert (form.cores.minimum.value, form.cores.maximum.value) == ("2", "4")
    assert (form.memory.minimum.value, form.memory.maximum.value, form.memory.units.value) == ("4", "", "GiB")
    assert form.duration.text.value == "1h" and form.start.text.value == ""
    size, lifetime = form.storage[0]
    assert (size.minimum.value, lifetime.text.value) == ("20", "4h")
    assert form.valid and form.errors == {}
    assert form.request.to_wire() == form.source.to_wire()
    assert "Asking for: jupyter-notebook, 2-4 cores, 4 GiB memory, 20 GiB storage, 1h" in form.summary.value


def test_bad_units_are_explained_next_to_the_field():
    form = ResourceForm(compton_request())
    form.memory.minimum.value = "8 gigs"
    assert form.valid is False and form.request is None
    assert "unknown size unit 'gigs'" in form.errors["compute.memory"]
    assert "unknown size unit &#x27;gigs&#x27;" in form.memory.message.value
    assert form.cores.message.value == ""
    assert "Correct the fields" in form.summary.value
    form.memory.minimum.value = "8"
    assert form.valid and form.memory.message.value == "" and form.request.min_memory == 8


@pytest.mark.parametrize(
    ("field", "value", "key", "words"),
    [
        ("cores.minimum", "-2", "compute.cores", "cannot be negative"),
        ("cores.minimum", "2.5", "compute.cores", "whole number of cores"),
        ("cores.minimum", "8", "compute.cores", "minimum (8) is more than the maximum (4)"),
        ("memory.maximum", "2", "compute.memory", "minimum (4 GiB) is more than the maximum (2 GiB)"),
        ("memory.minimum", "-1", "compute.memory", "cannot be negative"),
        ("duration.text", "soon", "schedule.requested.duration", "ISO 8601 duration"),
        ("duration.text", "0s", "schedule.requested.duration", "longer than zero"),
        ("start.text", "tomorrow", "schedule.requested.start", "ISO 8601"),
        ("storage.lifetime", "P1M", "storage[0].lifetime", "calendar"),
        ("storage.size", "lots", "storage[0].size", "expected a size"),
    ],
)
def test_invalid_input_is_explained_where_it_was_typed(field, value, key, words):
    form = ResourceForm(compton_request())
    owner, attribute = field.split(".")
    if owner == "storage":
        size, lifetime = form.storage[0]
        widget = size.minimum if attribute == "size" else lifetime.text
        message = size.message if attribute == "size" else lifetime.message
    else:
        target = getattr(form, owner)
        widget = getattr(target, attribute)
        message = target.message
    widget.value = value
    assert words in form.errors[key]
    assert "&#9888;" in message.value
    assert form.request is None and not form.valid
    assert list(form.errors) == [key]


def test_units_and_start_windows_are_read_as_written():
    form = ResourceForm(compton_request())
    form.memory.units.value = "MiB"
    form.memory.minimum.value = "512"
    form.memory.maximum.value = "1.5T"
    form.duration.text.value = "PT9H30M"
    form.start.text.value = "2026-11-23T08:00Z/PT6H"
    request = form.request
    assert (request.compute.memory.min, request.compute.memory.max) == (1, 1397)
    assert request.duration == timedelta(hours=9, minutes=30)
    assert str(request.start_window) == "2026-11-23T08:00:00Z/PT6H"
    form.cores.maximum.value = ""
    assert form.request.compute.cores.max is None and form.request.compute.cores.min == 2


def test_new_data_keeps_typed_values_and_a_new_executable_prefills_again():
    request = compton_request()
    form = ResourceForm(request)
    form.cores.minimum.value = "3"
    located = request.model_copy(deep=True)
    located.data[0].location = "https://data.example.org/m87/"
    form.source = located
    assert form.cores.minimum.value == "3" and form.request.data[0].location == "https://data.example.org/m87/"
    container = read_record(AGNPY).entry("Demo container").to_request()
    form.source = container
    assert form.cores.minimum.value == "4" and form.memory.minimum.value == "8" and form.duration.text.value == "2h"
    assert len(form.storage) == 1 and form.storage[0][0].minimum.value == ""
    assert form.request.storage == []  # the spare storage row, left empty, asks for nothing
    form.storage[0][0].minimum.value = "50"
    form.storage[0][1].text.value = "P7D"
    assert form.request.storage[0].size.min == 50 and form.request.storage[0].lifetime == timedelta(days=7)
    form.load(container)
    assert form.storage[0][0].minimum.value == "" and form.request.storage == []


def test_without_a_request_the_form_says_what_to_do_first():
    form = ResourceForm()
    assert form.request is None and "request" in form.errors
    assert "Pick an executable first" in form.summary.value


# ------------------------------------------------------------------------------ offer browser


def test_blocked_offers_do_not_ask_any_platform(platforms):  # noqa: F811 - fixture
    browser = OfferBrowser(platforms.planner, compton_request())
    assert browser.find_button.disabled is False
    browser.blocked = "Still to find: images (step 2)."
    assert browser.find_button.description == "Find offers" and browser.accept_button.description == "Accept"
    assert browser.find_button.disabled is True and browser.find_button.tooltip == "Still to find: images (step 2)."
    browser.find_button.click()
    assert browser.busy is False and browser.results == []
    assert "Still to find: images" in browser.status.value
    assert platforms.remote.requests == [] and platforms.hostile.requests == []


def test_answers_fill_the_table_with_offers_reasons_and_errors(platforms):  # noqa: F811 - fixture
    request = parse_request({"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 2}, "memory": {"min": 4}}})
    browser = OfferBrowser(platforms.planner, request)
    assert "Ready to ask" in browser.status.value
    browser.find_button.click()
    assert browser.wait(WAIT)
    assert browser.expected == 5 and browser.answered == 5
    assert "answered 5 of 5: 2 YES (3 offers), 2 NO, 1 ERROR" in browser.progress_text.value
    statuses = {result.platform: result.status for result in browser.results}
    assert statuses == {"big": "YES", "small": "NO", "remote": "YES", "hostile": "NO", "down": "ERROR"}
    assert [row.result.status for row in browser.rows] == ["YES", "YES", "YES", "NO", "NO", "ERROR"]
    small = next(row for row in browser.rows if row.platform == "small")
    assert "needs 2 cores" in small.children[2].value
    down = next(row for row in browser.rows if row.platform == "down")
    assert "cannot connect" in down.children[2].value
    remote = [row for row in browser.rows if row.platform == "remote"]
    assert [text_of(row.children[3].value) for row in remote] == ["2", "2"] and text_of(remote[0].children[4].value) == "4 GiB"
    assert re.fullmatch(r"(today|tomorrow) \d\d:\d\d UTC", text_of(remote[1].children[2].value))  # an hour later
    assert "m " in remote[0].expires.value  # e.g. "4m 59s"
    small.details_button.click()
    assert "Could offer instead" in browser.details.value and browser.details.layout.display == ""
    remote[0].details_button.click()
    assert remote[0].offer.uuid in browser.details.value and "ExecutionBroker document" in browser.details.value
    remote[0].details_button.click()
    assert browser.details.layout.display == "none"


def test_accept_books_the_selected_offer_and_releases_the_others(platforms):  # noqa: F811 - fixture
    request = parse_request({"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 2}}})
    browser = OfferBrowser(platforms.planner, request)
    browser.find()
    assert browser.wait(WAIT)
    browser.accept_button.click()
    assert "Select an offer first" in browser.status.value and browser.accepted is None
    big_offer = next(row for row in browser.rows if row.platform == "big").offer
    remote_row = next(row for row in browser.rows if row.platform == "remote" and row.number == 1)
    remote_row.select_button.click()
    assert browser.selected is remote_row.offer and browser.selected_platform == "remote"
    assert remote_row.select_button.description == "Selected" and browser.accept_button.disabled is False
    browser.accept_button.click()
    assert browser.wait(WAIT)
    assert browser.accepted is not None and str(browser.accepted.phase) == "ACCEPTED"
    assert browser.accepted.uuid == remote_row.offer.uuid and browser.accepted_platform == "remote"
    assert remote_row.select_button.description == "Accepted"
    assert all(row.select_button.disabled for row in browser.rows if row.select_button is not None)
    assert "Booked on Remote broker" in browser.status.value
    accepted_on_broker = [r for r in platforms.remote.requests if r.method == "POST" and "/sessions/" in r.path]
    assert [r.json()["value"] for r in accepted_on_broker] == ["ACCEPTED"]
    assert str(platforms.planner.session(big_offer, platform="big").phase) == "REJECTED"  # released


def test_expired_offers_cannot_be_selected_or_accepted(platforms):  # noqa: F811 - fixture
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    browser.find()
    assert browser.wait(WAIT)
    row = next(row for row in browser.rows if row.platform == "big")
    row.select_button.click()
    later = row.offer.expires + timedelta(seconds=1)
    assert browser.refresh_clock(now=later) == 0
    assert text_of(row.expires.value) == "expired" and row.select_button.description == "Expired" and row.select_button.disabled
    assert browser.accept_button.disabled and "expired" in browser.status.value
    assert browser.accept() is False and browser.accepted is None
    browser.choose(row)
    assert "has expired" in browser.status.value


def test_a_new_request_clears_the_old_answers(platforms):  # noqa: F811 - fixture
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    browser.find()
    assert browser.wait(WAIT) and browser.results
    browser.request = parse_request({"executable": {"kind": "docker-container", "image": "y"}})
    assert browser.results == [] and browser.rows == [] and browser.table.layout.display == "none"
    assert browser.selected is None and browser.accept_button.disabled


# -------------------------------------------------------------------------------- job monitor


def booked(platforms, name: str):  # noqa: F811 - fixture argument
    request = parse_request({"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 1}}})
    result = next(result for result in platforms.planner.offers(request) if result.platform == name)
    return platforms.planner.accept(result.offers[0], platform=name)


def test_the_job_monitor_follows_a_session_to_completed(platforms):  # noqa: F811 - fixture
    monitor = JobMonitor(platforms.planner, booked(platforms, "remote"), platform="remote", poll=0.1)
    assert monitor.phase == "ACCEPTED" and monitor.cancel_button.disabled is False
    wait_for(lambda: monitor.phase == "COMPLETED", RUN_FOR + WAIT, "the session to complete")
    phases = [item["phase"] for item in monitor.history]
    assert phases[0] == "ACCEPTED" and phases[-1] == "COMPLETED" and "RUNNING" in phases
    assert "COMPLETED" in monitor.phase_label.value and "RUNNING" in monitor.history_html.value
    assert monitor.cancel_button.disabled is True and "has ended: COMPLETED" in monitor.status.value
    wait_for(lambda: not monitor._poller.running, WAIT, "the poll to stop")
    monitor.close()


def test_cancel_cancels_and_a_refused_cancel_is_explained(platforms):  # noqa: F811 - fixture
    session = booked(platforms, "big")
    monitor = JobMonitor(platforms.planner, session, platform="big", poll=0.2)
    assert "big.example.org/start" in monitor.details.value  # the static platform's connector
    monitor.cancel_button.click()
    assert monitor.wait(WAIT)
    assert monitor.phase == "CANCELLED" and str(platforms.planner.session(session, platform="big").phase) == "CANCELLED"
    assert monitor.cancel_button.disabled and monitor.cancel() is False
    assert [item["phase"] for item in monitor.history] == ["ACCEPTED", "CANCELLED"]
    monitor.close()
    # A session that finished on the platform before this view noticed: the platform refuses.
    remote = booked(platforms, "remote")
    wait_for(lambda: str(platforms.planner.session(remote, platform="remote").phase) == "COMPLETED", RUN_FOR + WAIT)
    late = JobMonitor(platforms.planner, remote, platform="remote", poll=3600)
    late.cancel_button.click()
    assert late.wait(WAIT)
    assert "Cancel failed" in late.status.value and late.error
    late.close()


def test_links_to_results_and_connectors_are_safe():
    session = ExecutionSession.model_validate(
        {
            "meta": {"uuid": "4d1c1d2e-0000-4000-8000-000000000001", "name": "hosted", "messages": [{"message": "notebook <b>done</b>"}]},
            "phase": "COMPLETED",
            "connectors": [{"protocol": "HTTPS", "location": "https://lab.example.org/nb"}, {"location": "javascript:alert(1)"}],
            "results": [{"id": "output.ipynb", "url": "/files/output.ipynb"}],
        }
    )
    monitor = JobMonitor(planner=None, session=session, platform="hosted")
    assert monitor.phase == "COMPLETED" and monitor.cancel_button.disabled
    details = monitor.details.value
    assert 'href="https://lab.example.org/nb"' in details and 'href="/files/output.ipynb"' in details
    assert 'href="javascript' not in details and "notebook &lt;b&gt;done&lt;/b&gt;" in details
    assert not monitor._poller.running  # a final session is not polled
    assert "COMPLETED" in monitor._repr_html_()


def test_hostile_reasons_are_text_in_the_offer_rows(platforms):  # noqa: F811 - fixture
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    browser.find()
    assert browser.wait(WAIT)
    hostile = next(row for row in browser.rows if row.platform == "hostile")
    values = " ".join(child.value for child in hostile.children if hasattr(child, "value"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;Hostile&lt;/b&gt;" in values
    assert "&lt;b&gt;no&lt;/b&gt; room" in values and "<script>" not in values and "<img" not in values
    assert HOSTILE_REASON not in values


def test_model_errors_are_placed_next_to_the_field_they_concern():
    form = ResourceForm(compton_request())
    assert form._field_for("compute.cores.min") == "compute.cores"
    assert form._field_for("compute.memory") == "compute.memory"
    assert form._field_for("storage[0].size.max") == "storage[0].size"
    assert form._field_for("storage[0].schedule.available.duration") == "storage[0].lifetime"
    assert form._field_for("schedule.requested.start") == "schedule.requested.start"
    assert form._field_for("executable.kind") == "request"  # not a form field: said under the form


def test_the_expiry_clock_ticks_by_itself(platforms):  # noqa: F811 - fixture
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}), tick=0.2)
    browser.find()
    assert browser.wait(WAIT)
    row = next(row for row in browser.rows if row.platform == "big")
    first = text_of(row.expires.value)
    wait_for(lambda: text_of(row.expires.value) != first, WAIT, "the countdown to move")
    assert browser._clock.running
    browser.close()
    assert not browser._clock.running


def test_every_step_has_an_html_summary(platforms):  # noqa: F811 - fixture
    request = compton_request()
    assert "External Compton tutorial" in ExecutableList(AGNPY)._repr_html_()
    assert "Still to find: images" in ShoppingList(request)._repr_html_()
    assert "20 GiB, kept 4h" in ResourceForm(request)._repr_html_()
    assert "not complete" in ResourceForm()._repr_html_()
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    browser.find()
    assert browser.wait(WAIT)
    assert "Big static platform" in browser._repr_html_() and "&lt;b&gt;no&lt;/b&gt;" in browser._repr_html_()
    assert "No session yet" in JobMonitor(platforms.planner)._repr_html_()
