"""``HostedOptions``: the ``hosted:`` block of a platform in the platforms file.

.. code-block:: yaml

    - name: edinburgh
      title: Gaia data mining platform
      hosted:
        cores: 200
        memory: 350          # GiB
        storage: 2000        # GiB
        accepts: [jupyter-notebook, python-script]
        executor: subprocess # any installed executor (entry points ``execplanner.executors``)
        # dask: {scheduler: "tcp://..."}   # the executor's own options, under its name
        offers: 4            # how many start times to offer
        offer_ttl: PT5M
        max_duration: P2D
        allocations: {alice: {cores: 64}}   # optional per-user limits

The executor's own options live under a key named after it (``executor: dask`` with
``dask: {workers: 2}``) and are validated by that executor's ``Options`` model, so errors name
``hosted.dask.workers``. Every field has a default, so ``hosted: {}`` is a working platform the size of a small machine.
Sizes take the same units as requests (``350``, ``"350Gi"``, ``"2T"``) and durations ISO 8601 or
shorthand (``PT5M``, ``5m``), because the people who write this file also write requests.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from execplanner_widgets.core.limits import Limits
from execplanner_widgets.model import canonical_kind, parse_instant, short_kind
from execplanner_widgets.model.types import Duration, GiB

from .executors.sandbox import IsolationOptions

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
    executor: str = Field(
        default="subprocess",
        description="How sessions run: an installed executor (its options go under a key of the same name)",
    )
    _executor_options: BaseModel | None = PrivateAttr(default=None)

    # -- calendar ----------------------------------------------------------------------------
    offers: int = Field(default=4, ge=1, le=20, description="Most offers (start times) per request")
    offer_ttl: Duration = Field(default=timedelta(minutes=5), description="How long an offer holds its capacity")
    max_duration: Duration = Field(default=timedelta(days=2), description="Longest session that can be booked")
    default_duration: Duration = Field(default=timedelta(hours=1), description="Duration of a request that gives none")
    horizon: Duration = Field(default=timedelta(days=14), description="How far ahead offers may start")
    max_storage_lifetime: Duration = Field(
        default=timedelta(days=30), description="Longest storage lifetime a request may book (longer is a NO)"
    )
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
        default=None,
        description="Folders local data and executables may be copied from (symlinks must stay inside; "
        "relative ones count from the server's working folder); none means nowhere on a platform for several "
        "people, and anywhere but the system folders on a single user's platform",
    )
    private_urls: bool = Field(
        default=False,
        description="Staging may download from loopback and private addresses (else only public hosts)",
    )
    multi_user: bool | None = Field(
        default=None,
        description="The platform serves several people; none means: it does when it has per-user allocations",
    )
    isolation: IsolationOptions = Field(
        default_factory=IsolationOptions,
        description="How user code is isolated ('none' to run without: a multi-user platform needs it said)",
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

    @field_validator("executor")
    @classmethod
    def _installed(cls, value: str) -> str:
        from .executors import executor_class

        executor_class(value)  # UnknownExecutor (a ValueError) lists the installed ones
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _executor_block(cls, data: Any, handler: Any) -> HostedOptions:
        """Take the executor's block (the key named after it) out and validate it with the
        executor's ``Options``; its errors are reported as ``NAME.field`` with the others."""
        if not isinstance(data, dict):
            return handler(data)  # type: ignore[no-any-return]
        from .executors import UnknownExecutor, executor_class, executor_names

        data = dict(data)
        name = data.get("executor", "subprocess")
        block = data.pop(name, None) if isinstance(name, str) and name not in cls.model_fields else None
        errors: list[InitErrorDetails] = []
        for other in sorted(set(data) & set(executor_names()) - set(cls.model_fields)):
            data.pop(other)
            text = f"'{other}' holds the options of the {other} executor: set 'executor: {other}' too"
            errors.append({"type": PydanticCustomError("invalid", text), "loc": (other,), "input": None})
        model: HostedOptions | None = None
        try:
            model = handler(data)
        except ValidationError as error:
            errors.extend(_details(error))
        parsed: BaseModel | None = None
        try:
            options_model = executor_class(name).Options if isinstance(name, str) else None
        except UnknownExecutor:  # reported for the 'executor' field already
            options_model = None
        if options_model is not None:
            try:
                parsed = options_model.model_validate(block if block is not None else {})
            except ValidationError as error:
                errors.extend(_details(error, prefix=(name,)))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        assert model is not None and parsed is not None
        model._executor_options = parsed
        return model

    @model_validator(mode="after")
    def _consistent(self) -> HostedOptions:
        if self.default_duration > self.max_duration:
            self.default_duration = self.max_duration
        names = [item.name for item in self.reservations]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"reservation names must be unique; repeated: {', '.join(repeated)}")
        if self.executor == "dask" and self.serves_many and self.isolation.mode != "none":
            raise ValueError(
                "the dask executor runs user code in Dask workers as the server's user, without isolation; "
                "a platform for several people must say 'isolation: none' to accept that (or use executor: subprocess)"
            )
        return self

    @property
    def executor_options(self) -> BaseModel:
        """The executor's own options (validated by its ``Options`` model)."""
        if self._executor_options is None:  # built with model_construct: validate the defaults now
            from .executors import executor_class

            self._executor_options = executor_class(self.executor).Options()
        return self._executor_options

    @property
    def serves_many(self) -> bool:
        """Whether runs of different people share this platform (``multi_user``, else allocations given)."""
        return bool(self.allocations) if self.multi_user is None else self.multi_user

    @property
    def accepts_short(self) -> list[str]:
        """Accepted kinds as short names, for listings."""
        return [short_kind(kind) for kind in self.accepts]

    def slot_length(self, duration: timedelta) -> timedelta:
        """The time a session of ``duration`` holds its compute: preparation + run + release."""
        return self.preparation + duration + self.release


def _details(error: ValidationError, prefix: tuple[str, ...] = ()) -> list[InitErrorDetails]:
    """``error``'s problems, ready to raise again (with ``prefix`` in front of every location)."""
    details: list[InitErrorDetails] = []
    for item in error.errors():
        location = (*prefix, *item["loc"])
        if item["type"] in ("missing", "extra_forbidden"):  # kept as they are: messages are made from the type
            details.append({"type": item["type"], "loc": location, "input": item.get("input")})
            continue
        message = item["msg"].removeprefix("Value error, ").replace("{", "{{").replace("}", "}}")
        details.append({"type": PydanticCustomError("invalid", message), "loc": location, "input": item.get("input")})
    return details
