"""Small pieces the step widgets share: status lines, field messages, layouts.

Every HTML string built here escapes what it is given (through :mod:`execplanner_widgets.html`),
so a widget can pass a platform's message straight in.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from ..html import TONES, esc

__all__ = ["cell", "describe_error", "field_message", "heading", "status", "status_widget"]


def status(text: Any, tone: str = "muted") -> str:
    """One line of status text, coloured by tone (``ok``, ``no``, ``error``, ``wait``, ``info``)."""
    if text in (None, ""):
        return ""
    colour = TONES.get(tone, TONES["muted"])
    return f'<div style="color:{colour};margin:2px 0">{esc(text)}</div>'


def field_message(text: Any) -> str:
    """The explanation shown next to a form field that is wrong."""
    if not text:
        return ""
    return f'<span style="color:{TONES["no"]};font-size:0.92em">&#9888; {esc(text)}</span>'


def heading(text: str) -> widgets.HTML:
    return widgets.HTML(f'<div style="font-weight:600;margin:4px 0 2px 0">{esc(text)}</div>')


def status_widget() -> widgets.HTML:
    return widgets.HTML("", layout=widgets.Layout(margin="2px 0"))


def cell(value: str = "", width: str = "auto", **layout: Any) -> widgets.HTML:
    """An HTML table cell of a widget row; rows wrap in narrow places such as the sidebar."""
    return widgets.HTML(value, layout=widgets.Layout(width=width, margin="0 4px 0 0", overflow="hidden", **layout))


def describe_error(error: BaseException) -> str:
    """A sentence for people about a failure: the message, never a traceback."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    if isinstance(error, (ValueError, KeyError, LookupError)) or type(error).__module__.startswith("execplanner"):
        return text
    return f"{type(error).__name__}: {text}"
