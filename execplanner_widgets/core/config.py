"""The platforms file: which platforms a user (or a server) can ask, and how to reach them.

.. code-block:: yaml

    timeout: 20                      # seconds, for every platform unless it says otherwise
    platforms:
      - name: cesga                  # URL-safe id
        title: CESGA cloud (vo.access.egi.eu)
        static: {accepts: [docker-container], cores: 32, memory: 64, duration: PT12H}
      - name: munich
        title: Compute platform in Munich
        timeout: 5
        broker: {url: "https://broker.example.org/", token_env: MUNICH_TOKEN}

Each entry has a ``name``, a ``title`` and exactly one *kind* key (``static``, ``broker``,
``hosted`` or the name of a plugin registered in the ``execplanner.platforms`` entry point group);
the value of the kind key holds that platform's options. With no file, the built-in demo federation
is used, and the programs say so.
"""

from __future__ import annotations

import os
import re
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..model.errors import FieldError, InvalidRequest, from_validation_error
from .federation import DEFAULT_TIMEOUT, Federation
from .platform import Platform, PlatformContext

__all__ = [
    "BUILTIN_KINDS",
    "ENTRY_POINT_GROUP",
    "ConfigError",
    "PlatformEntry",
    "PlatformsFile",
    "build_federation",
    "demo_platforms_path",
    "load_platforms_file",
    "platform_classes",
    "resolve_platforms_path",
]

ENTRY_POINT_GROUP = "execplanner.platforms"
ENV_PLATFORMS_FILE = "EXECPLANNER_PLATFORMS"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_ENTRY_FIELDS = {"name", "title", "description", "timeout"}


class ConfigError(InvalidRequest):
    """The platforms file cannot be used; the message names the entry and field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors, what="platforms file")


class PlatformEntry(BaseModel):
    """One platform in the file: name, title, optional timeout, and one kind key with its options."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="URL-safe identifier: lower-case letters, digits, '-' and '_'")
    title: str | None = None
    description: str | None = None
    timeout: float | None = Field(default=None, gt=0, description="Seconds to wait for this platform")

    @field_validator("name")
    @classmethod
    def _url_safe(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a URL-safe name; use lower-case letters, digits, '-' and '_' (e.g. 'cesga')"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> PlatformEntry:
        kinds = [key for key in (self.model_extra or {}) if key not in _ENTRY_FIELDS]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            raise ValueError(
                f"platform {self.name!r} needs exactly one kind key (static, broker, hosted or a plugin name); found: {found}"
            )
        options = (self.model_extra or {})[kinds[0]]
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"the options of {kinds[0]!r} must be a mapping")
        return self

    @property
    def kind(self) -> str:
        return next(key for key in (self.model_extra or {}) if key not in _ENTRY_FIELDS)

    @property
    def options(self) -> dict[str, Any]:
        return dict((self.model_extra or {})[self.kind] or {})


class PlatformsFile(BaseModel):
    """The whole file: a default timeout and the list of platforms."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)
    platforms: list[PlatformEntry]

    @field_validator("platforms")
    @classmethod
    def _unique_names(cls, platforms: list[PlatformEntry]) -> list[PlatformEntry]:
        names = [entry.name for entry in platforms]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"platform names must be unique; repeated: {', '.join(repeated)}")
        return platforms


def demo_platforms_path() -> Path:
    """The built-in demo federation that ships with the package: hosted platforms that run work on
    this machine, or, in a base install without the ``hosted`` extra, platforms that decide from
    their stated limits (so that ``Planner()`` works in every install)."""
    demo = resources.files("execplanner_widgets") / "demo"
    hosted = platform_classes().get("hosted")
    usable = hosted is not None and not getattr(hosted, "broken", False)
    return Path(str(demo / ("platforms.yaml" if usable else "platforms-base.yaml")))


def resolve_platforms_path(path: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """The platforms file to use and whether it is the built-in demo.

    Order: the explicit ``path``, then ``$EXECPLANNER_PLATFORMS``, then the demo federation.
    """
    chosen = path or os.environ.get(ENV_PLATFORMS_FILE)
    if chosen:
        return Path(chosen).expanduser(), False
    return demo_platforms_path(), True


def load_platforms_file(path: str | os.PathLike[str] | None = None) -> PlatformsFile:
    """Read and check a platforms file (or the demo when ``path`` is None and no env var is set)."""
    resolved, _ = resolve_platforms_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            [FieldError("", f"cannot read platforms file {resolved}: {error.strerror or error}")]
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError([FieldError("", f"{resolved} is not valid YAML: {error}")]) from None
    if not isinstance(document, dict):
        raise ConfigError([FieldError("", f"{resolved} must hold a mapping with a 'platforms' list")])
    try:
        return PlatformsFile.model_validate(document)
    except ValidationError as error:
        raise _config_error(error, document) from None


def _config_error(error: ValidationError, document: dict[str, Any]) -> ConfigError:
    converted = from_validation_error(error, what="platforms file")
    fields = []
    for item in converted.errors:
        field = item.field
        match = re.match(r"^platforms\.?\[(\d+)\]", field)
        if match:
            index = int(match.group(1))
            entries = document.get("platforms") or []
            if index < len(entries) and isinstance(entries[index], dict) and entries[index].get("name"):
                field = f"platforms[{entries[index]['name']}]" + field[match.end() :]
        fields.append(FieldError(field, item.message))
    return ConfigError(fields)


#: The kinds that ship with the project, loaded like plugins (core imports no platform module), so
#: that they work even from a source tree whose entry points are not installed; the built-ins win.
BUILTIN_KINDS = {
    "static": "execplanner_widgets.platforms.static:StaticPlatform",
    "broker": "execplanner_widgets.platforms.broker:BrokerPlatform",
}


def platform_classes() -> dict[str, type[Platform]]:
    """Platform kinds by configuration key: built-ins plus the ``execplanner.platforms`` plugins."""
    found = {name: metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in BUILTIN_KINDS.items()}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point)
    classes: dict[str, type[Platform]] = {}
    for name, entry_point in found.items():
        try:
            classes[name] = entry_point.load()
        except Exception as error:  # a broken plugin is reported when used, not at import
            classes[name] = _broken_plugin(name, error)
    return classes


#: The extra that brings what a platform kind of this project needs beyond the base install.
KIND_EXTRAS = {"hosted": "hosted"}


def _broken_plugin(name: str, error: Exception) -> Any:
    hint = ""
    if isinstance(error, ImportError) and name in KIND_EXTRAS:
        hint = f'; install it with: pip install "execplanner-widgets[{KIND_EXTRAS[name]}]"'

    def fail(*_: Any, **__: Any) -> Platform:
        raise ConfigError([FieldError(name, f"the platform plugin {name!r} failed to load: {error}{hint}")])

    return type(f"Broken_{name}", (), {"from_config": staticmethod(fail), "broken": True})


def build_federation(config: PlatformsFile, context: PlatformContext) -> Federation:
    """Create every platform in ``config``; errors name the entry that caused them."""
    classes = platform_classes()
    platforms: list[Platform] = []
    timeouts: dict[str, float] = {}
    for entry in config.platforms:
        cls = classes.get(entry.kind)
        if cls is None:
            known = ", ".join(sorted(classes))
            raise ConfigError(
                [FieldError(f"platforms[{entry.name}]", f"unknown platform kind {entry.kind!r}; known: {known}")]
            )
        try:
            platforms.append(cls.from_config(entry.name, entry.title, entry.options, context))
        except InvalidRequest as error:
            raise ConfigError(
                [
                    FieldError(f"platforms[{entry.name}].{entry.kind}" + (f".{e.field}" if e.field else ""), e.message)
                    for e in error.errors
                ]
            ) from None
        except ValidationError as error:
            inner = from_validation_error(error, what="platforms file")
            raise ConfigError(
                [
                    FieldError(f"platforms[{entry.name}].{entry.kind}" + (f".{e.field}" if e.field else ""), e.message)
                    for e in inner.errors
                ]
            ) from None
        except (TypeError, ValueError) as error:
            raise ConfigError([FieldError(f"platforms[{entry.name}].{entry.kind}", str(error))]) from None
        if entry.timeout is not None:
            timeouts[entry.name] = entry.timeout
    return Federation(platforms, timeout=config.timeout, timeouts=timeouts)


def default_context(data_dir: str | os.PathLike[str] | None = None) -> PlatformContext:
    """A context for in-process use: state under ``$EXECPLANNER_DATA_DIR`` or the Jupyter data dir."""
    if data_dir is None:
        data_dir = os.environ.get("EXECPLANNER_DATA_DIR")
    if data_dir is None:
        try:
            from jupyter_core.paths import jupyter_data_dir

            data_dir = Path(jupyter_data_dir()) / "execplanner"
        except ImportError:  # pragma: no cover - jupyter_core comes with ipywidgets
            data_dir = Path.home() / ".local" / "share" / "execplanner"
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return PlatformContext(data_dir=path)
