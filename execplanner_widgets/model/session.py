"""Offers and sessions: ``OfferSetResponse``, ``ScheduledExecutionSession`` and phase updates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Discriminator, Field, TypeAdapter, ValidationError, model_validator

from .components import (
    Component,
    ComponentMetadata,
    ComputeResource,
    DataResourceModel,
    ExecutableModel,
    MessageItem,
    ScheduleInstant,
    ScheduleInterval,
    StorageResource,
    WireModel,
    empty,
)
from .kinds import UPDATE_ENUM_VALUE, kind_uri
from .phases import FINAL_PHASES, SessionPhase
from .types import Instant

__all__ = [
    "Connector",
    "EnumValueUpdate",
    "ExecutionSession",
    "IntegerDeltaUpdate",
    "IntegerValueUpdate",
    "OfferSetResponse",
    "ResultItem",
    "SessionSchedule",
    "StringValueUpdate",
    "UpdateModel",
    "phase_update",
]

SCHEDULED_SESSION = kind_uri("session", "scheduled-execution-session")


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class Connector(WireModel):
    """``SimpleSessionConnector``: how to reach the running session (e.g. a notebook URL)."""

    kind: str | None = None
    status: Literal["PREPARING", "AVAILABLE", "FINISHED"] | None = None
    protocol: str | None = None
    location: str | None = None


class ResultItem(WireModel):
    """A result of a finished session, with a URL to download it.

    ExecutionBroker v1.0 has no results block yet; this extension mirrors UWS ``results`` so that
    a session document and its UWS job say the same thing.
    """

    id: str
    url: str | None = None
    size: int | None = None
    mime_type: str | None = Field(default=None, alias="mime-type")


class SessionSchedule(WireModel):
    """``ScheduledExecutionSchedule``: preparing (instant), available (window), releasing (instant)."""

    preparing: ScheduleInstant | None = None
    available: ScheduleInterval | None = None
    releasing: ScheduleInstant | None = None


class ExecutionSession(Component):
    """An offer, and once accepted the execution session it becomes (``ScheduledExecutionSession``)."""

    kind: str = SCHEDULED_SESSION
    phase: SessionPhase = SessionPhase.OFFERED
    expires: Instant | None = None
    executable: ExecutableModel | None = None
    compute: ComputeResource | None = None
    storage: list[StorageResource] = Field(default_factory=list, exclude_if=empty)
    data: list[DataResourceModel] = Field(default_factory=list, exclude_if=empty)
    schedule: SessionSchedule | None = None  # type: ignore[assignment]
    connectors: list[Connector] = Field(default_factory=list, exclude_if=empty)
    results: list[ResultItem] = Field(default_factory=list, exclude_if=empty)

    _category: ClassVar[str] = "session"

    @property
    def start(self) -> datetime | None:
        """When the booked resources become available."""
        if self.schedule and self.schedule.available and self.schedule.available.start:
            return self.schedule.available.start.start
        return None

    @property
    def end(self) -> datetime | None:
        """When the booked slot ends."""
        start = self.start
        if start is None or not self.schedule or not self.schedule.available:
            return None
        duration = self.schedule.available.duration
        return start + duration if duration is not None else None

    @property
    def cores(self) -> int | None:
        """Cores offered (the maximum the platform fills in, else the minimum)."""
        if not self.compute or not self.compute.cores:
            return None
        return self.compute.cores.max if self.compute.cores.max is not None else self.compute.cores.min

    @property
    def memory(self) -> int | None:
        """Memory offered in GiB."""
        if not self.compute or not self.compute.memory:
            return None
        return self.compute.memory.max if self.compute.memory.max is not None else self.compute.memory.min

    @property
    def messages(self) -> list[MessageItem]:
        return self.meta.messages if self.meta else []

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL_PHASES

    def _repr_html_(self) -> str:
        from ..html import session_html

        return session_html(self)


_MESSAGE_LIST: TypeAdapter[list[MessageItem]] = TypeAdapter(list[MessageItem])


class OfferSetResponse(WireModel):
    """``OfferSetResponse``: YES with offers, or NO with messages that say why.

    The schema puts messages in ``meta.messages`` (an offer set is an ``AbstractComponent``); a
    top-level ``messages`` list from a looser service is read into the same place.
    """

    kind: str | None = None
    meta: ComponentMetadata | None = None
    result: Annotated[Literal["YES", "NO"], BeforeValidator(_upper)]
    description: str | None = None
    offers: list[ExecutionSession] = Field(default_factory=list, exclude_if=empty)

    @model_validator(mode="after")
    def _settled(self) -> OfferSetResponse:
        """Top-level ``messages`` moved into ``meta``, and a YES with no offer refused. After the
        fields, not before: a validator that sees the raw input would make reading an answer from
        JSON build the whole document as Python objects first."""
        extra = self.__pydantic_extra__
        if extra and isinstance(extra.get("messages"), list):
            try:
                moved = _MESSAGE_LIST.validate_python(extra.pop("messages"))
            except ValidationError as error:
                raise ValueError(f"messages: {error.errors()[0]['msg']}") from None
            meta = self.meta if self.meta is not None else ComponentMetadata()
            meta.messages = [*meta.messages, *moved]
            self.meta = meta
            self.__pydantic_fields_set__.add("meta")
        if self.result == "YES" and not self.offers:
            raise ValueError("a YES answer must carry at least one offer")
        return self

    @property
    def messages(self) -> list[MessageItem]:
        return self.meta.messages if self.meta else []

    @property
    def reasons(self) -> list[str]:
        """The messages as plain sentences, for a NO answer's reasons."""
        return [message.text for message in self.messages if message.text]

    def _repr_html_(self) -> str:
        from ..html import offerset_html

        return offerset_html(self)


# ------------------------------------------------------------------------------------- updates


class _Update(WireModel):
    path: str


class StringValueUpdate(_Update):
    kind: Literal["uri:string-value-update"] = "uri:string-value-update"
    value: str


class EnumValueUpdate(_Update):
    kind: Literal["uri:enum-value-update"] = UPDATE_ENUM_VALUE
    value: str


class IntegerValueUpdate(_Update):
    kind: Literal["uri:integer-value-update"] = "uri:integer-value-update"
    value: int
    units: str | None = None


class IntegerDeltaUpdate(_Update):
    kind: Literal["uri:integer-delta-update"] = "uri:integer-delta-update"
    delta: int
    units: str | None = None


UpdateModel = Annotated[
    StringValueUpdate | EnumValueUpdate | IntegerValueUpdate | IntegerDeltaUpdate,
    Discriminator("kind"),
]


def phase_update(phase: SessionPhase | str) -> EnumValueUpdate:
    """The document that moves a session to ``phase`` (ACCEPTED, REJECTED or CANCELLED)."""
    return EnumValueUpdate(path="phase", value=str(SessionPhase(str(phase).upper())))
