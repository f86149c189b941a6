"""Bookings written straight into a hosted platform's database, as a platform that has been busy for
a long time holds them: the calendar benchmarks start from such a database without booking each one
through the API (which would take longer than the benchmark itself)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import datetime

from execplanner_widgets.model import utcnow
from jupyter_server_extension.hosted.platform import HostedPlatform
from jupyter_server_extension.hosted.store import OfferSetRow, SessionRow
from jupyter_server_extension.hosted.tables import SLOT_BOOKED, SLOT_RELEASED

#: Rows written per INSERT statement.
BATCH = 20_000


def insert_bookings(
    platform: HostedPlatform, slots: Iterable[tuple[datetime, datetime, str, bool]], rng: random.Random
) -> None:
    """One accepted booking per ``(start, end, owner, finished)``, of 1-7 cores and 1-8 GiB, under
    one offer set: WAITING and booked, or COMPLETED and released when ``finished``."""
    now = utcnow()
    offerset = str(uuid.uuid4())
    rows = [
        {
            "uuid": str(uuid.uuid4()),
            "platform": platform.name,
            "offerset": offerset,
            "owner": owner,
            "phase": "COMPLETED" if finished else "WAITING",
            "created": now,
            "modified": now,
            "accepted": now,
            "start": start,
            "available_start": start,
            "available_end": end,
            "compute_end": end,
            "storage_end": end,
            "hold_end": end,
            "cores": rng.randint(1, 7),
            "memory": rng.randint(1, 8),
            "storage": 0,
            "document": {},
            "results": [],
            "storage_removed": True,
            "destroyed": finished,
            "slot_state": SLOT_RELEASED if finished else SLOT_BOOKED,
        }
        for start, end, owner, finished in slots
    ]
    with platform.store.write(platform.name) as session:
        session.add(
            OfferSetRow(
                uuid=offerset,
                platform=platform.name,
                owner="bench",
                created=now,
                result="YES",
                messages=[],
                options=[],
                request={},
            )
        )
        session.flush()
        for index in range(0, len(rows), BATCH):
            session.execute(SessionRow.__table__.insert(), rows[index : index + BATCH])
