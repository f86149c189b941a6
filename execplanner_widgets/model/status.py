"""Wire documents of the proxy API that ExecutionBroker does not define: the error body and a job's status.

The server answers with them and the kernel client reads them (also in its in-process mode, where
no server is installed), so they live in the model, not in the server package.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .phases import SessionPhase
from .session import ExecutionSession, ResultItem

__all__ = ["ErrorBody", "FieldProblem", "JobStatus"]


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
