"""Write ExecutionBroker v1.0 answers (offer sets, sessions) in the dialect the client spoke, and read
the 2025 prototype's answers back into v1.0.

:mod:`.dialects` reads a request in any of the four generations of the ExecutionPlanner idea; this
module closes the loop, so that a client written for an older form can also understand the answer:

=================  =====================================================================================
dialect            an answer looks like
=================  =====================================================================================
``broker``         ExecutionBroker v1.0 (``OfferSetResponse``, ``ScheduledExecutionSession``), unchanged
``prototype-2025`` the prototype's form: ``type:`` for ``kind``, ``computer:`` for ``compute``, ``uuid``,
                   ``name``, ``created``, ``href`` beside the kind instead of in ``meta``, kind URIs
                   ``.../EB/schema/types/{category}/{name}-1.0``, the offered schedule under ``offered``
``note-2021``      ``{"reponseword": "YES"|"NO", "servicetype": ..., "serviceinfo": {"endpoint": ...},
                   "resources": {mincores, maxcores, minmemory, maxmemory, minduration, maxduration}}``
``note-2022``      executable leases (``status``, ``startdate``, ``enddate``, ``expirydate``, ``task``,
                   ``service``); an offer set is the note's ``{"offers": [lease, ...]}``
=================  =====================================================================================

Mapping is honest: what an older form has no place for is said in ``messages`` (plain sentences in
the two notes, message items in the prototype's form) instead of being dropped silently or forced
into a field that means something else. The 2022 lease status, for instance, ends at ``ACCEPTED``:
a lease whose execution is RUNNING or COMPLETED stays ``ACCEPTED`` and a message gives the phase.
URLs in an older-dialect answer carry ``?dialect=...`` so that following them keeps the dialect.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from .dialects import BROKER, NOTE_2021, NOTE_2022, OSSR, PROTOTYPE_2025, kind_from_2025
from .kinds import CALYCOPIS_BASE, kind_uri, short_kind
from .phases import ACTIVE_PHASES, FINISHED_PHASES, SessionPhase
from .types import TimeInterval, format_instant, parse_instant
from .units import parse_duration

__all__ = [
    "ANSWER_DIALECTS",
    "EXTENSION_KINDS",
    "LEASE_TYPE",
    "absolute_urls",
    "add_extension_notes",
    "dialect_url",
    "lease_status",
    "read_answer",
    "write_offerset",
    "write_request",
    "write_session",
    "write_update",
]

#: Dialects an answer can be written in (an OSSR entry is a request form only: answered in v1.0).
ANSWER_DIALECTS = (BROKER, PROTOTYPE_2025, NOTE_2021, NOTE_2022)

LEASE_TYPE = "https://purl.org/ep.ivoa.net/definitions/executable-lease"
_TASK_TYPE_2022 = "https://purl.org/esap.escape.eu/task-type"
_TYPES_2025 = "https://www.purl.org/ivoa.net/EB/schema/types"
OFFERSET_2025 = f"{_TYPES_2025}/offerset/offerset-response-1.0"
SESSION_2025 = f"{_TYPES_2025}/session/execution-session-response-1.0"
#: ``servicetype`` of a 2021 answer that lists offers, and of one that describes a session.
OFFERSET_2021 = "uri://execution-broker-offerset"
SESSION_2021 = "uri://execution-broker-session"
#: The 2025 prototype spelled the compute category ``computer``.
_CATEGORY_2025 = {"compute": "computer"}

#: Executable kinds this project adds to ExecutionBroker v1.0, and what each answer says about them.
EXTENSION_KINDS: dict[str, str] = {
    kind_uri("executable", "python-script"): (
        "The executable kind python-script is an extension of this project (execplanner-widgets): it is "
        "not in the ExecutionBroker v1.0 executable mapping, which has docker-container, "
        "singularity-container and jupyter-notebook."
    ),
}

#: Where each executable kind keeps its file in a 2022 task block (the reader takes any of these).
_TASK_LOCATION_2022 = {"jupyter-notebook": "notebook", "python-script": "script", "singularity-container": "image"}


# ------------------------------------------------------------------------------------ helpers


def dialect_url(url: str | None, dialect: str) -> str | None:
    """``url`` with ``?dialect=...`` for an older dialect, so that following it keeps the dialect."""
    if not url or dialect in (BROKER, OSSR):
        return url
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "dialect"]
    query.append(("dialect", dialect))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _meta(document: Mapping[str, Any]) -> dict[str, Any]:
    meta = document.get("meta")
    return dict(meta) if isinstance(meta, Mapping) else {}


def _messages(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [item for item in _meta(document).get("messages") or [] if isinstance(item, Mapping)]


def _texts(document: Mapping[str, Any]) -> list[str]:
    """The messages as plain sentences (for the notes, which have no message items)."""
    texts = []
    for item in _messages(document):
        text = item.get("message") or item.get("template")
        if text:
            texts.append(str(text))
    return texts


def _note(text: str) -> dict[str, Any]:
    return {"level": "INFO", "message": text}


def _phase(document: Mapping[str, Any]) -> SessionPhase:
    try:
        return SessionPhase(str(document.get("phase") or "OFFERED").upper())
    except ValueError:
        return SessionPhase.INITIAL


def _window(document: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """The start and end of a session's available block."""
    available = (document.get("schedule") or {}).get("available") or {}
    start = end = None
    if available.get("start"):
        try:
            start = TimeInterval.parse(available["start"]).start
        except ValueError:
            start = None
    if start is not None and available.get("duration"):
        try:
            end = start + parse_duration(available["duration"])
        except ValueError:
            end = None
    return start, end


def _instant(value: datetime | None) -> str | None:
    return format_instant(value) if value is not None else None


def _compact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value not in (None, [], {}, "")}


def _pair(compute: Mapping[str, Any], key: str) -> tuple[Any, Any]:
    pair = compute.get(key) or {}
    return pair.get("min"), pair.get("max")


def _gib(value: Any) -> str | None:
    return f"{value}Gi" if value is not None else None


def _connector_notes(document: Mapping[str, Any], form: str) -> list[str]:
    notes = []
    for connector in document.get("connectors") or []:
        if connector.get("location"):
            notes.append(
                f"{form} has no connectors: the session is reached at {connector['location']} "
                f"({connector.get('kind') or 'connector'}, {connector.get('status') or 'status unknown'})."
            )
    return notes


def _result_urls(document: Mapping[str, Any]) -> list[str]:
    return [item["url"] for item in document.get("results") or [] if isinstance(item, Mapping) and item.get("url")]


def add_extension_notes(document: dict[str, Any]) -> dict[str, Any]:
    """Add to a v1.0 session (or each offer of an offer set) a message for every executable kind that
    is this project's extension, so that a client knows it is not in the standard's mapping."""
    sessions = document.get("offers") if "offers" in document else [document]
    for session in sessions or []:
        kind = (session.get("executable") or {}).get("kind")
        note = EXTENSION_KINDS.get(kind or "")
        if note is None:
            continue
        meta = session.setdefault("meta", {})
        messages = meta.setdefault("messages", [])
        if not any(item.get("message") == note for item in messages):
            messages.append({"level": "INFO", "message": note})
    return document


# -------------------------------------------------------------------------- the 2025 prototype


def _kind_2025(kind: Any, category: str) -> Any:
    """A v1.0 kind URI in the prototype's spelling; a kind it never had is kept as written."""
    if not isinstance(kind, str) or not kind.startswith(f"{CALYCOPIS_BASE}/{category}/"):
        return kind
    return f"{_TYPES_2025}/{_CATEGORY_2025.get(category, category)}/{short_kind(kind)}-1.0"


def _schedule_2025(schedule: Any) -> dict[str, Any] | None:
    """The prototype put the offered schedule under ``offered``, with instants for starts."""
    if not isinstance(schedule, Mapping) or not schedule:
        return None
    offered: dict[str, Any] = {}
    for block, value in schedule.items():
        if not isinstance(value, Mapping):
            continue
        item = dict(value)
        if isinstance(item.get("start"), str) and "/" in item["start"]:
            item["start"] = item["start"].split("/", 1)[0]
        offered[block] = item
    return {"offered": offered} if offered else None


def _component_to_2025(component: Any, category: str) -> Any:
    if not isinstance(component, Mapping):
        return component
    meta = _meta(component)
    out: dict[str, Any] = {"type": _kind_2025(component.get("kind"), category)}
    for key in ("uuid", "name", "description", "created"):
        if meta.get(key):
            out[key] = meta[key]
    if meta.get("url"):
        out["href"] = meta["url"]
    for key, value in component.items():
        if key in ("kind", "meta"):
            continue
        if key == "schedule":
            schedule = _schedule_2025(value)
            if schedule:
                out["schedule"] = schedule
        elif key == "volumes" and isinstance(value, list):
            out["volumes"] = [_component_to_2025(volume, "volume") for volume in value]
        else:
            out[key] = value
    return out


def _session_2025(session: Mapping[str, Any]) -> dict[str, Any]:
    meta = _meta(session)
    out: dict[str, Any] = _compact(
        {
            "uuid": meta.get("uuid"),
            "name": meta.get("name"),
            "type": SESSION_2025,
            "created": meta.get("created"),
            "modified": meta.get("modified"),
            "href": dialect_url(meta.get("url"), PROTOTYPE_2025),
        }
    )
    schedule = _schedule_2025(session.get("schedule"))
    if schedule:
        out["schedule"] = schedule
    if session.get("executable"):
        out["executable"] = _component_to_2025(session["executable"], "executable")
    if session.get("compute"):
        out["computer"] = _component_to_2025(session["compute"], "compute")
    for key, category in (("storage", "storage"), ("data", "data")):
        if session.get(key):
            out[key] = [_component_to_2025(item, category) for item in session[key]]
    out["phase"] = _phase(session).value
    if session.get("expires"):
        out["expires"] = session["expires"]
    messages = list(_messages(session))
    messages += [_note(text) for text in _connector_notes(session, "The 2025 form")]
    urls = _result_urls(session)
    if urls:
        messages.append(_note("The 2025 form has no results: they are at " + ", ".join(urls) + "."))
    if messages:
        out["messages"] = messages
    return out


def _offerset_2025(offerset: Mapping[str, Any]) -> dict[str, Any]:
    meta = _meta(offerset)
    out = _compact(
        {
            "uuid": meta.get("uuid"),
            "name": meta.get("name"),
            "type": OFFERSET_2025,
            "created": meta.get("created"),
            "href": dialect_url(meta.get("url"), PROTOTYPE_2025),
            "result": offerset.get("result"),
            "description": offerset.get("description"),
            "messages": _messages(offerset),
        }
    )
    out["offers"] = [_session_2025(offer) for offer in offerset.get("offers") or []]
    return out


def _read_component_2025(item: Any, category: str) -> Any:
    if not isinstance(item, Mapping):
        return item
    out = dict(item)
    if "type" in out and "kind" not in out:
        out["kind"] = kind_from_2025(out.pop("type"), category)
    meta = dict(out.pop("meta", None) or {})
    for key in ("uuid", "name", "description", "created", "modified"):
        if key in out and not isinstance(out[key], (Mapping, list)):
            meta.setdefault(key, out.pop(key))
    if "href" in out:
        meta.setdefault("url", out.pop("href"))
    if "messages" in out and isinstance(out["messages"], list):
        meta.setdefault("messages", out.pop("messages"))
    if meta:
        out["meta"] = meta
    schedule = out.get("schedule")
    if isinstance(schedule, Mapping) and isinstance(schedule.get("offered"), Mapping):
        out["schedule"] = dict(schedule["offered"])
    if category == "compute" and isinstance(out.get("volumes"), list):
        out["volumes"] = [_read_component_2025(volume, "volume") for volume in out["volumes"]]
    return out


def _read_session_2025(session: Mapping[str, Any]) -> dict[str, Any]:
    out = _read_component_2025(session, "session")
    out["kind"] = kind_uri("session", "scheduled-execution-session")
    if "executable" in out:
        out["executable"] = _read_component_2025(out["executable"], "executable")
    resources = out.pop("resources", None) or {}
    compute = out.pop("computer", None) or out.get("compute") or resources.get("compute")
    if isinstance(compute, list):
        compute = compute[0] if compute else None
    if compute is not None:
        out["compute"] = _read_component_2025(compute, "compute")
    for key in ("storage", "data"):
        items = out.get(key) or resources.get(key)
        if items:
            out[key] = [_read_component_2025(item, key) for item in items]
    return out


def read_answer(document: Mapping[str, Any]) -> dict[str, Any]:
    """An offer set or session answer as ExecutionBroker v1.0: the 2025 prototype's form is turned
    into v1.0; a v1.0 answer is returned as it is. The caller validates it with the model."""
    is_2025 = "href" in document or ("type" in document and "kind" not in document)
    if not is_2025:
        return dict(document)
    if "result" in document or "offers" in document:
        out = _read_component_2025({k: v for k, v in document.items() if k != "offers"}, "offerset")
        out.pop("kind", None)
        out["offers"] = [_read_session_2025(offer) for offer in document.get("offers") or []]
        return out
    return _read_session_2025(document)


# ---------------------------------------------------------------------------- the 2021 note


def _resources_2021(session: Mapping[str, Any]) -> dict[str, Any]:
    compute = session.get("compute") or {}
    cores = _pair(compute, "cores")
    memory = _pair(compute, "memory")
    duration = ((session.get("schedule") or {}).get("available") or {}).get("duration")
    return _compact(
        {
            "mincores": cores[0],
            "maxcores": cores[1],
            "minmemory": _gib(memory[0]),
            "maxmemory": _gib(memory[1]),
            "minduration": duration,
            "maxduration": duration,
        }
    )


def _offer_2021(offer: Mapping[str, Any]) -> dict[str, Any]:
    start, end = _window(offer)
    return _compact(
        {
            "uuid": _meta(offer).get("uuid"),
            "endpoint": dialect_url(_meta(offer).get("url"), NOTE_2021),
            "start": _instant(start),
            "end": _instant(end),
            "expires": offer.get("expires"),
            "resources": _resources_2021(offer),
        }
    )


def _offerset_2021(offerset: Mapping[str, Any]) -> dict[str, Any]:
    result = str(offerset.get("result") or "NO").upper()
    messages = _texts(offerset)
    if result != "YES":
        return {"reponseword": "NO", "messages": messages}
    offers = list(offerset.get("offers") or [])
    serviceinfo = _compact(
        {
            "endpoint": dialect_url(_meta(offerset).get("url"), NOTE_2021),
            "offers": [_offer_2021(offer) for offer in offers],
        }
    )
    messages.append(
        "The 2021 note has one answer per request: serviceinfo.offers lists all "
        f"{len(offers)} offer(s); resources are those of the first. Accept one by posting "
        "{'kind': 'uri:enum-value-update', 'path': 'phase', 'value': 'ACCEPTED'} to its endpoint."
    )
    return {
        "reponseword": "YES",
        "servicetype": OFFERSET_2021,
        "serviceinfo": serviceinfo,
        "resources": _resources_2021(offers[0]) if offers else {},
        "messages": messages,
    }


def _session_2021(session: Mapping[str, Any]) -> dict[str, Any]:
    phase = _phase(session)
    meta = _meta(session)
    connectors = [item for item in session.get("connectors") or [] if isinstance(item, Mapping)]
    start, end = _window(session)
    serviceinfo = _compact(
        {
            "endpoint": connectors[0].get("location") if connectors else dialect_url(meta.get("url"), NOTE_2021),
            "session": dialect_url(meta.get("url"), NOTE_2021),
            "uuid": meta.get("uuid"),
            "phase": phase.value,
            "start": _instant(start),
            "end": _instant(end),
            "expires": session.get("expires"),
            "results": _result_urls(session),
        }
    )
    messages = _texts(session)
    word = "NO" if phase in (SessionPhase.REJECTED, SessionPhase.EXPIRED) else "YES"
    messages.append(
        f"The 2021 note has no session phases: this one is {phase.value} (serviceinfo.phase); "
        + ("it will not run." if word == "NO" else "reponseword YES means the service took the task.")
    )
    return {
        "reponseword": word,
        "servicetype": connectors[0].get("kind") if connectors else SESSION_2021,
        "serviceinfo": serviceinfo,
        "resources": _resources_2021(session),
        "messages": messages,
    }


# ---------------------------------------------------------------------------- the 2022 note


def lease_status(phase: SessionPhase | str) -> str:
    """The 2022 lease status for a session phase. A lease has no status past ``ACCEPTED``: every
    booked phase (waiting, running, finished) is still an accepted lease."""
    phase = SessionPhase(phase)
    if phase is SessionPhase.INITIAL:
        return "REQUESTED"
    if phase in ACTIVE_PHASES or phase in FINISHED_PHASES:
        return "ACCEPTED"
    return phase.value  # OFFERED, REJECTED, EXPIRED are the same words


def _task_2022(session: Mapping[str, Any]) -> dict[str, Any]:
    executable = dict(session.get("executable") or {})
    kind = executable.pop("kind", None)
    meta = executable.pop("meta", None) or {}
    short = short_kind(kind)
    known = isinstance(kind, str) and kind.startswith(f"{CALYCOPIS_BASE}/executable/")
    block: dict[str, Any] = {}
    if "location" in executable:
        block[_TASK_LOCATION_2022.get(short, "location")] = executable.pop("location")
    image = executable.pop("image", None)
    if isinstance(image, Mapping) and image.get("locations"):
        locations = image["locations"]
        block["image"] = locations[0] if len(locations) == 1 else locations
    block.update(executable)
    task: dict[str, Any] = _compact(
        {
            "uuid": meta.get("uuid"),
            "type": f"{_TASK_TYPE_2022}/{short}" if known else kind,
            "title": meta.get("name"),
            "description": meta.get("description"),
            "task": block,
        }
    )
    compute = session.get("compute") or {}
    if compute:
        cores, memory = _pair(compute, "cores"), _pair(compute, "memory")
        task["compute-resources"] = [
            _compact(
                {
                    "mincores": cores[0],
                    "maxcores": cores[1],
                    "minmemory": _gib(memory[0]),
                    "maxmemory": _gib(memory[1]),
                }
            )
        ]
    data = []
    for item in session.get("data") or []:
        rucio = item.get("rucio")
        location: Any = item.get("location")
        if isinstance(rucio, Mapping):
            location = _compact({"type": "rucio", **rucio})
        data.append(_compact({"name": _meta(item).get("name"), "location": location}))
    if data:
        task["data-resources"] = data
    storage = []
    for item in session.get("storage") or []:
        low, high = _pair(item, "size")
        storage.append(_compact({"minsize": _gib(low), "maxsize": _gib(high)}))
    if storage:
        task["storage-resources"] = storage
    return task


def _lease(session: Mapping[str, Any]) -> dict[str, Any]:
    phase = _phase(session)
    meta = _meta(session)
    start, end = _window(session)
    expires = session.get("expires")
    messages = _texts(session)
    status = lease_status(phase)
    if status != phase.value:
        messages.append(
            f"The 2022 lease status has no value for the execution's phase {phase.value}: the lease is {status}."
        )
    lease: dict[str, Any] = _compact(
        {
            "uuid": meta.get("uuid"),
            "url": dialect_url(meta.get("url"), NOTE_2022),
            "type": LEASE_TYPE,
            "description": f"An execution lease from {meta['name']}" if meta.get("name") else "An execution lease",
            "status": status,
            "expirydate": _instant(parse_instant(expires)) if expires else None,
            "startdate": _instant(start),
            "enddate": _instant(end),
            "task": _task_2022(session),
        }
    )
    connectors = [item for item in session.get("connectors") or [] if isinstance(item, Mapping)]
    if connectors:
        first = connectors[0]
        lease["service"] = _compact(
            {
                "type": first.get("kind"),
                "description": f"{first.get('protocol') or 'HTTP'} connector, {first.get('status') or 'status unknown'}",
                "service": _compact({"endpoint": first.get("location"), "results": _result_urls(session)}),
            }
        )
    if messages:
        lease["messages"] = messages
    return lease


def _offerset_2022(offerset: Mapping[str, Any]) -> dict[str, Any]:
    messages = _texts(offerset)
    if str(offerset.get("result") or "NO").upper() != "YES":
        messages.insert(0, "NO: this service cannot run the task (the 2022 note answers with no offers).")
    out: dict[str, Any] = {"offers": [_lease(offer) for offer in offerset.get("offers") or []]}
    if messages:
        out["messages"] = messages
    return out


# --------------------------------------------------------------------------------- dispatch


def write_offerset(offerset: Mapping[str, Any], dialect: str) -> dict[str, Any]:
    """A v1.0 ``OfferSetResponse`` (as a JSON-ready dict) written in ``dialect``."""
    if dialect == PROTOTYPE_2025:
        return _offerset_2025(offerset)
    if dialect == NOTE_2021:
        return _offerset_2021(offerset)
    if dialect == NOTE_2022:
        return _offerset_2022(offerset)
    return dict(offerset)


def write_session(session: Mapping[str, Any], dialect: str) -> dict[str, Any]:
    """A v1.0 session (as a JSON-ready dict) written in ``dialect``."""
    if dialect == PROTOTYPE_2025:
        return _session_2025(session)
    if dialect == NOTE_2021:
        return _session_2021(session)
    if dialect == NOTE_2022:
        return _lease(session)
    return dict(session)


# ------------------------------------------------------------------------ absolute URLs


def absolute_urls(document: dict[str, Any], base: str, prefix: str = "/") -> dict[str, Any]:
    """Make every URL of a v1.0 offer set or session absolute, in place: ``meta.url`` of the answer and
    of each offer, connector locations and result URLs (``ComponentMetadata.url`` is ``format: uri``,
    and clients follow these links).

    A path that starts with ``prefix`` (the server's base URL) has that prefix replaced by ``base``;
    so ``base`` is either ``scheme://host/base_url/`` as the client reached the server, or the public
    URL configured for a server behind a reverse proxy. Other paths are joined to ``base``.
    """
    head = base if base.endswith("/") else base + "/"
    prefix = prefix if prefix.endswith("/") else prefix + "/"

    def fix(value: Any) -> Any:
        if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
            return value
        if value.startswith(prefix):
            return head + value[len(prefix) :]
        return urljoin(head, value)

    def session(item: Any) -> None:
        if not isinstance(item, dict):
            return
        meta = item.get("meta")
        if isinstance(meta, dict) and "url" in meta:
            meta["url"] = fix(meta["url"])
        for connector in item.get("connectors") or []:
            if isinstance(connector, dict) and "location" in connector:
                connector["location"] = fix(connector["location"])
        for result in item.get("results") or []:
            if isinstance(result, dict) and "url" in result:
                result["url"] = fix(result["url"])

    session(document)
    for offer in document.get("offers") or []:
        session(offer)
    return document


# -------------------------------------------------------------------- requests and updates out


def write_request(request: Mapping[str, Any], dialect: str) -> dict[str, Any]:
    """A v1.0 request (as a JSON-ready dict) in the form a service of ``dialect`` reads: the 2025
    prototype wants ``type:`` and ``computer:``; every other dialect is sent as v1.0."""
    if dialect != PROTOTYPE_2025:
        return dict(request)
    out: dict[str, Any] = {key: value for key, value in request.items() if key not in ("executable", "compute")}
    if request.get("executable"):
        out["executable"] = _component_to_2025(request["executable"], "executable")
    if request.get("compute"):
        out["computer"] = _component_to_2025(request["compute"], "compute")
    for key in ("storage", "data"):
        if request.get(key):
            out[key] = [_component_to_2025(item, key) for item in request[key]]
    return out


def write_update(update: Mapping[str, Any], dialect: str) -> dict[str, Any]:
    """A v1.0 update in the form a service of ``dialect`` reads (the prototype: ``type:``)."""
    if dialect != PROTOTYPE_2025:
        return dict(update)
    out = {key: value for key, value in update.items() if key != "kind"}
    return {"type": update.get("kind"), **out}
