"""execplanner-widgets: ask every compute platform "can I do this?" and "when can I do this?".

The data model (:mod:`execplanner_widgets.model`), the platforms and the federation planner import
neither ipywidgets nor jupyter_server, so they work in any Python. The notebook-facing ``Planner``
and the widgets are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from .model import (
    ExecutionRequest,
    ExecutionSession,
    InvalidRequest,
    OfferSetResponse,
    SessionPhase,
    parse_request,
)

__version__ = "0.1.0"

__all__ = [
    "ExecutionRequest",
    "ExecutionSession",
    "InvalidRequest",
    "OfferSetResponse",
    "Planner",
    "SessionPhase",
    "__version__",
    "parse_request",
]

_LAZY = {
    "Planner": ("execplanner_widgets.client", "Planner"),
    "PlannerError": ("execplanner_widgets.client", "PlannerError"),
    "Federation": ("execplanner_widgets.core.federation", "Federation"),
}


def __getattr__(name: str) -> Any:
    """Load the kernel client and the widgets only when asked for (they pull in heavier packages)."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'execplanner_widgets' has no attribute {name!r}")
