"""Browser tests: JupyterLab driven by Debian's headless Chromium through Python playwright.

A user without Chromium, playwright or JupyterLab gets these tests skipped, with the reason. CI sets
``EXECPLANNER_REQUIRE_BROWSER=1`` (see ``.ci/run``): there a missing piece is a failure, so that a
broken CI image cannot turn the end-to-end tests into silent skips.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab_driver import CHROMIUM, launch_chromium

REQUIRE_VARIABLE = "EXECPLANNER_REQUIRE_BROWSER"


def missing_browser_parts() -> list[str]:
    """What this machine lacks to run the browser tests (empty when everything is there)."""
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium, or set EXECPLANNER_CHROMIUM)")
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the Python package {package} (pip install -e '.[test]')")
    return missing


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a browser test on a machine without a browser; fail it where the browser is required."""
    if item.get_closest_marker("browser") is None:
        return
    missing = missing_browser_parts()
    if not missing:
        return
    reason = "browser tests need " + "; ".join(missing)
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 (CI), but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per module (each test opens its own fresh context).

    Module scope, not session: while playwright's sync API is active it keeps its event loop marked
    as running in this thread, which would break every later test that runs an event loop. Leaving
    the ``with`` block closes that loop as soon as the browser tests are done.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


# pytest-jupyter's autouse fixtures close "the" event loop of the thread after each test; playwright's
# sync API keeps its own loop marked as running in this thread while the module runs, which they
# would try to close. No browser test uses pytest-jupyter's in-process server: both are no-ops here.


@pytest.fixture
def jp_asyncio_loop() -> None:
    return None


@pytest.fixture
def jp_server_cleanup() -> None:
    return None


#: Tall, so that an element screenshot holds the whole app.
VIEWPORT = {"width": 1400, "height": 1600}
REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Where screenshots go: ``$EXECPLANNER_SCREENSHOTS`` (relative to the checkout), else tmp."""
    chosen = os.environ.get("EXECPLANNER_SCREENSHOTS")
    folder = (REPOSITORY / chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    """A fresh browser profile per test: no cookies, storage or workspace from another test (so a
    hub, say, must ask for its login)."""
    context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        yield context
    finally:
        context.close()
