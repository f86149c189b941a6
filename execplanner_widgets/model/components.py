"""The components of ExecutionBroker v1.0: executables, compute, storage and data resources.

These are written from ``components.yaml`` and ``kinds/`` of the v1.0 schema. Every model accepts
and keeps fields it does not know (``extra="allow"``), so a document from a newer service survives a
round trip through this project unchanged. Executables and data resources are discriminated by
their ``kind`` URI; a kind nobody here knows becomes a ``Generic*`` model that keeps everything.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeInt,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .kinds import canonical_kind, kind_uri
from .types import Duration, GiB, Instant, Interval
from .units import parse_size_gib

__all__ = [
    "ComponentMetadata",
    "ComputeResource",
    "CoreRange",
    "DataResource",
    "DockerContainer",
    "Executable",
    "ExecutableModel",
    "DataResourceModel",
    "GenericDataResource",
    "GenericExecutable",
    "IvoaDataResource",
    "JupyterNotebook",
    "MessageItem",
    "OptionItem",
    "PythonScript",
    "RucioDataResource",
    "S3DataResource",
    "ScheduleInstant",
    "ScheduleInterval",
    "SimpleDataResource",
    "SingularityContainer",
    "SizeRange",
    "SkaoDataResource",
    "StorageResource",
    "VolumeMount",
    "WireModel",
]


#: ``exclude_if`` of every list and mapping field: an empty one is left out of the wire form, as the
#: standard's examples leave it out (zeros and empty strings mean something and stay). Declared on
#: the fields, so that the JSON is written in one pass by pydantic's serialiser; a C function,
#: because it runs for every such field of every document a federation relays.
empty = operator.not_


class WireModel(BaseModel):
    """Base of every document on the wire: tolerant of unknown fields, strict about known ones.

    The wire form leaves out absent values and empty lists and mappings of the fields declared here;
    fields a model does not know are relayed as they came."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_default=False)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dictionary of the wire form."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_wire_json(self) -> bytes:
        """The wire form as UTF-8 JSON, written in one pass (the same document as :meth:`to_wire`)."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


MessageLevel = Literal["DEBUG", "WARN", "ERROR", "INFO", "OTHER"]


class MessageItem(WireModel):
    """A log message in the Message Templates style (``messages.yaml``)."""

    kind: str | None = None
    time: Instant | None = None
    level: MessageLevel | None = None
    template: str | None = None
    values: dict[str, str] | None = Field(default=None, exclude_if=empty)
    message: str | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _stringify_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): "" if v is None else str(v) for k, v in value.items()}
        return value

    @field_validator("level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            upper = value.upper()
            upper = {"WARNING": "WARN", "ERR": "ERROR"}.get(upper, upper)
            return upper if upper in {"DEBUG", "WARN", "ERROR", "INFO"} else "OTHER"
        return value

    @property
    def text(self) -> str:
        """The message for people: ``message``, else the template with its values filled in."""
        if self.message:
            return self.message
        if self.template:
            text = self.template
            for key, val in (self.values or {}).items():
                text = text.replace("{" + key + "}", val)
            return text
        return ""


class OptionItem(WireModel):
    """An option the client can apply (``AbstractOption`` and its four kinds, in one tolerant model).

    A NO answer uses these to say what *could* be offered instead, e.g. ``compute.cores.min`` with
    ``max: 32``.
    """

    kind: str
    path: str
    values: list[str] | None = Field(default=None, exclude_if=empty)
    min: int | None = None
    max: int | None = None
    units: str | None = None
    pattern: str | None = None


class ComponentMetadata(WireModel):
    """The ``meta`` block: identity, timestamps, messages and options of a component."""

    uuid: str | None = None
    name: str | None = None
    url: str | None = None
    description: str | None = None
    created: Instant | None = None
    modified: Instant | None = None
    messages: list[MessageItem] = Field(default_factory=list, exclude_if=empty)
    options: list[OptionItem] = Field(default_factory=list, exclude_if=empty)


class ScheduleInstant(WireModel):
    """``LifecycleStartDurationInstant``: a start instant and a duration."""

    start: Instant | None = None
    duration: Duration | None = None


class ScheduleInterval(WireModel):
    """``LifecycleStartDurationInterval``: a start window and a duration."""

    start: Interval | None = None
    duration: Duration | None = None


class LifecycleSchedule(WireModel):
    """``LifecycleSchedule``: when a component is prepared, available and released."""

    preparing: ScheduleInstant | None = None
    available: ScheduleInterval | None = None
    releasing: ScheduleInstant | None = None


class Component(WireModel):
    """``AbstractComponent`` + ``LifecycleComponent``: kind, metadata, costs, metrics, phase, schedule."""

    kind: str
    meta: ComponentMetadata | None = None
    costs: list[dict[str, Any]] | None = Field(default=None, exclude_if=empty)
    metrics: list[dict[str, Any]] | None = Field(default=None, exclude_if=empty)
    phase: str | None = None
    schedule: LifecycleSchedule | None = None

    _category: ClassVar[str] = "executable"

    @field_validator("kind", mode="before")
    @classmethod
    def _canonical_kind(cls, value: Any) -> Any:
        if isinstance(value, str):
            canonical = canonical_kind(value, cls._category)
            if not canonical:  # the canonical form of a blank text is empty
                raise ValueError("a kind cannot be empty; give a kind URI or a short name such as 'jupyter-notebook'")
            return canonical
        return value

    @property
    def name(self) -> str | None:
        return self.meta.name if self.meta else None

    @property
    def description(self) -> str | None:
        return self.meta.description if self.meta else None

    @property
    def uuid(self) -> str | None:
        return self.meta.uuid if self.meta else None

    def ensure_meta(self) -> ComponentMetadata:
        """The metadata block, created empty if the component had none."""
        if self.meta is None:
            self.meta = ComponentMetadata()
        return self.meta


# ---------------------------------------------------------------------------------------- ranges


class _Range(WireModel):
    """A ``{min, max}`` pair of whole numbers. A bare number means "at least this".

    Everything a range needs is read in one validator call: a federation reads two ranges in
    every offer of every platform, and whole numbers (the usual case) are passed on as they are."""

    min: NonNegativeInt | None = None
    max: NonNegativeInt | None = None

    #: Whether a ``units`` field applies to bare numbers (and is then dropped).
    _takes_units: ClassVar[bool] = False

    @classmethod
    def _bound(cls, value: Any, units: Any) -> Any:
        """One bound as a whole number, or as it came for the field's own check to refuse;
        ValueError says why it cannot be one."""
        return value

    @model_validator(mode="before")
    @classmethod
    def _read(cls, value: Any) -> Any:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = {"min": value}
        if not isinstance(value, dict):
            return value  # a range already made, or something the model refuses
        units = value.get("units") if cls._takes_units else None
        read: dict[str, Any] = {}
        problems: list[InitErrorDetails] = []
        for name in ("min", "max"):
            bound = value.get(name)
            if bound is None or (type(bound) is int and bound >= 0 and not units):
                continue
            try:
                read[name] = cls._bound(bound, units)
            except ValueError as error:
                reason = PydanticCustomError("value_error", "{reason}", {"reason": str(error)})
                problems.append(InitErrorDetails(type=reason, loc=(name,), input=bound))
        if problems:  # each at its own field, as a field validator would place it
            raise ValidationError.from_exception_data(cls.__name__, problems)
        low, high = read.get("min", value.get("min")), read.get("max", value.get("max"))
        if type(low) is int and type(high) is int and 0 <= high < low:
            raise ValueError(f"the minimum ({low}) is greater than the maximum ({high})")
        if units or read:
            value = {key: item for key, item in value.items() if not (units and key == "units")}
            value.update(read)
        return value


class CoreRange(_Range):
    """``SimpleComputeCores``: CPU cores, minimum needed and maximum usable."""

    @classmethod
    def _bound(cls, value: Any, units: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number of cores, got {value!r}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected a whole number of cores, got {value!r}")
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            if not text.lstrip("-").isdigit():
                raise ValueError(f"expected a whole number of cores, got {value!r}")
            return int(text)
        return value


class SizeRange(_Range):
    """``SimpleComputeMemory`` / ``SimpleStorageSize``: GiB, given as numbers or strings with units.

    A ``units`` field (as in ``MinMaxComputeLong``) applies to bare numbers and is then dropped,
    since the v1.0 simple kinds are always GiB; a string carries its own unit.
    """

    min: GiB | None = None
    max: GiB | None = None

    _takes_units: ClassVar[bool] = True

    @classmethod
    def _bound(cls, value: Any, units: Any) -> Any:
        return parse_size_gib(value, units=None if isinstance(value, str) else units)


# -------------------------------------------------------------------------------------- compute


class VolumeMount(WireModel):
    """``SimpleVolumeMount``: where a data or storage resource appears inside the execution."""

    kind: str = kind_uri("volume", "simple-volume-mount")
    meta: ComponentMetadata | None = None
    path: str | None = None
    mode: Literal["READONLY", "READWRITE"] | None = None
    resource: str | None = None


class ComputeResource(Component):
    """``SimpleComputeResource``: cores and memory (GiB), each a ``{min, max}`` pair."""

    _category: ClassVar[str] = "compute"
    kind: str = kind_uri("compute", "simple-compute-resource")
    cores: CoreRange | None = None
    memory: SizeRange | None = None
    volumes: list[VolumeMount] = Field(default_factory=list, exclude_if=empty)


# -------------------------------------------------------------------------------------- storage


class StorageResource(Component):
    """``SimpleStorageResource``: a size in GiB. Its lifetime is the duration of its ``available``
    phase in the component's ``schedule``, which is where ExecutionBroker v1.0 keeps durations."""

    _category: ClassVar[str] = "storage"
    kind: str = kind_uri("storage", "simple-storage-resource")
    size: SizeRange | None = None
    data: list[str] | None = Field(default=None, exclude_if=empty)

    @property
    def lifetime(self):  # -> timedelta | None
        if self.schedule and self.schedule.available:
            return self.schedule.available.duration
        return None

    def set_lifetime(self, value: Any) -> None:
        schedule = self.schedule or LifecycleSchedule()
        available = schedule.available or ScheduleInterval()
        available.duration = ScheduleInterval.model_validate({"duration": value}).duration
        schedule.available = available
        self.schedule = schedule


# ----------------------------------------------------------------------------------------- data


class DataResource(Component):
    """``AbstractDataResource``. ``required`` is this project's extension for the shopping list:
    a required item with no location must be found by the user before the task can run."""

    _category: ClassVar[str] = "data"
    storage: str | None = None
    required: bool | None = None

    @property
    def location_hint(self) -> str | None:
        """Where the data is, as one readable string, or ``None`` if nobody has said yet."""
        return None

    @property
    def is_located(self) -> bool:
        return bool(self.location_hint)

    @property
    def is_required(self) -> bool:
        return self.required is not False


class SimpleDataResource(DataResource):
    """``SimpleDataResource``: a URL (or, for hosted platforms, a local path) to download."""

    kind: Literal[
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/simple-data-resource.yaml"
    ] = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/simple-data-resource.yaml"
    location: str | None = None

    @property
    def location_hint(self) -> str | None:
        return self.location or None


class S3DataResource(DataResource):
    """``S3DataResource``: an object (or a whole bucket) in an S3 service."""

    kind: Literal["https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/S3-data-resource.yaml"] = (
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/S3-data-resource.yaml"
    )
    endpoint: str | None = None
    template: str | None = None
    bucket: str | None = None
    object: str | None = None

    @property
    def location_hint(self) -> str | None:
        if not self.bucket:
            return None
        where = f"s3://{self.bucket}/{self.object or ''}".rstrip("/")
        return f"{where} at {self.endpoint}" if self.endpoint else where


class IvoaDataResource(DataResource):
    """``IvoaDataResource``: an IVOA identifier with ObsCore and DataLink metadata."""

    kind: Literal["https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/ivoa-data-resource.yaml"] = (
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/ivoa-data-resource.yaml"
    )
    ivoa: dict[str, Any] | None = Field(default=None, exclude_if=empty)

    @property
    def location_hint(self) -> str | None:
        block = self.ivoa or {}
        for key in ("obscore", "datalink"):
            url = (block.get(key) or {}).get("access_url")
            if url:
                return str(url)
        return block.get("ivoid")


class RucioDataResource(DataResource):
    """``RucioDataResource``: an object in a Rucio storage system."""

    kind: Literal["https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/rucio-data-resource.yaml"] = (
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/rucio-data-resource.yaml"
    )
    rucio: dict[str, Any] | None = Field(default=None, exclude_if=empty)

    @property
    def location_hint(self) -> str | None:
        block = self.rucio or {}
        if block.get("object"):
            return f"{block.get('scope') or '?'}:{block['object']}"
        return None


class SkaoDataResource(DataResource):
    """``SkaoDataResource``: a SKAO data lake object with its known replicas."""

    kind: Literal["https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/skao-data-resource.yaml"] = (
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/skao-data-resource.yaml"
    )
    ivoa: dict[str, Any] | None = Field(default=None, exclude_if=empty)
    skao: dict[str, Any] | None = Field(default=None, exclude_if=empty)

    @property
    def location_hint(self) -> str | None:
        block = self.skao or {}
        for replica in block.get("replicas") or []:
            if replica.get("dataurl"):
                return str(replica["dataurl"])
        if block.get("objectname"):
            return f"{block.get('namespace') or '?'}:{block['objectname']}"
        return None


class GenericDataResource(DataResource):
    """A data resource of a kind this project does not know; kept as written."""

    location: str | None = None

    @property
    def location_hint(self) -> str | None:
        return self.location or None


_DATA_TAGS = {
    kind_uri("data", "simple-data-resource"): "simple",
    kind_uri("data", "S3-data-resource"): "s3",
    kind_uri("data", "ivoa-data-resource"): "ivoa",
    kind_uri("data", "rucio-data-resource"): "rucio",
    kind_uri("data", "skao-data-resource"): "skao",
}


def _data_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str):
        return "simple"  # a data item with no kind is a plain downloadable resource
    return _DATA_TAGS.get(canonical_kind(kind, "data"), "generic")


DataResourceModel = Annotated[
    Annotated[SimpleDataResource, Tag("simple")]
    | Annotated[S3DataResource, Tag("s3")]
    | Annotated[IvoaDataResource, Tag("ivoa")]
    | Annotated[RucioDataResource, Tag("rucio")]
    | Annotated[SkaoDataResource, Tag("skao")]
    | Annotated[GenericDataResource, Tag("generic")],
    Discriminator(_data_tag),
]


# ----------------------------------------------------------------------------------- executables


class Executable(Component):
    """``AbstractExecutable``: the thing to run."""

    _category: ClassVar[str] = "executable"


class JupyterNotebook(Executable):
    """``JupyterNotebook``: a notebook at a URL (or, for hosted platforms, a local path)."""

    kind: Literal[
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/jupyter-notebook.yaml"
    ] = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/jupyter-notebook.yaml"
    location: str | None = None


class DockerImage(WireModel):
    """``DockerImageSpec``: where the image is and, optionally, its digest and platform."""

    locations: list[str] = Field(default_factory=list, exclude_if=empty)
    digest: str | None = None
    platform: dict[str, Any] | None = Field(default=None, exclude_if=empty)

    @model_validator(mode="before")
    @classmethod
    def _single_location(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"locations": [value]}
        return value


class DockerContainer(Executable):
    """``DockerContainer``: an OCI image, its command and environment."""

    kind: Literal[
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/docker-container.yaml"
    ] = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/docker-container.yaml"
    image: DockerImage | None = None
    privileged: bool | None = None
    command: list[str] | None = Field(default=None, exclude_if=empty)
    entrypoint: str | None = None
    environment: dict[str, str] | None = Field(default=None, exclude_if=empty)
    network: dict[str, Any] | None = Field(default=None, exclude_if=empty)


class SingularityContainer(Executable):
    """``SingularityContainer``: an image to download."""

    kind: Literal[
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/singularity-container.yaml"
    ] = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/singularity-container.yaml"
    location: str | None = None


class PythonScript(Executable):
    """A plain Python script (this project's extension kind): a location and arguments."""

    kind: Literal["https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/python-script.yaml"] = (
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/python-script.yaml"
    )
    location: str | None = None
    arguments: list[str] | None = Field(default=None, exclude_if=empty)


class GenericExecutable(Executable):
    """An executable of a kind this project does not know; kept as written for the platform to judge."""


_EXECUTABLE_TAGS = {
    kind_uri("executable", "jupyter-notebook"): "jupyter-notebook",
    kind_uri("executable", "docker-container"): "docker-container",
    kind_uri("executable", "singularity-container"): "singularity-container",
    kind_uri("executable", "python-script"): "python-script",
}


def _executable_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str):
        return "generic"
    return _EXECUTABLE_TAGS.get(canonical_kind(kind, "executable"), "generic")


ExecutableModel = Annotated[
    Annotated[JupyterNotebook, Tag("jupyter-notebook")]
    | Annotated[DockerContainer, Tag("docker-container")]
    | Annotated[SingularityContainer, Tag("singularity-container")]
    | Annotated[PythonScript, Tag("python-script")]
    | Annotated[GenericExecutable, Tag("generic")],
    Discriminator(_executable_tag),
]
