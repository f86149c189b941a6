"""Shared fixtures. pytest-jupyter's server fixtures run real Jupyter servers; pytest-asyncio stays
in strict mode (see pyproject.toml) so that the two do not fight over the event loop."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from postgres_server import PostgresUnavailable, throwaway_postgres

from jupyter_server_extension.hosted.store import default_db_url

pytest_plugins = ["pytest_jupyter.jupyter_server"]

#: The IVOA reference material the tests check against, copied into the repository with its
#: licence and source (tests/data/reference/README.md), so no test depends on files outside it.
REFERENCE = Path(__file__).resolve().parent / "data" / "reference"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: they drive playwright's event loop in the main thread, and whatever they
    leave behind must not touch the tests that run their own loops."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture
def reference_dir() -> Path:
    """The IVOA reference material (ExecutionBroker schema, 2022 note examples, UWS XSD)."""
    assert REFERENCE.is_dir(), f"{REFERENCE} is missing: it is part of the repository"
    return REFERENCE


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI no test may skip: CI installs every part the tests need (Chromium, PostgreSQL, Slurm,
    JupyterHub, bubblewrap), so a skip there means a part is missing and the test proved nothing.
    Elsewhere a test skips, with its reason, for a user who lacks such a part."""
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip: {reason}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 (:mod:`postgres_server`) for the whole run; the
    tests that use it name their platforms apart. Skipped without PostgreSQL (never in CI)."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as missing:
            pytest.skip(str(missing))
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def hosted_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A hosted-platform database URL: a SQLite file of the test's own, or the session's PostgreSQL
    server (shared: the tests name their platforms apart)."""
    if request.param == "sqlite":
        return default_db_url(tmp_path)
    return str(request.getfixturevalue("postgres_url"))
