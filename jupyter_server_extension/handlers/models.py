"""Wire documents of the proxy API that the ExecutionBroker model does not already define.

The proxy answers with the project's own documents where they exist (``PlatformDescription``,
``PlatformResult``, ``ExecutionSession``); this module adds the few that are the proxy's own: the
body of a session change, the error body and the view of a job. It imports neither tornado nor
jupyter_server, so the kernel-side client (which also runs where no server is installed) can use
the same models in its in-process mode.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from execplanner_widgets.model import (
    ExecutionSession,
    FieldError,
    InvalidRequest,
    ResultItem,
    SessionPhase,
    UpdateModel,
    phase_update,
)
from execplanner_widgets.model.errors import from_validation_error

__all__ = [
    "SAFE_ID",
    "ErrorBody",
    "FieldProblem",
    "JobStatus",
    "PhaseChange",
    "UWS_FINAL_PHASES",
    "check_identifier",
    "parse_session_update",
]

#: What an offer, session or job identifier may look like: enough for UUIDs and UWS job ids, and
#: nothing that could change the meaning of a URL path ('/', '.', '%', '@', ':' are all refused).
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")

#: UWS 1.1 phases after which a job does not change any more.
UWS_FINAL_PHASES = frozenset({"COMPLETED", "ERROR", "ABORTED", "ARCHIVED"})

#: The phases a user may ask for; the rest are the platform's to set.
UserPhase = Literal["ACCEPTED", "REJECTED", "CANCELLED"]

_UPDATE = TypeAdapter(UpdateModel)


class FieldProblem(BaseModel):
    """One problem with one field of a request body."""

    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error the API answers: a sentence for people, and the field at fault where there is one."""

    model_config = ConfigDict(extra="allow")

    message: str = Field(description="What went wrong, for people")
    field: str | None = Field(default=None, description="The request field at fault (dotted path), if any")
    errors: list[FieldProblem] | None = Field(default=None, description="Every problem, for a 400 on a request body")


class PhaseChange(BaseModel):
    """The convenience body of ``POST .../sessions/{uuid}``: ``{"phase": "ACCEPTED"}``.

    The ExecutionBroker update document (``{"kind": "uri:enum-value-update", "path": "phase",
    "value": "ACCEPTED"}``) is accepted as well; this shorter form is what people type.
    """

    model_config = ConfigDict(extra="forbid")

    phase: UserPhase = Field(description="ACCEPTED books an offer, REJECTED declines it, CANCELLED stops a session")


class JobStatus(BaseModel):
    """Where an accepted session's run stands, whatever the platform.

    Hosted platforms run accepted sessions as UWS jobs: ``uws_phase`` and ``job`` (the UWS job as
    JSON) come from their state in the server's own process. For other platforms the session is all
    there is, so ``uws_phase`` and ``job`` are absent and ``phase`` says it all.
    """

    platform: str
    id: str = Field(description="The job identifier (the session uuid for platforms without UWS jobs)")
    phase: SessionPhase | None = Field(default=None, description="The ExecutionBroker session phase")
    uws_phase: str | None = Field(default=None, description="The UWS 1.1 phase, for platforms that run UWS jobs")
    is_final: bool = Field(description="True once nothing more will happen to the job")
    session: ExecutionSession | None = None
    job: dict[str, Any] | None = Field(default=None, description="The platform's UWS job document, as JSON")
    results: list[ResultItem] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list, description="What happened, oldest first")

    def to_wire(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True, exclude={"session", "results"}, exclude_none=True)
        if self.session is not None:
            data["session"] = self.session.to_wire()
        data["results"] = [item.to_wire() for item in self.results]
        return data


def check_identifier(value: str, field: str) -> str:
    """``value`` if it is a plain identifier; else an :class:`InvalidRequest` naming ``field``."""
    if not SAFE_ID.match(value or ""):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidRequest(
            [FieldError(field, f"{shown!r} is not an identifier (letters, digits, '-' and '_', up to 128)")]
        )
    return value


def _without_kind_tags(error: InvalidRequest) -> InvalidRequest:
    """``uri:enum-value-update.value`` -> ``value``: the union's tag means nothing to the sender."""
    fields = [FieldError(re.sub(r"^uri:[a-z-]+-update\.?", "", item.field), item.message) for item in error.errors]
    return InvalidRequest(fields, error.what)


def parse_session_update(document: Any) -> UpdateModel:
    """The ExecutionBroker update in ``document``: either the standard form or ``{"phase": ...}``."""
    if not isinstance(document, dict):
        raise InvalidRequest([FieldError("", "send a JSON object such as {\"phase\": \"ACCEPTED\"}")], "session update")
    if "kind" not in document and "phase" in document:
        try:
            change = PhaseChange.model_validate(
                {**document, "phase": str(document["phase"]).upper()} if isinstance(document["phase"], str) else document
            )
        except ValidationError as error:
            raise from_validation_error(error, what="session update") from None
        return phase_update(change.phase)
    if "kind" not in document:
        raise InvalidRequest(
            [FieldError("kind", "send {\"phase\": \"ACCEPTED\"} or an ExecutionBroker update with 'kind', 'path' and 'value'")],
            "session update",
        )
    try:
        update = _UPDATE.validate_python(document)
    except ValidationError as error:
        raise _without_kind_tags(from_validation_error(error, what="session update")) from None
    if update.path == "phase" and isinstance(getattr(update, "value", None), str):
        value = update.value.upper()  # type: ignore[union-attr]
        if value not in SessionPhase.__members__:
            raise InvalidRequest(
                [FieldError("value", f"unknown phase {update.value!r}; use ACCEPTED, REJECTED or CANCELLED")],  # type: ignore[union-attr]
                "session update",
            )
        update = update.model_copy(update={"value": value})
    return update
