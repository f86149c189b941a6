"""Drive the planner app in a real JupyterLab with headless Chromium, as a user would.

* :func:`run_lab` starts ``jupyter lab`` (through :func:`jupyter_live.run_jupyter_server`) on
  127.0.0.1 with a random token, a copy of the demo notebooks as its root, the ExecPlanner extension
  enabled and its state in a temporary folder; JupyterLab's news and update checks are off, so
  nothing tries the closed network and no pop-up covers the app.
* :func:`launch_chromium` launches Debian's Chromium (``playwright install`` cannot download here).
* :class:`LabPage` opens a notebook, runs cells with Shift+Enter and waits for the kernel;
  :class:`AppView` finds the app's steps and buttons by their visible labels, in a cell's output or
  in the right sidebar.
* :func:`evidence_on_failure` turns a failure into an assertion that names a screenshot and a copy
  of the lab server's log.

Every wait has a timeout. Playwright is imported inside functions so that the browser tests' conftest
can import this module (and skip) on a machine without playwright.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_live import LiveServer, run_jupyter_server

__all__ = [
    "CHROMIUM",
    "IDLE",
    "NOTEBOOKS",
    "AppView",
    "LabPage",
    "evidence_on_failure",
    "expect",
    "launch_chromium",
    "run_lab",
]

#: Debian's Chromium; another binary can be named with $EXECPLANNER_CHROMIUM.
CHROMIUM = Path(os.environ.get("EXECPLANNER_CHROMIUM", "/usr/bin/chromium"))
#: Without these, headless Chromium tries Google's services (the network is closed) or a GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--mute-audio",
]
#: The status bar text of a notebook whose kernel is ready.
IDLE = "Python 3 (ipykernel) | Idle"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

# Bounds (milliseconds, as playwright counts) for the waits of a noisy 2-core machine.
PAGE_LOAD_MS = 120_000
KERNEL_MS = 120_000
CELL_MS = 90_000
UI_MS = 30_000
OFFERS_MS = 120_000
JOB_MS = 180_000

#: Phases after which a session changes no more (UWS and ExecutionBroker names).
FINAL_PHASES = ("COMPLETED", "FAILED", "CANCELLED", "ABORTED", "ERROR", "EXPIRED", "REJECTED")

#: JupyterLab user settings: no news or update checks (both would try the internet), no toasts.
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}


def launch_chromium(playwright: Any) -> Any:
    """Headless Debian Chromium. Each ``new_context()`` of it is a fresh profile (cookies, storage)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=60_000)


@contextmanager
def run_lab(root: Path, platforms_file: Path | None = None) -> Iterator[tuple[LiveServer, Path]]:
    """``jupyter lab`` serving a fresh copy of ``notebooks/``; yields the server and that copy.

    With no ``platforms_file`` the extension serves its built-in demo federation.
    """
    notebooks = root / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "results", "outputs"))
    settings = root / "config" / "lab" / "user-settings"
    for name, values in _LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    extra = {
        "ServerApp": {"root_dir": str(notebooks)},
        "LabApp": {
            "news_url": None,
            "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
            "user_settings_dir": str(settings),
            "workspaces_dir": str(root / "workspaces"),
        },
    }
    with run_jupyter_server(root, platforms_file, app="jupyterlab", extra_config=extra) as server:
        yield server, notebooks


@contextmanager
def evidence_on_failure(page: Any, server: LiveServer, folder: Path, name: str) -> Iterator[None]:
    """On any failure inside the block, save a screenshot and the lab log to ``folder`` and fail
    with an assertion naming both (the original error stays chained)."""
    try:
        yield
    except Exception as error:
        folder.mkdir(parents=True, exist_ok=True)
        shot, log = folder / f"{name}-failure.png", folder / f"{name}-lab.log"
        try:
            page.screenshot(path=str(shot), full_page=True, timeout=15_000)
        except Exception as shot_error:
            shot = Path(f"(no screenshot: {type(shot_error).__name__}: {shot_error})")
        log.write_text(server.log())
        raise AssertionError(f"{type(error).__name__}: {error}\nscreenshot: {shot}\nlab server log: {log}") from error


@dataclass
class LabPage:
    """One JupyterLab page with a notebook open. ``dialogs`` records every alert/confirm/prompt."""

    page: Any
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, page: Any, server: LiveServer, notebook: str) -> LabPage:
        """Open ``notebook`` (a path under the root) in ``page`` with a reset workspace; wait for
        the kernel."""
        lab = cls(page)
        page.on("dialog", lab._dialog)
        page.set_default_timeout(UI_MS)
        page.goto(f"{server.url}lab/tree/{notebook}?reset&token={server.token}", timeout=PAGE_LOAD_MS)
        lab.wait_idle(PAGE_LOAD_MS)
        return lab

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def wait_idle(self, timeout: float = KERNEL_MS) -> None:
        self.page.get_by_text(IDLE, exact=True).wait_for(timeout=timeout)

    @property
    def cells(self) -> Any:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")

    def cell_index(self, text: str) -> int:
        """The position of the first cell whose source contains ``text``."""
        sources = self.cells.evaluate_all("cells => cells.map(c => c.querySelector('.jp-InputArea')?.innerText ?? '')")
        for index, source in enumerate(sources):
            if text in source:
                return index
        raise AssertionError(f"no cell contains {text!r}; the notebook has {len(sources)} cells")

    def run_cells_through(self, last: int) -> None:
        """Select the first cell and press Shift+Enter until cell ``last`` has run, waiting for each
        code cell to get its execution count (so a slow cell cannot be overtaken)."""
        self.cells.first.locator(".jp-InputArea").click()
        self.page.keyboard.press("Escape")
        for index in range(last + 1):
            cell = self.cells.nth(index)
            self.page.keyboard.press("Shift+Enter")
            if "jp-CodeCell" in (cell.get_attribute("class") or ""):
                prompt = cell.locator(".jp-InputArea-prompt")
                expect(prompt).to_have_text(re.compile(r"\[\d+\]"), timeout=CELL_MS)
        self.wait_idle()

    def add_cell_below(self, index: int, source: str) -> int:
        """Insert a code cell below cell ``index`` holding ``source`` and run it; returns its index."""
        self.cells.nth(index).locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("b")
        new = index + 1
        self.cells.nth(new).locator(".cm-content").click()
        self.page.keyboard.insert_text(source)
        self.page.keyboard.press("Shift+Enter")
        expect(self.cells.nth(new).locator(".jp-InputArea-prompt")).to_have_text(
            re.compile(r"\[\d+\]"), timeout=CELL_MS
        )
        self.wait_idle()
        return new

    def app_in_cell(self, index: int) -> AppView:
        root = self.cells.nth(index).locator(".jp-OutputArea-output").filter(has=self.page.locator(".widget-accordion"))
        expect(root).to_be_visible(timeout=CELL_MS)
        return AppView(self.page, root)

    def app_in_sidebar(self) -> AppView:
        root = self.page.locator("#jp-right-stack")
        expect(root.locator(".widget-accordion")).to_be_visible(timeout=CELL_MS)
        return AppView(self.page, root)

    def hide_left_sidebar(self) -> None:
        """Close the file browser (View > Show Left Sidebar, Ctrl+B) to give the notebook room."""
        left = self.page.locator("#jp-left-stack")
        if left.is_visible():
            self.page.keyboard.press("Escape")
            self.page.keyboard.press("Control+b")
            expect(left).to_be_hidden()

    def widen_right_sidebar(self, width: int) -> None:
        """Drag the handle between the notebook and the right sidebar until the sidebar is about
        ``width`` pixels wide (people do this to read a table; the default is narrow)."""
        stack = self.page.locator("#jp-right-stack")
        box = stack.bounding_box()
        assert box is not None, "the right sidebar is not shown"
        if box["width"] >= width:
            return
        handle = self.page.locator("#jp-main-split-panel > .lm-SplitPanel-handle:not(.lm-mod-hidden)").last
        grip = handle.bounding_box()
        assert grip is not None, "no handle to resize the right sidebar with"
        x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        self.page.mouse.move(x - (width - box["width"]), y, steps=8)
        self.page.mouse.up()
        wider = stack.bounding_box()
        assert wider is not None and wider["width"] >= 0.9 * width, (
            f"the right sidebar is {wider} wide, not about {width}px"
        )


@dataclass
class AppView:
    """The planner app on the page: ``root`` is its cell output or the sidebar."""

    page: Any
    root: Any

    def button(self, label: str, within: Any = None) -> Any:
        """The button whose visible label is ``label`` (matched on the text, because Font Awesome
        icons add their glyph to the accessible name: "\uf04b Select")."""
        return (within or self.root).locator("button").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))

    def open_step(self, number: int, name: str) -> None:
        """Open step ``number`` of the accordion if it is closed (its header reads "4. Offers",
        "4. Offers: 3 offers" ...; a click on an open step's header would close it)."""
        header = self.root.locator(".jupyter-widget-Collapse-header").filter(
            has_text=re.compile(rf"^{number}\. {re.escape(name)}\b")
        )
        step = header.locator("xpath=..")
        if "jupyter-widget-Collapse-open" not in (step.get_attribute("class") or ""):
            header.click()
        expect(step).to_have_class(re.compile(r"\bjupyter-widget-Collapse-open\b"))

    def step_title(self, number: int) -> Any:
        """The header of step ``number``: its name and what was chosen ("2. Data: complete")."""
        return self.root.locator(".jupyter-widget-Collapse-header").nth(number - 1)

    def step(self, number: int) -> Any:
        """The contents of step ``number`` (1 to 5; 6 is My bookings)."""
        return (
            self.root.locator(".jupyter-widget-Collapse").nth(number - 1).locator(".jupyter-widget-Collapse-contents")
        )

    def executable_row(self, name: str) -> Any:
        """The row of the executables table (one HTML view) that names ``name``."""
        return self.root.locator(".ep-executables tr.ep-row").filter(has=self.page.get_by_text(name, exact=True))

    def offer_rows(self, platform: str) -> Any:
        """Rows of the offers table (offers, or one NO/ERROR answer) of the platform named ``platform``."""
        return self.root.locator(".ep-offers tr.ep-row").filter(
            has=self.page.locator("small").get_by_text(platform, exact=True)
        )

    def timeline_bars(self, platform: str) -> Any:
        """The bars of ``platform``'s lane in the timeline picture."""
        return self.root.locator(f".ep-timeline g.ep-lane[data-platform='{platform}'] g.ep-bar")

    def booking_rows(self) -> Any:
        return self.root.locator(".ep-bookings tr.ep-row")

    def final_phase(self, timeout: float = JOB_MS) -> str:
        """Wait (bounded) for the job view to show a final phase; returns it."""
        final = (
            self.root.locator(".ep-job .ep-phase").filter(has_text=re.compile(rf"^({'|'.join(FINAL_PHASES)})$")).first
        )
        final.wait_for(timeout=timeout)
        return final.inner_text().strip()

    def scroll_to_top(self) -> None:
        """Scroll the app's own scrolling boxes (the sidebar's, the record's list) back to the top."""
        self.root.evaluate(
            "root => { for (const e of [root, ...root.querySelectorAll('*')]) if (e.scrollTop) e.scrollTop = 0; }"
        )

    def screenshot(self, path: Path) -> Path:
        """A PNG of the app alone (its cell output, or the sidebar), scrolled to the top of the
        notebook so that the toolbar covers nothing, with the mouse out of the way. The viewport
        must be tall enough for the app: the notebook scrolls inside the page, not the page."""
        self.page.mouse.move(1, 1)
        self.root.evaluate("element => element.scrollIntoView({block: 'start'})")
        self.page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.root.screenshot(path=str(path), animations="disabled", timeout=UI_MS)
        return path


def expect(locator: Any) -> Any:
    """playwright's ``expect``, waiting up to :data:`UI_MS` (not 5 s) unless told otherwise: a
    click goes through the kernel, which a noisy machine may keep busy for a while."""
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=UI_MS)
    return playwright_expect(locator)


def open_quickstart_app(page: Any, server: LiveServer) -> tuple[LabPage, int]:
    """Open the quickstart notebook and run it down to (and including) the cell showing the app."""
    lab = LabPage.open(page, server, "quickstart.ipynb")
    app_cell = lab.cell_index("planner.app(")
    lab.run_cells_through(app_cell)
    return lab, app_cell
