"""Why a hosted platform could never run a request, whatever its calendar says.

These checks come before any look at the calendar: limits of the platform and of the user's
allocation, the executable kinds the executor runs, and whether the executable and the data can be
reached. Each problem is a message naming the requirement, so a NO answer says what to change.
"""

from __future__ import annotations

from typing import Any

from execplanner_widgets.core.limits import Limits, check_request
from execplanner_widgets.model import (
    ExecutionRequest,
    MessageItem,
    OptionItem,
    canonical_kind,
    human_duration,
    kind_uri,
    short_kind,
)

from .calendar import Capacity
from .executors import Executor
from .options import HostedOptions
from .plan import precise_now
from .staging import StagingError, resolve_location

__all__ = ["allocation_capacity", "message", "nearest", "problems"]

Problem = tuple[MessageItem, OptionItem | None]


def message(text: str, level: str = "WARN", **values: Any) -> MessageItem:
    """One ExecutionBroker message, with ``values`` (such as the requirement) as strings."""
    return MessageItem(
        time=precise_now().replace(microsecond=0),
        level=level,
        message=text,
        values={k: str(v) for k, v in values.items()} or None,
    )


def allocation_capacity(limits: Limits | None) -> Capacity | None:
    """A user's allocation as a capacity the calendar can check, or ``None`` if it limits no amount."""
    if limits is None or (limits.cores is None and limits.memory is None and limits.storage is None):
        return None
    return Capacity(cores=limits.cores, memory=limits.memory, storage=limits.storage)


def problems(
    request: ExecutionRequest,
    options: HostedOptions,
    capacity: Capacity,
    allocation: Limits | None,
    executor: Executor,
    title: str,
) -> list[Problem]:
    """Every reason this platform could never run ``request``."""
    limits = Limits(
        cores=capacity.cores, memory=capacity.memory, storage=capacity.storage, duration=options.max_duration
    )
    found = check_request(request, limits, options.accepts, who=title)
    if allocation is not None:
        found.extend(_allocation_problems(request, allocation, title, found))
    kind = short_kind(request.executable.kind)
    if canonical_kind(request.executable.kind, "executable") in options.accepts:
        reason = executor.unsupported(kind)
        if reason:
            found.append((message(reason, requirement="executable.kind"), None))
    found.extend(_location_problems(request, kind, options))
    found.extend(_kind_problems(request))
    return found


#: The compute and storage kinds a hosted platform books (cores and memory; a folder of a size).
_COMPUTE_KINDS = {kind_uri("compute", "simple-compute-resource")}
_STORAGE_KINDS = {kind_uri("storage", "simple-storage-resource")}


def _kind_problems(request: ExecutionRequest) -> list[Problem]:
    """A compute or storage kind this platform does not know is a NO saying so, not a YES that ignores it."""
    found: list[Problem] = []
    compute = request.compute
    if compute is not None and canonical_kind(compute.kind, "compute") not in _COMPUTE_KINDS:
        text = f"unknown compute kind {short_kind(compute.kind)!r}: this platform books simple-compute-resource"
        found.append((message(text, requirement="compute.kind"), None))
    for index, item in enumerate(request.storage):
        if canonical_kind(item.kind, "storage") not in _STORAGE_KINDS:
            text = f"unknown storage kind {short_kind(item.kind)!r}: this platform books simple-storage-resource"
            found.append((message(text, requirement=f"storage[{index}].kind"), None))
    return found


def _allocation_problems(
    request: ExecutionRequest, allocation: Limits, title: str, already: list[Problem]
) -> list[Problem]:
    """What the user's allocation refuses that the platform's own limits did not already."""
    seen = {(item.values or {}).get("requirement") for item, _ in already}
    found = []
    for item, option in check_request(request, allocation, None, who=f"your allocation on {title}"):
        requirement = (item.values or {}).get("requirement")
        if requirement in ("cores", "memory", "storage", "duration") and requirement not in seen:
            found.append((item, option))
    return found


def _location_problems(request: ExecutionRequest, kind: str, options: HostedOptions) -> list[Problem]:
    """The executable and the data must be where this platform may fetch them from."""
    found: list[Problem] = []
    location = getattr(request.executable, "location", None)
    if kind in ("jupyter-notebook", "python-script") and not location:
        text = f"the {kind} has no location: give its URL or path"
        found.append((message(text, requirement="executable.location"), None))
    elif kind in ("jupyter-notebook", "python-script"):
        try:
            resolve_location(str(location), options.local_roots, multi_user=options.serves_many)
        except StagingError as error:
            found.append((message(str(error), requirement="executable.location"), None))
    for item in request.data:
        if not item.location_hint:
            continue
        try:
            resolve_location(item.location_hint, options.local_roots, multi_user=options.serves_many)
        except StagingError as error:
            label = item.name or short_kind(item.kind)
            found.append((message(f"data item {label!r}: {error}", requirement="data"), None))
    return found


def nearest(capacity: Capacity, options: HostedOptions, title: str) -> MessageItem:
    """The most this platform could offer, so a NO says what would be a YES."""
    parts = [f"{capacity.cores} cores", f"{capacity.memory} GiB memory"]
    if capacity.storage:
        parts.append(f"{capacity.storage} GiB storage")
    kinds = ", ".join(options.accepts_short)
    return message(
        f"the most {title} could offer: {', '.join(parts)} for up to {human_duration(options.max_duration)}, "
        f"starting within {human_duration(options.horizon)}, running {kinds}",
        "INFO",
        requirement="nearest",
    )
