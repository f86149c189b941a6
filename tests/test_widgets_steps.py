"""Each step widget on its own, without a browser: buttons are pressed with ``.click()``, values set
as a user would type them, and the assertions are on the widgets' own state (traitlets and the
HTML they show). Platforms are real (static platforms and brokers on 127.0.0.1)."""

from __future__ import annotations

import re
from datetime import timedelta
from io import BytesIO

import pytest
from astropy.io.votable import parse as parse_votable
from brokers import answer_yes, run_broker, static_entry, write_platforms
from pyvo.dal import DALResults
from widget_support import (  # noqa: F401 - fixture
    DATA,
    HOSTILE_REASON,
    RUN_FOR,
    WAIT,
    click,
    make_planner,
    offer_rows,
    platforms,
    row_of,
    text_of,
    view_rows,
    wait_for,
)

from execplanner_widgets.model import ExecutionSession, RucioDataResource, SimpleDataResource, parse_request
from execplanner_widgets.ossr import read_record
from execplanner_widgets.widgets import (
    ExecutableList,
    JobMonitor,
    OfferBrowser,
    ResourceForm,
    ShoppingList,
    basket_item,
)

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
    rows = view_rows(listing.table.value)
    assert [entry.name for entry in listing.entries] == [
        "External Compton tutorial",
        "Demo container",
        "Synchrotron fit script",
    ]
    assert rows[0]["text"].startswith("External Compton tutorial jupyter-notebook")
    assert "broad line region" in rows[0]["text"]
    assert [row["buttons"] for row in rows] == [{"Select": "pick:0"}, {"Select": "pick:1"}, {"Select": "pick:2"}]
    assert "agnpy" in listing.title.value and "3 executable(s)" in listing.title.value


def test_the_filter_box_narrows_the_list():
    listing = ExecutableList(AGNPY)
    listing.filter_box.value = "docker"
    assert [entry.name for entry in listing.visible] == ["Demo container"]
    assert len(view_rows(listing.table.value)) == 1
    listing.filter_box.value = "NOTEBOOK compton"
    assert [entry.name for entry in listing.visible] == ["External Compton tutorial"]
    listing.filter_box.value = "gravitational waves"
    assert listing.visible == [] and "No executable matches" in listing.status.value
    listing.filter = ""
    assert listing.filter_box.value == "" and len(view_rows(listing.table.value)) == 3


def test_select_sets_the_selection_and_its_request():
    listing = ExecutableList(AGNPY)
    click(listing, "pick:1")  # the second row's Select button
    assert listing.selected.name == "Demo container"
    assert listing.request.executable.image.locations == ["docker.io/example/agnpy:0.4.0"]
    rows = view_rows(listing.table.value)
    assert rows[1]["buttons"] == {"Selected": "pick:1"} and rows[0]["buttons"] == {"Select": "pick:0"}
    assert "Selected: Demo container" in listing.status.value
    click(listing, "pick:99")  # a forged event names no row: nothing happens
    click(listing, "drop:0")
    assert listing.selected.name == "Demo container"
    assert listing.select("Synchrotron fit script").min_cores == 1
    with pytest.raises(KeyError, match="Demo container"):
        listing.select("nothing like it")


def test_an_executable_with_bad_requirements_is_explained_not_used():
    listing = ExecutableList(
        {
            "@type": "SoftwareSourceCode",
            "executables": [{"name": "greedy", "type": "notebook", "compute-resources": [{"minmemory": "8 gigs"}]}],
        }
    )
    assert listing.filter_box.layout.display == "none"  # one entry: nothing to filter
    click(listing, "pick:0")
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
    rucio = RucioDataResource.model_validate(
        {"kind": "rucio", "meta": {"name": "lake copy"}, "rucio": {"scope": "m87", "object": "img1.fits"}}
    )
    shopping = ShoppingList(
        compton_request(),
        basket=[*rows, {"title": "my upload", "path": "/home/me/m87.fits"}, rucio, {"nothing": "here"}],
    )
    assert [item.label for item in shopping.basket_items] == [
        "ivo://example/m87?img1",
        "ivo://example/m87?img2",
        "my upload",
        "lake copy",
    ]
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
    assert (
        isinstance(shopping.request.data[0], RucioDataResource)
        and shopping.request.data[0].location_hint == "m87:img1.fits"
    )
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


def test_durations_in_words_are_read_and_months_are_refused_with_the_reason():
    """Bug 9: "2 hours" was refused (only 2h / PT2H), "3 months" without saying why."""
    form = ResourceForm(compton_request())
    form.duration.text.value = "2 hours"
    assert form.request is not None and form.request.duration == timedelta(hours=2)
    form.duration.text.value = "1 day and 6 hours"
    assert form.request.duration == timedelta(days=1, hours=6)
    form.duration.text.value = "3 months"
    assert form.request is None
    message = text_of(form.duration.message.value)
    assert "depend on the calendar" in message and "90 days" in message


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
    request = parse_request(
        {
            "executable": {"kind": "jupyter-notebook", "location": "a.ipynb"},
            "compute": {"cores": {"min": 2}, "memory": {"min": 4}},
        }
    )
    browser = OfferBrowser(platforms.planner, request)
    assert "Ready to ask" in browser.status.value
    browser.find_button.click()
    assert browser.wait(WAIT)
    assert browser.expected == 5 and browser.answered == 5 and browser.pending == []
    assert "answered 5 of 5: 2 YES (3 offers), 2 NO, 1 ERROR" in browser.progress_text.value
    statuses = {result.platform: result.status for result in browser.results}
    assert statuses == {"big": "YES", "small": "NO", "remote": "YES", "hostile": "NO", "down": "ERROR"}
    rows = offer_rows(browser)
    assert [row["entry"].result.status for row in rows] == ["YES", "YES", "YES", "NO", "NO", "ERROR"]
    assert len(browser.table.value) < 40_000  # one HTML value for the whole table, not a widget per cell
    small = row_of(browser, "small")
    assert "needs 2 cores" in small["text"] and list(small["buttons"]) == ["Details"]
    assert "cannot connect" in row_of(browser, "down")["text"]
    remote = [row for row in rows if row["entry"].platform == "remote"]
    assert all(row["data-state"] == "OFFERED" and list(row["buttons"]) == ["Select", "Details"] for row in remote)
    assert " 2 4 GiB " in remote[0]["text"]  # cores, memory
    assert re.search(r"(today|tomorrow) \d\d:\d\d", remote[1]["text"])  # an hour later, local time
    assert 'title="20' in browser.table.value and " UTC" in browser.table.value  # UTC on hover
    assert re.search(r"\b[45] min\b", remote[0]["text"])  # expires in about 5 minutes
    click(browser, small["buttons"]["Details"])
    assert "Could offer instead" in browser.details.value and browser.details.layout.display == ""
    click(browser, remote[0]["buttons"]["Details"])
    assert (
        remote[0]["entry"].offer.uuid in browser.details.value and "ExecutionBroker document" in browser.details.value
    )
    click(browser, remote[0]["buttons"]["Details"])
    assert browser.details.layout.display == "none"


def test_accept_books_the_selected_offer_and_shows_the_others_as_the_platforms_answer(platforms):  # noqa: F811 - fixture
    request = parse_request(
        {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 2}}}
    )
    browser = OfferBrowser(platforms.planner, request)
    browser.find()
    assert browser.wait(WAIT)
    browser.accept_button.click()
    assert "Select an offer first" in browser.status.value and browser.accepted is None
    big = row_of(browser, "big")
    remote = row_of(browser, "remote", 1)
    click(browser, remote["buttons"]["Select"])
    assert browser.selected is remote["entry"].offer and browser.selected_platform == "remote"
    assert row_of(browser, "remote", 1)["data-state"] == "SELECTED" and browser.accept_button.disabled is False
    assert re.search(r"\b[45] min\b", row_of(browser, "remote", 1)["text"])  # the selected offer still counts down
    assert "open for 4m" in browser.status.value or "open for 5m" in browser.status.value
    click(browser, row_of(browser, "remote", 1)["buttons"]["Accept"])  # the row's own Accept, next to the offer
    assert browser.wait(WAIT)
    assert browser.accepted is not None and str(browser.accepted.phase) == "ACCEPTED"
    assert browser.accepted.uuid == remote["entry"].offer.uuid and browser.accepted_platform == "remote"
    assert "Booked on Remote broker" in browser.status.value
    accepted_on_broker = [r for r in platforms.remote.requests if r.method == "POST" and "/sessions/" in r.path]
    assert [r.json()["value"] for r in accepted_on_broker] == ["ACCEPTED"]
    assert str(platforms.planner.session(big["entry"].offer, platform="big").phase) == "REJECTED"  # released
    # Bug 3: the rows say what the platforms said: ACCEPTED, REJECTED; no Select or Accept is left.
    states = {(row["entry"].platform, row["entry"].number): row["data-state"] for row in offer_rows(browser)}
    assert states[("remote", 1)] == "ACCEPTED" and states[("big", 0)] == "REJECTED"
    assert all("Select" not in row["buttons"] and "Accept" not in row["buttons"] for row in offer_rows(browser))


def test_expired_offers_cannot_be_selected_or_accepted(platforms):  # noqa: F811 - fixture
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    browser.find()
    assert browser.wait(WAIT)
    row = row_of(browser, "big")
    click(browser, row["buttons"]["Select"])
    later = row["entry"].offer.expires + timedelta(seconds=1)
    assert browser.refresh_clock(now=later) == 0
    expired = row_of(browser, "big")
    assert expired["data-state"] == "EXPIRED" and "expired" in expired["text"] and "Accept" not in expired["buttons"]
    assert browser.accept_button.disabled and "expired" in browser.status.value
    assert browser.accept() is False and browser.accepted is None
    click(browser, row["buttons"]["Select"])  # a stale button in the browser: the kernel refuses
    assert "has expired" in browser.status.value and browser.selected is None


def test_a_new_request_clears_the_old_answers_and_releases_their_offers(platforms):  # noqa: F811 - fixture
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    browser.find()
    assert browser.wait(WAIT) and browser.results
    old = [entry.offer for entry in browser.book.entries if entry.platform == "big" and entry.offer is not None]
    browser.request = parse_request({"executable": {"kind": "docker-container", "image": "y"}})
    assert browser.results == [] and browser.book.entries == [] and browser.table.layout.display == "none"
    assert browser.selected is None and browser.accept_button.disabled
    wait_for(
        lambda: all(str(platforms.planner.session(offer, platform="big").phase) == "REJECTED" for offer in old),
        WAIT,
        "the old offers to be released",
    )


def test_a_new_search_releases_the_previous_offers_before_asking(platforms):  # noqa: F811 - fixture
    """Bug 1: each press of Find offers left the previous offers holding capacity until they expired."""
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    browser.find()
    assert browser.wait(WAIT)
    first = {entry.offer.uuid: entry for entry in browser.book.entries if entry.offer is not None}
    asked = len([r for r in platforms.remote.requests if r.path.rstrip("/").endswith("/requests")])
    browser.find()
    assert browser.wait(WAIT)
    assert browser.released == len(first)
    for entry in first.values():
        assert str(platforms.planner.session(entry.offer, platform=entry.platform).phase) == "REJECTED"
    # on the broker, the rejections came before the second request for offers
    paths = [
        (r.method, r.path, r.json().get("value") if r.method == "POST" and "/sessions/" in r.path else None)
        for r in platforms.remote.requests
    ]
    second_ask = [index for index, (method, path, _) in enumerate(paths) if path.rstrip("/").endswith("/requests")][
        asked
    ]
    rejections = [index for index, (_, _, value) in enumerate(paths) if value == "REJECTED"]
    assert len(rejections) == 2 and max(rejections) < second_ask
    assert all(entry.state == "OFFERED" for entry in browser.book.entries if entry.offer is not None)  # the new ones


def test_closing_the_browser_releases_its_open_offers(platforms):  # noqa: F811 - fixture
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    browser.find()
    assert browser.wait(WAIT)
    offers = [(entry.offer, entry.platform) for entry in browser.book.entries if entry.offer is not None]
    browser.close()
    assert all(str(platforms.planner.session(offer, platform=name).phase) == "REJECTED" for offer, name in offers)


def test_the_countdown_ticks_in_a_search_after_a_booking(platforms):  # noqa: F811 - fixture
    """Bug 3: after the first booking, the countdown of later searches froze and Accept stayed live."""
    browser = OfferBrowser(
        platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}), tick=0.2
    )
    browser.find()
    assert browser.wait(WAIT)
    browser.select("big")
    browser.accept()
    assert browser.wait(WAIT) and browser.accepted is not None
    browser.find()
    assert browser.wait(WAIT)
    assert browser.accepted is None and browser.accept_button.disabled
    assert row_of(browser, "remote")["data-state"] == "OFFERED" and "Select" in row_of(browser, "remote")["buttons"]
    browser.select("remote")
    first = browser.status.value
    wait_for(
        lambda: browser.status.value != first and "open for" in browser.status.value, WAIT, "the countdown to move"
    )
    assert browser._clock.running
    browser.close()
    assert not browser._clock.running


def test_the_timeline_draws_every_offer_and_a_click_on_a_bar_selects_it(platforms):  # noqa: F811 - fixture
    browser = OfferBrowser(platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
    browser.find()
    assert browser.wait(WAIT)
    browser.view = "Timeline"
    assert browser.timeline.layout.display == "" and browser.table.layout.display == "none"
    bars = view_rows(browser.timeline.value, tag="g", marker="ep-bar")
    assert sorted(bar["data-key"] for bar in bars) == sorted(e.key for e in browser.book.entries if e.offer is not None)
    assert "<svg" in browser.timeline.value and "Timeline as text" in browser.timeline.value
    lanes = re.findall(r'class="ep-lane" data-platform="([^"]+)"', browser.timeline.value)
    assert sorted(lanes) == sorted(
        {e.platform for e in browser.book.entries if e.offer is not None}
    )  # grouped by platform
    second = browser.book.find("remote", 1)
    bar = next(bar for bar in bars if bar["data-key"] == second.key)
    browser.channel.box.value = (
        f"{re.search(r'data-ep=.(select:' + second.key + ')', browser.timeline.value).group(1)}|1"
    )
    assert browser.selected is second.offer and browser.selected_platform == "remote"
    chosen = next(
        b for b in view_rows(browser.timeline.value, tag="g", marker="ep-bar") if b["data-key"] == bar["data-key"]
    )
    assert chosen.get("data-selected") == "true"
    browser.view = "Table"
    assert row_of(browser, "remote", 1)["data-state"] == "SELECTED"


def test_the_first_search_says_which_platforms_are_still_being_asked(tmp_path):
    with run_broker(answer_yes(delay=1.5)) as slow:
        path = write_platforms(
            tmp_path / "p.yaml",
            [static_entry("quick", title="Quick one"), slow.entry("slow", title="Slow one")],
            timeout=10,
        )
        planner = make_planner(path, tmp_path / "data")
        try:
            browser = OfferBrowser(planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}))
            browser.find()
            wait_for(lambda: browser.answered == 1, WAIT, "the quick answer")
            assert browser.pending == ["Slow one"] and "still asking: Slow one" in text_of(browser.progress_text.value)
            assert browser.wait(WAIT) and browser.pending == [] and "still asking" not in browser.progress_text.value
        finally:
            planner.close()


# -------------------------------------------------------------------------------- job monitor


def booked(platforms, name: str):  # noqa: F811 - fixture argument
    request = parse_request(
        {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 1}}}
    )
    result = next(result for result in platforms.planner.offers(request) if result.platform == name)
    return platforms.planner.accept(result.offers[0], platform=name)


def test_the_job_monitor_follows_a_session_to_completed(platforms):  # noqa: F811 - fixture
    monitor = JobMonitor(platforms.planner, booked(platforms, "remote"), platform="remote", poll=0.1)
    assert monitor.phase == "ACCEPTED" and monitor.cancel_button.disabled is False
    wait_for(lambda: monitor.phase == "COMPLETED", RUN_FOR + WAIT, "the session to complete")
    phases = [item["phase"] for item in monitor.history]
    assert phases[0] == "ACCEPTED" and phases[-1] == "COMPLETED" and "RUNNING" in phases
    view = text_of(monitor.view.value)
    assert "COMPLETED" in view and re.search(r"History: ACCEPTED \d\d:\d\d:\d\d \S+ \(\d+ s ago\) .*RUNNING", view)
    assert 'title="20' in monitor.view.value and " UTC" in monitor.view.value  # local clock, UTC on hover
    assert monitor.cancel_button.disabled is True and "has ended: COMPLETED" in monitor.status.value
    wait_for(lambda: not monitor._poller.running, WAIT, "the poll to stop")
    monitor.close()


def test_cancel_cancels_and_a_refused_cancel_is_explained(platforms):  # noqa: F811 - fixture
    session = booked(platforms, "big")
    monitor = JobMonitor(platforms.planner, session, platform="big", poll=0.2)
    assert "big.example.org/start" in monitor.details.value  # the static platform's connector
    monitor.cancel_button.click()  # Cancel asks first; "Keep it" keeps the session
    assert monitor.confirm_button.layout.display == "" and "Cancel the session on big?" in monitor.confirm_text.value
    monitor.keep_button.click()
    assert monitor.confirm_button.layout.display == "none" and monitor.phase == "ACCEPTED"
    assert str(platforms.planner.session(session, platform="big").phase) == "ACCEPTED"
    monitor.cancel_button.click()
    monitor.confirm_button.click()
    assert monitor.wait(WAIT)
    assert monitor.phase == "CANCELLED" and str(platforms.planner.session(session, platform="big").phase) == "CANCELLED"
    assert monitor.cancel_button.disabled and monitor.cancel() is False
    assert [item["phase"] for item in monitor.history] == ["ACCEPTED", "CANCELLED"]
    monitor.close()
    # A session that finished on the platform before this view noticed: the platform refuses.
    remote = booked(platforms, "remote")
    wait_for(lambda: str(platforms.planner.session(remote, platform="remote").phase) == "COMPLETED", RUN_FOR + WAIT)
    late = JobMonitor(platforms.planner, remote, platform="remote", poll=3600)
    late.cancel()
    assert late.wait(WAIT)
    assert "Cancel failed" in late.status.value and late.error
    late.close()


def test_links_to_results_and_connectors_are_safe():
    session = ExecutionSession.model_validate(
        {
            "meta": {
                "uuid": "4d1c1d2e-0000-4000-8000-000000000001",
                "name": "hosted",
                "messages": [{"message": "notebook <b>done</b>"}],
            },
            "phase": "COMPLETED",
            "connectors": [
                {"protocol": "HTTPS", "location": "https://lab.example.org/nb"},
                {"location": "javascript:alert(1)"},
            ],
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
    values = browser.table.value
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
    browser = OfferBrowser(
        platforms.planner, parse_request({"executable": {"kind": "docker-container", "image": "x"}}), tick=0.2
    )
    browser.find()
    assert browser.wait(WAIT)
    first = browser.status.value
    assert "expire in" in first
    wait_for(lambda: browser.status.value != first, WAIT, "the countdown to move")
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


def test_a_new_booking_shows_nothing_of_the_previous_one(platforms):  # noqa: F811 - fixture
    """Bug 3: a new WAITING booking showed the previous "The session has ended: COMPLETED"."""
    monitor = JobMonitor(platforms.planner, booked(platforms, "remote"), platform="remote", poll=0.1)
    wait_for(lambda: monitor.phase == "COMPLETED", RUN_FOR + WAIT, "the session to complete")
    assert "has ended: COMPLETED" in monitor.status.value
    monitor.watch(booked(platforms, "big"), "big")
    assert (
        monitor.phase == "ACCEPTED"
        and monitor.status.value == ""
        and [h["phase"] for h in monitor.history] == ["ACCEPTED"]
    )
    assert "COMPLETED" not in monitor.view.value
    monitor.close()


def _session(phase: str, start: timedelta, end: timedelta, **extra):
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).replace(microsecond=0)
    duration = int((end - start).total_seconds())
    return ExecutionSession.model_validate(
        {
            "meta": {"uuid": "4d1c1d2e-0000-4000-8000-000000000002", "name": "hub"},
            "phase": phase,
            "schedule": {"available": {"start": f"{(now + start).isoformat()}/PT0S", "duration": f"PT{duration}S"}},
            **extra,
        }
    )


def test_waiting_says_when_it_starts_and_available_has_open_and_the_time_left():
    """Issue 14 and bug 5: "starts in 2 h 10 min" for WAITING; AVAILABLE has Open and the time left."""
    waiting = JobMonitor(
        planner=None,
        session=_session("WAITING", timedelta(hours=2, minutes=10, seconds=30), timedelta(hours=4)),
        platform="hub",
    )
    assert "starts in 2 h 10 min" in text_of(waiting.view.value)
    assert "Open" not in text_of(waiting.view.value)
    waiting.stop()
    queued = JobMonitor(
        planner=None,
        session=_session("WAITING", timedelta(minutes=-7, seconds=-10), timedelta(hours=1)),
        platform="hpc",
    )
    assert "waiting in the platform's queue for 7 min" in text_of(queued.view.value)  # a pending Slurm job, say
    queued.stop()
    available = _session(
        "AVAILABLE",
        timedelta(minutes=-5),
        timedelta(minutes=55, seconds=30),
        connectors=[
            {"protocol": "HTTPS", "status": "AVAILABLE", "location": "https://hub.example.org/user/a/lab/tree/x.ipynb"}
        ],
    )
    monitor = JobMonitor(planner=None, session=available, platform="hub")
    view = monitor.view.value
    assert re.search(r"55 min left", text_of(view))
    assert re.search(
        r'<a class="ep-btn ep-primary ep-open" href="https://hub.example.org/user/a/lab/tree/x.ipynb"[^>]*>Open</a>',
        view,
    )
    monitor.stop()
    hosted = _session(  # a hosted session lists its UWS job first: Open leads to the hub's notebook
        "AVAILABLE",
        timedelta(minutes=-1),
        timedelta(hours=1),
        connectors=[
            {
                "kind": "http://www.ivoa.net/xml/UWS/v1.0",
                "protocol": "HTTP",
                "status": "AVAILABLE",
                "location": "http://127.0.0.1:8888/execplanner/platforms/hub/jobs/x",
            },
            {
                "kind": "urn:execplanner:connector:web",
                "protocol": "HTTPS",
                "status": "AVAILABLE",
                "location": "https://hub.example.org/user/a/ep-x/lab/tree/x.ipynb",
            },
        ],
    )
    opened = JobMonitor(planner=None, session=hosted, platform="hub")
    assert re.search(
        r'class="ep-btn ep-primary ep-open" href="https://hub.example.org/user/a/ep-x/lab/tree/x.ipynb"',
        opened.view.value,
    )
    opened.stop()
    bad = _session("AVAILABLE", timedelta(0), timedelta(hours=1), connectors=[{"location": "javascript:alert(1)"}])
    assert "ep-open" not in JobMonitor(planner=None, session=bad, platform="hub").view.value


def test_a_finished_job_does_not_say_start_now():
    """Bug 5: "Start: now" stayed after completion."""
    done = JobMonitor(
        planner=None, session=_session("COMPLETED", timedelta(hours=-3), timedelta(hours=-2)), platform="hub"
    )
    view = text_of(done.view.value)
    assert "now" not in view.split("History")[0] and re.search(r"ended 2 h ago", view)
    assert "Start now" not in text_of(done.details.value) and "now" not in text_of(done.details.value)


def test_a_running_job_shows_the_tail_of_its_output(platforms):  # noqa: F811 - fixture
    """The output tail, read through the planner's ``log`` (duck-typed: planners without it show none)."""

    class WithLog:
        def __init__(self, planner):
            self.planner = planner
            self.asked = []

        def session(self, session, platform=None):
            return self.planner.session(session, platform=platform)

        def cancel(self, session, platform=None):
            return self.planner.cancel(session, platform=platform)

        def log(self, session, platform=None, tail=None):
            self.asked.append(tail)
            return f"step {len(self.asked)}\n<b>done</b>"

    planner = WithLog(platforms.planner)
    monitor = JobMonitor(planner, booked(platforms, "remote"), platform="remote", poll=0.1)
    # wait for what is asserted, the view: ``output`` is set (in the poll thread) before its
    # observer redraws the view, so waiting on ``output`` raced the redraw
    wait_for(
        lambda: "step" in monitor.output and "Output (last lines)" in monitor.view.value,
        RUN_FOR + WAIT,
        "the output tail",
    )
    assert "Output (last lines)" in monitor.view.value and "&lt;b&gt;done&lt;/b&gt;" in monitor.view.value
    assert planner.asked[0] == 30
    monitor.close()


def test_a_folder_without_codemeta_or_a_single_notebook_can_be_loaded(tmp_path, monkeypatch):
    """Bug 9: a folder without codemeta.json, or a single .ipynb, could not be loaded."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "analysis.ipynb").write_text(
        '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    )
    (tmp_path / "work" / "fit.py").write_text("print('fit')\n")
    (tmp_path / "work" / "notes.txt").write_text("not runnable\n")
    listing = ExecutableList()
    listing.load(str(tmp_path / "work"))
    assert listing.wait(WAIT) and listing.error == ""
    assert [(entry.name, entry.short_kind) for entry in listing.entries] == [
        ("analysis", "jupyter-notebook"),
        ("fit", "python-script"),
    ]
    assert listing.select("analysis").executable.location == str(tmp_path / "work" / "analysis.ipynb")
    monkeypatch.chdir(tmp_path / "work")
    listing.load("analysis.ipynb")  # relative to the notebook's folder
    assert listing.wait(WAIT) and [entry.name for entry in listing.entries] == ["analysis"]
    (tmp_path / "empty").mkdir()
    listing.load(str(tmp_path / "empty"))
    assert listing.wait(WAIT) and "no codemeta.json and no notebooks" in listing.error


def test_the_timeline_shades_hosted_calendars_and_hatches_the_users_bookings(tmp_path):
    """Each hosted platform's calendar shades its lane; the user's own booking is drawn hatched."""
    busy = {"name": "gaia", "title": "Gaia DMP", "hosted": {"cores": 10, "memory": 20,
            "reservations": [{"name": "survey", "start": "PT2H", "duration": "PT3H", "cores": 8, "memory": 10}]}}  # fmt: skip
    path = write_platforms(tmp_path / "p.yaml", [busy], timeout=10)
    (tmp_path / "x.py").write_text("print(1)\n")
    planner = make_planner(path, tmp_path / "data")
    request = {
        "executable": {"kind": "python-script", "location": str(tmp_path / "x.py")},
        "compute": {"cores": {"min": 4}},
        "schedule": {"requested": {"duration": "PT1H"}},
    }
    try:
        browser = OfferBrowser(planner, parse_request(request))
        browser.find()
        assert browser.wait(WAIT) and browser.book.entries[0].offer is not None
        browser.select("gaia")
        browser.accept()
        assert browser.wait(WAIT) and browser.accepted is not None
        browser.find()  # a second search: the booking stays on the timeline, hatched
        assert browser.wait(WAIT)
        browser.view = "Timeline"
        wait_for(
            lambda: "gaia" in browser.calendars and "cores taken" in browser.timeline.value,
            WAIT,
            "the calendar shading",
        )
        assert (
            'fill="url(#ep-hatch)"' in browser.timeline.value and "Your booking on Gaia DMP" in browser.timeline.value
        )
        assert "8 of 10 cores taken" in browser.timeline.value  # the reservation
        browser.close()
    finally:
        planner.close()


def test_the_end_of_a_job_is_announced_once_in_the_browser(platforms):  # noqa: F811 - fixture
    """A job that ends while watched adds a one-time notifier (browser notification where allowed);
    its text is JSON in an escaped attribute; a session seen already ended gets none."""
    monitor = JobMonitor(platforms.planner, booked(platforms, "remote"), platform="remote", poll=0.1)
    assert "ep-notify" not in monitor.view.value
    wait_for(lambda: monitor.phase == "COMPLETED", RUN_FOR + WAIT, "the session to complete")
    notifier = re.search(
        r'<img alt="" src="data:," style="display:none" class="ep-notify" onerror="([^"]*)">', monitor.view.value
    )
    assert notifier and "has ended: COMPLETED" in notifier.group(1) and "sessionStorage" in notifier.group(1)
    monitor.close()
    seen_ended = JobMonitor(
        platforms.planner, platforms.planner.session(monitor.session, platform="remote"), platform="remote"
    )
    assert "ep-notify" not in seen_ended.view.value


def test_a_platform_that_serves_no_output_shows_no_output_section(platforms):  # noqa: F811 - fixture
    monitor = JobMonitor(platforms.planner, booked(platforms, "remote"), platform="remote", poll=0.1)
    wait_for(lambda: monitor.phase == "COMPLETED", RUN_FOR + WAIT, "the session to complete")
    assert monitor._log_reader is None and "Output (last lines)" not in monitor.view.value  # a broker: no output route
    monitor.close()


def test_a_running_job_shows_the_platforms_latest_word_as_a_progress_hint():
    document = _session("RUNNING", timedelta(minutes=-3), timedelta(minutes=57)).to_wire()
    document["meta"]["messages"] = [{"level": "INFO", "message": "step 3 of 10 <done>"}]
    running = ExecutionSession.model_validate(document)
    monitor = JobMonitor(planner=None, session=running, platform="hub")
    view = text_of(monitor.view.value)
    assert "running for 3 min" in view and "Latest: step 3 of 10 <done>" in view
    assert "&lt;done&gt;" in monitor.view.value
    monitor.stop()
