"""Small pieces the step widgets share: status lines, field messages, layouts.

Every HTML string built here escapes what it is given (through :mod:`execplanner_widgets.html`),
so a widget can pass a platform's message straight in.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ..html import TONES, esc

__all__ = ["cell", "compact", "describe_error", "field_message", "status", "status_widget"]

#: ipywidgets gives HTML the height of an input line (28px) per line of text; tables and wrapped
#: text read better, and fit the narrow sidebar, at an ordinary line height.
LINE_HEIGHT = "1.35"


def compact(value: str) -> str:
    """HTML (already escaped) at an ordinary line height."""
    return f'<div style="line-height:{LINE_HEIGHT}">{value}</div>' if value else ""


def status(text: Any, tone: str = "muted") -> str:
    """One line of status text, coloured by tone (``ok``, ``no``, ``error``, ``wait``, ``info``)."""
    if text in (None, ""):
        return ""
    colour = TONES.get(tone, TONES["muted"])
    return f'<div style="color:{colour};margin:2px 0;line-height:{LINE_HEIGHT}">{esc(text)}</div>'


def field_message(text: Any) -> str:
    """The explanation shown next to a form field that is wrong."""
    if not text:
        return ""
    return f'<div style="color:{TONES["no"]};font-size:0.92em;line-height:{LINE_HEIGHT}">&#9888; {esc(text)}</div>'


def status_widget() -> widgets.HTML:
    return widgets.HTML("", layout=widgets.Layout(margin="2px 0"))


def cell(value: str = "", width: str = "auto", **layout: Any) -> widgets.HTML:
    """An HTML table cell of a widget row; rows wrap in narrow places such as the sidebar."""
    return widgets.HTML(
        compact(value), layout=widgets.Layout(width=width, margin="0 4px 0 0", overflow="hidden", **layout)
    )


def describe_error(error: BaseException) -> str:
    """A sentence for people about a failure: the message, never a traceback."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    if isinstance(error, (ValueError, KeyError, LookupError)) or type(error).__module__.startswith("execplanner"):
        return text
    return f"{type(error).__name__}: {text}"
