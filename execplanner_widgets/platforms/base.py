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
from pathlib import Path
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..model.types import Instant
from ..model import ExecutionRequest, ExecutionSession, OfferSetResponse, SessionPhase, UpdateModel, phase_update

__all__ = [
    "Calendar",
    "CalendarStep",
    "Platform",
    "PlatformContext",
    "PlatformDescription",
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


class PlatformDescription(BaseModel):
    """What the platform list shows: who it is, what it accepts, and its limits where known."""

    model_config = ConfigDict(extra="allow")

    name: str
    title: str
    kind: str = Field(description="How the platform is reached: static, broker, hosted or a plugin name")
    description: str | None = None
    accepts: list[str] | None = Field(default=None, description="Short executable kinds; None if unknown")
    limits: dict[str, Any] = Field(default_factory=dict, description="cores, memory (GiB), storage (GiB), duration")
    url: str | None = None


class CalendarStep(BaseModel):
    """From ``start`` to ``end``, this much of the platform is taken (booked, offered or reserved)."""

    start: Instant
    end: Instant
    cores: int = 0
    memory: int = Field(default=0, description="GiB")
    storage: int = Field(default=0, description="GiB")


class Calendar(BaseModel):
    """A platform's booking calendar over a window: its capacity and what is taken, step by step.

    This answers "when can I do this?" at a glance: the gaps are where new work fits.
    """

    platform: str
    title: str
    capacity: dict[str, int | None] = Field(description="cores, memory (GiB) and storage (GiB) the platform books out")
    start: Instant
    end: Instant
    steps: list[CalendarStep] = Field(default_factory=list)

    def free(self, resource: str = "cores") -> list[tuple[Any, Any, int | None]]:
        """``(start, end, free amount)`` for each step; ``None`` where the resource is not limited."""
        total = self.capacity.get(resource)
        return [(step.start, step.end, None if total is None else total - getattr(step, resource)) for step in self.steps]

    def _repr_html_(self) -> str:
        from ..html import calendar_html

        return calendar_html(self)


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

    async def start(self) -> None:
        """Start background work (schedulers, sweeps). Called once by the host program."""

    async def aclose(self) -> None:
        """Release connections and stop background work."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.title}>"
