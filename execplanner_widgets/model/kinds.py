"""Kind URIs: one canonical spelling for each kind, whichever generation of the standard wrote it.

The same "Jupyter notebook" kind has been written at least five ways since 2021::

    uri://jupyter-notebook                                                  (2021 note)
    https://purl.org/esap.escape.eu/task-type/jupyter-notebook              (2022 note)
    https://www.purl.org/ivoa.net/EB/schema/v1.0/types/executable/jupyter-notebook-1.0   (2025)
    https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/jupyter-notebook.yaml (2026)
    jupyter-notebook / purl:jupyter-notebook                                (short names, OSSR records)

Everything inside this project uses the 2026 ExecutionBroker v1.0 URI. A kind nobody here knows is
kept exactly as written: the platform that receives it decides, and says NO, as the standard asks.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

__all__ = [
    "CALYCOPIS_BASE",
    "Category",
    "KNOWN_KINDS",
    "canonical_kind",
    "kind_uri",
    "is_known",
    "short_kind",
    "UPDATE_ENUM_VALUE",
]

Category = Literal["executable", "compute", "storage", "data", "volume", "session", "costs", "metrics"]

CALYCOPIS_BASE = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds"
_EB_2025_BASE = "https://www.purl.org/ivoa.net/EB/schema/v1.0/types"

#: The update kind that changes a session's phase (accept, reject, cancel).
UPDATE_ENUM_VALUE = "uri:enum-value-update"

#: Kinds this project knows, by category, with their short names. ``python-script`` is not in
#: ExecutionBroker v1.0; it is this project's extension for plain Python files and keeps the same
#: URI pattern so that a remote service that does not know it answers NO, as it should.
KNOWN_KINDS: dict[str, tuple[str, ...]] = {
    "executable": ("jupyter-notebook", "docker-container", "singularity-container", "python-script"),
    "compute": ("simple-compute-resource",),
    "storage": ("simple-storage-resource",),
    "data": (
        "simple-data-resource",
        "S3-data-resource",
        "ivoa-data-resource",
        "rucio-data-resource",
        "skao-data-resource",
    ),
    "volume": ("simple-volume-mount",),
    "session": ("simple-execution-session", "scheduled-execution-session"),
    "costs": ("simple-minmax-float-cost",),
    "metrics": ("simple-minmax-float-metric",),
}

_SHORT_LOOKUP: dict[str, tuple[str, str]] = {
    short.lower(): (category, short) for category, shorts in KNOWN_KINDS.items() for short in shorts
}

#: Older names for the same thing (2021/2022 notes and OSSR records used these).
_ALIASES: dict[str, str] = {
    "notebook": "jupyter-notebook",
    "jupyter": "jupyter-notebook",
    "docker": "docker-container",
    "oci-container": "docker-container",
    "container": "docker-container",
    "singularity": "singularity-container",
    "apptainer-container": "singularity-container",
    "python": "python-script",
    "compute": "simple-compute-resource",
    "generic-compute": "simple-compute-resource",
    "storage": "simple-storage-resource",
    "storage-type": "simple-storage-resource",
    "data": "simple-data-resource",
    "data-reference": "simple-data-resource",
    "s3": "S3-data-resource",
    "rucio": "rucio-data-resource",
    "rucio-object": "rucio-data-resource",
    "ivoa": "ivoa-data-resource",
}

_URI_PATTERNS = (
    # 2026: .../Calycopis-openapi/schema/v1.0/kinds/{category}/{name}.yaml
    re.compile(r"^https?://(?:www\.)?purl\.org/ivoa\.net/Calycopis-openapi/schema/v1\.0/kinds/[^/]+/(?P<name>[^/]+?)\.yaml$", re.I),
    # 2025: .../EB/schema/v1.0/types/{category}/{name}-1.0
    re.compile(r"^https?://(?:www\.)?purl\.org/ivoa\.net/EB/schema/v1\.0/types/[^/]+/(?P<name>[^/]+?)-1\.0$", re.I),
    # 2022 note: https://purl.org/esap.escape.eu/task-type/{name}
    re.compile(r"^https?://(?:www\.)?purl\.org/esap\.escape\.eu/[a-z-]+/(?P<name>[^/]+)$", re.I),
    # 2021 note and OSSR records: uri://{name}, purl:{name}, urn:{name}
    re.compile(r"^(?:uri://|purl:|urn:)(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)$", re.I),
)  # fmt: skip


def kind_uri(category: str, short: str) -> str:
    """The 2026 ExecutionBroker v1.0 URI of a known kind."""
    return f"{CALYCOPIS_BASE}/{category}/{short}.yaml"


#: Every canonical URI. Each is its own canonical form in any category: a known kind of another
#: category is kept as written, like any kind this project does not know.
_CANONICAL_URIS = frozenset(
    f"{CALYCOPIS_BASE}/{category}/{short}.yaml" for category, shorts in KNOWN_KINDS.items() for short in shorts
)


def _known_short(name: str) -> tuple[str, str] | None:
    lowered = name.lower()
    lowered = _ALIASES.get(lowered, lowered).lower()
    return _SHORT_LOOKUP.get(lowered)


def canonical_kind(value: str, category: str | None = None) -> str:
    """Return the canonical (2026) URI for ``value``, or ``value`` unchanged if it is unknown.

    ``category`` picks the right family when a short name could be ambiguous, and guards against a
    data kind being accepted as an executable: a known name of another category is kept verbatim.
    Answers for short texts are remembered: an offer set names the same few kinds many times.
    """
    if value in _CANONICAL_URIS:  # already canonical, whatever the category asked (most kinds on the wire)
        return value
    if type(value) is str and len(value) <= 256:
        return _canonical_cached(value, category)
    return _canonical(value, category)


def _canonical(value: str, category: str | None) -> str:
    """:func:`canonical_kind`."""
    text = value.strip()
    candidates = [text]
    for pattern in _URI_PATTERNS:
        match = pattern.match(text)
        if match:
            candidates = [match["name"]]
            break
    for name in candidates:
        found = _known_short(name)
        if found and (category is None or found[0] == category):
            return kind_uri(*found)
    return text


_canonical_cached = functools.lru_cache(maxsize=1024)(_canonical)


def short_kind(value: str | None) -> str:
    """A short, readable name for a kind: ``jupyter-notebook`` for any of its URIs; an unknown kind
    is returned as written, since no shorter name would be honest."""
    if not value:
        return "-"
    canonical = canonical_kind(value)
    if canonical.startswith(CALYCOPIS_BASE):
        return canonical.rsplit("/", 1)[-1].removesuffix(".yaml")
    return value


def is_known(value: str, category: str) -> bool:
    """Whether ``value`` is a kind of ``category`` that this project understands."""
    return canonical_kind(value, category).startswith(f"{CALYCOPIS_BASE}/{category}/")
