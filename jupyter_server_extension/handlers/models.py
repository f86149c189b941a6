"""The body of a session change, as the proxy API reads it (the server's own input document).

Every other document the proxy writes lives in the model (``PlatformDescription``, ``PlatformResult``,
``ExecutionSession``, ``JobStatus``, ``ErrorBody``), so the kernel-side client reads them without
the server package.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from execplanner_widgets.model import FieldError, InvalidRequest, SessionPhase, UpdateModel, phase_update
from execplanner_widgets.model.errors import from_validation_error

__all__ = ["PhaseChange", "parse_session_update"]

#: The phases a user may ask for; the rest are the platform's to set.
UserPhase = Literal["ACCEPTED", "REJECTED", "CANCELLED"]

_UPDATE = TypeAdapter(UpdateModel)


class PhaseChange(BaseModel):
    """The convenience body of ``POST .../sessions/{uuid}``: ``{"phase": "ACCEPTED"}``.

    The ExecutionBroker update document (``{"kind": "uri:enum-value-update", "path": "phase",
    "value": "ACCEPTED"}``) is accepted as well; this shorter form is what people type.
    """

    model_config = ConfigDict(extra="forbid")

    phase: UserPhase = Field(description="ACCEPTED books an offer, REJECTED declines it, CANCELLED stops a session")


def _without_kind_tags(error: InvalidRequest) -> InvalidRequest:
    """``uri:enum-value-update.value`` -> ``value``: the union's tag means nothing to the sender."""
    fields = [FieldError(re.sub(r"^uri:[a-z-]+-update\.?", "", item.field), item.message) for item in error.errors]
    return InvalidRequest(fields, error.what)


def parse_session_update(document: Any) -> UpdateModel:
    """The ExecutionBroker update in ``document``: either the standard form or ``{"phase": ...}``."""
    if not isinstance(document, dict):
        raise InvalidRequest([FieldError("", 'send a JSON object such as {"phase": "ACCEPTED"}')], "session update")
    if "kind" not in document and "phase" in document:
        try:
            change = PhaseChange.model_validate(
                {**document, "phase": str(document["phase"]).upper()}
                if isinstance(document["phase"], str)
                else document
            )
        except ValidationError as error:
            raise from_validation_error(error, what="session update") from None
        return phase_update(change.phase)
    if "kind" not in document:
        raise InvalidRequest(
            [
                FieldError(
                    "kind",
                    "send {\"phase\": \"ACCEPTED\"} or an ExecutionBroker update with 'kind', 'path' and 'value'",
                )
            ],
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
