"""Shared fixtures. pytest-jupyter's server fixtures run real Jupyter servers; pytest-asyncio stays
in strict mode (see pyproject.toml) so that the two do not fight over the event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
if not REFERENCE.is_dir():  # a checkout where shared/ sits elsewhere: tests that need it skip
    REFERENCE = Path(__file__).resolve().parent / "data" / "reference"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: they drive playwright's event loop in the main thread, and whatever they
    leave behind must not touch the tests that run their own loops."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture
def reference_dir() -> Path:
    """The IVOA reference material (ExecutionBroker schema, 2022 note examples, UWS XSD)."""
    if not REFERENCE.is_dir():
        pytest.skip("the shared/reference folder is not beside this checkout")
    return REFERENCE
