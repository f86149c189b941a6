"""The one place that knows session phases: their groups, the allowed moves, UWS names and expiry.

Every other module asks this one ("is this phase final?", "may an offer become ACCEPTED?", "which
UWS phase is a RUNNING session?") instead of keeping its own set, so that the static platform, the
hosted engine, the server and the widgets cannot disagree about the life of a session.

Phase mapping (ExecutionBroker session phase -> UWS 1.1 phase):

=========================================  ============  ===========================================
ExecutionBroker                            UWS           why
=========================================  ============  ===========================================
ACCEPTED, WAITING                          QUEUED        booked; runs by itself at its booked time
PREPARING, AVAILABLE, RUNNING, RELEASING   EXECUTING     fetching data, running, collecting results
COMPLETED                                  COMPLETED
FAILED                                     ERROR         ``errorSummary`` says why
CANCELLED                                  ABORTED       cancelled, or ``PHASE=ABORT``
any final phase, after ``destruction``     ARCHIVED      results deleted, the record kept
INITIAL, OFFERED, REJECTED, EXPIRED        (no job)      offers only become jobs once accepted
=========================================  ============  ===========================================

A platform whose engine queues the job itself (Slurm) may move a session from PREPARING back to
WAITING while the engine's queue holds it: the session and its UWS job (QUEUED) say what the engine
says. Such a session is still booked time not yet used; the hosted engine tells it from a session
that has not started by its run having begun (``run_started``), not by its phase.

This module imports nothing of the project: it is the bottom of the model layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any

__all__ = [
    "ACTIVE_PHASES",
    "ACTIVE_UWS_PHASES",
    "CANCELLABLE_PHASES",
    "ENDED_PHASES",
    "FINAL_PHASES",
    "FINAL_UWS_PHASES",
    "FINISHED_PHASES",
    "OFFERED_PHASES",
    "QUEUED_PHASES",
    "RELEASED_PHASES",
    "RUNNING_PHASES",
    "TRANSITIONS",
    "USER_PHASES",
    "UWS_PHASE_MAP",
    "SessionPhase",
    "UwsPhase",
    "can_move",
    "effective_phase",
    "offer_expired",
    "uws_phase",
    "values",
]


class SessionPhase(str, Enum):
    """``SimpleExecutionSessionPhase``: the life of an offer, then of the execution it became."""

    INITIAL = "INITIAL"
    OFFERED = "OFFERED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    WAITING = "WAITING"
    PREPARING = "PREPARING"
    AVAILABLE = "AVAILABLE"
    RUNNING = "RUNNING"
    RELEASING = "RELEASING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


class UwsPhase(str, Enum):
    """``ExecutionPhase`` of UWS 1.1."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"

    def __str__(self) -> str:
        return self.value


_P = SessionPhase

#: An open offer: it holds capacity until it expires, is accepted or is declined.
OFFERED_PHASES = frozenset({_P.OFFERED})
#: Booked, but not started yet: the booked time can still be given back whole.
QUEUED_PHASES = frozenset({_P.ACCEPTED, _P.WAITING})
#: A run is under way (data staged, code running, results collected).
RUNNING_PHASES = frozenset({_P.PREPARING, _P.AVAILABLE, _P.RUNNING, _P.RELEASING})
#: A booked session that has not finished yet.
ACTIVE_PHASES = QUEUED_PHASES | RUNNING_PHASES
#: An offer that was declined or lapsed: it holds nothing any more and never ran.
RELEASED_PHASES = frozenset({_P.REJECTED, _P.EXPIRED})
#: An execution that ended (its connectors say FINISHED, it may have results).
FINISHED_PHASES = frozenset({_P.COMPLETED, _P.FAILED, _P.CANCELLED})
#: Phases after which nothing more happens to a session.
FINAL_PHASES = RELEASED_PHASES | FINISHED_PHASES
#: Offers that ended without a run (a platform may forget them after a while).
ENDED_PHASES = frozenset({_P.EXPIRED, _P.REJECTED, _P.CANCELLED})
#: A session a user may still cancel before it has started.
CANCELLABLE_PHASES = OFFERED_PHASES | QUEUED_PHASES
#: The phases a user may ask for; the rest are the platform's to set.
USER_PHASES = frozenset({_P.ACCEPTED, _P.REJECTED, _P.CANCELLED})

#: Allowed moves: phase -> the phases it may become next (a platform may skip intermediate ones).
TRANSITIONS: dict[SessionPhase, frozenset[SessionPhase]] = {
    _P.INITIAL: frozenset({_P.OFFERED, _P.REJECTED}),
    _P.OFFERED: frozenset({_P.ACCEPTED, _P.REJECTED, _P.EXPIRED, _P.CANCELLED}),
    _P.ACCEPTED: frozenset({_P.WAITING, *RUNNING_PHASES, *FINISHED_PHASES, _P.REJECTED}),
    _P.WAITING: frozenset({*RUNNING_PHASES, *FINISHED_PHASES}),
    # PREPARING -> WAITING: the data is staged and the engine queues the job (a Slurm job PENDING);
    # RUNNING -> WAITING: the engine put a started job back in its queue (a Slurm requeue)
    _P.PREPARING: frozenset({_P.WAITING, _P.AVAILABLE, _P.RUNNING, _P.RELEASING, *FINISHED_PHASES}),
    _P.AVAILABLE: frozenset({_P.RUNNING, _P.RELEASING, *FINISHED_PHASES}),
    _P.RUNNING: frozenset({_P.WAITING, _P.AVAILABLE, _P.RELEASING, *FINISHED_PHASES}),
    _P.RELEASING: FINISHED_PHASES,
    **{phase: frozenset() for phase in FINAL_PHASES},
}

#: ExecutionBroker phase -> UWS phase (the table in this module's docstring); offers have no job.
UWS_PHASE_MAP: dict[SessionPhase, UwsPhase] = {
    _P.ACCEPTED: UwsPhase.QUEUED,
    _P.WAITING: UwsPhase.QUEUED,
    _P.PREPARING: UwsPhase.EXECUTING,
    _P.AVAILABLE: UwsPhase.EXECUTING,
    _P.RUNNING: UwsPhase.EXECUTING,
    _P.RELEASING: UwsPhase.EXECUTING,
    _P.COMPLETED: UwsPhase.COMPLETED,
    _P.FAILED: UwsPhase.ERROR,
    _P.CANCELLED: UwsPhase.ABORTED,
}
#: UWS phases in which ``WAIT`` blocks (the job may still change by itself).
ACTIVE_UWS_PHASES = frozenset(
    {UwsPhase.PENDING, UwsPhase.QUEUED, UwsPhase.EXECUTING, UwsPhase.HELD, UwsPhase.SUSPENDED}
)
#: UWS phases after which a job does not change any more.
FINAL_UWS_PHASES = frozenset({UwsPhase.COMPLETED, UwsPhase.ERROR, UwsPhase.ABORTED, UwsPhase.ARCHIVED})


def can_move(current: SessionPhase | str, target: SessionPhase | str) -> bool:
    """True if a session in ``current`` may become ``target`` (staying put is not a move)."""
    return SessionPhase(target) in TRANSITIONS[SessionPhase(current)]


def uws_phase(phase: SessionPhase | str, destroyed: bool = False) -> UwsPhase:
    """The UWS phase of a session in ``phase``; ARCHIVED once a finished job's results are destroyed."""
    mapped = UWS_PHASE_MAP.get(SessionPhase(phase), UwsPhase.UNKNOWN)
    if destroyed and mapped in (UwsPhase.COMPLETED, UwsPhase.ERROR, UwsPhase.ABORTED):
        return UwsPhase.ARCHIVED
    return mapped


def offer_expired(row_or_expires: Any, now: datetime) -> bool:
    """True if an offer's hold has lapsed at ``now``: its expiry is at or before ``now``.

    ``row_or_expires`` is the expiry itself (a datetime or None), or anything with ``expires`` and
    ``phase`` (a session document, a database row): then only an OFFERED one can have expired.
    This is the only place the rule is written; SQL queries say the same (``expires <= now``).
    """
    if row_or_expires is None or isinstance(row_or_expires, datetime):
        expires = row_or_expires
    else:
        phase = getattr(row_or_expires, "phase", _P.OFFERED)
        if SessionPhase(phase) is not _P.OFFERED:
            return False
        expires = getattr(row_or_expires, "expires", None)
    return expires is not None and expires <= now


def effective_phase(phase: SessionPhase | str, expires: datetime | None, now: datetime) -> SessionPhase:
    """The phase as a client should see it: an offer past its expiry is EXPIRED even before the
    platform has written so."""
    phase = SessionPhase(phase)
    if phase is _P.OFFERED and offer_expired(expires, now):
        return _P.EXPIRED
    return phase


def values(phases: Iterable[SessionPhase]) -> tuple[str, ...]:
    """The phases' string values, sorted (for SQL ``IN`` clauses over stored strings)."""
    return tuple(sorted(phase.value for phase in phases))
