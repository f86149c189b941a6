"""The ExecPlanner Jupyter server extension: a safe proxy to the configured platforms, and hosted
platforms that answer as IVOA ExecutionBroker services (with UWS jobs)."""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import ExecPlanner

    return [{"module": "jupyter_server_extension.app", "app": ExecPlanner}]
