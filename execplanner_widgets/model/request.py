"""``ExecutionRequest``: what the user wants to run, with what, for how long and from when."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import yaml
from pydantic import Field, field_validator

from .components import (
    ComputeResource,
    DataResource,
    DataResourceModel,
    ExecutableModel,
    StorageResource,
    WireModel,
    empty,
)
from .kinds import short_kind
from .types import Duration, Interval

__all__ = ["ExecutionRequest", "RequestedSchedule", "ScheduleBlock"]


class RequestedSchedule(WireModel):
    """``RequestedScheduleItem``: how long the task needs and when it may start."""

    duration: Duration | None = None
    start: Interval | None = None


class ScheduleBlock(WireModel):
    """``RequestedScheduleBlock``."""

    requested: RequestedSchedule | None = None


def _needed(pair: Any, default: int = 1) -> int:
    """What a ``{min, max}`` pair asks for at least: its minimum, else its maximum, else ``default``."""
    if pair is None:
        return default
    return pair.min if pair.min is not None else (pair.max if pair.max is not None else default)


class ExecutionRequest(WireModel):
    """A request for offers (``ExecutionRequest`` in ExecutionBroker v1.0).

    Build one with :func:`execplanner_widgets.parse_request` from any dialect, or directly::

        ExecutionRequest(executable={"kind": "jupyter-notebook", "location": "analysis.ipynb"},
                         compute={"cores": {"min": 4}, "memory": {"min": "8Gi"}},
                         schedule={"requested": {"duration": "2h"}})
    """

    executable: ExecutableModel
    compute: ComputeResource | None = None
    storage: list[StorageResource] = Field(default_factory=list, exclude_if=empty)
    data: list[DataResourceModel] = Field(default_factory=list, exclude_if=empty)
    schedule: ScheduleBlock | None = None
    costs: list[dict[str, Any]] | None = Field(default=None, exclude_if=empty)
    metrics: list[dict[str, Any]] | None = Field(default=None, exclude_if=empty)

    @field_validator("storage", "data", mode="before")
    @classmethod
    def _single_item_is_a_list(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [value]
        return [] if value is None else value

    # ----------------------------------------------------------------------------- convenience

    @property
    def duration(self) -> timedelta | None:
        """The requested duration, if any."""
        if self.schedule and self.schedule.requested:
            return self.schedule.requested.duration
        return None

    @property
    def start_window(self):  # -> TimeInterval | None
        """The requested start window, if any."""
        if self.schedule and self.schedule.requested:
            return self.schedule.requested.start
        return None

    @property
    def earliest_start(self) -> datetime | None:
        window = self.start_window
        return window.start if window else None

    @property
    def min_cores(self) -> int:
        """Cores needed: the minimum, or the maximum when only that is given, else 1."""
        return _needed(self.compute.cores if self.compute else None)

    @property
    def min_memory(self) -> int:
        """Memory needed in GiB: the minimum, or the maximum when only that is given, else 1."""
        return _needed(self.compute.memory if self.compute else None)

    @property
    def min_storage(self) -> int:
        """Storage needed in GiB, summed over all storage resources."""
        total = 0
        for item in self.storage:
            if item.size is not None:
                total += item.size.min if item.size.min is not None else (item.size.max or 0)
        return total

    def missing_data(self) -> list[DataResource]:
        """The shopping list still to fill: required data items that nobody has located yet."""
        return [item for item in self.data if item.is_required and not item.is_located]

    def to_broker(self) -> dict[str, Any]:
        """The ExecutionBroker v1.0 JSON document for this request."""
        return self.to_wire()

    def to_yaml(self) -> str:
        """The same document as YAML, the format the broker also accepts and people edit."""
        return yaml.safe_dump(self.to_broker(), sort_keys=False)

    def summary(self) -> str:
        """One line for people: ``jupyter-notebook, 4-8 cores, 8 GiB, 2h``."""
        parts = [short_kind(self.executable.kind)]
        if self.compute and self.compute.cores:
            cores = self.compute.cores
            span = f"{cores.min}" if cores.max in (None, cores.min) else f"{cores.min}-{cores.max}"
            parts.append(f"{span} core" + ("" if span == "1" else "s"))
        if self.compute and self.compute.memory and self.compute.memory.min is not None:
            parts.append(f"{self.compute.memory.min} GiB memory")
        if self.storage:
            parts.append(f"{self.min_storage} GiB storage")
        if self.duration is not None:
            from .units import human_duration

            parts.append(human_duration(self.duration))
        return ", ".join(parts)

    def _repr_html_(self) -> str:
        from ..html import request_html

        return request_html(self)
