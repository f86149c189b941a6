"""Rows to ExecutionBroker v1.0 documents: offer sets, and sessions with their history and results.

The database keeps what a session *is* (times, amounts, phase, events); this module is the one
place that says how it looks on the wire, so the HTTP routes, the in-process platform and the UWS
view all describe a session the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from execplanner_widgets.model import (
    ComponentMetadata,
    ExecutionSession,
    MessageItem,
    OfferSetResponse,
    SessionPhase,
    format_duration,
    format_instant,
)
from execplanner_widgets.model.phases import FINISHED_PHASES, effective_phase

from .tables import EventRow, OfferSetRow, SessionRow

__all__ = ["UWS_CONNECTOR", "WEB_CONNECTOR", "Links", "message_items", "offerset_document", "session_document"]

#: Connector kind of a session's UWS job (the UWS namespace identifies the protocol).
UWS_CONNECTOR = "http://www.ivoa.net/xml/UWS/v1.0"
#: Connector kind of an interactive session an executor reported (``RunReport.available``).
WEB_CONNECTOR = "urn:execplanner:connector:web"


class Links:
    """URLs of a platform's routes, or ``None`` when it runs in-process with no server."""

    def __init__(self, base: str | None) -> None:
        self.base = base if base is None or base.endswith("/") else base + "/"

    def _join(self, *parts: str) -> str | None:
        return None if self.base is None else self.base + "/".join(parts)

    def offerset(self, uuid: str) -> str | None:
        return self._join("offersets", uuid)

    def session(self, uuid: str) -> str | None:
        return self._join("sessions", uuid)

    def result(self, uuid: str, result_id: str) -> str | None:
        return self._join("sessions", uuid, "results", result_id)

    def jobs(self) -> str | None:
        return self._join("jobs")

    def job(self, uuid: str) -> str | None:
        return self._join("jobs", uuid)

    def job_result(self, uuid: str, result_id: str) -> str | None:
        return self._join("jobs", uuid, "results", result_id)


_LEVELS = frozenset({"DEBUG", "INFO", "WARN", "ERROR"})


def message_items(events: Iterable[EventRow]) -> list[dict[str, Any]]:
    """Events as ExecutionBroker messages on the wire (time, level, the phase as a value, message).

    Built as plain mappings: events are this platform's own rows, and the session document that
    carries them is validated once, as a whole (validating each message first, then dumping it, and
    validating it again inside the session cost more than the rest of a session document)."""
    items: list[dict[str, Any]] = []
    for event in events:
        level = event.level if event.level in _LEVELS else None
        if level is None:  # a level from elsewhere: let the model normalise it
            level = MessageItem(level=event.level).level
        item: dict[str, Any] = {"time": format_instant(event.time), "level": level}
        if event.phase:
            item["values"] = {"phase": event.phase}
        item["message"] = event.message
        items.append(item)
    return items


def _schedule(row: SessionRow) -> dict[str, Any]:
    return {
        "preparing": {"start": format_instant(row.start), "duration": format_duration(row.available_start - row.start)},
        "available": {
            "start": f"{format_instant(row.available_start)}/PT0S",
            "duration": format_duration(row.available_end - row.available_start),
        },
        "releasing": {
            "start": format_instant(row.available_end),
            "duration": format_duration(max(row.compute_end, row.available_end) - row.available_end),
        },
    }


def _connectors(row: SessionRow, phase: SessionPhase, links: Links, session_dir: Path) -> list[dict[str, Any]]:
    if row.accepted is None or row.deleted:
        return []
    finished = phase in FINISHED_PHASES
    status = (
        "FINISHED"
        if finished
        else ("AVAILABLE" if phase in (SessionPhase.RUNNING, SessionPhase.AVAILABLE) else "PREPARING")
    )
    job = links.job(row.uuid)
    if job is not None:
        found = [{"kind": UWS_CONNECTOR, "status": status, "protocol": _protocol(job), "location": job}]
    else:
        found = [
            {
                "kind": "urn:execplanner:connector:folder",
                "status": status,
                "protocol": "FILE",
                "location": session_dir.as_uri(),
            }
        ]
    web = row.connector or {}
    if web.get("url"):
        found.append(
            {
                "kind": WEB_CONNECTOR,
                "status": "FINISHED" if finished else "AVAILABLE",
                "protocol": _protocol(web["url"]),
                "location": web["url"],
            }
        )
    return found


def _protocol(url: str) -> str:
    """The connector's protocol as the schema names it: HTTPS for an https URL, else HTTP."""
    return "HTTPS" if url.lower().startswith("https:") else "HTTP"


def _results(row: SessionRow, links: Links, session_dir: Path) -> list[dict[str, Any]]:
    items = []
    for item in row.results or []:
        url = links.result(row.uuid, item["id"]) or (session_dir / "results" / item["path"]).as_uri()
        items.append({"id": item["id"], "url": url, "size": item.get("size"), "mime-type": item.get("mime-type")})
    return items


def session_document(
    row: SessionRow, events: Iterable[EventRow], links: Links, session_dir: Path, now: datetime, platform: str
) -> ExecutionSession:
    """The ``ScheduledExecutionSession`` for an offer or a booked session, as it is at ``now``."""
    phase = effective_phase(row.phase, row.expires, now)
    document = dict(row.document or {})
    body: dict[str, Any] = {
        "meta": {
            "uuid": row.uuid,
            "name": platform,
            "url": links.session(row.uuid),
            "created": format_instant(row.created),
            "modified": format_instant(row.modified),
            "messages": message_items(events),
        },
        "phase": phase.value,
        "executable": document.get("executable"),
        "compute": document.get("compute"),
        "storage": document.get("storage") or [],
        "data": document.get("data") or [],
        "schedule": _schedule(row),
        "connectors": _connectors(row, phase, links, session_dir),
        "results": _results(row, links, session_dir),
    }
    if phase in (SessionPhase.OFFERED, SessionPhase.EXPIRED) and row.expires is not None:
        body["expires"] = format_instant(row.expires)
    return ExecutionSession.model_validate(body)


def offerset_document(row: OfferSetRow, offers: list[ExecutionSession], links: Links) -> OfferSetResponse:
    """The ``OfferSetResponse``: YES with its offers as they are now, or NO with its reasons."""
    meta = ComponentMetadata.model_validate(
        {
            "uuid": row.uuid,
            "name": row.platform,
            "url": links.offerset(row.uuid),
            "created": format_instant(row.created),
            "messages": row.messages or [],
            "options": row.options or [],
        }
    )
    return OfferSetResponse(result=row.result, meta=meta, description=row.description, offers=offers)  # type: ignore[arg-type]
