"""The proxy REST API under ``{base_url}execplanner/api/`` (filled in by the proxy work)."""

from __future__ import annotations

from typing import Any

API_HANDLERS: list[tuple[str, type, dict[str, Any]] | tuple[str, type]] = []
