"""The app's live views, rendered from Jinja2 templates: the offers table, the timeline, the
executables list, My bookings and the job view.

Each view is ONE piece of HTML (one ipywidgets ``HTML`` value), however many rows it has: a widget
per cell made a 500-offer table take seconds to build. Buttons and timeline bars in it send events
to the kernel through :func:`action` (a hidden text box of the hosting widget, see
``execplanner_widgets.widgets.events``); with ``static=True`` a view has no buttons, which is what
the exported-HTML snapshot uses.

Layout stacks by design: every table sits in a CSS container; below 560 px (the sidebar is 300 px)
the header row is hidden and each row becomes a card whose cells carry their own labels, so no
column label or button is ever cut.

Views take plain values and duck-typed objects (attributes ``platform``, ``title``, ``phase``,
``start``, ``end``, ``expires`` ...). Autoescaping is on in every template: a platform's strings
are text; the only markup is this package's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from .text import (
    ANSWER_TONES,
    PHASE_TONES,
    TONES,
    clock,
    countdown,
    esc,
    format_size,
    full_time,
    link,
    local,
    moment_html,
    phase_name,
    relative,
    safe_href,
    span,
    utc_text,
    when,
)

__all__ = [
    "OfferRow",
    "TimelineBar",
    "action",
    "bookings_html",
    "executables_view",
    "job_view",
    "offers_view",
    "render",
    "timeline_svg",
]

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")

#: The CSS every view shares: compact tables that turn into labelled cards in narrow containers.
CSS = """
.ep-view{container-type:inline-size;font-family:var(--jp-ui-font-family,sans-serif);line-height:1.35;max-width:100%}
.ep-view table.ep-table{border-collapse:collapse;width:100%;font-size:0.95em}
.ep-view .ep-table th,.ep-view .ep-table td{padding:2px 6px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top}
.ep-view .ep-table th{border-bottom:2px solid #8c959f;white-space:nowrap}
.ep-view .ep-label{display:none}
.ep-view .ep-actions{white-space:nowrap}
.ep-view .ep-btn{font:inherit;font-size:0.92em;padding:1px 8px;margin:1px 2px 1px 0;border:1px solid #8c959f;border-radius:3px;
 background:var(--jp-layout-color2,#f6f8fa);color:var(--jp-ui-font-color1,#24292f);cursor:pointer;white-space:nowrap}
.ep-view .ep-btn.ep-primary{background:#1a7f37;color:#fff;border-color:#1a7f37}
.ep-view .ep-btn.ep-danger{background:#b42318;color:#fff;border-color:#b42318}
.ep-view .ep-btn:disabled{opacity:0.5;cursor:default}
.ep-view tr.ep-selected{background:rgba(9,105,218,0.10)}
.ep-view tr.ep-closed{color:#57606a}
.ep-view .ep-muted{color:#57606a}
.ep-view code{word-break:break-all}
.ep-view svg .ep-bar{cursor:pointer}
.ep-view .ep-b{color:#fff;border-radius:3px;padding:0 5px;font-weight:600;font-size:0.9em;white-space:nowrap}
.ep-view .ep-t-ok{background:#1a7f37}
.ep-view .ep-t-no{background:#b42318}
.ep-view .ep-t-error{background:#7a2e0e}
.ep-view .ep-t-wait{background:#9a6700}
.ep-view .ep-t-info{background:#0969da}
.ep-view .ep-t-muted{background:#57606a}
@container (max-width: 560px){
 .ep-view .ep-table thead{display:none}
 .ep-view .ep-table tr{display:block;border-bottom:1px solid #8c959f;padding:3px 0}
 .ep-view .ep-table td{display:flex;gap:6px;border:none;padding:1px 2px;flex-wrap:wrap}
 .ep-view .ep-table td:empty{display:none}
 .ep-view .ep-label{display:inline-block;min-width:6.5em;flex:0 0 6.5em;color:#57606a;font-weight:600}
 .ep-view .ep-actions{white-space:normal}
}
"""


@lru_cache(maxsize=1)
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=select_autoescape(default=True, default_for_string=True, enabled_extensions=("html", "svg", "j2")),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(css=Markup(CSS), action=action, tones=TONES, dispatch=DISPATCH)
    environment.filters.update(
        moment=lambda value, now=None, text=None: Markup(moment_html(value, now, text=text)),
        badge=lambda value, tone="info": Markup(f'<span class="ep-b ep-t-{tone}">{esc(value)}</span>'),
        phase_badge=lambda value: Markup(
            f'<span class="ep-b ep-t-{PHASE_TONES.get(str(value), "info")}">{esc(value)}</span>'
        ),
        answer_badge=lambda value: Markup(
            f'<span class="ep-b ep-t-{ANSWER_TONES.get(str(value), "info")}">{esc(value)}</span>'
        ),
        size=format_size,
        link=lambda url, text=None: Markup(link(url, text)),
        utc=utc_text,
    )
    return environment


def render(template: str, **values: Any) -> str:
    """Render one of this package's templates (autoescaped)."""
    return _environment().get_template(template).render(**values)


#: One click handler per view (on its root element): the clicked element's ``data-ep`` goes to the
#: kernel through the hosting widget's hidden text box; a timestamp makes every click a change.
DISPATCH = Markup(
    "var b=event.target.closest('[data-ep]');if(!b||b.disabled)return;"
    "if(window.Notification&&Notification.permission==='default'&&/^accept/.test(b.getAttribute('data-ep')))"
    "Notification.requestPermission();"
    "var h=this.closest('.ep-host'),i=h&&h.querySelector(':scope>.ep-events input');"
    "if(i){i.value=b.getAttribute('data-ep')+'|'+Date.now();i.dispatchEvent(new Event('input',{bubbles:true}));}"
)


def action(verb: str, key: Any = "") -> str:
    """The event a button or bar sends (its ``data-ep``): ``verb:key``, names this package makes."""
    message = f"{verb}:{key}" if key != "" else verb
    if not _KEY.match(message):
        raise ValueError(f"not an event name: {message!r}")
    return message


def _safe(html: str) -> Markup:
    return Markup(html)


# ------------------------------------------------------------------------------------- offers


@dataclass
class OfferRow:
    """One line of the offers table: an offer of a YES answer, or a whole NO/ERROR answer.

    ``state`` is what the app knows of the offer from the platform's answers: ``OFFERED``,
    ``SELECTED``, ``ACCEPTED`` (or the booked session's phase), ``REJECTED``, ``EXPIRED``.
    """

    key: str
    platform: str
    title: str
    answer: str
    start: datetime | None = None
    end: datetime | None = None
    expires: datetime | None = None
    cores: Any = None
    memory: Any = None
    state: str = ""
    reasons: Sequence[str] = ()
    selected: bool = False
    open: bool = False


def offers_view(
    rows: Sequence[OfferRow],
    now: datetime | None = None,
    *,
    static: bool = False,
    details_key: str = "",
    search: int = 0,
) -> str:
    """The offers table (one HTML value for any number of rows); ``search`` numbers the search the
    rows answer (``data-search``), so a reader can tell a new table from the previous one."""
    now = now or datetime.now(timezone.utc)
    items = []
    for row in rows:
        reasons = Markup("".join(f"<li>{esc(reason)}</li>" for reason in row.reasons))
        if row.state in ("", "OFFERED", "SELECTED") and row.expires is not None:
            expiry = _coarse(row.expires, now)
        elif row.state in ("EXPIRED",):
            expiry = "expired"
        else:
            expiry = "-"
        items.append(
            {
                "row": row,
                "reasons": reasons,
                "expiry": expiry,
                "state": row.state or ("OFFERED" if row.answer == "YES" else ""),
                "state_tone": PHASE_TONES.get(row.state, "info") if row.state != "SELECTED" else "info",
                "details_open": row.key == details_key,
            }
        )
    return render("offers.html.j2", items=items, now=now, static=static, search=search)


def _coarse(expires: datetime, now: datetime) -> str:
    """Minutes in the table (it changes once a minute, not once a second, whatever its size);
    seconds only in the last minute. The ticking to the second is the status line's job."""
    left = (expires - now).total_seconds()
    if left <= 0:
        return "expired"
    if left < 60:
        return f"{int(left)} s"
    return f"{int(left // 60)} min"


# ----------------------------------------------------------------------------------- timeline


@dataclass
class TimelineBar:
    """One bar on the timeline: an offer (or a booking) from ``start`` to ``end`` on ``platform``."""

    key: str
    platform: str
    title: str
    start: datetime
    end: datetime
    expires: datetime | None = None
    state: str = "OFFERED"
    selected: bool = False
    mine: bool = False  # one of the user's bookings, not an offer
    label: str = ""


@dataclass
class _Lane:
    platform: str
    title: str
    bars: list[dict[str, Any]] = field(default_factory=list)
    usage: list[dict[str, Any]] = field(default_factory=list)
    top: float = 0.0
    height: float = 0.0


def _ticks(low: datetime, high: datetime, width: float, left: float) -> list[dict[str, Any]]:
    seconds = max((high - low).total_seconds(), 1.0)
    for step in (
        60,
        120,
        300,
        600,
        900,
        1800,
        3600,
        2 * 3600,
        3 * 3600,
        6 * 3600,
        12 * 3600,
        86400,
        2 * 86400,
        7 * 86400,
        30 * 86400,
    ):
        if seconds / step <= 6:
            break
    low_local = local(low)
    epoch = low_local.timestamp()
    offset = low_local.utcoffset().total_seconds() if low_local.utcoffset() else 0.0
    first = math.ceil((epoch + offset) / step) * step - offset
    ticks = []
    value = first
    while value <= high.timestamp():
        moment = datetime.fromtimestamp(value, timezone.utc)
        there = local(moment)
        label = (
            there.strftime("%a %d %b")
            if step >= 86400 or (there.hour == 0 and there.minute == 0)
            else there.strftime("%H:%M")
        )
        ticks.append({"x": left + (value - low.timestamp()) / seconds * width, "label": label, "utc": utc_text(moment)})
        value += step
    return ticks


def timeline_svg(
    bars: Sequence[TimelineBar],
    calendars: Iterable[Any] = (),
    now: datetime | None = None,
    *,
    static: bool = False,
    width: int = 420,
) -> str:
    """Offers from every platform on one time axis, grouped by platform, with a text fallback.

    A bar runs from the offer's start to its end; its thin amber line runs from now to the offer's
    expiry (when the offer stops holding); the selected offer is outlined; expired and rejected
    offers are grey; the user's own bookings are hatched. ``calendars`` (objects with ``platform``,
    ``capacity`` and ``steps`` of ``start``/``end``/``cores``) shade each hosted platform's lane by
    how busy it is. Clicking a bar sends ``select:<key>`` (unless ``static``).
    """
    now = now or datetime.now(timezone.utc)
    bars = list(bars)
    if not bars:
        return render("timeline.html.j2", svg=None, lanes=[], now=now, static=static)
    low = min([now, *(bar.start for bar in bars)])
    high = max(bar.end for bar in bars)
    if high <= low:
        high = low + timedelta(hours=1)
    high = high + (high - low) * 0.04
    left, right = 6.0, 6.0
    plot = width - left - right
    seconds = (high - low).total_seconds()

    def x(moment: datetime) -> float:
        clamped = min(max(moment, low), high)
        return left + (clamped - low).total_seconds() / seconds * plot

    lanes: dict[str, _Lane] = {}
    for bar in bars:
        lanes.setdefault(bar.platform, _Lane(bar.platform, bar.title))
    for calendar in calendars:
        lane = lanes.get(getattr(calendar, "platform", ""))
        if lane is None:
            continue
        total = (getattr(calendar, "capacity", None) or {}).get("cores") or 0
        for step in getattr(calendar, "steps", ()):
            if total and step.end > low and step.start < high and step.cores:
                share = max(0.0, min(1.0, step.cores / total))
                lane.usage.append(
                    {
                        "x": x(step.start),
                        "w": max(x(step.end) - x(step.start), 0.5),
                        "share": share,
                        "tip": f"{step.cores} of {total} cores taken {when(step.start, now)} - {when(step.end, now)} ({utc_text(step.start)})",
                    }
                )
    top = 22.0
    bar_height, gap, label_height = 11.0, 4.0, 15.0
    for bar in bars:
        lane = lanes[bar.platform]
        lane.bars.append(
            {
                "bar": bar,
                "x": x(bar.start),
                "w": max(x(bar.end) - x(bar.start), 2.0),
                "expiry_x": x(bar.expires) if bar.expires is not None and bar.state == "OFFERED" else None,
                "tip": _bar_tip(bar, now),
                "colour": _bar_colour(bar),
            }
        )
    for lane in lanes.values():
        lane.top = top
        lane.height = label_height + len(lane.bars) * (bar_height + gap)
        for index, item in enumerate(lane.bars):
            item["y"] = top + label_height + index * (bar_height + gap)
        top += lane.height + 6
    height = top + 4
    return render(
        "timeline.html.j2",
        svg={
            "width": width,
            "height": height,
            "left": left,
            "plot": plot,
            "bar_height": bar_height,
            "ticks": _ticks(low, high, plot, left),
            "now_x": x(now),
        },
        lanes=list(lanes.values()),
        now=now,
        static=static,
        fallback=[{"bar": bar, "tip": _bar_tip(bar, now)} for bar in bars],
    )


def _bar_colour(bar: TimelineBar) -> str:
    if bar.mine:
        return TONES["wait"]
    if bar.state in ("EXPIRED", "REJECTED"):
        return "#afb8c1"
    if bar.state not in ("OFFERED", "SELECTED"):
        return TONES["ok"]
    return TONES["info"]


def _bar_tip(bar: TimelineBar, now: datetime) -> str:
    what = "Your booking" if bar.mine else f"Offer ({bar.state.lower()})"
    text = f"{what} on {bar.title}: {when(bar.start, now)} - {when(bar.end, now)} ({span(bar.end - bar.start)}); UTC {utc_text(bar.start)}"
    if bar.expires is not None and bar.state == "OFFERED":
        text += f"; open for {countdown(bar.expires, now)}"
    if bar.label:
        text += f"; {bar.label}"
    return text


# -------------------------------------------------------------------------------- executables


def executables_view(
    entries: Sequence[Any], selected: int | None = None, *, limit: int = 200, static: bool = False
) -> str:
    """The executables of a record as one table: name, kind, description and a Select button.

    ``entries`` are ``(index, entry)`` pairs (the index is what Select sends back); at most
    ``limit`` rows are drawn, with a line saying how many more the filter would show.
    """
    shown = list(entries)[:limit]
    return render(
        "executables.html.j2", rows=shown, selected=selected, more=max(0, len(entries) - len(shown)), static=static
    )


# ----------------------------------------------------------------------------------- bookings


def bookings_html(
    bookings: Sequence[Any], now: datetime | None = None, *, static: bool = False, error: str = ""
) -> str:
    """My bookings: one row per session on any platform, with phase, start, end and actions.

    Each booking has ``platform``, ``title`` (of the platform), ``session`` (phase, start, end, uuid,
    connectors, results) and optionally ``key`` (the name sent by its buttons).
    """
    now = now or datetime.now(timezone.utc)
    rows = []
    for number, booking in enumerate(bookings):
        session = booking.session
        phase = phase_name(session.phase)
        connectors = [
            c for c in (getattr(session, "connectors", None) or []) if safe_href(getattr(c, "location", None))
        ]
        rows.append(
            {
                "key": getattr(booking, "key", "") or str(number),
                "platform": booking.platform,
                "title": getattr(booking, "title", "") or booking.platform,
                "uuid": session.uuid,
                "phase": phase,
                "start": session.start,
                "end": session.end,
                "start_text": _at(session.start, now),
                "end_text": _at(session.end, now),
                "timing": _timing(session, now),
                "open_url": _open_url(connectors, phase),
                "cancellable": phase in ("ACCEPTED", "WAITING", "PREPARING", "AVAILABLE", "RUNNING"),
                "results": len(getattr(session, "results", None) or []),
            }
        )
    return render("bookings.html.j2", rows=rows, now=now, static=static, error=error)


def _at(moment: datetime | None, now: datetime) -> str:
    """A future moment as people say it (``today 14:00 CET``); a past one as a date and time."""
    if moment is None:
        return "-"
    return when(moment, now) if moment > now else full_time(moment)


#: Connector kinds that are a job's UWS record: every hosted session carries one, and it is nothing to open.
_UWS_KINDS = "http://www.ivoa.net/xml/UWS/"


def _open_url(connectors: Sequence[Any], phase: str) -> str | None:
    """Where **Open** leads for an AVAILABLE session: its interactive connector (a hub server's
    JupyterLab), never the UWS job record that a hosted session lists first, nor a local folder."""
    if phase != "AVAILABLE":
        return None
    for connector in connectors:
        if str(getattr(connector, "kind", None) or "").startswith(_UWS_KINDS):
            continue
        href = safe_href(getattr(connector, "location", None))
        if href is not None:
            return href
    return None


def _timing(session: Any, now: datetime) -> str:
    """``starts in 2 h 10 min``, ``running for 3 min``, ``12 min left``, ``ended 5 min ago``."""
    phase = phase_name(session.phase)
    start, end = session.start, session.end
    if phase in ("ACCEPTED", "WAITING", "INITIAL") and start is not None:
        if start > now:
            return f"starts {relative(start, now)}"
        late = now - start
        # Past its start and still waiting: the engine's queue holds it (a pending Slurm job, say).
        return "starting now" if late < timedelta(minutes=1) else f"waiting in the platform's queue for {span(late)}"
    if phase == "AVAILABLE" and end is not None:
        return f"{span(end - now)} left" if end > now else "ending now"
    if phase in ("RUNNING", "PREPARING") and start is not None:
        return f"{phase.lower()} for {span(now - start)}" if now > start else phase.lower()
    if phase in ("COMPLETED", "FAILED", "CANCELLED", "REJECTED", "EXPIRED"):
        return f"ended {relative(end, now)}" if end is not None and end <= now else "ended before its slot's end"
    return ""


# ------------------------------------------------------------------------------------- the job


def _notifier(key: str, title: str, body: str) -> Markup:
    """A one-time browser notification (where the user allowed them; asked on Accept) and a mark in
    the tab's title, fired by the element's load error. ``sessionStorage`` keeps it to once per
    session and tab, however often the view is drawn again. ``key``, ``title`` and ``body`` are
    passed as JSON inside an escaped attribute, so no text can break out of the script."""
    import json

    code = (
        f"var k={json.dumps('execplanner-ended-' + key)},t={json.dumps(title)},m={json.dumps(body)};"
        "try{if(!sessionStorage.getItem(k)){sessionStorage.setItem(k,'1');"
        "if(window.Notification&&Notification.permission==='granted'){new Notification(t,{body:m});}"
        "if(!document.hasFocus()){document.title='\u2713 '+document.title;}}}catch(e){}this.remove();"
    )
    return Markup(f'<img alt="" src="data:," style="display:none" class="ep-notify" onerror="{esc(code)}">')


def job_view(
    session: Any,
    platform: str,
    history: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
    *,
    log: str | None = None,
    progress: str = "",
    static: bool = False,
    notify: bool = False,
) -> str:
    """The live job: phase, when (relative and local), phase history, Open button, output tail;
    ``notify`` adds a one-time browser notification that the job ended."""
    now = now or datetime.now(timezone.utc)
    phase = phase_name(session.phase)
    connectors = [c for c in (getattr(session, "connectors", None) or []) if safe_href(getattr(c, "location", None))]
    steps = [
        {
            "phase": item["phase"],
            "time": item["time"],
            "clock": clock(item["time"], seconds=True),
            "ago": relative(item["time"], now),
        }
        for item in history
    ]
    return render(
        "job.html.j2",
        session=session,
        platform=platform,
        phase=phase,
        tone=PHASE_TONES.get(phase, "info"),
        timing=_timing(session, now),
        start_text=_at(session.start, now),
        end_text=_at(session.end, now),
        open_url=_open_url(connectors, phase),
        results=list(getattr(session, "results", None) or []),
        notify=_notifier(
            str(session.uuid), "ExecPlanner", f"The session on {platform or 'its platform'} has ended: {phase}"
        )
        if notify and not static
        else "",
        steps=steps,
        log=log,
        progress=progress,
        now=now,
        static=static,
    )
