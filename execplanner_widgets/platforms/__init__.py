"""Compute platforms: one interface, several ways of deciding (local metadata, a remote broker, ...)."""

from .base import (
    Platform,
    PlatformContext,
    PlatformDescription,
    PlatformError,
    SessionConflict,
    SessionNotFound,
)

__all__ = [
    "Platform",
    "PlatformContext",
    "PlatformDescription",
    "PlatformError",
    "SessionConflict",
    "SessionNotFound",
]
