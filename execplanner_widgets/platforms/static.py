"""A platform that decides from what we know about it: accepted kinds, limits, flavours, allocations.

This is the seeds' "simple plugin [that] could use local metadata about the platform to make the
decision": no service to call, so it works for any platform the day it is described in the
platforms file. NO answers carry one message per unmet requirement, naming the requirement, what
was asked and the limit, plus ExecutionBroker options describing the nearest thing it could offer.
"""

from __future__ import annotations

import asyncio
import heapq
import uuid as uuid_module
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..core.limits import Limits, Need, check_request, message
from ..core.platform import Platform, PlatformContext, SessionConflict, SessionNotFound
from ..model import (
    ComponentMetadata,
    Connector,
    ExecutionRequest,
    ExecutionSession,
    OfferSetResponse,
    SessionPhase,
    UpdateModel,
    canonical_kind,
    short_kind,
    utcnow,
)
from ..model.kinds import kind_uri
from ..model.phases import CANCELLABLE_PHASES, offer_expired
from ..model.platform import PlatformDescription
from ..model.types import Duration, GiB
from ..model.units import format_duration, human_duration

__all__ = ["Flavour", "StaticOptions", "StaticPlatform"]


class Flavour(BaseModel):
    """A fixed machine size, as OpenStack offers them; requests are rounded up to one."""

    model_config = ConfigDict(extra="forbid")

    name: str
    cores: int = Field(ge=1)
    memory: GiB
    storage: GiB | None = None


class StaticOptions(Limits):
    """Options of a ``static:`` entry in the platforms file."""

    accepts: list[str] | None = Field(default=None, description="Executable kinds; none means any")
    flavours: list[Flavour] = Field(default_factory=list)
    allocations: dict[str, Limits] = Field(default_factory=dict, description="Per-user limits")
    offer_ttl: Duration = Field(default=timedelta(minutes=10))
    url: str | None = Field(default=None, description="Where users start work on this platform")

    @field_validator("accepts", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _sorted_flavours(self) -> StaticOptions:
        self.flavours.sort(key=lambda f: (f.cores, f.memory, f.storage or 0))
        return self


#: How long a static platform remembers offers that ended (expired, rejected, cancelled).
FORGET_AFTER = timedelta(hours=1)


@dataclass(slots=True)
class _Kept:
    """One offer or session as the platform keeps it: its JSON document (about 1 KB, where the
    pydantic model takes about 8 KB), and when it may be forgotten (None while it is accepted)."""

    document: bytes
    forget_at: datetime | None


class StaticPlatform(Platform):
    """A platform described by metadata in the platforms file.

    It keeps its offers in memory (it has nothing to run them on) as compact JSON documents, and
    forgets an offer :data:`FORGET_AFTER` after it ended (expired, rejected, cancelled): a heap
    ordered by that time finds them without scanning the others, so memory stays flat under a
    steady stream of questions and each question costs the same however many offers are kept.
    Accepted sessions are kept until they are cancelled.
    """

    kind = "static"

    def __init__(
        self,
        name: str,
        title: str | None = None,
        *,
        options: StaticOptions | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__(name, title, description=description)
        self.options = options or StaticOptions()
        self._sessions: dict[str, _Kept] = {}
        self._forget: list[tuple[datetime, str]] = []  # heap of (forget_at, uuid)
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(
        cls, name: str, title: str | None, options: dict[str, Any], context: PlatformContext
    ) -> StaticPlatform:
        return cls(name, title, options=StaticOptions.model_validate(options), description=options.get("description"))

    def describe(self) -> PlatformDescription:
        opts = self.options
        limits = {
            key: value
            for key, value in (("cores", opts.cores), ("memory", opts.memory), ("storage", opts.storage))
            if value is not None
        }
        if opts.duration is not None:
            limits["duration"] = format_duration(opts.duration)
        extra: dict[str, Any] = {}
        if opts.flavours:
            extra["flavours"] = [flavour.model_dump() for flavour in opts.flavours]
        return PlatformDescription(
            name=self.name,
            title=self.title,
            kind=self.kind,
            description=self.description,
            accepts=[short_kind(canonical_kind(k, "executable")) for k in opts.accepts]
            if opts.accepts is not None
            else None,
            limits=limits,
            url=opts.url,
            **extra,
        )

    def limits_for(self, user: str | None) -> tuple[Limits, str]:
        """The platform's limits, tightened by ``user``'s allocation if they have one."""
        base = Limits(
            cores=self.options.cores,
            memory=self.options.memory,
            storage=self.options.storage,
            duration=self.options.duration,
        )
        if user and user in self.options.allocations:
            return base.within(self.options.allocations[user]), f"your allocation on {self.title}"
        return base, "this platform"

    def _flavour_for(self, need: Need) -> tuple[Flavour | None, str | None]:
        """The smallest flavour that meets every minimum and no requested maximum is exceeded."""
        if not self.options.flavours:
            return None, None
        big_enough = [
            f
            for f in self.options.flavours
            if f.cores >= need.cores and f.memory >= need.memory and (f.storage is None or f.storage >= need.storage)
        ]
        if not big_enough:
            largest = self.options.flavours[-1]
            return (
                None,
                f"no flavour is large enough; the largest is {largest.name} ({largest.cores} cores, {largest.memory} GiB)",
            )
        for flavour in big_enough:
            if (need.cores_max is None or flavour.cores <= need.cores_max) and (
                need.memory_max is None or flavour.memory <= need.memory_max
            ):
                return flavour, None
        smallest = big_enough[0]
        return None, (
            f"the smallest flavour that meets the minimum is {smallest.name} ({smallest.cores} cores, "
            f"{smallest.memory} GiB), more than the maximum asked for"
        )

    async def offers(self, request: ExecutionRequest, *, user: str | None = None) -> OfferSetResponse:
        limits, who = self.limits_for(user)
        problems = check_request(request, limits, self.options.accepts, who=who)
        need = Need.of(request, default_duration=min(limits.duration or timedelta(hours=1), timedelta(hours=1)))
        flavour, flavour_problem = (None, None)
        if not problems:
            flavour, flavour_problem = self._flavour_for(need)
            if flavour_problem:
                problems.append((message(flavour_problem, "WARN", requirement="flavour"), None))
        now = utcnow()
        offerset_id = str(uuid_module.uuid4())
        if problems:
            messages = [message for message, _ in problems]
            messages.append(message(self._nearest(limits), "INFO", requirement="nearest"))
            return OfferSetResponse(
                result="NO",
                meta=ComponentMetadata(
                    uuid=offerset_id,
                    name=self.name,
                    created=now,
                    messages=messages,
                    options=[option for _, option in problems if option is not None],
                ),
                description=f"{self.title} cannot run this request",
            )
        if flavour is not None:
            cores, memory = flavour.cores, flavour.memory
        else:
            cores = min(need.cores_max or need.cores, limits.cores or need.cores_max or need.cores)
            memory = min(need.memory_max or need.memory, limits.memory or need.memory_max or need.memory)
        compute_doc = {
            "kind": kind_uri("compute", "simple-compute-resource"),
            "cores": {"min": need.cores, "max": max(cores, need.cores)},
            "memory": {"min": need.memory, "max": max(memory, need.memory)},
        }
        if request.compute is not None and request.compute.meta is not None:
            compute_doc["meta"] = request.compute.meta.model_dump(exclude_none=True)
        session_id = str(uuid_module.uuid4())
        messages = [message(f"offered by {self.title}" + (f" as flavour {flavour.name}" if flavour else ""))]
        session = ExecutionSession.model_validate(
            {
                "meta": {
                    "uuid": session_id,
                    "name": self.name,
                    "created": now,
                    "messages": [m.model_dump() for m in messages],
                },
                "phase": SessionPhase.OFFERED,
                "expires": now + self.options.offer_ttl,
                "executable": request.executable.model_dump(exclude_none=True),
                "compute": compute_doc,
                "storage": [item.model_dump(exclude_none=True) for item in request.storage],
                "data": [item.model_dump(exclude_none=True) for item in request.data],
                "schedule": {
                    "preparing": {"start": now, "duration": "PT0S"},
                    "available": {"start": f"{now.isoformat()}/PT0S", "duration": need.duration},
                },
            }
        )
        async with self._lock:
            self._forget_ended(now)
            self._keep(session_id, session, session.expires + FORGET_AFTER)
        return OfferSetResponse(
            result="YES",
            meta=ComponentMetadata(uuid=offerset_id, name=self.name, created=now),
            description=f"{self.title} can run this request",
            offers=[session],
        )

    def _nearest(self, limits: Limits) -> str:
        parts = []
        if limits.cores is not None:
            parts.append(f"{limits.cores} cores")
        if limits.memory is not None:
            parts.append(f"{limits.memory} GiB memory")
        if limits.storage is not None:
            parts.append(f"{limits.storage} GiB storage")
        if limits.duration is not None:
            parts.append(f"for up to {human_duration(limits.duration)}")
        kinds = ""
        if self.options.accepts is not None:
            kinds = " running " + ", ".join(short_kind(canonical_kind(k, "executable")) for k in self.options.accepts)
        return f"the most this platform could offer: {', '.join(parts) or 'no stated limits'}{kinds}"

    def _keep(self, uuid: str, session: ExecutionSession, forget_at: datetime | None) -> None:
        """Store ``session``'s document; from ``forget_at`` on it may be forgotten."""
        self._sessions[uuid] = _Kept(session.model_dump_json(by_alias=True, exclude_none=True).encode(), forget_at)
        if forget_at is not None:
            heapq.heappush(self._forget, (forget_at, uuid))

    def _forget_ended(self, now: datetime) -> None:
        """Drop what may be forgotten by ``now`` (offers :data:`FORGET_AFTER` after they ended)."""
        heap = self._forget
        while heap and heap[0][0] <= now:
            _, uuid = heapq.heappop(heap)
            kept = self._sessions.get(uuid)
            # an accepted session has no forget_at; one that ended later has a later heap entry
            if kept is not None and kept.forget_at is not None and kept.forget_at <= now:
                del self._sessions[uuid]

    def _load(self, uuid: str) -> ExecutionSession:
        """The session as it stands now (an offer past its expiry reads EXPIRED)."""
        kept = self._sessions.get(uuid)
        if kept is None:
            raise SessionNotFound(f"no offer or session {uuid} on {self.name}")
        session = ExecutionSession.model_validate_json(kept.document)
        if offer_expired(session, utcnow()):
            session.phase = SessionPhase.EXPIRED
            expired = message("the offer expired before it was accepted")
            expired.time = session.expires
            session.ensure_meta().messages.append(expired)
        return session

    async def session(self, uuid: str, *, user: str | None = None) -> ExecutionSession:
        async with self._lock:
            return self._load(uuid)

    async def update_session(self, uuid: str, update: UpdateModel, *, user: str | None = None) -> ExecutionSession:
        if getattr(update, "path", None) != "phase" or not hasattr(update, "value"):
            raise SessionConflict(f"{self.name} only accepts phase updates (path 'phase'), not {update.path!r}")
        try:
            target = SessionPhase(str(update.value).upper())
        except ValueError:
            raise SessionConflict(f"unknown phase {update.value!r}; use ACCEPTED, REJECTED or CANCELLED") from None
        async with self._lock:
            session = self._load(uuid)
            current = session.phase
            now = utcnow()
            forget_at: datetime | None = now + FORGET_AFTER
            if target is SessionPhase.ACCEPTED and current is SessionPhase.OFFERED:
                session.phase = SessionPhase.ACCEPTED
                forget_at = None
                note = "accepted"
                if self.options.url:
                    note += f"; this platform is described by metadata only: start the task at {self.options.url}"
                    session.connectors.append(
                        Connector(
                            kind="urn:execplanner:connector:web",
                            status="AVAILABLE",
                            protocol="HTTPS",
                            location=self.options.url,
                        )
                    )
                session.ensure_meta().messages.append(message(note))
            elif target is SessionPhase.REJECTED and current is SessionPhase.OFFERED:
                session.phase = SessionPhase.REJECTED
                session.ensure_meta().messages.append(message("rejected"))
            elif target is SessionPhase.CANCELLED and current in CANCELLABLE_PHASES:
                session.phase = SessionPhase.CANCELLED
                session.ensure_meta().messages.append(message("cancelled"))
            else:
                raise SessionConflict(f"cannot change session {uuid} from {current} to {target}")
            self._keep(uuid, session, forget_at)
            return session
