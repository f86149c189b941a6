"""My bookings: the sessions a user booked, on every platform, as the platforms report them now.

In server mode the Jupyter server keeps the list (``GET execplanner/api/bookings``), so it survives
kernel restarts and includes bookings made from other kernels of the same server. In local mode the
planner keeps the same list in its data folder (``bookings.json``). Either way only *where* each
session lives is remembered; its phase, times and results are read from its platform each time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import ExecutionSession

__all__ = ["BookingEntry", "BookingList"]


@dataclass
class BookingEntry:
    """One booking: its platform, the session as the platform reports it (or why it cannot)."""

    platform: str
    uuid: str
    title: str = ""
    booked: str | None = None
    session: ExecutionSession | None = None
    error: str | None = None

    @classmethod
    def from_wire(cls, item: dict[str, Any]) -> BookingEntry:
        session = item.get("session")
        return cls(
            platform=str(item.get("platform", "")),
            uuid=str(item.get("uuid", "")),
            title=str(item.get("title") or item.get("platform") or ""),
            booked=item.get("booked"),
            session=ExecutionSession.model_validate(session) if session else None,
            error=item.get("error"),
        )


class BookingList(list):
    """Bookings, newest first; shows as a table in notebooks."""

    def _repr_html_(self) -> str:
        from ..html import bookings_html, esc

        readable = [entry for entry in self if entry.session is not None]
        problems = [entry for entry in self if entry.session is None]
        html = bookings_html(readable, static=True)
        if problems:
            html += "".join(
                f"<div>{esc(entry.title)} {esc(entry.uuid)}: {esc(entry.error)}</div>" for entry in problems
            )
        return html


def read_tail(path: Path, lines: int, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a run's output file (local mode), without following links."""
    import stat

    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ""
    with os.fdopen(descriptor, "rb") as handle:
        facts = os.fstat(handle.fileno())
        if not stat.S_ISREG(facts.st_mode):
            return ""
        handle.seek(max(0, facts.st_size - max_bytes))
        text = handle.read(max_bytes).decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def join_output(stdout: str, stderr: str) -> str:
    """stdout, then stderr under a marker line when there is any."""
    if stderr.strip():
        return f"{stdout}\n--- stderr ---\n{stderr}" if stdout.strip() else f"--- stderr ---\n{stderr}"
    return stdout
