"""HTML summaries for front ends that cannot show widgets (Zeppelin, nbviewer, exported HTML).

Every model's ``_repr_html_`` and the app's fallback come from here, so a request, an offer or a
session reads the same in JupyterLab, on nbviewer and in an exported page. The widgets use the same
functions for their panes.

Functions take the project's objects duck-typed (attributes such as ``phase``, ``start``,
``offers``); nothing of the project is imported here. Anything that came from a platform or a
record (titles, messages, names, URLs) is untrusted: it goes through :func:`esc` before it becomes
HTML, and a URL becomes a link only when it is http(s) or a relative path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from .text import (
    TONES,
    answer_badge,
    badge,
    clock,
    countdown,
    esc,
    format_size,
    full_time,
    human_duration,
    link,
    moment_html,
    phase_badge,
    phase_name,
    short_kind,
    web_link,
    when,
)

_TABLE = 'style="border-collapse:collapse;margin:2px 0;font-size:0.95em"'
_CELL = 'style="border-bottom:1px solid #d0d7de;padding:2px 8px;text-align:left;vertical-align:top"'
_HEAD = 'style="border-bottom:2px solid #8c959f;padding:2px 8px;text-align:left"'
_BOX = 'class="execplanner" style="font-family:var(--jp-ui-font-family,sans-serif);line-height:1.4"'

#: Phases before the session starts: "Start" reads "today 14:00"; afterwards it is a date and time.
_BEFORE_START = {"OFFERED", "ACCEPTED", "WAITING", "INITIAL"}


def _clock_now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(timezone.utc)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table from cells that are already HTML (callers escape their values)."""
    head = "".join(f"<th {_HEAD}>{esc(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pairs_table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table; values are HTML already."""
    body = "".join(f'<tr><th {_HEAD} scope="row">{esc(key)}</th><td {_CELL}>{value}</td></tr>' for key, value in rows)
    return f"<table {_TABLE}><tbody>{body}</tbody></table>"


def _range(minimum: Any, maximum: Any, unit: str = "") -> str:
    if minimum is None and maximum is None:
        return "-"
    suffix = f" {unit}" if unit else ""
    if maximum is None or maximum == minimum:
        return (
            f"{minimum if minimum is not None else maximum}{suffix}"
            if minimum is not None
            else f"up to {maximum}{suffix}"
        )
    if minimum is None:
        return f"up to {maximum}{suffix}"
    return f"{minimum}-{maximum}{suffix}"


def _messages(messages: Iterable[Any]) -> str:
    items = []
    for message in messages:
        text = getattr(message, "text", None) or str(message)
        level = getattr(message, "level", None)
        stamp = getattr(message, "time", None)
        prefix = f"{moment_html(stamp, text=clock(stamp, seconds=True))} " if isinstance(stamp, datetime) else ""
        marker = f"{esc(level)}: " if level and level not in ("INFO", "OTHER") else ""
        items.append(f"<li>{prefix}{marker}{esc(text)}</li>")
    return f'<ul style="margin:2px 0;padding-left:1.2em">{"".join(items)}</ul>' if items else "-"


def _document(document: dict[str, Any], title: str) -> str:
    """The whole wire document, folded away, for people who want every field."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    return (
        f"<details><summary>{esc(title)}</summary>"
        f'<pre style="font-size:0.85em;max-height:24em;overflow:auto">{esc(text)}</pre></details>'
    )


def _wrap(inner: str) -> str:
    return f"<div {_BOX}>{inner}</div>"


# ----------------------------------------------------------------------------------- requests


def executable_location(executable: Any) -> str | None:
    """Where the executable is: a notebook or script location, or a container image."""
    location = getattr(executable, "location", None)
    if location:
        return str(location)
    image = getattr(executable, "image", None)
    if image is not None and getattr(image, "locations", None):
        return ", ".join(image.locations)
    return None


def data_status(item: Any) -> str:
    """``located``, ``to find`` (required, no location) or ``optional``, as a badge."""
    if item.is_located:
        return badge("located", "ok")
    if item.is_required:
        return badge("to find", "no")
    return badge("optional", "muted")


def data_table(items: Sequence[Any]) -> str:
    rows = [
        (
            esc(item.name or item.uuid or f"item {index + 1}"),
            esc(item.description),
            data_status(item),
            web_link(item.location_hint) if item.location_hint else "-",
        )
        for index, item in enumerate(items)
    ]
    return _table(("Data", "Description", "Status", "Location"), rows)


def request_html(request: Any) -> str:
    """What the request asks for: executable, compute, storage, data (the shopping list), schedule."""
    executable = request.executable
    rows: list[tuple[str, str]] = [
        ("Executable", f"{esc(executable.name or short_kind(executable.kind))} ({esc(short_kind(executable.kind))})"),
    ]
    location = executable_location(executable)
    if location:
        rows.append(("Location", web_link(location)))
    if executable.description:
        rows.append(("Description", esc(executable.description)))
    compute = request.compute
    if compute and compute.cores:
        rows.append(("Cores", esc(_range(compute.cores.min, compute.cores.max))))
    if compute and compute.memory:
        rows.append(("Memory", esc(_range(compute.memory.min, compute.memory.max, "GiB"))))
    for index, storage in enumerate(request.storage):
        size = _range(storage.size.min, storage.size.max, "GiB") if storage.size else "-"
        lifetime = f", kept {human_duration(storage.lifetime)}" if storage.lifetime else ""
        rows.append((f"Storage {index + 1}" if len(request.storage) > 1 else "Storage", esc(size + lifetime)))
    if request.duration is not None:
        rows.append(("Duration", esc(human_duration(request.duration))))
    window = request.start_window
    if window is not None:
        rows.append(("Start", esc(str(window))))
    parts = [f"<strong>Request</strong>: {esc(request.summary())}", pairs_table(rows)]
    if request.data:
        missing = request.missing_data()
        if missing:
            names = ", ".join(item.name or item.uuid or "unnamed" for item in missing)
            parts.append(f'<div style="color:{TONES["no"]}">Still to find: {esc(names)}</div>')
        parts.append(data_table(request.data))
    return _wrap("".join(parts))


# ------------------------------------------------------------------------------------ sessions


def session_rows(session: Any, now: datetime | None = None) -> list[tuple[str, str]]:
    """Key facts of an offer or session, as (label, HTML) pairs."""
    rows: list[tuple[str, str]] = [("Phase", phase_badge(session.phase))]
    if session.meta and session.meta.name:
        rows.append(("Name", esc(session.meta.name)))
    if session.uuid:
        rows.append(("Identifier", esc(session.uuid)))
    if session.executable is not None:
        kind = short_kind(session.executable.kind)
        location = executable_location(session.executable)
        rows.append(("Executable", esc(kind) + (f": {web_link(location)}" if location else "")))
    if session.start is not None:
        end = (
            f" until {moment_html(session.end, now, text=when(session.end, now) if session.end > _clock_now(now) else full_time(session.end))}"
            if session.end
            else ""
        )
        start = (
            moment_html(session.start, now)
            if phase_name(session.phase) in _BEFORE_START
            else moment_html(session.start, now, text=full_time(session.start))
        )
        rows.append(("Start", f"{start}{end}"))
    if session.schedule and session.schedule.available and session.schedule.available.duration is not None:
        rows.append(("Duration", esc(human_duration(session.schedule.available.duration))))
    if session.cores is not None:
        rows.append(("Cores", esc(_range(session.compute.cores.min, session.compute.cores.max))))
    if session.memory is not None:
        rows.append(("Memory", esc(_range(session.compute.memory.min, session.compute.memory.max, "GiB"))))
    for index, storage in enumerate(session.storage):
        size = _range(storage.size.min, storage.size.max, "GiB") if storage.size else "-"
        rows.append(("Storage" if len(session.storage) == 1 else f"Storage {index + 1}", esc(size)))
    if session.data:
        rows.append(
            ("Data", ", ".join(esc(item.name or item.location_hint or item.uuid or "item") for item in session.data))
        )
    if phase_name(session.phase) == "OFFERED" and session.expires is not None:
        rows.append(
            (
                "Expires",
                f"in {esc(countdown(session.expires, now))} ({moment_html(session.expires, now, text=clock(session.expires, seconds=True))})",
            )
        )
    if session.connectors:
        links = [
            # a finished connector leads nowhere useful (a hosted job's is its UWS record): text, not a link
            (
                esc(f"{connector.protocol or 'link'}: {connector.location}")
                if connector.status == "FINISHED"
                else link(connector.location, f"{connector.protocol or 'link'}: {connector.location}")
            )
            + (f" ({esc(connector.status)})" if connector.status else "")
            for connector in session.connectors
            if connector.location
        ]
        rows.append(("Connectors", "<br>".join(links) or "-"))
    if session.results:
        rows.append(
            (
                "Results",
                "<br>".join(
                    link(result.url, result.id) if result.url else esc(result.id) for result in session.results
                ),
            )
        )
    if session.messages:
        rows.append(("Messages", _messages(session.messages)))
    return rows


def session_html(session: Any, *, document: bool = True, now: datetime | None = None) -> str:
    """An offer or a booked session: phase, platform, start, resources, links and messages."""
    title = "Offer" if phase_name(session.phase) == "OFFERED" else "Session"
    inner = f"<strong>{title}</strong>" + pairs_table(session_rows(session, now))
    if document:
        inner += _document(session.to_wire(), "ExecutionBroker document")
    return _wrap(inner)


def offers_table(offers: Sequence[Any], now: datetime | None = None) -> str:
    rows = [
        (
            esc(index + 1),
            moment_html(offer.start, now),
            esc(offer.cores if offer.cores is not None else "-"),
            esc(format_size(offer.memory)),
            esc(countdown(offer.expires, now)),
        )
        for index, offer in enumerate(offers)
    ]
    return _table(("Offer", "Start", "Cores", "Memory", "Expires in"), rows)


def offerset_html(response: Any) -> str:
    """A platform's answer: YES with its offers, or NO with the reasons."""
    parts = [f"{answer_badge(response.result)} {esc(response.description or '')}"]
    if response.offers:
        parts.append(offers_table(response.offers))
    if response.reasons:
        parts.append(_messages(response.messages))
    return _wrap("".join(parts))


def reasons_html(reasons: Sequence[str]) -> str:
    """A NO or ERROR answer's reasons as a list."""
    if not reasons:
        return ""
    items = "".join(f"<li>{esc(reason)}</li>" for reason in reasons)
    return f'<ul style="margin:2px 0;padding-left:1.2em;color:{TONES["no"]}">{items}</ul>'


def options_html(options: Sequence[Any]) -> str:
    """What a platform says it *could* offer instead (ExecutionBroker options on a NO answer)."""
    items = []
    for option in options:
        parts = []
        if option.min is not None or option.max is not None:
            parts.append(_range(option.min, option.max, option.units or ""))
        if option.values:
            parts.append("one of " + ", ".join(short_kind(value) for value in option.values))
        if option.pattern:
            parts.append(option.pattern)
        items.append(f"<li><code>{esc(option.path)}</code>: {esc('; '.join(parts) or short_kind(option.kind))}</li>")
    if not items:
        return ""
    return f'<div>Could offer instead:</div><ul style="margin:2px 0;padding-left:1.2em">{"".join(items)}</ul>'


def result_html(result: Any) -> str:
    """One platform's answer in the federation: who, YES/NO/ERROR, offers or reasons, how long."""
    head = f"<strong>{esc(result.title)}</strong> ({esc(result.platform)}) {answer_badge(result.status)} <small>{esc(f'{result.elapsed:.2f}')} s</small>"
    parts = [head]
    if result.response is not None and result.response.description:
        parts.append(f"<div>{esc(result.response.description)}</div>")
    if result.offers:
        parts.append(offers_table(result.offers))
    if result.status != "YES":
        parts.append(reasons_html(result.reasons))
        if result.response is not None and result.response.meta is not None:
            parts.append(options_html(result.response.meta.options))
    return _wrap("".join(parts))


def results_html(results: Sequence[Any], now: datetime | None = None) -> str:
    """Every platform's answer in one table: one row per offer, NO and ERROR rows with reasons."""
    rows = []
    for result in results:
        platform = f"<strong>{esc(result.title)}</strong><br><small>{esc(result.platform)}</small>"
        if result.status == "YES" and result.offers:
            for offer in result.offers:
                rows.append(
                    (
                        platform,
                        answer_badge(result.status),
                        moment_html(offer.start, now),
                        esc(offer.cores if offer.cores is not None else "-"),
                        esc(format_size(offer.memory)),
                        esc(countdown(offer.expires, now)),
                    )
                )
        else:
            rows.append((platform, answer_badge(result.status), reasons_html(result.reasons) or "-", "", "", ""))
    return _wrap(
        f"<strong>Offers</strong> ({len(results)} answers)"
        + _table(("Platform", "Answer", "Start", "Cores", "Memory", "Expires in"), rows)
    )


# ------------------------------------------------------------------------------------ planner


def platforms_table(platforms: Sequence[Any]) -> str:
    rows = []
    for platform in platforms:
        limits = getattr(platform, "limits", None) or {}
        limit_text = ", ".join(f"{key} {value}" for key, value in limits.items()) or "-"
        accepts = getattr(platform, "accepts", None)
        rows.append(
            (
                f"<strong>{esc(platform.title)}</strong><br><small>{esc(platform.name)}</small>",
                esc(platform.kind),
                esc(", ".join(accepts) if accepts is not None else "any"),
                esc(limit_text),
            )
        )
    return _table(("Platform", "Kind", "Runs", "Limits"), rows)


def planner_html(planner: Any) -> str:
    """The planner: how it reaches platforms (server or in-process) and which platforms it asks."""
    try:
        mode = planner.describe_mode()
    except Exception as error:
        mode = f"mode unknown ({error})"
    parts = [f"<strong>ExecPlanner</strong>: {esc(mode)}"]
    try:
        platforms = planner.platforms()
    except Exception as error:
        parts.append(f'<div style="color:{TONES["no"]}">Cannot list the platforms: {esc(error)}</div>')
    else:
        parts.append(platforms_table(platforms) if platforms else "<div>No platforms are configured.</div>")
    return _wrap("".join(parts))


# ----------------------------------------------------------------------------------- records


def executables_html(entries: Sequence[Any], record: Any | None = None) -> str:
    """The executables of an OSSR record: name, kind, description."""
    parts = []
    if record is not None and record.title:
        parts.append(f"<strong>{esc(record.title)}</strong>")
    rows = [
        (f"<strong>{esc(entry.name)}</strong>", esc(entry.short_kind), esc(entry.description or ""))
        for entry in entries
    ]
    parts.append(_table(("Executable", "Kind", "Description"), rows) if rows else "<div>No executables.</div>")
    return _wrap("".join(parts))


def app_html(
    planner: Any = None,
    *,
    record: Any | None = None,
    request: Any | None = None,
    results: Sequence[Any] | None = None,
    session: Any | None = None,
) -> str:
    """The whole app as a static page: what the planner knows and how far the user has come.

    Shown when widgets cannot be (Zeppelin, nbviewer, exported HTML, a terminal), and added to the
    app's display data so that a saved notebook still reads well without a kernel.
    """
    parts = ['<div style="font-size:1.2em;font-weight:600">ExecPlanner</div>']
    if planner is not None:
        parts.append(planner_html(planner))
    if record is not None:
        parts.append(executables_html(record.entries, record))
    if request is not None:
        parts.append(request_html(request))
    if results:
        parts.append(results_html(results))
    if session is not None:
        parts.append(session_html(session, document=False))
    return _wrap("".join(parts))


# ---------------------------------------------------------------------------------- calendar


def _bar(used: int, total: int | None, tone: str) -> str:
    """A horizontal bar: the share of ``total`` in use (full width = the whole platform)."""
    if not total:
        return esc(used)
    share = max(0.0, min(1.0, used / total))
    colour = TONES.get(tone, TONES["info"])
    return (
        '<div style="width:220px;height:12px;background:#eaeef2;border-radius:2px;display:inline-block;'
        'vertical-align:middle">'
        f'<div style="width:{share * 100:.1f}%;height:100%;background:{colour};border-radius:2px"></div></div>'
        f" <small>{esc(used)} / {esc(total)}</small>"
    )


def calendar_html(calendar: Any, now: datetime | None = None) -> str:
    """A platform's booking calendar: one row per step, bars for the cores and memory taken.

    Gaps (short bars) are where new work fits: "when can I do this?" at a glance.
    """
    capacity = calendar.capacity or {}
    rows = []
    for step in calendar.steps:
        cores_total, memory_total = capacity.get("cores"), capacity.get("memory")
        busy = cores_total and step.cores >= 0.5 * cores_total
        rows.append(
            (
                f"{moment_html(step.start, now)} &rarr; {moment_html(step.end, now)}",
                _bar(step.cores, cores_total, "no" if busy else "ok"),
                _bar(step.memory, memory_total, "no" if busy else "ok"),
            )
        )
    title = f"<strong>{esc(calendar.title)}</strong> <small>({esc(calendar.platform)})</small>: booking calendar"
    body = _table(("When", "Cores taken", "Memory taken (GiB)"), rows) if rows else "<div>Nothing is booked.</div>"
    return _wrap(title + body)
