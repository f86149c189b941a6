"""Read a task description in any dialect the ExecutionPlanner idea has been written in.

``parse_request`` accepts, and turns into one :class:`ExecutionRequest`:

1. **ExecutionBroker v1.0** (``executable``/``compute``/``storage``/``data``/``schedule``), with the
   2026 or 2025 kind URIs or short names.
2. **The 2025 ExecutionBroker prototype**: the same blocks, but ``type:`` where v1.0 writes ``kind``,
   ``computer:`` (or ``resources: {compute: [...], data: [...], storage: [...]}``) for compute, names
   beside the kind instead of in ``meta``, and kind URIs such as
   ``https://www.purl.org/ivoa.net/EB/schema/types/executable/jupyter-notebook-1.0``.
3. **The 2021 ExecutionPlanner note**: ``tasktype``, ``taskinfo`` and ``resources{mincores, ...}``.
4. **The 2022 ExecutionPlanner note**: ``type``, a task block, ``data-resources``,
   ``compute-resources``, ``storage-resources``; also a lease wrapping a task, and the note's
   ``{"requests": [lease]}`` wrapper.
5. **An OSSR executable entry**: ``name``, ``type``, ``description``, ``content`` (and, optionally,
   the same resource blocks as the 2022 note or ExecutionBroker's).

``parse_request_dialect`` also says which dialect it read, so that a service can answer in the same
one (see :mod:`.answer_dialects`); ``normalise_update`` reads a session update in any dialect (the
prototype's ``type:`` and ``path: "/phase"``, its ``{"update": ...}`` wrapper, and a 2022 lease sent
back with ``status: ACCEPTED``).

Every reader turns its dialect into an ExecutionBroker v1.0 dictionary and the pydantic model does the
validation, so there is one set of rules and one style of error message whatever came in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import FieldError, InvalidRequest, from_validation_error
from .kinds import CALYCOPIS_BASE, UPDATE_ENUM_VALUE, canonical_kind, kind_uri
from .request import ExecutionRequest
from .safe_load import check_value, load_text
from .units import parse_size_gib

__all__ = [
    "BROKER",
    "DIALECTS",
    "NOTE_2021",
    "NOTE_2022",
    "OSSR",
    "PROTOTYPE_2025",
    "detect_dialect",
    "kind_from_2025",
    "load_document",
    "normalise_update",
    "parse_request",
    "parse_request_dialect",
]

#: Dialect names, as ``detect_dialect`` returns them and answers are written in.
BROKER = "broker"
PROTOTYPE_2025 = "prototype-2025"
NOTE_2021 = "note-2021"
NOTE_2022 = "note-2022"
OSSR = "ossr"

#: Upper bound on a document read from text or a file: a task description is a few kilobytes.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024

EXECUTABLE_LEASE = "https://purl.org/ep.ivoa.net/definitions/executable-lease"


# --------------------------------------------------------------------------------------- loading


def load_document(source: Any, *, what: str = "request") -> dict[str, Any]:
    """Read ``source`` (mapping, JSON/YAML text or bytes, or a file path) into a dictionary."""
    if isinstance(source, ExecutionRequest):
        return source.to_broker()
    if isinstance(source, Mapping):
        check_value(source, what=what)  # a mapping built in Python gets the same bounds as text
        return dict(source)
    if isinstance(source, os.PathLike):
        return _load_file(Path(source), what)
    if isinstance(source, bytes):
        if len(source) > MAX_DOCUMENT_BYTES:
            raise InvalidRequest([FieldError("", f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")], what)
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequest([FieldError("", f"the document is not UTF-8 text ({error.reason})")], what) from None
    if isinstance(source, str):
        text = source
        if "\n" not in text and len(text) < 4096 and not text.lstrip().startswith(("{", "[")):
            path = Path(text).expanduser()
            if path.is_file():
                return _load_file(path, what)
            if text.strip().endswith((".json", ".yaml", ".yml")) or os.sep in text:
                raise InvalidRequest([FieldError("", f"no such file: {text}")], what)
        return _load_text(text, what)
    raise InvalidRequest(
        [FieldError("", f"expected a dict, JSON or YAML text, or a file path, got {type(source).__name__}")], what
    )


def _load_file(path: Path, what: str) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise InvalidRequest([FieldError("", f"{path} is larger than {MAX_DOCUMENT_BYTES} bytes")], what)
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidRequest([FieldError("", f"cannot read {path}: {error.strerror or error}")], what) from None
    except UnicodeDecodeError as error:
        raise InvalidRequest([FieldError("", f"{path} is not UTF-8 text ({error.reason})")], what) from None
    return _load_text(text, what, origin=str(path))


def _load_text(text: str, what: str, origin: str = "the text") -> dict[str, Any]:
    # untrusted text: aliases refused, nesting, size, numbers, dates and strings bounded (model.safe_load)
    document = load_text(text, what=what, origin=origin, max_bytes=MAX_DOCUMENT_BYTES)
    if not isinstance(document, dict):
        kind = type(document).__name__ if document is not None else "nothing"
        raise InvalidRequest([FieldError("", f"expected a JSON/YAML object (a mapping), got {kind}")], what)
    return document


# -------------------------------------------------------------------------------------- dialects


def _has_type_not_kind(value: Any) -> bool:
    return isinstance(value, Mapping) and "type" in value and "kind" not in value


def _is_2025(document: Mapping[str, Any]) -> bool:
    """The prototype's form: ``computer:``, a ``resources`` block of lists, or ``type:`` for ``kind``."""
    if "computer" in document or _has_type_not_kind(document.get("executable")):
        return True
    resources = document.get("resources")
    return isinstance(resources, Mapping) and any(
        isinstance(resources.get(key), list) for key in ("compute", "data", "storage")
    )


def detect_dialect(document: Mapping[str, Any]) -> str:
    """Name the dialect of ``document``: ``broker``, ``prototype-2025``, ``note-2021``, ``note-2022``
    or ``ossr``."""
    if isinstance(document.get("requests"), list) and "executable" not in document:
        return NOTE_2022
    if _is_2025(document):
        return PROTOTYPE_2025
    if "executable" in document:
        return BROKER
    if (
        "tasktype" in document
        or "taskinfo" in document
        or (isinstance(document.get("resources"), Mapping) and "type" not in document)
    ):
        return NOTE_2021
    if "content" in document and "type" in document:
        return OSSR
    if "type" in document:
        return NOTE_2022
    return BROKER


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) not in (None, ""):
            return mapping[key]
    return None


def _range(minimum: Any, maximum: Any) -> dict[str, Any] | None:
    out = {k: v for k, v in (("min", minimum), ("max", maximum)) if v not in (None, "")}
    return out or None


def _executable(kind: Any, info: Mapping[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any]:
    """An ExecutionBroker executable from an older ``type`` + task block."""
    if not isinstance(kind, str) or not kind.strip():
        raise InvalidRequest([FieldError("type", "say what kind of executable this is, e.g. 'jupyter-notebook'")])
    uri = canonical_kind(kind, "executable")
    info = dict(info or {})
    out: dict[str, Any] = {"kind": uri}
    if uri == kind_uri("executable", "docker-container"):
        image = info.pop("image", None) or info.pop("images", None) or info.pop("location", None)
        if image is not None:
            out["image"] = {"locations": image if isinstance(image, list) else [image]}
        for key in ("command", "entrypoint", "environment", "privileged", "network"):
            if key in info:
                out[key] = info.pop(key)
    elif uri in {
        kind_uri("executable", "jupyter-notebook"),
        kind_uri("executable", "singularity-container"),
        kind_uri("executable", "python-script"),
    }:
        location = None
        for key in ("location", "notebook", "url", "path", "image", "script", "file"):
            if info.get(key):
                location = info.pop(key)
                break
        if location is not None:
            out["location"] = location
        if uri == kind_uri("executable", "python-script") and "arguments" in info:
            out["arguments"] = info.pop("arguments")
    out.update(info)  # whatever is left is kept for the platform, unchanged
    meta = {k: v for k, v in meta.items() if v not in (None, "")}
    if meta:
        out["meta"] = meta
    return out


def _schedule(duration: Any, start: Any) -> dict[str, Any] | None:
    requested = {k: v for k, v in (("duration", duration), ("start", start)) if v not in (None, "")}
    return {"requested": requested} if requested else None


def _from_2021(document: Mapping[str, Any]) -> dict[str, Any]:
    resources = document.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise InvalidRequest([FieldError("resources", "expected a mapping of mincores, maxcores, minmemory ...")])
    out: dict[str, Any] = {
        "executable": _executable(document.get("tasktype"), document.get("taskinfo"), {"name": document.get("name")})
    }
    compute = {}
    cores = _range(resources.get("mincores"), resources.get("maxcores"))
    memory = _range(resources.get("minmemory"), resources.get("maxmemory"))
    if cores:
        compute["cores"] = cores
    if memory:
        compute["memory"] = memory
    if compute:
        out["compute"] = compute
    duration = _first(resources, "minduration", "maxduration")
    schedule = _schedule(duration, document.get("start"))
    if schedule:
        out["schedule"] = schedule
    return out


_TASK_BLOCK_KEYS = ("task", "taskinfo", "content")


def _task_block(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for key in _TASK_BLOCK_KEYS:
        if isinstance(document.get(key), Mapping):
            return document[key]
    for key, value in document.items():  # e.g. "binder-task"
        if key.endswith("-task") and isinstance(value, Mapping):
            return value
    return None


def _data_2022(item: Mapping[str, Any], index: int) -> dict[str, Any]:
    meta = {
        "uuid": item.get("uuid"),
        "name": _first(item, "name", "title") or item.get("uuid"),
        "description": item.get("description"),
    }
    location = item.get("location")
    out: dict[str, Any] = {}
    if isinstance(location, Mapping):
        kind = str(location.get("type") or "")
        if "rucio" in kind:
            out = {
                "kind": kind_uri("data", "rucio-data-resource"),
                "rucio": {
                    "endpoint": location.get("endpoint"),
                    "scope": _first(location, "scope", "domain"),
                    "object": location.get("object"),
                },
            }
        else:
            out = {"kind": kind_uri("data", "simple-data-resource"), "location": _first(location, "url", "location")}
    else:
        url = location if isinstance(location, str) else item.get("url")
        out = {"kind": kind_uri("data", "simple-data-resource"), "location": url}
    for key in ("data-type", "mime-type", "value"):
        if key in item:
            out[key] = item[key]
    if "required" in item:
        out["required"] = item["required"]
    elif item.get("type") == "urn:data-value" and "value" in item:
        out["required"] = False
    out["meta"] = {k: v for k, v in meta.items() if v}
    return {k: v for k, v in out.items() if v is not None}


def _compute_2022(items: list[Any]) -> dict[str, Any] | None:
    """One ExecutionBroker compute resource from the note's list: totals over all instances."""
    if not items:
        return None
    totals: dict[str, int | None] = {"mincores": 0, "maxcores": 0, "minmemory": 0, "maxmemory": 0}
    extras: dict[str, Any] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidRequest([FieldError(f"compute-resources[{index}]", "expected a mapping")])
        instances = item.get("instances", 1)
        if not isinstance(instances, int) or isinstance(instances, bool) or instances < 1:
            raise InvalidRequest([FieldError(f"compute-resources[{index}].instances", "expected a whole number >= 1")])
        for key, total in totals.items():
            value = item.get(key)
            if value is None:
                if key.startswith("max"):
                    totals[key] = None
                continue
            if total is None:
                continue
            try:
                amount = parse_size_gib(value) if "memory" in key else int(value)
            except (TypeError, ValueError) as error:
                raise InvalidRequest([FieldError(f"compute-resources[{index}].{key}", str(error))]) from None
            totals[key] = total + amount * instances
        for key in (
            "local-volumes",
            "data-volumes",
            "storage-volumes",
            "resource-volumes",
            "environment-variables",
            "network-ports",
        ):
            if key in item:
                extras.setdefault(key, []).extend(item[key])
    out: dict[str, Any] = {"kind": kind_uri("compute", "simple-compute-resource")}
    cores = _range(totals["mincores"] or None, totals["maxcores"] or None)
    memory = _range(totals["minmemory"] or None, totals["maxmemory"] or None)
    if cores:
        out["cores"] = cores
    if memory:
        out["memory"] = memory
    volumes = []
    for volume in (
        extras.pop("data-volumes", []) + extras.pop("storage-volumes", []) + extras.pop("resource-volumes", [])
    ):
        volumes.append(
            {
                "path": volume.get("path"),
                "mode": volume.get("access", "READONLY"),
                "resource": _first(volume, "data", "resource"),
            }
        )
    if volumes:
        out["volumes"] = volumes
    out.update(extras)
    return out


def _storage_2022(item: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind_uri("storage", "simple-storage-resource")}
    size = _range(item.get("minsize"), item.get("maxsize"))
    if size:
        out["size"] = size
    lifetime = _first(item, "minlifetime", "maxlifetime", "lifetime")
    if lifetime:
        out["schedule"] = {"available": {"duration": lifetime}}
    meta = {k: v for k, v in (("uuid", item.get("uuid")), ("description", item.get("description"))) if v}
    if meta:
        out["meta"] = meta
    return out


def _list(document: Mapping[str, Any], key: str) -> list[Any]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest([FieldError(key, "expected a list")])
    return value


def _resources_2022(document: Mapping[str, Any], start: Any = None) -> dict[str, Any]:
    """Compute, data, storage and schedule from the 2022 note's resource blocks."""
    out: dict[str, Any] = {}
    compute = _compute_2022(_list(document, "compute-resources"))
    if compute:
        out["compute"] = compute
    data = [_data_2022(item, i) for i, item in enumerate(_list(document, "data-resources"))]
    data += [_data_2022(item, i) for i, item in enumerate(_list(document, "external-resources"))]
    if data:
        out["data"] = data
    storage = [_storage_2022(item) for item in _list(document, "storage-resources")]
    if storage:
        out["storage"] = storage
    schedule = _schedule(_first(document, "minduration", "maxduration", "duration"), start or document.get("startdate"))
    if schedule:
        out["schedule"] = schedule
    return out


def _from_2022(document: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(document.get("requests"), list) and "type" not in document:
        leases = document["requests"]
        if len(leases) != 1 or not isinstance(leases[0], Mapping):
            raise InvalidRequest(
                [
                    FieldError(
                        "requests", f"send one lease in 'requests' (one task per request), got {len(leases)} items"
                    )
                ]
            )
        document = leases[0]
    start = None
    if document.get("type") == EXECUTABLE_LEASE and isinstance(document.get("task"), Mapping):
        start = document.get("startdate")
        document = document["task"]
    meta = {
        "uuid": document.get("uuid"),
        "name": _first(document, "title", "name"),
        "description": document.get("description"),
    }
    out: dict[str, Any] = {"executable": _executable(document.get("type"), _task_block(document), meta)}
    out.update(_resources_2022(document, start))
    return out


def _from_ossr(document: Mapping[str, Any]) -> dict[str, Any]:
    """An OSSR executable entry; its requirements may be in 2022-note or ExecutionBroker form."""
    meta = {"name": document.get("name"), "description": document.get("description")}
    content = document.get("content")
    out: dict[str, Any] = {
        "executable": _executable(document.get("type"), content if isinstance(content, Mapping) else {}, meta)
    }
    out.update(_resources_2022(document))
    for key in ("compute", "data", "storage", "schedule"):
        if key in document:
            out[key] = document[key]
    return out


# ------------------------------------------------------------------------- the 2025 prototype

#: ``.../EB/schema/[v1.0/]types/[resources/]{category}/{name}-1.0``, as the prototype wrote its kinds
#: (its categories were spelled ``executable`` or ``executables``, ``computer`` or ``compute`` ...).
_URI_2025 = re.compile(
    r"^https?://(?:www\.)?purl\.org/ivoa\.net/EB/schema/(?:v1\.0/)?types/(?:resources/)?"
    r"(?P<category>[A-Za-z-]+)/(?P<name>[^/]+?)-1\.0$",
    re.IGNORECASE,
)


def kind_from_2025(value: Any, category: str) -> Any:
    """The v1.0 kind URI for a 2025 ``type`` (or any other spelling ``canonical_kind`` knows); an
    unknown kind is kept exactly as written, for the platform to answer NO."""
    if not isinstance(value, str):
        return value
    match = _URI_2025.match(value.strip())
    if match:
        found = canonical_kind(match["name"], category)
        return found if found.startswith(CALYCOPIS_BASE) else value
    return canonical_kind(value, category)


_META_KEYS = ("uuid", "name", "description", "created", "href", "url")


def _component_2025(item: Any, category: str, where: str) -> dict[str, Any]:
    """One prototype component as v1.0: ``type`` becomes ``kind``, names and ids go into ``meta``."""
    if not isinstance(item, Mapping):
        raise InvalidRequest([FieldError(where, "expected a mapping")])
    out = {key: value for key, value in item.items() if key not in (*_META_KEYS, "type", "schedule")}
    kind = item.get("kind", item.get("type"))
    if kind is not None:
        out["kind"] = kind_from_2025(kind, category)
    meta = dict(item.get("meta") or {})
    for key in _META_KEYS:
        if item.get(key) not in (None, ""):
            meta.setdefault("url" if key == "href" else key, item[key])
    if meta:
        out["meta"] = meta
    schedule = item.get("schedule")
    if isinstance(schedule, Mapping) and schedule:
        out["schedule"] = dict(schedule.get("offered") or schedule.get("requested") or schedule)
    if category == "compute" and isinstance(item.get("volumes"), list):
        out["volumes"] = [
            _component_2025(volume, "volume", f"{where}.volumes[{index}]")
            for index, volume in enumerate(item["volumes"])
        ]
    return out


def _list_2025(value: Any, category: str, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [_component_2025(item, category, f"{where}[{index}]") for index, item in enumerate(items)]


def _from_2025(document: Mapping[str, Any]) -> dict[str, Any]:
    """A request in the 2025 prototype's form, as ExecutionBroker v1.0."""
    resources = document.get("resources") if isinstance(document.get("resources"), Mapping) else {}
    out: dict[str, Any] = {
        key: value
        for key, value in document.items()
        if key not in ("executable", "computer", "compute", "resources", "data", "storage", "schedule", "type")
    }
    if document.get("executable") is not None:
        out["executable"] = _component_2025(document["executable"], "executable", "executable")
    computers = _list_2025(document.get("computer", document.get("compute")), "compute", "computer")
    computers += _list_2025(resources.get("compute"), "compute", "resources.compute")
    if len(computers) > 1:
        raise InvalidRequest(
            [
                FieldError(
                    "computer", f"ExecutionBroker v1.0 takes one compute resource per request, got {len(computers)}"
                )
            ]
        )
    if computers:
        out["compute"] = computers[0]
    data = _list_2025(document.get("data"), "data", "data") + _list_2025(
        resources.get("data"), "data", "resources.data"
    )
    if data:
        out["data"] = data
    storage = _list_2025(document.get("storage"), "storage", "storage")
    storage += _list_2025(resources.get("storage"), "storage", "resources.storage")
    if storage:
        out["storage"] = storage
    if isinstance(document.get("schedule"), Mapping):
        out["schedule"] = dict(document["schedule"])
    return out


def _from_broker(document: Mapping[str, Any]) -> dict[str, Any]:
    """A v1.0 document as it is, except kind URIs in the prototype's spellings (``.../EB/schema/types/
    executables/...-1.0``), which clients carried over into ``kind:``: those become the v1.0 URIs."""
    out = dict(document)
    for key, category in (("executable", "executable"), ("compute", "compute")):
        item = out.get(key)
        if isinstance(item, Mapping) and isinstance(item.get("kind"), str) and _URI_2025.match(item["kind"].strip()):
            out[key] = {**item, "kind": kind_from_2025(item["kind"], category)}
    for key in ("data", "storage"):
        items = out.get(key)
        if isinstance(items, list):
            out[key] = [
                {**item, "kind": kind_from_2025(item["kind"], key)}
                if isinstance(item, Mapping)
                and isinstance(item.get("kind"), str)
                and _URI_2025.match(item["kind"].strip())
                else item
                for item in items
            ]
    return out


DIALECTS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    BROKER: _from_broker,
    PROTOTYPE_2025: _from_2025,
    NOTE_2021: _from_2021,
    NOTE_2022: _from_2022,
    OSSR: _from_ossr,
}


def to_broker_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """The ExecutionBroker v1.0 dictionary for a document in any dialect (not yet validated)."""
    return DIALECTS[detect_dialect(document)](document)


def parse_request(source: Any) -> ExecutionRequest:
    """Read a task description in any supported dialect into one normalised ``ExecutionRequest``.

    ``source`` may be a mapping, JSON or YAML text (str or bytes), or the path of a file holding
    either. Raises :class:`InvalidRequest` (a ``ValueError``) naming each field that is wrong.
    """
    return parse_request_dialect(source)[0]


def parse_request_dialect(source: Any) -> tuple[ExecutionRequest, str]:
    """``parse_request``, and the name of the dialect the request was written in (a service answers
    in that dialect)."""
    if isinstance(source, ExecutionRequest):
        return source.model_copy(deep=True), BROKER
    document = load_document(source)
    dialect = detect_dialect(document)
    return _validated(DIALECTS[dialect](document)), dialect


def _validated(converted: dict[str, Any]) -> ExecutionRequest:
    if "executable" not in converted or converted["executable"] in (None, {}):
        raise InvalidRequest([FieldError("executable", "a request needs an executable (e.g. a notebook or container)")])
    executable = converted.get("executable")
    if isinstance(executable, Mapping) and not executable.get("kind"):
        raise InvalidRequest(
            [FieldError("executable.kind", "say what kind of executable this is, e.g. 'jupyter-notebook'")]
        )
    try:
        return ExecutionRequest.model_validate(converted)
    except ValidationError as error:
        raise from_validation_error(error) from None


# ----------------------------------------------------------------------------------- updates

#: The lease statuses of the 2022 note that a client may send back to change a session.
_LEASE_STATUSES = ("ACCEPTED", "REJECTED")


def normalise_update(document: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """A session update in any dialect, as the ExecutionBroker v1.0 update document (not yet
    validated), and the dialect it was written in.

    - v1.0: ``{"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}``;
    - ``path`` as a JSON pointer (``"/phase"``), the default of the prototype's Python client;
    - the 2025 prototype: ``type`` for ``kind``, optionally wrapped as ``{"update": {...}}``;
    - the 2022 note: the offered lease sent back with ``status: ACCEPTED`` (or ``REJECTED``).
    """
    dialect = BROKER
    if isinstance(document.get("update"), Mapping) and "kind" not in document:
        document, dialect = document["update"], PROTOTYPE_2025
    if "status" in document and "kind" not in document and "path" not in document:
        status = document.get("status")
        if not isinstance(status, str) or status.strip().upper() not in _LEASE_STATUSES:
            raise InvalidRequest(
                [FieldError("status", f"send the lease back with status ACCEPTED or REJECTED, not {status!r}")],
                "update",
            )
        return {"kind": UPDATE_ENUM_VALUE, "path": "phase", "value": status.strip().upper()}, NOTE_2022
    out = dict(document)
    if "kind" not in out and "type" in out:
        out["kind"] = out.pop("type")
        dialect = PROTOTYPE_2025
    path = out.get("path")
    if isinstance(path, str) and path.startswith("/"):
        out["path"] = path[1:].replace("/", ".")
    return out, dialect
