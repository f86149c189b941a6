"""Which sessions each user booked, and where: the list behind "My bookings".

The Jupyter server keeps one in its data folder (``GET execplanner/api/bookings``) and an in-process
planner keeps one in its own, so the list survives kernel and server restarts and shows bookings made
from any kernel. Only *where* each session lives is remembered (platform and uuid); the platforms
stay the source of truth for its phase, times and results.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

__all__ = ["BookingLedger"]


class BookingLedger:
    """A JSON file of ``{user: [{platform, uuid, booked}]}``, the newest :attr:`KEEP` per user,
    replaced atomically on every write so a crash never leaves half a file."""

    KEEP = 200
    _lock = threading.Lock()

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / "bookings.json"

    def _read(self) -> dict[str, list[dict[str, str]]]:
        try:
            document = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return document if isinstance(document, dict) else {}

    def add(self, user: str | None, platform: str, uuid: str, booked: str) -> None:
        """Remember that ``user`` booked session ``uuid`` on ``platform`` at ``booked``."""
        with self._lock:
            document = self._read()
            entries = [entry for entry in document.get(user or "", []) if entry.get("uuid") != uuid]
            entries.append({"platform": platform, "uuid": uuid, "booked": booked})
            document[user or ""] = entries[-self.KEEP :]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(document), "utf-8")
            temporary.replace(self.path)

    def of(self, user: str | None) -> list[dict[str, str]]:
        """The bookings of ``user``, oldest first."""
        with self._lock:
            return [entry for entry in self._read().get(user or "", []) if isinstance(entry, dict)]
