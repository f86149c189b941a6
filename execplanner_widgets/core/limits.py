"""What a platform (or a user's allocation) allows, and every way a request goes beyond it.

Every platform that decides from stated limits (static, hosted, plugins) asks this module, so their
NO answers read the same and name the same options.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..model import ExecutionRequest, MessageItem, OptionItem, canonical_kind, short_kind, utcnow
from ..model.types import Duration, GiB
from ..model.units import format_duration, human_duration

__all__ = ["Limits", "Need", "check_request", "message"]


class Limits(BaseModel):
    """The most a platform (or a user's allocation) allows. ``None`` means "no stated limit"."""

    model_config = ConfigDict(extra="forbid")

    cores: int | None = Field(default=None, ge=0)
    memory: GiB | None = None
    storage: GiB | None = None
    duration: Duration | None = None

    def within(self, other: Limits) -> Limits:
        """The tighter of two limits, field by field."""

        def tighter(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else min(a, b)

        return Limits(
            cores=tighter(self.cores, other.cores),
            memory=tighter(self.memory, other.memory),
            storage=tighter(self.storage, other.storage),
            duration=tighter(self.duration, other.duration),
        )


@dataclass
class Need:
    """What a request needs (minimums) and would use (maximums), in platform units."""

    kind: str
    cores: int
    cores_max: int | None
    memory: int
    memory_max: int | None
    storage: int
    duration: timedelta

    @classmethod
    def of(cls, request: ExecutionRequest, default_duration: timedelta) -> Need:
        compute = request.compute
        return cls(
            kind=request.executable.kind,
            cores=request.min_cores,
            cores_max=compute.cores.max if compute and compute.cores else None,
            memory=request.min_memory,
            memory_max=compute.memory.max if compute and compute.memory else None,
            storage=request.min_storage,
            duration=request.duration or default_duration,
        )


def message(text: str, level: str = "INFO", **values: Any) -> MessageItem:
    return MessageItem(time=utcnow(), level=level, message=text, values={k: str(v) for k, v in values.items()} or None)


def check_request(
    request: ExecutionRequest, limits: Limits, accepts: list[str] | None, *, who: str = "this platform"
) -> list[tuple[MessageItem, OptionItem | None]]:
    """Every way ``request`` exceeds ``limits``: a message and, where it helps, the nearest option.

    Shared by every platform that decides from limits, so their NO answers read the same.
    """
    problems: list[tuple[MessageItem, OptionItem | None]] = []
    kind = request.executable.kind
    if accepts is not None:
        accepted = [canonical_kind(item, "executable") for item in accepts]
        if kind not in accepted:
            names = ", ".join(short_kind(item) for item in accepted) or "nothing"
            problems.append(
                (
                    message(
                        f"cannot run a {short_kind(kind)} executable; {who} runs {names}",
                        "WARN",
                        requirement="executable.kind",
                    ),
                    OptionItem(kind="uri:enum-value-option", path="executable.kind", values=accepted),
                )
            )
    need = Need.of(request, default_duration=timedelta(hours=1))
    checks = (
        ("compute.cores.min", need.cores, limits.cores, "cores", lambda n: f"{n} cores", "cores"),
        ("compute.memory.min", need.memory, limits.memory, "memory", lambda n: f"{n} GiB of memory", "GiB"),
        ("storage.size.min", need.storage, limits.storage, "storage", lambda n: f"{n} GiB of storage", "GiB"),
    )
    for path, asked, limit, name, say, units in checks:
        if limit is not None and asked > limit:
            problems.append(
                (
                    message(
                        f"needs {say(asked)}; {who} has at most {say(limit)}",
                        "WARN",
                        requirement=name,
                        asked=asked,
                        limit=limit,
                    ),
                    OptionItem(
                        kind="uri:integer-value-option",
                        path=path,
                        min=0,
                        max=limit,
                        units=units if units != "cores" else None,
                    ),
                )
            )
    if limits.duration is not None and need.duration > limits.duration:
        problems.append(
            (
                message(
                    f"needs {human_duration(need.duration)}; {who} allows at most {human_duration(limits.duration)}",
                    "WARN",
                    requirement="duration",
                    asked=format_duration(need.duration),
                    limit=format_duration(limits.duration),
                ),
                OptionItem(
                    kind="uri:string-value-option",
                    path="schedule.requested.duration",
                    pattern=f"<= {format_duration(limits.duration)}",
                ),
            )
        )
    for item in request.missing_data():
        label = item.name or item.uuid or "a data item"
        problems.append(
            (
                message(
                    f"the data item {label!r} has no location yet: find it before running", "WARN", requirement="data"
                ),
                None,
            )
        )
    return problems
