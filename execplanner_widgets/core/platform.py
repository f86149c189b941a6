"""The one interface every compute platform implements, whether it decides locally or asks a service.

The seeds ask for exactly this: "In both cases, the Python interface and data model are the same".
A :class:`Platform` answers ``offers(request)`` with an :class:`OfferSetResponse` (YES with offers,
NO with reasons) and manages the sessions those offers become. Failures that are not a NO (the
service is down, answered garbage, timed out) are raised as :class:`PlatformError` and become an
ERROR result in the planner, never a crash.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from ..model import ExecutionRequest, ExecutionSession, OfferSetResponse, SessionPhase, UpdateModel, phase_update
from ..model.platform import Calendar, PlatformDescription

__all__ = [
    "Platform",
    "PlatformContext",
    "PlatformError",
    "SessionConflict",
    "SessionNotFound",
]


class PlatformError(Exception):
    """The platform could not give an answer (not a NO: an error). The message is for people."""

    status: int = 502

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class SessionNotFound(PlatformError):
    """No offer or session with that identifier on this platform."""

    status = 404


class SessionConflict(PlatformError):
    """The change is not possible in the session's phase (accepting an expired offer, say)."""

    status = 409


@dataclass
class PlatformContext:
    """What the host program gives platforms when it builds them from configuration.

    ``data_dir`` is where a platform may keep state (databases, working folders); ``db_url`` a
    database URL that overrides the default SQLite file; ``base_url`` the public URL prefix under
    which the host serves hosted platforms (so that session documents can carry download links).
    """

    data_dir: Path
    db_url: str | None = None
    base_url: str = "/"
    config_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Platform(abc.ABC):
    """A compute platform that answers "can I do this?" and "when can I do this?"."""

    #: The configuration key that selects this platform class (``static:``, ``broker:`` ...).
    kind: ClassVar[str] = "platform"

    def __init__(self, name: str, title: str | None = None, *, description: str | None = None) -> None:
        self.name = name
        self.title = title or name
        self.description = description

    # ------------------------------------------------------------------------------ to implement

    @abc.abstractmethod
    async def offers(self, request: ExecutionRequest, *, user: str | None = None) -> OfferSetResponse:
        """YES with offers, or NO with one message per unmet requirement."""

    @abc.abstractmethod
    async def session(self, uuid: str, *, user: str | None = None) -> ExecutionSession:
        """The offer or session ``uuid`` as it is now. Raises :class:`SessionNotFound`."""

    @abc.abstractmethod
    async def update_session(self, uuid: str, update: UpdateModel, *, user: str | None = None) -> ExecutionSession:
        """Apply an ExecutionBroker update (e.g. phase -> ACCEPTED). Raises :class:`SessionConflict`."""

    @abc.abstractmethod
    def describe(self) -> PlatformDescription:
        """Name, title, kind, what the platform accepts and its limits."""

    @classmethod
    @abc.abstractmethod
    def from_config(cls, name: str, title: str | None, options: dict[str, Any], context: PlatformContext) -> Platform:
        """Build the platform from its entry in the platforms file."""

    # ------------------------------------------------------------------------------- provided

    async def accept(self, uuid: str, *, user: str | None = None) -> ExecutionSession:
        """Book the offer ``uuid``; the platform rejects its sibling offers."""
        return await self.update_session(uuid, phase_update(SessionPhase.ACCEPTED), user=user)

    async def reject(self, uuid: str, *, user: str | None = None) -> ExecutionSession:
        """Decline the offer ``uuid``, releasing what it held."""
        return await self.update_session(uuid, phase_update(SessionPhase.REJECTED), user=user)

    async def cancel(self, uuid: str, *, user: str | None = None) -> ExecutionSession:
        """Stop a booked or running session."""
        return await self.update_session(uuid, phase_update(SessionPhase.CANCELLED), user=user)

    async def calendar(self, start: datetime, end: datetime, *, user: str | None = None) -> Calendar:
        """What is taken between ``start`` and ``end``. Platforms that keep no calendar say so."""
        raise PlatformError(f"{self.title} does not publish a booking calendar", status=404)

    async def start(self) -> None:  # noqa: B027 - an optional hook: most platforms have nothing to start
        """Start background work (schedulers, sweeps). Called once by the host program."""

    async def aclose(self) -> None:  # noqa: B027 - an optional hook: most platforms hold nothing
        """Release connections and stop background work."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.title}>"
