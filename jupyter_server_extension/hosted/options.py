"""``HostedOptions``: the ``hosted:`` block of a platform in the platforms file.

.. code-block:: yaml

    - name: edinburgh
      title: Gaia data mining platform
      hosted:
        cores: 200
        memory: 350          # GiB
        storage: 2000        # GiB
        accepts: [jupyter-notebook, python-script]
        executor: subprocess # or: dask (scheduler: "tcp://..."; none = a local cluster)
        offers: 4            # how many start times to offer
        offer_ttl: PT5M
        max_duration: P2D
        allocations: {alice: {cores: 64}}   # optional per-user limits

Every field has a default, so ``hosted: {}`` is a working platform the size of a small machine.
Sizes take the same units as requests (``350``, ``"350Gi"``, ``"2T"``) and durations ISO 8601 or
shorthand (``PT5M``, ``5m``), because the people who write this file also write requests.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from execplanner_widgets.model import canonical_kind, parse_instant, short_kind
from execplanner_widgets.model.types import Duration, GiB
from execplanner_widgets.platforms.static import Limits

__all__ = ["HostedOptions", "Reservation", "DEFAULT_ACCEPTS"]

DEFAULT_ACCEPTS = ["jupyter-notebook", "python-script"]


class Reservation(BaseModel):
    """Capacity the provider keeps for itself: maintenance, another project, a busy demo calendar.

    ``start`` is an instant (``2026-11-22T14:00:00Z``) or a duration after the platform starts
    (``PT1H``); reservations are written to the calendar once, under their name, so a restart does
    not add them twice.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    start: datetime | timedelta = Field(description="An ISO 8601 instant, or a duration after start-up")
    duration: Duration
    cores: int = Field(default=0, ge=0)
    memory: GiB = 0
    storage: GiB = 0

    @field_validator("start", mode="before")
    @classmethod
    def _instant_or_offset(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().upper().startswith("P"):
            from execplanner_widgets.model import parse_duration

            return parse_duration(value)
        if isinstance(value, (str, datetime)):
            return parse_instant(value)
        return value

    def starts_at(self, anchor: datetime) -> datetime:
        """The start as an instant; offsets count from ``anchor`` (when the platform started)."""
        return anchor + self.start if isinstance(self.start, timedelta) else self.start


class HostedOptions(BaseModel):
    """Options of a ``hosted:`` platform: its capacity, what it runs, and how it books and keeps work."""

    model_config = ConfigDict(extra="forbid")

    # -- capacity ----------------------------------------------------------------------------
    cores: int | None = Field(
        default=None,
        ge=1,
        description="Cores to book out; none means the executor's capacity (the CPUs, or the Dask workers' threads)",
    )
    memory: GiB | None = Field(
        default=None, description="Memory to book out in GiB; none means the executor's capacity"
    )
    storage: GiB = Field(default=100, description="Storage (GiB) that requests may book for their storage resources")
    accepts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ACCEPTS), description="Executable kinds this platform runs"
    )

    # -- executor ----------------------------------------------------------------------------
    executor: Literal["subprocess", "dask"] = Field(default="subprocess", description="How sessions run")
    scheduler: str | None = Field(default=None, description="Dask scheduler address; none starts a local cluster")
    workers: int = Field(default=1, ge=1, le=64, description="Workers of the local Dask cluster")
    threads_per_worker: int | None = Field(
        default=None, ge=1, description="Threads per local Dask worker (default: CPUs / workers)"
    )
    processes: bool = Field(
        default=False, description="Local Dask workers in their own processes (else threads in this one)"
    )
    transfer_limit: GiB = Field(
        default=1, description="Most input and output (GiB) shipped to and from a Dask worker per session"
    )

    # -- calendar ----------------------------------------------------------------------------
    offers: int = Field(default=4, ge=1, le=20, description="Most offers (start times) per request")
    offer_ttl: Duration = Field(default=timedelta(minutes=5), description="How long an offer holds its capacity")
    max_duration: Duration = Field(default=timedelta(days=2), description="Longest session that can be booked")
    default_duration: Duration = Field(default=timedelta(hours=1), description="Duration of a request that gives none")
    horizon: Duration = Field(default=timedelta(days=14), description="How far ahead offers may start")
    preparation: Duration = Field(default=timedelta(0), description="Time booked before each slot to fetch data")
    release: Duration = Field(default=timedelta(0), description="Time booked after each slot to collect results")
    allocations: dict[str, Limits] = Field(
        default_factory=dict,
        description="Per-user limits; cores, memory and storage also cap what a user holds at any one time",
    )
    reservations: list[Reservation] = Field(default_factory=list, description="Capacity kept back by the provider")

    # -- state -------------------------------------------------------------------------------
    db_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default the host's db_url, else data_dir/hosted.sqlite"
    )
    workdir: Path | None = Field(default=None, description="Where session folders live; default data_dir/hosted/<name>")
    retention: Duration = Field(default=timedelta(days=7), description="How long results are kept after a session ends")
    download_limit: GiB = Field(default=10, description="Largest data item (GiB) fetched while preparing")
    local_roots: list[Path] | None = Field(
        default=None, description="Folders local data and executables may be copied from; none means any readable path"
    )
    public_url: str | None = Field(
        default=None, description="Absolute URL prefix of this platform's routes, for result links behind a proxy"
    )

    @field_validator("accepts", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("accepts")
    @classmethod
    def _canonical(cls, value: list[str]) -> list[str]:
        return [canonical_kind(item, "executable") for item in value]

    @model_validator(mode="after")
    def _consistent(self) -> HostedOptions:
        if self.scheduler and self.executor != "dask":
            raise ValueError("'scheduler' is a Dask scheduler address: set 'executor: dask' too")
        if self.default_duration > self.max_duration:
            self.default_duration = self.max_duration
        names = [item.name for item in self.reservations]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"reservation names must be unique; repeated: {', '.join(repeated)}")
        return self

    @property
    def accepts_short(self) -> list[str]:
        """Accepted kinds as short names, for listings."""
        return [short_kind(kind) for kind in self.accepts]

    def slot_length(self, duration: timedelta) -> timedelta:
        """The time a session of ``duration`` holds its compute: preparation + run + release."""
        return self.preparation + duration + self.release
