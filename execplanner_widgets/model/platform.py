"""What a platform says about itself: its description in the platform list and its booking calendar.

These are wire documents of the proxy API (``GET /platforms``, ``GET /platforms/{name}/calendar``):
the server writes them, the kernel client reads them, and both import them from here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .types import Instant

__all__ = ["Calendar", "CalendarStep", "PlatformDescription", "PlatformList"]


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
        return [
            (step.start, step.end, None if total is None else total - getattr(step, resource)) for step in self.steps
        ]

    def _repr_html_(self) -> str:
        from ..html import calendar_html

        return calendar_html(self)


class PlatformList(list):
    """The configured platforms (:class:`PlatformDescription`), shown as a table in notebooks."""

    def _repr_html_(self) -> str:
        from ..html import platforms_table

        return platforms_table(self)
