"""A request in a hosted platform's terms: amounts, durations and the start window (no I/O).

The booking service turns every request into a :class:`Plan` before it looks at the calendar, so
the rules for durations, storage lifetimes and start windows are written once, here. Times are
rounded up to whole seconds: every calendar boundary stays on a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from execplanner_widgets.model import ExecutionRequest, format_instant, human_duration, kind_uri

from .calendar import Need
from .options import HostedOptions

__all__ = [
    "Plan",
    "ceil_seconds",
    "describe_need",
    "offered_document",
    "plan_request",
    "precise_now",
    "split_storage",
    "whole_seconds",
]


def precise_now() -> datetime:
    """The current time with microseconds (the wire rounds; the calendar must not)."""
    return datetime.now(timezone.utc)


def ceil_seconds(value: datetime) -> datetime:
    """``value`` rounded up to a whole second, so offered times read ``14:00:05Z``."""
    return value if value.microsecond == 0 else value.replace(microsecond=0) + timedelta(seconds=1)


def whole_seconds(value: timedelta) -> timedelta:
    """A duration rounded up to whole seconds: every calendar boundary stays on a second."""
    return timedelta(seconds=math.ceil(value.total_seconds()))


@dataclass
class Plan:
    """A request in the platform's terms: amounts, durations and the window for the start."""

    need: Need
    run: timedelta
    storage: list[tuple[int, int]]
    storage_names: list[str]
    earliest: datetime
    latest: datetime


def plan_request(request: ExecutionRequest, options: HostedOptions, now: datetime) -> tuple[Plan | None, list[str]]:
    """Turn ``request`` into a :class:`Plan`, or say why its timing cannot work."""
    problems: list[str] = []
    run = whole_seconds(request.duration if request.duration is not None else options.default_duration)
    if run <= timedelta(0):
        problems.append("the requested duration is zero; ask for at least a second (e.g. 'PT10M')")
    slot = options.slot_length(run)
    storage: list[tuple[int, int]] = []
    names: list[str] = []
    lifetime = timedelta(0)
    for index, item in enumerate(request.storage):
        low = (
            item.size.min
            if item.size and item.size.min is not None
            else (item.size.max if item.size and item.size.max else 0)
        )
        high = item.size.max if item.size and item.size.max is not None else low
        storage.append((low or 0, max(high or 0, low or 0)))
        names.append(item.name or f"storage-{index + 1}")
        if item.lifetime is not None:
            lifetime = max(lifetime, whole_seconds(item.lifetime))
            if item.lifetime > options.max_storage_lifetime:
                problems.append(
                    f"storage[{index}]: the requested lifetime ({human_duration(item.lifetime)}) is longer than this "
                    f"platform keeps storage ({human_duration(options.max_storage_lifetime)} at most)"
                )
    horizon_end = now + options.horizon
    earliest, latest = ceil_seconds(now), horizon_end
    window = request.start_window
    if window is not None:
        if window.end < now:
            problems.append(f"the requested start ({window}) is in the past")
        if window.start > horizon_end:
            problems.append(
                f"the requested start ({format_instant(window.start)}) is more than {human_duration(options.horizon)} ahead; "
                f"this platform books at most until {format_instant(horizon_end.replace(microsecond=0))}"
            )
        earliest = max(earliest, ceil_seconds(window.start))
        latest = min(latest, window.end)
    if problems or run <= timedelta(0):
        return None, problems
    compute = request.compute
    cores_max = compute.cores.max if compute and compute.cores and compute.cores.max is not None else request.min_cores
    memory_max = (
        compute.memory.max if compute and compute.memory and compute.memory.max is not None else request.min_memory
    )
    need = Need(
        cores=request.min_cores,
        memory=request.min_memory,
        storage=sum(low for low, _ in storage),
        cores_max=cores_max,
        memory_max=memory_max,
        storage_max=sum(high for _, high in storage),
        duration=slot.total_seconds(),
        storage_duration=max(slot, lifetime).total_seconds(),
    )
    return Plan(need=need, run=run, storage=storage, storage_names=names, earliest=earliest, latest=latest), []


def describe_need(need: Need, run: timedelta) -> str:
    """``4 cores and 8 GiB of memory for 2h``."""
    parts = [f"{need.cores} core{'s' if need.cores != 1 else ''}", f"{need.memory} GiB of memory"]
    if need.storage:
        parts.append(f"{need.storage} GiB of storage")
    return f"{', '.join(parts[:-1])} and {parts[-1]} for {human_duration(run)}"


def split_storage(items: Sequence[tuple[int, int]], total: int) -> list[int]:
    """Share ``total`` offered GiB among storage items: each its minimum, then up to its maximum."""
    shares = [low for low, _ in items]
    spare = total - sum(shares)
    for index, (low, high) in enumerate(items):
        extra = min(spare, high - low)
        if extra > 0:
            shares[index] += extra
            spare -= extra
    return shares


def offered_document(request: ExecutionRequest, plan: Plan, cores: int, memory: int, storage: int) -> dict[str, Any]:
    """What an offer stores: the request with the offered amounts, and what must be fetched."""
    compute = request.compute.to_wire() if request.compute else {"kind": kind_uri("compute", "simple-compute-resource")}
    compute["cores"] = {"min": cores, "max": cores}
    compute["memory"] = {"min": memory, "max": memory}
    items = []
    for item, share in zip(request.storage, split_storage(plan.storage, storage), strict=True):
        wire = item.to_wire()
        wire["size"] = {"min": share, "max": share}
        items.append(wire)
    return {
        "executable": request.executable.to_wire(),
        "compute": compute,
        "storage": items,
        "data": [item.to_wire() for item in request.data],
        "storage_names": plan.storage_names,
        "fetch": [
            {"location": item.location_hint, "name": item.name or f"data-{index + 1}"}
            for index, item in enumerate(request.data)
            if item.is_located
        ],
    }
