"""Shared fixtures. pytest-jupyter's server fixtures run real Jupyter servers; pytest-asyncio stays
in strict mode (see pyproject.toml) so that the two do not fight over the event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

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
