"""End to end in a real browser: JupyterLab, the quickstart notebook, and the planner app clicked
through by headless Chromium, in a cell and in the right sidebar, until the job is COMPLETED.

The servers are real: ``jupyter lab`` with the ExecPlanner extension serving its built-in demo
federation (hosted platforms that book and run the record's notebook on this machine), the kernel
client finding that server by itself. Nothing is driven from Python: the test clicks **Select**,
picks the data from the basket, presses **Find offers**, **Select** on the ``laptop`` offer and
**Accept**, and reads what the page shows. The README's screenshots come from these runs: with
``EXECPLANNER_SCREENSHOTS=docs/images`` they are written there (``app-offers.png``, ``app-job.png``,
``app-sidebar.png``); otherwise into the test's temporary folder, so a test run leaves the checkout
as it was.

A last test serves a platforms file whose titles and NO messages carry markup and checks, in the
browser, that it is shown as text and that no script ran (no dialog opened).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_driver import JOB_MS, OFFERS_MS, AppView, evidence_on_failure, expect, open_quickstart_app, run_lab

pytestmark = pytest.mark.browser

REPOSITORY = Path(__file__).resolve().parents[2]


EXECUTABLE = "Mean proper motions"
BASKET_LABEL = "Gaia sample (from this record)"  # the basket entry of the quickstart notebook
DEMO_PLATFORMS = 4
WINDOW = {"width": 1400, "height": 1000}  # an ordinary window, for the screenshot of the whole lab

#: Markup in a platform's title and in its NO message: shown as text, it must never become HTML.
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(1)</script>"
FLAVOUR = "<img src=x onerror=alert(2)><script>alert(2)</script>"
HOSTILE_PLATFORMS = f"""\
timeout: 10
platforms:
  - name: hostile
    title: "Hostile {IMG} {SCRIPT}"
    static:
      cores: 64
      memory: 128
      flavours:   # only flavours bigger than the notebook's maximum of 2 cores: a NO naming this one
        - {{name: "{FLAVOUR}", cores: 4, memory: 8}}
  - name: hostile-yes
    title: "<b>Bold</b> {IMG}"
    static:
      cores: 8
      memory: 16
"""


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def demo_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``jupyter lab`` with the built-in demo federation for the cell and sidebar tests."""
    with run_lab(tmp_path_factory.mktemp("demo-lab")) as (server, _notebooks):
        yield server


# ---------------------------------------------------------------------------------- the flow


def pick_executable_and_data(app: AppView) -> None:
    """Steps 1 and 2: Select the executable; its missing data item is taken from the basket."""
    app.open_step(1, "Executable")
    row = app.executable_row(EXECUTABLE)
    app.button("Select", row).click()
    expect(app.step_title(1)).to_have_text(f"1. Executable: {EXECUTABLE}")
    data = app.step(2)
    expect(data.get_by_text("Still to find: stars", exact=True)).to_be_visible()  # the app opened step 2
    expect(app.step_title(2)).to_have_text("2. Data: 1 still to find")
    data.locator("select").first.select_option(label=BASKET_LABEL)
    expect(data.get_by_text("Every required data item has a location.", exact=True)).to_be_visible()
    # the basket's path is relative to the notebook's folder; the app resolved it there
    expect(data.locator("input[type=text]").first).to_have_value(
        re.compile(r"^/.*/notebooks/record/data/gaia-sample\.csv$")
    )
    expect(app.step_title(2)).to_have_text("2. Data: complete")
    expect(app.step_title(3)).to_contain_text("3. Resources: jupyter-notebook, 1-2 cores")  # from the record


def find_offers(app: AppView, platforms: int) -> Any:
    """Step 4: Find offers, and wait until every platform has answered; returns the step."""
    app.open_step(4, "Offers")
    offers = app.step(4)
    app.button("Find offers", offers).click()
    expect(offers.get_by_text(re.compile(rf"^answered {platforms} of {platforms}: \d+ YES"))).to_be_visible(
        timeout=OFFERS_MS
    )
    return offers


def book_on_laptop(app: AppView, offers_shot: Path | None = None) -> str:
    """Steps 4 and 5 after the search: Select the laptop's first offer, Accept, follow the job to a
    final phase (returned). ``offers_shot`` saves the app with the offer selected."""
    offers = app.step(4)
    laptop = app.offer_rows("laptop")
    expect(laptop.first).to_contain_text("YES")
    expect(app.offer_rows("cesga")).to_contain_text("NO")  # a container cloud: no notebooks
    expect(app.offer_rows("cesga")).to_contain_text("cannot run a jupyter-notebook executable")
    app.button("Select", laptop.first).click()
    expect(laptop.first).to_have_attribute("data-state", "SELECTED")
    expect(app.button("Accept", laptop.first)).to_be_visible()  # Accept next to the offer itself
    accept = app.button("Accept", offers).first  # and the step's own Accept button, above the table
    expect(accept).to_be_enabled()
    if offers_shot is not None:
        app.screenshot(offers_shot)
    accept.click()
    job = app.step(5)
    expect(job).to_be_visible()  # the app opened the job step by itself
    expect(job).to_contain_text("on laptop")
    phase = app.final_phase(JOB_MS)
    return phase


# ----------------------------------------------------------------------------------- the tests


def test_quickstart_in_a_cell_books_and_completes(demo_lab: Any, context: Any, tmp_path: Path, images: Path) -> None:
    page = context.new_page()
    with evidence_on_failure(page, demo_lab, tmp_path, "cell"):
        lab, app_cell = open_quickstart_app(page, demo_lab)
        app = lab.app_in_cell(app_cell)
        expect(app.root).to_contain_text("Asking the platforms through this Jupyter server")
        expect(app.root).not_to_contain_text("runtime file")
        pick_executable_and_data(app)
        find_offers(app, DEMO_PLATFORMS)
        phase = book_on_laptop(app, offers_shot=images / "app-offers.png")
        assert phase == "COMPLETED", f"the job ended {phase}"
        job = app.step(5)
        expect(job).to_contain_text("The session has ended: COMPLETED")
        expect(job.get_by_role("link", name=re.compile(r"mean-proper-motions"))).not_to_have_count(0)
        app.screenshot(images / "app-job.png")
        assert lab.dialogs == [], f"the page opened dialogs: {lab.dialogs}"


#: Widest the right sidebar may be for the narrow-layout checks (JupyterLab opens it at about 300 px).
NARROW = 340

UNCLIPPED = """root => {
  const box = root.getBoundingClientRect();
  const bad = [];
  for (const el of root.querySelectorAll('.ep-view .ep-label, .ep-view button, button, .ep-view td')) {
    if (el.offsetParent === null) continue;  // not shown
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.left < box.left - 1 || r.right > box.right + 1 || el.scrollWidth > el.clientWidth + 1)
      bad.push(`${el.tagName} "${el.textContent.trim().slice(0, 30)}" ${Math.round(r.left)}-${Math.round(r.right)} in ${Math.round(box.left)}-${Math.round(box.right)}, scroll ${el.scrollWidth}/${el.clientWidth}`);
  }
  return bad;
}"""


def test_quickstart_in_the_sidebar_at_its_default_width(
    demo_lab: Any, context: Any, tmp_path: Path, images: Path
) -> None:
    """Issue 15.4: at the sidebar's default width (about 300 px) every column label and every button
    is shown whole (element boxes inside the sidebar, nothing cut), the table stacks into labelled
    rows, Accept is next to the offer; then the job runs to COMPLETED."""
    page = context.new_page()
    page.set_viewport_size(WINDOW)  # the screenshot is the whole window: notebook and sidebar
    with evidence_on_failure(page, demo_lab, tmp_path, "sidebar"):
        lab, app_cell = open_quickstart_app(page, demo_lab)
        lab.add_cell_below(app_cell, "app2 = planner.show(sidebar=True, record=record, basket=basket)")
        app = lab.app_in_sidebar()
        expect(page.locator(".jp-SideBar.jp-mod-right").get_by_text("ExecPlanner", exact=True)).to_be_visible()
        lab.hide_left_sidebar()
        width = app.root.bounding_box()["width"]
        assert width <= NARROW, f"the sidebar opened {width}px wide; this test is about the narrow default"
        pick_executable_and_data(app)
        offers = find_offers(app, DEMO_PLATFORMS)
        laptop = app.offer_rows("laptop").first
        for label in ("Platform", "Answer", "Start", "Cores", "Memory", "Expires in", "State", "Actions"):
            expect(laptop.locator(".ep-label").get_by_text(label, exact=True)).to_be_visible()
        app.button("Select", laptop).click()
        expect(app.button("Accept", laptop)).to_be_visible()
        clipped = app.root.evaluate(UNCLIPPED)
        assert clipped == [], f"cut or outside the {width}px sidebar: {clipped}"
        accept_box, first_offer = app.button("Accept", laptop).bounding_box(), laptop.bounding_box()
        assert accept_box["y"] - first_offer["y"] < 400, "Accept is far from the offer it books"
        lab.cells.nth(app_cell + 1).scroll_into_view_if_needed()  # the cell that opened the sidebar
        app.scroll_to_top()
        page.mouse.move(1, 1)
        page.screenshot(path=str(images / "app-sidebar.png"), animations="disabled")
        app.button("Accept", laptop).click()
        phase = app.final_phase(JOB_MS)
        assert phase == "COMPLETED", f"the job in the sidebar ended {phase}"
        expect(app.step(5)).to_contain_text("The session has ended: COMPLETED")
        app.open_step(5, "Job")
        clipped = app.root.evaluate(UNCLIPPED)
        assert clipped == [], f"cut or outside the {width}px sidebar in the job step: {clipped}"
        assert lab.dialogs == [], f"the page opened dialogs: {lab.dialogs}"
        del offers


def test_markup_from_platforms_is_shown_as_text(context: Any, tmp_path: Path) -> None:
    """A platform's title and NO message with <img onerror>, <script> and <b>: text on the page,
    no such element in the app, no dialog."""
    platforms = tmp_path / "hostile.yaml"
    platforms.write_text(HOSTILE_PLATFORMS)
    with run_lab(tmp_path / "lab", platforms) as (server, _notebooks):
        page = context.new_page()
        with evidence_on_failure(page, server, tmp_path, "injection"):
            lab, app_cell = open_quickstart_app(page, server)
            app = lab.app_in_cell(app_cell)
            pick_executable_and_data(app)
            offers = find_offers(app, 2)
            hostile, bold = app.offer_rows("hostile"), app.offer_rows("hostile-yes").first
            expect(hostile).to_contain_text(f"Hostile {IMG} {SCRIPT}")
            expect(hostile).to_contain_text("NO")
            expect(hostile).to_contain_text(f"the smallest flavour that meets the minimum is {FLAVOUR}")
            expect(bold).to_contain_text(f"<b>Bold</b> {IMG}")
            app.button("Details", hostile).click()
            expect(offers).to_contain_text(f"Hostile {IMG} {SCRIPT} cannot run this request")
            app.button("Details", bold).click()
            expect(offers).to_contain_text(f"offered by <b>Bold</b> {IMG}")
            expect(page.locator("img[src='x']")).to_have_count(0)
            expect(page.locator("b:text-is('Bold')")).to_have_count(0)
            expect(app.root.locator("script")).to_have_count(0)
            page.wait_for_timeout(1000)  # time for an injected onerror to fire (a failed load is fast)
            assert lab.dialogs == [], f"markup from a platform ran as script: {lab.dialogs}"
