"""Read the executables of an OSSR record: the start of the conversation between user and platform.

The seeds: "The process starts with metadata included in an OSSR record. This metadata extends the
existing codemeta metadata to describe the executable components associated with an OSSR entry."
An OSSR record for a library may hold a couple of notebooks and a container; each is something a
user can pick and run on a compute platform.

Two kinds of record are read:

**A codemeta.json with the executables extension**::

    {
      "@context": "https://doi.org/10.5063/schema/codemeta-2.0",
      "@type": "SoftwareSourceCode",
      "name": "agnpy",
      "description": "Modelling jetted AGN radiative processes",
      "version": "0.4.0",
      "identifier": "https://doi.org/10.5281/zenodo.0000000",
      "executables": [
        {
          "name": "External Compton tutorial",
          "description": "A Jupyter notebook demonstrating external Compton scattering",
          "type": "jupyter-notebook",
          "content": {"location": "tutorials/ec.ipynb"},
          "compute-resources": [{"mincores": 2, "minmemory": "4Gi"}],
          "data-resources": [
            {"name": "images", "description": "A collection of images to process",
             "required": true, "location": null}
          ],
          "storage-resources": [{"minsize": "20Gi", "lifetime": "PT4H"}],
          "minduration": "PT1H"
        },
        {
          "name": "Demo container",
          "description": "A Docker container with the library installed and ready to use",
          "type": "purl:docker-container",
          "content": {"image": "docker.io/example/agnpy:0.4.0"},
          "compute": {"cores": {"min": 4}, "memory": {"min": "8Gi"}},
          "schedule": {"requested": {"duration": "PT2H"}}
        }
      ]
    }

Each entry of ``executables`` has

``name`` (required)
    A human-readable name, shown in the list of things the user can run.
``description``
    A human-readable description.
``type`` (required)
    The machine-readable kind: a short name (``jupyter-notebook``, ``docker-container``,
    ``singularity-container``, ``python-script``) or any kind URI the project knows
    (``purl:docker-container``, ``uri://docker-container``, the 2022 note's task-type URIs,
    ExecutionBroker v1.0 URIs). An unknown kind is kept as written; platforms answer NO to it.
``content``
    What is specific to the kind: ``location`` (or ``notebook``, ``path``, ``url``, ``file``) for
    notebooks, scripts and Singularity images; ``image``, ``command``, ``environment`` for containers.
    A relative location is resolved against the record's folder (or URL).
requirement blocks, in either form
    The 2022 ExecutionPlanner note's ``compute-resources`` (``mincores``, ``maxcores``,
    ``minmemory``, ``maxmemory``, ``instances``), ``data-resources`` (``name``, ``description``,
    ``required``, ``location``: ``required: true`` with no location puts the item on the user's
    shopping list), ``storage-resources`` (``minsize``, ``maxsize``, ``lifetime``) and
    ``minduration``; or ExecutionBroker v1.0's ``compute``, ``data``, ``storage`` and ``schedule``.
    Sizes may carry units (``"8Gi"``, ``"512Mi"``); durations are ISO 8601 (``"PT1H"``) or
    shorthand (``"90m"``).

**A Zenodo-style record JSON** (as ``https://zenodo.org/api/records/<id>`` returns): ``metadata``
(``title``, ``description``, ``version``) and ``files`` (a list of ``{"key", "links": {"self"}}``,
or InvenioRDM's ``{"entries": {...}}``). Its executables are the same extension, under
``metadata.executables`` (or a top-level ``executables``); a ``content.location`` that names a file
of the record becomes that file's download link. A record without the extension offers each
notebook (``*.ipynb``) among its files as a ``jupyter-notebook`` executable.

:func:`read_record` reads either from a path (a file, or a folder holding ``codemeta.json``), an
http(s) URL (fetched with ``requests``, with a timeout and a size limit) or a dict. Each entry
becomes an :class:`ExecutableEntry`; :meth:`ExecutableEntry.to_request` turns it into an
:class:`~execplanner_widgets.model.ExecutionRequest` through ``parse_request`` (the OSSR-entry
dialect), so the same rules and error messages apply as everywhere else.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .model import ExecutionRequest, InvalidRequest, parse_request
from .model.dialects import load_document
from .model.errors import FieldError, from_validation_error
from .model.kinds import canonical_kind, kind_uri, short_kind

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_RECORD_BYTES",
    "ExecutableEntry",
    "OssrRecord",
    "RecordError",
    "read_record",
]

#: Seconds to wait for a record fetched over http(s).
DEFAULT_TIMEOUT = 15.0
#: Largest record read, in bytes: a record's metadata is kilobytes; anything far larger is not one.
MAX_RECORD_BYTES = 4 * 1024 * 1024

#: The key of the executables extension, in codemeta.json and in a Zenodo record's metadata.
EXTENSION_KEY = "executables"

#: Content keys that hold a file location, in the order the dialect reader looks for them.
_LOCATION_KEYS = ("location", "notebook", "url", "path", "script", "file")
#: Kinds whose location is a file (resolved against the record's folder); container images are not.
_FILE_KINDS = {
    kind_uri("executable", "jupyter-notebook"),
    kind_uri("executable", "python-script"),
    kind_uri("executable", "singularity-container"),
}


class RecordError(InvalidRequest):
    """The record cannot be read or used; the message names the field or says what went wrong."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors, what="OSSR record")


def _fail(message: str, field: str = "") -> RecordError:
    return RecordError([FieldError(field, message)])


# ------------------------------------------------------------------------------------- models


class ExecutableEntry(BaseModel):
    """One executable of a record: a name and description for people, a kind and content for machines.

    Requirement blocks (``compute-resources``, ``data``, ...) are kept as written, in the model's
    extra fields, and read by :meth:`to_request`.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(min_length=1)
    description: str | None = None
    type: str = Field(min_length=1, description="The kind: a short name or kind URI")
    content: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name", "type")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @property
    def kind(self) -> str:
        """The canonical kind URI (unknown kinds stay as written)."""
        return canonical_kind(self.type, "executable")

    @property
    def short_kind(self) -> str:
        """A readable kind: ``jupyter-notebook``."""
        return short_kind(self.kind)

    @property
    def requirements(self) -> dict[str, Any]:
        """The requirement blocks as written (2022-note or ExecutionBroker form)."""
        return dict(self.model_extra or {})

    @property
    def location(self) -> str | None:
        """Where the executable is: a notebook location or a container image."""
        for key in (*_LOCATION_KEYS, "image"):
            value = self.content.get(key)
            if isinstance(value, str) and value:
                return value
        executable = self.requirements.get("executable")
        if isinstance(executable, Mapping) and isinstance(executable.get("location"), str):
            return executable["location"]
        return None

    def document(self) -> dict[str, Any]:
        """The entry as an OSSR-entry dialect document (what ``parse_request`` reads)."""
        return {
            "name": self.name,
            "description": self.description,
            "type": self.type,
            "content": dict(self.content),
            **self.requirements,
        }

    def to_request(self) -> ExecutionRequest:
        """The ExecutionBroker request for this executable, its requirements filled in.

        Raises :class:`~execplanner_widgets.model.InvalidRequest` naming the field that is wrong.
        """
        document = self.document()
        executable = document.get("executable")
        if isinstance(executable, Mapping):  # an entry written wholly in ExecutionBroker form
            meta = {"name": self.name, "description": self.description, **dict(executable.get("meta") or {})}
            document = {
                key: value for key, value in document.items() if key not in ("name", "description", "type", "content")
            }
            document["executable"] = {
                "kind": self.type,
                **dict(executable),
                "meta": {k: v for k, v in meta.items() if v},
            }
        return parse_request(document)

    def _repr_html_(self) -> str:
        from .html import executables_html

        return executables_html([self])


class OssrRecord(BaseModel):
    """A record and its executables, read by :func:`read_record`."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    description: str | None = None
    version: str | None = None
    identifier: str | None = Field(default=None, description="DOI or URL of the record")
    format: Literal["codemeta", "zenodo"] = "codemeta"
    source: str | None = Field(default=None, description="The path or URL the record was read from")
    entries: list[ExecutableEntry] = Field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):  # type: ignore[override] - iterate the entries, as a list of executables would
        return iter(self.entries)

    def entry(self, key: int | str) -> ExecutableEntry:
        """An entry by position or by name."""
        if isinstance(key, int):
            return self.entries[key]
        for entry in self.entries:
            if entry.name == key:
                return entry
        names = ", ".join(repr(entry.name) for entry in self.entries) or "none"
        raise KeyError(f"no executable named {key!r} in this record (it has: {names})")

    def _repr_html_(self) -> str:
        from .html import executables_html

        return executables_html(self.entries, self)


# ------------------------------------------------------------------------------------ reading


def read_record(
    source: Any,
    *,
    base: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = MAX_RECORD_BYTES,
) -> OssrRecord:
    """Read an OSSR record (codemeta.json with executables, or a Zenodo-style record JSON).

    ``source`` is an :class:`OssrRecord`, a dict, a path (a file, or a folder holding
    ``codemeta.json``) or an http(s) URL. ``base`` is the folder or URL that relative notebook
    locations are resolved against; by default the record's own folder (for a dict: left relative).
    Raises :class:`RecordError` with a message that says what is wrong and where.
    """
    if isinstance(source, OssrRecord):
        return source
    origin: str | None = None
    if isinstance(source, Mapping):
        document = dict(source)
    elif isinstance(source, str) and urlsplit(source.strip()).scheme.lower() in ("http", "https"):
        origin = source.strip()
        document = load_document(_fetch(origin, timeout=timeout, max_bytes=max_bytes), what="OSSR record")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / "codemeta.json"
        if not path.is_file():
            raise _fail(f"no such file: {path}")
        if path.stat().st_size > max_bytes:
            raise _fail(f"{path} is larger than {max_bytes} bytes; is it really a record?")
        origin = str(path.resolve())
        document = load_document(path, what="OSSR record")
    else:
        raise _fail(f"expected a path, an http(s) URL or a dict, got {type(source).__name__}")
    resolve_base = _base_of(base, origin)
    if _is_zenodo(document):
        record = _zenodo_record(document, resolve_base)
    else:
        record = _codemeta_record(document, resolve_base)
    record.source = origin
    return record


def _fetch(url: str, *, timeout: float, max_bytes: int) -> bytes:
    """The body at ``url``, refusing answers that are too big, slow or not successful."""
    import httpx

    try:
        with httpx.stream(
            "GET", url, timeout=timeout, follow_redirects=True, headers={"Accept": "application/json"}
        ) as response:
            if response.status_code >= 400:
                raise _fail(f"{url} answered HTTP {response.status_code} {response.reason_phrase or ''}".strip())
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise _fail(f"{url} is {declared} bytes, more than the {max_bytes} bytes a record may have")
            body = bytearray()
            for chunk in response.iter_bytes(chunk_size=65536):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise _fail(f"{url} is larger than the {max_bytes} bytes a record may have")
            return bytes(body)
    except httpx.TimeoutException:
        raise _fail(f"{url} did not answer within {timeout:g} s") from None
    except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as error:
        reason = type(error).__name__
        raise _fail(f"cannot read {url}: {reason}") from None


def _base_of(base: str | os.PathLike[str] | None, origin: str | None) -> str | None:
    """What relative locations are resolved against: a folder path or a URL."""
    if base is not None:
        text = os.fspath(base)
        if urlsplit(text).scheme.lower() in ("http", "https"):
            return text if text.endswith("/") else text + "/"
        return str(Path(text).expanduser().resolve())
    if origin is None:
        return None
    if urlsplit(origin).scheme.lower() in ("http", "https"):
        return origin
    return str(Path(origin).parent)


def _is_relative(location: str) -> bool:
    parts = urlsplit(location)
    return not parts.scheme and not parts.netloc and not location.startswith(("/", "~"))


def _resolve(location: str, base: str | None, files: Mapping[str, str]) -> str:
    """A location made usable: a file of the record becomes its link; a relative path is joined."""
    key = location.removeprefix("./")
    if key in files:
        return files[key]
    if base is None or not _is_relative(location):
        return location
    if urlsplit(base).scheme:
        return urljoin(base, location)
    return os.path.normpath(os.path.join(base, location))


def _entries(raw: Any, field: str, base: str | None, files: Mapping[str, str]) -> list[ExecutableEntry]:
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list):
        raise _fail("expected a list of executables", field)
    entries = []
    problems: list[FieldError] = []
    for index, item in enumerate(raw):
        where = f"{field}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(FieldError(where, "expected a mapping with name, type and content"))
            continue
        try:
            entry = ExecutableEntry.model_validate(dict(item))
        except ValidationError as error:
            problems.extend(from_validation_error(error, prefix=where, what="OSSR record").errors)
            continue
        entries.append(_with_resolved_location(entry, base, files))
    if problems:
        raise RecordError(problems)
    return entries


def _with_resolved_location(entry: ExecutableEntry, base: str | None, files: Mapping[str, str]) -> ExecutableEntry:
    if entry.kind not in _FILE_KINDS:
        return entry
    content = dict(entry.content)
    for key in _LOCATION_KEYS:
        if isinstance(content.get(key), str) and content[key]:
            content[key] = _resolve(content[key], base, files)
            break
    extra = entry.requirements
    executable = extra.get("executable")
    if isinstance(executable, Mapping) and isinstance(executable.get("location"), str):
        extra["executable"] = {**executable, "location": _resolve(executable["location"], base, files)}
    return ExecutableEntry.model_validate({**entry.document(), "content": content, **extra})


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(item) for item in value)
    return str(value).strip() or None


def _codemeta_record(document: Mapping[str, Any], base: str | None) -> OssrRecord:
    if EXTENSION_KEY not in document and "@context" not in document and "@type" not in document:
        raise _fail(
            "this is neither a codemeta.json (no '@context', '@type' or 'executables') nor a Zenodo record "
            "(no 'metadata' with 'files')"
        )
    identifier = document.get("identifier") or document.get("@id") or document.get("url")
    return OssrRecord(
        title=_text(document.get("name") or document.get("title")),
        description=_text(document.get("description")),
        version=_text(document.get("version") or document.get("softwareVersion")),
        identifier=_text(identifier if not isinstance(identifier, Mapping) else identifier.get("value")),
        format="codemeta",
        entries=_entries(document.get(EXTENSION_KEY), EXTENSION_KEY, base, {}),
    )


def _is_zenodo(document: Mapping[str, Any]) -> bool:
    return isinstance(document.get("metadata"), Mapping) and any(
        key in document for key in ("files", "doi", "id", "links")
    )


def _file_links(files: Any) -> dict[str, str]:
    """File key -> download link, from Zenodo's list or InvenioRDM's ``{"entries": {...}}``."""
    if isinstance(files, Mapping):
        files = list((files.get("entries") or {}).values()) if isinstance(files.get("entries"), Mapping) else []
    links: dict[str, str] = {}
    for item in files or []:
        if not isinstance(item, Mapping):
            continue
        key = item.get("key") or item.get("filename")
        if not isinstance(key, str) or not key:
            continue
        item_links = item.get("links") if isinstance(item.get("links"), Mapping) else {}
        url = item_links.get("self") or item_links.get("content") or item_links.get("download")
        links[key] = url if isinstance(url, str) and url else ""
    return links


def _zenodo_record(document: Mapping[str, Any], base: str | None) -> OssrRecord:
    metadata = document["metadata"]
    files = _file_links(document.get("files"))
    located = {key: url for key, url in files.items() if url}
    title = _text(metadata.get("title"))
    raw = metadata.get(EXTENSION_KEY, document.get(EXTENSION_KEY))
    field = f"metadata.{EXTENSION_KEY}" if EXTENSION_KEY in metadata else EXTENSION_KEY
    if raw is not None:
        entries = _entries(raw, field, base, located)
    else:
        notebooks = [key for key in files if key.lower().endswith(".ipynb")]
        raw_entries = [
            {
                "name": posixpath.basename(key).removesuffix(".ipynb"),
                "description": f"The notebook {key} of {title}" if title else f"The notebook {key}",
                "type": "jupyter-notebook",
                "content": {"location": key},
            }
            for key in notebooks
        ]
        entries = _entries(raw_entries, "files", base, located)
    doi = document.get("doi") or metadata.get("doi")
    links = document.get("links") if isinstance(document.get("links"), Mapping) else {}
    identifier = (
        f"https://doi.org/{doi}" if isinstance(doi, str) and doi and "://" not in doi else (doi or links.get("html"))
    )
    return OssrRecord(
        title=title,
        description=_plain_text(metadata.get("description")),
        version=_text(metadata.get("version")),
        identifier=_text(identifier),
        format="zenodo",
        entries=entries,
    )


class _TextOnly(HTMLParser):
    """Collects the text of an HTML fragment (Zenodo descriptions are HTML)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("p", "br", "li", "div"):
            self.parts.append(" ")


def _plain_text(value: Any) -> str | None:
    """The text of an HTML description, whitespace collapsed (it is escaped again when shown)."""
    text = _text(value)
    if text is None:
        return None
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return " ".join("".join(parser.parts).split()) or None
