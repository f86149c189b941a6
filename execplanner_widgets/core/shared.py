"""What many platforms derive alike from one question, computed once per fan-out instead of once per platform.

A federation asks every platform the same request, and every remote platform of one dialect sends
it encoded the same way; encoding it anew for each of 1,000 platforms costs more than the rest of
sending. The federation marks its own private copy of the request with :func:`share`; a platform
asks :func:`once` for what it derives from a request, and gets the value computed by the first
platform that asked. Only requests the federation owns are shared (a caller that changes its own
request object between two questions never gets a stale value), and a request's values are
forgotten with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["once", "share"]

T = TypeVar("T")

_SHARED: dict[int, dict[Hashable, Any]] = {}


def share(request: T) -> T:
    """Let platforms share what they derive from ``request`` (which nobody may change from now on)."""
    key = id(request)
    if key not in _SHARED:
        _SHARED[key] = {}
        weakref.finalize(request, _SHARED.pop, key, None)  # before the id can be reused
    return request


def once(request: object, key: Hashable, make: Callable[..., T], *args: Any) -> T:
    """``make(*args)``, computed once per shared ``request`` and ``key`` (every time for a request not shared)."""
    table = _SHARED.get(id(request))
    if table is None:
        return make(*args)
    try:
        return table[key]
    except KeyError:
        value = table[key] = make(*args)
        return value
