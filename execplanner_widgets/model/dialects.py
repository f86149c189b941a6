"""Read a task description in any dialect the ExecutionPlanner idea has been written in.

``parse_request`` accepts, and turns into one :class:`ExecutionRequest`:

1. **ExecutionBroker v1.0** (``executable``/``compute``/``storage``/``data``/``schedule``), with the
   2026 or 2025 kind URIs or short names.
2. **The 2021 ExecutionPlanner note**: ``tasktype``, ``taskinfo`` and ``resources{mincores, ...}``.
3. **The 2022 ExecutionPlanner note**: ``type``, a task block, ``data-resources``,
   ``compute-resources``, ``storage-resources``; also a lease wrapping a task.
4. **An OSSR executable entry**: ``name``, ``type``, ``description``, ``content`` (and, optionally,
   the same resource blocks as the 2022 note or ExecutionBroker's).

Every reader turns its dialect into an ExecutionBroker v1.0 dictionary and the pydantic model does the
validation, so there is one set of rules and one style of error message whatever came in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import ValidationError

from .errors import FieldError, InvalidRequest, from_validation_error
from .kinds import canonical_kind, kind_uri
from .request import ExecutionRequest
from .units import parse_size_gib

__all__ = ["detect_dialect", "load_document", "parse_request", "DIALECTS"]

#: Upper bound on a document read from text or a file: a task description is a few kilobytes.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024

EXECUTABLE_LEASE = "https://purl.org/ep.ivoa.net/definitions/executable-lease"


# --------------------------------------------------------------------------------------- loading


def load_document(source: Any, *, what: str = "request") -> dict[str, Any]:
    """Read ``source`` (mapping, JSON/YAML text or bytes, or a file path) into a dictionary."""
    if isinstance(source, ExecutionRequest):
        return source.to_broker()
    if isinstance(source, Mapping):
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
    if len(text.encode("utf-8", "ignore")) > MAX_DOCUMENT_BYTES:
        raise InvalidRequest([FieldError("", f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")], what)
    try:
        document = json.loads(text)
    except ValueError:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error)
            raise InvalidRequest([FieldError("", f"{origin} is neither JSON nor YAML{where}: {problem}")], what) from None
    if not isinstance(document, dict):
        kind = type(document).__name__ if document is not None else "nothing"
        raise InvalidRequest([FieldError("", f"expected a JSON/YAML object (a mapping), got {kind}")], what)
    return document


# -------------------------------------------------------------------------------------- dialects


def detect_dialect(document: Mapping[str, Any]) -> str:
    """Name the dialect of ``document``: ``broker``, ``note-2021``, ``note-2022`` or ``ossr``."""
    if "executable" in document:
        return "broker"
    if "tasktype" in document or "taskinfo" in document or (
        isinstance(document.get("resources"), Mapping) and "type" not in document
    ):
        return "note-2021"
    if "content" in document and "type" in document:
        return "ossr"
    if "type" in document:
        return "note-2022"
    return "broker"


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
        "executable": _executable(
            document.get("tasktype"), document.get("taskinfo"), {"name": document.get("name")}
        )
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
        for key in totals:
            value = item.get(key)
            if value is None:
                if key.startswith("max"):
                    totals[key] = None
                continue
            if totals[key] is None:
                continue
            try:
                amount = parse_size_gib(value) if "memory" in key else int(value)
            except (TypeError, ValueError) as error:
                raise InvalidRequest([FieldError(f"compute-resources[{index}].{key}", str(error))]) from None
            totals[key] = (totals[key] or 0) + amount * instances
        for key in ("local-volumes", "data-volumes", "storage-volumes", "resource-volumes", "environment-variables", "network-ports"):
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
    for volume in extras.pop("data-volumes", []) + extras.pop("storage-volumes", []) + extras.pop("resource-volumes", []):
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


DIALECTS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "broker": dict,
    "note-2021": _from_2021,
    "note-2022": _from_2022,
    "ossr": _from_ossr,
}


def to_broker_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """The ExecutionBroker v1.0 dictionary for a document in any dialect (not yet validated)."""
    return DIALECTS[detect_dialect(document)](document)


def parse_request(source: Any) -> ExecutionRequest:
    """Read a task description in any supported dialect into one normalised ``ExecutionRequest``.

    ``source`` may be a mapping, JSON or YAML text (str or bytes), or the path of a file holding
    either. Raises :class:`InvalidRequest` (a ``ValueError``) naming each field that is wrong.
    """
    if isinstance(source, ExecutionRequest):
        return source.model_copy(deep=True)
    document = load_document(source)
    dialect = detect_dialect(document)
    converted = DIALECTS[dialect](document)
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

