"""Clicks in an HTML view, sent to the kernel: one hidden text box per hosting widget.

A table of 500 offers as 500 rows of ipywidgets (buttons, labels) took seconds to build and to
ship. The views are now one HTML value each (``execplanner_widgets.html.views``), and their buttons
and timeline bars carry ``data-ep="verb:key"``. One click handler on the view's root writes that
into the host's hidden :class:`ipywidgets.Text` (class ``ep-events``), whose ordinary widget sync
brings it to the kernel: no front-end extension to build or install, and it works wherever
ipywidgets does (JupyterLab, Notebook 7, VS Code). In exported HTML the buttons are simply absent
(views are rendered ``static`` there).

The kernel trusts nothing in an event: the verb must be one the host registered and the key is
looked up in the host's own state, so a forged event can at most do what a click could.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

__all__ = ["EventChannel"]

log = logging.getLogger(__name__)


class EventChannel:
    """The hidden text box of one host widget, and the handlers of the verbs it accepts."""

    def __init__(self, host: widgets.Box, handlers: dict[str, Callable[[str], Any]]) -> None:
        self.handlers = dict(handlers)
        self.box = widgets.Text(value="", continuous_update=True, layout=widgets.Layout(display="none"))
        self.box.add_class("ep-events")
        self.box.observe(self._received, "value")
        host.add_class("ep-host")

    def _received(self, change: dict[str, Any]) -> None:
        message = str(change["new"] or "")
        if not message:
            return
        self.send(message.split("|", 1)[0])

    def send(self, message: str) -> bool:
        """Handle ``verb:key`` as if it had been clicked; False for an unknown verb."""
        verb, _, key = message.partition(":")
        handler = self.handlers.get(verb)
        if handler is None:
            log.debug("ignored event %r", message)
            return False
        handler(key)
        return True
