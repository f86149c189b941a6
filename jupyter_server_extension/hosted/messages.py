"""The sentences a hosted platform writes into offer sets and session histories.

Kept apart from the booking logic so the service reads as decisions, and so that the wording (which
users read and tests quote) is in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from execplanner_widgets.model import MessageItem, format_instant, human_duration

from .calendar import Capacity
from .plan import precise_now

__all__ = [
    "accepted",
    "allocation_taken",
    "message_document",
    "no_free_time",
    "offered",
    "offers_summary",
    "short",
    "sibling_rejected",
]


def short(value: datetime) -> str:
    """An instant to the second, as the histories show it."""
    return format_instant(value.replace(microsecond=0))


def message_document(text: str, level: str = "INFO") -> dict[str, Any]:
    """One ExecutionBroker message, ready to store."""
    return MessageItem(time=precise_now().replace(microsecond=0), level=level, message=text).model_dump(
        mode="json", exclude_none=True
    )


def offers_summary(count: int, wanted: str, times: list[datetime], expires: datetime) -> str:
    starts = ", ".join(short(value) for value in times)
    return (
        f"{count} offer{'s' if count != 1 else ''} for {wanted}, starting {starts}; "
        f"they hold the time until {short(expires)}"
    )


def offered(cores: int, memory: int, storage: int, start: datetime, run: Any, expires: datetime) -> str:
    storage_text = f", {storage} GiB of storage" if storage else ""
    return (
        f"offered: {cores} core(s), {memory} GiB of memory{storage_text} from {short(start)} "
        f"for {human_duration(run)}; held until {short(expires)}"
    )


def accepted(cores: int, memory: int, start: datetime, end: datetime) -> str:
    return f"accepted: {cores} core(s) and {memory} GiB of memory are booked from {short(start)} to {short(end)}"


def sibling_rejected(uuid: str) -> str:
    return f"rejected: the offer {uuid} of the same request was accepted; this time is free again"


def allocation_taken(title: str, allocation: Capacity, latest: datetime, wanted: str) -> str:
    limits = ", ".join(
        f"{value} {name}"
        for name, value in zip(("cores", "GiB memory", "GiB storage"), allocation.limits(), strict=True)
        if value is not None
    )
    return (
        f"your allocation on {title} ({limits} at any one time) is taken by your other bookings "
        f"until {short(latest)}; {wanted} would fit the platform itself"
    )


def no_free_time(title: str, wanted: str, earliest: datetime, latest: datetime) -> str:
    if earliest == latest:
        return f"{title} does not have {wanted} free at the requested start {short(earliest)}"
    return f"no start time between {short(earliest)} and {short(latest)} has {wanted} free on {title}"
