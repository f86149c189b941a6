"""The small things every view writes: escaped text, safe links, badges, sizes, and times as people read them.

This module imports nothing of the project (the html package is a leaf of the layer graph): callers
pass plain values (datetimes, numbers, strings) or objects with the attributes used here.

Times are shown in the user's time zone (the kernel's local zone, which is the zone of the machine
the scientist works on), with the UTC instant on hover: ``<time title="2026-12-06 19:43:00 UTC">``.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup

__all__ = [
    "TONES",
    "badge",
    "clock",
    "countdown",
    "esc",
    "format_size",
    "full_time",
    "human_duration",
    "link",
    "local",
    "moment_html",
    "relative",
    "safe_href",
    "short_kind",
    "span",
    "utc_text",
    "web_link",
    "when",
]

#: Colours for answers and phases: green for YES/success, red for NO/failure, amber for waiting.
TONES = {
    "ok": "#1a7f37",
    "no": "#b42318",
    "error": "#7a2e0e",
    "wait": "#9a6700",
    "info": "#0969da",
    "muted": "#57606a",
}

PHASE_TONES = {
    "OFFERED": "info",
    "ACCEPTED": "info",
    "WAITING": "wait",
    "PREPARING": "wait",
    "AVAILABLE": "ok",
    "RUNNING": "ok",
    "RELEASING": "wait",
    "COMPLETED": "ok",
    "FAILED": "no",
    "CANCELLED": "muted",
    "REJECTED": "muted",
    "EXPIRED": "muted",
    "INITIAL": "muted",
}

ANSWER_TONES = {"YES": "ok", "NO": "no", "ERROR": "error"}


# ------------------------------------------------------------------------------------- text


def esc(value: Any) -> str:
    """``value`` as text that cannot become markup; ``None`` shows as a dash."""
    if value is None:
        return "&ndash;"
    return html.escape(str(value), quote=True)


def safe_href(url: Any) -> str | None:
    """The URL if it may become a link (http, https or a relative path), else ``None``.

    A platform decides what it puts in a connector or a result; a ``javascript:`` URL there must not
    turn into something the user can click.
    """
    if not isinstance(url, str) or not url.strip():
        return None
    text = url.strip()
    if any(ord(char) < 32 for char in text):
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return text
    if not parts.scheme and not parts.netloc and not text.startswith("//"):
        return text
    return None


def link(url: Any, text: Any = None) -> str:
    """A link that opens in a new tab, or the URL as plain text when it is not a safe link."""
    href = safe_href(url)
    label = esc(text if text is not None else url)
    if href is None:
        return label
    # JupyterLab resets anchor styles inside widgets: say that it is a link
    return (
        f'<a href="{esc(href)}" target="_blank" rel="noopener noreferrer" '
        f'style="color:var(--jp-content-link-color,#1a73e8);text-decoration:underline">{label}</a>'
    )


def web_link(location: Any) -> str:
    """A link only for http(s) URLs: an executable's or data item's location may be a file path on
    the platform's machine, which would resolve against this page's server and break."""
    if isinstance(location, str) and urlsplit(location.strip()).scheme.lower() in ("http", "https"):
        return link(location)
    return esc(location)


def badge(text: Any, tone: str = "info") -> str:
    """A small coloured label such as YES, NO or RUNNING."""
    colour = TONES.get(tone, TONES["info"])
    return (
        f'<span class="ep-badge" style="background:{colour};color:#fff;border-radius:3px;padding:0 5px;'
        f'font-weight:600;font-size:0.9em;white-space:nowrap">{esc(text)}</span>'
    )


def answer_badge(status: str) -> str:
    return badge(status, ANSWER_TONES.get(status, "info"))


def phase_name(phase: Any) -> str:
    """The phase as ExecutionBroker writes it (an enum's value, or the string given)."""
    return str(getattr(phase, "value", phase) or "")


def phase_badge(phase: Any) -> str:
    name = phase_name(phase)
    return badge(name, PHASE_TONES.get(name, "info"))


def short_kind(value: str | None) -> str:
    """A short name for a kind URI: its last path segment without ``.yaml`` (``jupyter-notebook``)."""
    if not value:
        return "-"
    text = str(value)
    if "/" in text:
        text = text.rstrip("/").rsplit("/", 1)[-1]
    return text.removesuffix(".yaml") or str(value)


# ------------------------------------------------------------------------------------ units


def format_size(gib: int | None) -> str:
    """A GiB count for people: ``8 GiB``, ``2 TiB``."""
    if gib is None:
        return "-"
    if gib >= 1024 and gib % 1024 == 0:
        return f"{gib // 1024} TiB"
    return f"{gib} GiB"


def human_duration(value: timedelta | None) -> str:
    """A timedelta for people: ``9h 30m``, ``2d``, ``45s``."""
    if value is None:
        return "-"
    total = int(value.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return " ".join(parts) or "0s"


def span(value: timedelta) -> str:
    """A length of time as said aloud, in its two largest units and no seconds past a minute:
    ``2 h 10 min``, ``3 min``, ``45 s``, ``3 d 4 h``."""
    total = max(0, int(value.total_seconds()))
    if total < 60:
        return f"{total} s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [(days, "d"), (hours, "h"), (minutes, "min")]
    first = next(index for index, (n, _) in enumerate(parts) if n)
    return " ".join(f"{n} {u}" for n, u in parts[first : first + 2] if n)


# ------------------------------------------------------------------------------------ times


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(timezone.utc)


def local(moment: datetime, zone: tzinfo | None = None) -> datetime:
    """``moment`` in ``zone`` (default: the user's local zone)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(zone) if zone is not None else moment.astimezone()


def utc_text(moment: datetime | None) -> str:
    """The instant in UTC, to the second: what shows on hover."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def clock(moment: datetime | None, zone: tzinfo | None = None, seconds: bool = False) -> str:
    """The local wall-clock time with its zone: ``20:58 CET``."""
    if moment is None:
        return "-"
    there = local(moment, zone)
    return there.strftime("%H:%M:%S %Z" if seconds else "%H:%M %Z").strip()


def when(moment: datetime | None, now: datetime | None = None, zone: tzinfo | None = None) -> str:
    """A start time as people say it, in the user's zone: ``now``, ``today 14:00 CET``, ``tomorrow 08:00 CET``."""
    if moment is None:
        return "-"
    now = _now(now)
    if moment <= now + timedelta(minutes=1):
        return "now"
    there = local(moment, zone)
    day = (there.date() - local(now, zone).date()).days
    text = clock(moment, zone)
    if day == 0:
        return f"today {text}"
    if day == 1:
        return f"tomorrow {text}"
    return there.strftime("%a %d %b %H:%M %Z").strip()


def relative(moment: datetime | None, now: datetime | None = None) -> str:
    """``in 2 h 10 min`` or ``3 min ago``."""
    if moment is None:
        return ""
    delta = moment - _now(now)
    if abs(delta.total_seconds()) < 1:
        return "now"
    return f"in {span(delta)}" if delta.total_seconds() > 0 else f"{span(-delta)} ago"


def moment_html(
    moment: datetime | None, now: datetime | None = None, zone: tzinfo | None = None, text: str | None = None
) -> str:
    """A ``<time>`` element: local text, the UTC instant on hover and in ``datetime``."""
    if moment is None:
        return "-"
    label = text if text is not None else when(moment, now, zone)
    iso = moment.astimezone(timezone.utc).isoformat() if moment.tzinfo else moment.isoformat()
    return f'<time datetime="{esc(iso)}" title="{esc(utc_text(moment))}">{esc(label)}</time>'


def countdown(expires: datetime | None, now: datetime | None = None) -> str:
    """How long an offer stays open: ``9m 58s``, or ``expired``."""
    if expires is None:
        return "-"
    left = expires - _now(now)
    if left.total_seconds() <= 0:
        return "expired"
    return human_duration(timedelta(seconds=int(left.total_seconds())))


def markup(text: str) -> Markup:
    """Mark HTML built (and escaped) by this package as safe for the templates."""
    return Markup(text)


def full_time(moment: datetime | None, zone: tzinfo | None = None) -> str:
    """Date and local time: ``2026-12-06 20:43 CET``, for past events where "now" would mislead."""
    if moment is None:
        return "-"
    return local(moment, zone).strftime("%Y-%m-%d %H:%M %Z").strip()
