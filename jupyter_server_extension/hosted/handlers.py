"""ExecutionBroker and UWS routes of hosted platforms (filled in by the platform-side work)."""

from __future__ import annotations

from typing import Any

HOSTED_HANDLERS: list[tuple[str, type, dict[str, Any]] | tuple[str, type]] = []
