"""UWS jobs on the store: list, delete, change destruction or execution duration; rows as UWS documents.

A UWS job is a booked session seen through UWS (documents in :mod:`.uws_documents`), so these are
small transactions on the same rows the calendar uses; a change that would give capacity back (a
shorter execution duration, a deleted job) releases it in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from execplanner_widgets.core.platform import PlatformError, SessionNotFound
from execplanner_widgets.model import canonical_kind, format_instant, short_kind
from execplanner_widgets.model.phases import QUEUED_PHASES, SessionPhase, UwsPhase, uws_phase

from .documents import Links, message_items
from .plan import precise_now, whole_seconds
from .service import release_hold
from .store import EventRow, SessionRow, Store, add_event
from .tables import run_under_way
from .uws_documents import UwsError, UwsJob, UwsJobRef, UwsParameter, UwsResult

__all__ = ["ActionNotAllowed", "JobStore", "job_from_row", "jobref_from_row"]


class ActionNotAllowed(PlatformError):
    """The UWS action is not allowed in the job's phase (HTTP 403)."""

    status = 403


class JobStore:
    """The UWS side of a hosted platform's sessions."""

    def __init__(self, store: Store, platform: str, retention: timedelta) -> None:
        self.store = store
        self.platform = platform
        self.retention = retention

    def _job(self, session: Session, uuid: str, user: str | None) -> SessionRow:
        row = session.get(SessionRow, uuid)
        if row is None or row.platform != self.platform or row.owner != user or row.accepted is None or row.deleted:
            raise SessionNotFound(f"no job {uuid} on {self.platform}")
        return row

    def job(self, uuid: str, user: str | None) -> tuple[SessionRow, list[EventRow]]:
        with self.store.read() as session:
            row = self._job(session, uuid, user)
            events = list(session.scalars(select(EventRow).where(EventRow.session == uuid).order_by(EventRow.id)))
            return row, events

    def jobs(
        self, user: str | None, phases: set[UwsPhase] | None, after: datetime | None, last: int | None
    ) -> list[SessionRow]:
        """The user's jobs, most recently created first; filtered as UWS ``PHASE``/``AFTER``/``LAST`` ask."""
        query = select(SessionRow).where(
            SessionRow.platform == self.platform,
            SessionRow.accepted.is_not(None),
            SessionRow.deleted.is_(False),
            SessionRow.owner.is_(None) if user is None else SessionRow.owner == user,
        )
        if after is not None:
            query = query.where(SessionRow.accepted > after)
        query = query.order_by(SessionRow.accepted.desc(), SessionRow.uuid)
        with self.store.read() as session:
            rows = list(session.scalars(query))
        if phases:
            rows = [row for row in rows if uws_phase(row.phase, row.destroyed) in phases]
        if last is not None:
            rows = rows[:last]
        return rows

    def delete(self, uuid: str, user: str | None) -> bool:
        """Hide the job from UWS for good; release what it still holds. True if a run must stop."""
        with self.store.write(self.platform) as session:
            row = self._job(session, uuid, user)
            now = precise_now()
            stop = run_under_way(row)
            if SessionPhase(row.phase) in QUEUED_PHASES and not stop:
                row.phase = SessionPhase.CANCELLED.value
            if stop:
                row.cancel_requested = True
            row.deleted = True
            row.destruction = now
            row.modified = now
            if not stop:
                release_hold(row, now, storage_too=True)
            add_event(session, row, "deleted (UWS DELETE): the job and its results are removed", "WARN")
            return stop

    def set_destruction(self, uuid: str, user: str | None, when: datetime) -> None:
        """Move the destruction time (not into the past, not beyond the platform's retention)."""
        with self.store.write(self.platform) as session:
            row = self._job(session, uuid, user)
            if row.destroyed:
                raise ActionNotAllowed(f"the job {uuid} is ARCHIVED: its results are already deleted")
            now = precise_now()
            latest = row.available_end + self.retention
            chosen = min(max(when, now), latest)
            row.destruction = chosen.replace(microsecond=0)
            row.modified = now
            note = (
                ""
                if chosen == when
                else f" (asked for {format_instant(when)}; results are kept at most until {format_instant(latest)})"
            )
            add_event(session, row, f"destruction time set to {format_instant(row.destruction)}{note}")

    def set_execution_duration(self, uuid: str, user: str | None, seconds: int) -> None:
        """Shorten a queued job's booked run (giving the rest back); a longer run needs a new booking."""
        with self.store.write(self.platform) as session:
            row = self._job(session, uuid, user)
            current = row.available_end - row.available_start
            wanted = whole_seconds(timedelta(seconds=seconds))
            if SessionPhase(row.phase) not in QUEUED_PHASES or run_under_way(row):
                raise ActionNotAllowed(
                    f"the job {uuid} is {uws_phase(row.phase, row.destroyed).value}: "
                    "the execution duration can only change while it is QUEUED"
                )
            if seconds <= 0 or wanted > current:
                raise ActionNotAllowed(
                    f"the job {uuid} is booked for {int(current.total_seconds())} s; it can be shortened but not extended "
                    "(ask for new offers for a longer run)"
                )
            shorter = current - wanted
            now = precise_now()
            old_compute_end = row.compute_end
            row.available_end -= shorter
            row.compute_end -= shorter
            if row.storage_end <= old_compute_end:  # storage held as long as compute, not for its own lifetime
                row.storage_end = row.compute_end
            row.hold_end = max(row.compute_end, row.storage_end)
            if row.destruction is not None:
                row.destruction -= shorter
            row.modified = now
            add_event(
                session,
                row,
                f"execution duration shortened to {int(wanted.total_seconds())} s; the rest of the slot is free again",
            )

    def set_run_id(self, uuid: str, user: str | None, run_id: str) -> None:
        """Keep the client's ``RUNID`` (UWS returns it unchanged)."""
        with self.store.write(self.platform) as session:
            row = self._job(session, uuid, user)
            row.run_id = run_id[:255]


# ------------------------------------------------------------------------------ rows -> documents


def _is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def job_parameters(row: SessionRow, links: Links) -> list[UwsParameter]:
    """The booking as UWS parameters: executable, resources, times, data, and the session document."""
    document = row.document or {}
    executable = document.get("executable") or {}
    parameters: list[UwsParameter] = []
    location = executable.get("location")
    if location:
        parameters.append(UwsParameter(id="executable", value=str(location), by_reference=_is_url(str(location))))
    if executable.get("kind"):
        parameters.append(
            UwsParameter(id="kind", value=short_kind(canonical_kind(str(executable["kind"]), "executable")))
        )
    for argument in executable.get("arguments") or []:
        parameters.append(UwsParameter(id="argument", value=str(argument)))
    parameters.append(UwsParameter(id="cores", value=str(row.cores)))
    parameters.append(UwsParameter(id="memory", value=f"{row.memory}Gi"))
    if row.storage:
        parameters.append(UwsParameter(id="storage", value=f"{row.storage}Gi"))
    parameters.append(UwsParameter(id="start", value=format_instant(row.available_start)))
    for item in document.get("fetch") or []:
        where = str(item["location"])
        parameters.append(UwsParameter(id="data", value=where, by_reference=_is_url(where)))
    session_url = links.session(row.uuid)
    if session_url:
        parameters.append(UwsParameter(id="session", value=session_url, by_reference=True))
    return parameters


def job_results(row: SessionRow, links: Links, session_dir: Path) -> list[UwsResult]:
    results = []
    for item in row.results or []:
        href = links.job_result(row.uuid, item["id"]) or (session_dir / "results" / item["path"]).as_uri()
        results.append(UwsResult(id=item["id"], href=href, size=item.get("size"), mime_type=item.get("mime-type")))
    return results


def job_from_row(row: SessionRow, events: Iterable[EventRow], links: Links, session_dir: Path) -> UwsJob:
    """The UWS job of a booked session."""
    phase = uws_phase(row.phase, row.destroyed)
    error = None
    if row.error and phase in (UwsPhase.ERROR, UwsPhase.ARCHIVED):
        error = UwsError(type=row.error.get("type", "fatal"), message=str(row.error.get("message", "failed")))
    messages = message_items(events)
    for item in messages:
        item["phase"] = (item.pop("values", None) or {}).get("phase")
    return UwsJob(
        job_id=row.uuid,
        run_id=row.run_id,
        owner_id=row.owner,
        phase=phase,
        quote=row.available_end,
        creation_time=row.accepted,
        start_time=row.run_started,
        end_time=row.run_ended,
        execution_duration=int((row.available_end - row.available_start).total_seconds()),
        destruction=row.destruction,
        parameters=job_parameters(row, links),
        results=job_results(row, links, session_dir),
        error_summary=error,
        messages=messages,
    )


def jobref_from_row(row: SessionRow, links: Links) -> UwsJobRef:
    return UwsJobRef(
        id=row.uuid,
        href=links.job(row.uuid),
        phase=uws_phase(row.phase, row.destroyed),
        run_id=row.run_id,
        owner_id=row.owner,
        creation_time=row.accepted,
    )
