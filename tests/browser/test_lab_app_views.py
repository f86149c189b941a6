"""The app's views in a real JupyterLab (headless Debian Chromium): what issue 15 asked for, seen as
a user sees it.

* Search twice: the earliest start of the ``laptop`` platform does not move (the first search's
  offers were released before the second asked).
* The timeline renders, and a click on a bar selects that offer (an event back to the kernel).
* After a booking, a new search's expiry countdown ticks.
* A running script's output tail shows in the job view (served by the platform through the server),
  and its end is announced once as a browser notification.
* My bookings, in another notebook (another kernel), lists the booking.

Screenshots for the README (``app-timeline.png``, ``app-job-live.png``, ``app-bookings.png``) are
written to ``$EXECPLANNER_SCREENSHOTS`` when it is set, else to the test's temporary folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from lab_driver import JOB_MS, OFFERS_MS, AppView, LabPage, evidence_on_failure, expect, open_quickstart_app, run_lab

pytestmark = pytest.mark.browser

REPOSITORY = Path(__file__).resolve().parents[2]
BASKET_LABEL = "Gaia sample (from this record)"
DEMO_PLATFORMS = 4


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with run_lab(tmp_path_factory.mktemp("views-lab")) as (server, _notebooks):
        yield server


def quickstart_app(page: Any, server: Any) -> tuple[LabPage, AppView]:
    """The quickstart notebook run down to its app; returns the page and the app in its cell."""
    lab, app_cell = open_quickstart_app(page, server)
    return lab, lab.app_in_cell(app_cell)


def choose(app: AppView, executable: str) -> None:
    """Steps 1 and 2: the executable, and its data item from the basket."""
    app.open_step(1, "Executable")
    app.button("Select", app.executable_row(executable)).click()
    expect(app.step_title(1)).to_have_text(f"1. Executable: {executable}")
    data = app.step(2)
    data.locator("select").first.select_option(label=BASKET_LABEL)
    expect(app.step_title(2)).to_have_text("2. Data: complete")


def find(app: AppView) -> Any:
    """Find offers, and wait for every answer of *this* search (the table names its search)."""
    app.open_step(4, "Offers")
    offers = app.step(4)
    table = offers.locator(".ep-offers")
    before = table.get_attribute("data-search") if table.count() else "0"
    app.button("Find offers", offers).click()
    expect(table).not_to_have_attribute("data-search", before or "0", timeout=OFFERS_MS)
    expect(offers.get_by_text(re.compile(rf"^answered {DEMO_PLATFORMS} of {DEMO_PLATFORMS}: \d+ YES"))).to_be_visible(
        timeout=OFFERS_MS
    )
    return offers


def earliest_start(app: AppView, platform: str) -> datetime:
    starts = (
        app.offer_rows(platform)
        .locator("td.ep-start time")
        .evaluate_all("times => times.map(t => t.getAttribute('datetime'))")
    )
    assert starts, f"no offer from {platform}"
    return min(datetime.fromisoformat(start) for start in starts)


def test_search_twice_timeline_click_and_the_countdown_after_a_booking(
    lab_server: Any, context: Any, tmp_path: Path, images: Path
) -> None:
    page = context.new_page()
    with evidence_on_failure(page, lab_server, tmp_path, "views"):
        lab, app = quickstart_app(page, lab_server)
        choose(app, "Mean proper motions")
        offers = find(app)
        first = earliest_start(app, "laptop")
        find(app)  # again: the first search's offers are released before the platforms are asked
        again = earliest_start(app, "laptop")
        assert (again - first).total_seconds() < 60, f"the earliest laptop start moved from {first} to {again}"

        # the timeline: a lane per platform with offers, a bar per offer; a click selects
        offers.get_by_role("button", name="Timeline").click()
        bars = app.timeline_bars("laptop")
        expect(bars.first).to_be_visible()
        assert bars.count() >= 2
        chosen_key = bars.nth(1).get_attribute("data-key")
        bars.nth(1).click()
        expect(app.root.locator(f".ep-timeline g.ep-bar[data-key='{chosen_key}']")).to_have_attribute(
            "data-selected", "true"
        )
        app.screenshot(images / "app-timeline.png")
        offers.get_by_role("button", name="Table").click()
        expect(app.root.locator(f".ep-offers tr.ep-row[data-key='{chosen_key}']")).to_have_attribute(
            "data-state", "SELECTED"
        )

        # book it; then a new search's countdown ticks (it froze after the first booking before)
        app.button("Accept", offers).first.click()
        job_section = app.root.locator(".jupyter-widget-Collapse").nth(4)
        expect(job_section).to_have_class(
            re.compile(r"\bjupyter-widget-Collapse-open\b")
        )  # the app opened the job step
        expect(app.step(5)).to_contain_text("on laptop")
        find(app)
        ticking = re.compile(r"expire in \d+m( \d+s)?")
        status = offers.get_by_text(ticking)
        expect(status).to_be_visible()
        before = status.inner_text()
        expect(offers.get_by_text(ticking)).not_to_have_text(before, timeout=15_000)
        # closing the app releases the offers it holds (else they would hold the laptop for 10 minutes)
        lab.add_cell_below(lab.cell_index("planner.app("), "app.close()")
        assert lab.dialogs == [], f"the page opened dialogs: {lab.dialogs}"


def test_a_running_script_shows_its_output_and_my_bookings_lists_it_in_another_kernel(
    lab_server: Any, context: Any, tmp_path: Path, images: Path
) -> None:
    page = context.new_page()
    # Headless Chromium has no desktop to show notifications on, and nobody to click "Allow": this
    # stand-in records them with permission granted (the only part of the test that is not real).
    page.add_init_script(
        "window.__notes = []; window.Notification = class { constructor(title, options) {"
        " window.__notes.push(title + ': ' + ((options && options.body) || '')); }"
        " static get permission() { return 'granted'; } static requestPermission() { return Promise.resolve('granted'); } };"
    )
    with evidence_on_failure(page, lab_server, tmp_path, "bookings"):
        lab, app = quickstart_app(page, lab_server)
        choose(app, "Moving-group clustering")
        find(app)
        laptop = app.offer_rows("laptop").first
        app.button("Select", laptop).click()
        app.button("Accept", laptop).click()
        expect(app.root.locator(".jupyter-widget-Collapse").nth(4)).to_have_class(
            re.compile(r"\bjupyter-widget-Collapse-open\b")
        )
        job = app.step(5)
        expect(job).to_contain_text("on laptop")
        expect(job.locator(".ep-log")).to_contain_text("nearby stars", timeout=JOB_MS)  # the script's stdout
        uuid = job.locator(".ep-job code").first.inner_text().strip()
        app.final_phase(JOB_MS)
        page.wait_for_function(
            "() => window.__notes.some(note => note.includes('has ended: COMPLETED'))", timeout=30_000
        )
        assert sum("has ended" in note for note in page.evaluate("() => window.__notes")) == 1  # once
        app.screenshot(images / "app-job-live.png")

        other = LabPage.open(
            context.new_page(), lab_server, "when-can-i-do-this.ipynb"
        )  # another notebook, another kernel
        cell = other.add_cell_below(
            0, "from execplanner_widgets import Planner\nmine = Planner().app()\nmine.steps.selected_index = 5\nmine"
        )
        bookings = other.app_in_cell(cell)
        row = bookings.booking_rows().filter(has_text=uuid)
        expect(row).to_have_count(1, timeout=JOB_MS)
        expect(row).to_contain_text("Small notebook server")
        expect(row).to_have_attribute(
            "data-phase", re.compile(r"^(ACCEPTED|WAITING|PREPARING|RUNNING|RELEASING|COMPLETED)$")
        )
        bookings.screenshot(images / "app-bookings.png")
        assert lab.dialogs == [] and other.dialogs == []
