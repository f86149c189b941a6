"""PREPARING: bring a session's executable and data into its working folder, make its storage.

Locations may be ``http(s)`` URLs (downloaded, streamed to disk with a size limit), ``file://``
URIs or local paths (copied, only from the provider's ``local_roots`` when that is set). Each
item becomes a file in the working folder under its own name, next to the executable, so a
notebook opens its data with a relative path. Storage resources become folders under
``storage/`` (linked from the working folder as ``storage``) that outlive the run until their
lifetime ends.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

__all__ = ["Location", "StagingError", "Staged", "resolve_location", "stage", "safe_name"]

CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class StagingError(Exception):
    """A data item or executable could not be brought in; the message says which and why."""


@dataclass(frozen=True)
class Location:
    """Where something comes from: a URL to download or a local path to copy."""

    url: str | None = None
    path: Path | None = None

    @property
    def name(self) -> str:
        """The file name the item gets in the working folder."""
        raw = Path(urlsplit(self.url).path).name if self.url else (self.path.name if self.path else "")
        return safe_name(unquote(raw))

    def __str__(self) -> str:
        return self.url or str(self.path)


def safe_name(name: str, default: str = "item") -> str:
    """A file name with no path separators or surprises (``../x`` -> ``x``)."""
    cleaned = _UNSAFE.sub("_", Path(name).name).strip("._")
    return cleaned or default


def resolve_location(location: str, local_roots: list[Path] | None = None) -> Location:
    """Check ``location`` and say how it will be fetched; raise :class:`StagingError` if it cannot be."""
    text = location.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise StagingError(f"{location!r} is not a complete URL")
        return Location(url=text)
    if scheme == "file":
        path = Path(unquote(parts.path))
    elif scheme and len(scheme) > 1:
        raise StagingError(
            f"cannot fetch {location!r}: this platform fetches http(s) URLs and local paths, not {scheme}:"
        )
    else:
        path = Path(text).expanduser()
    path = path.resolve()
    if local_roots is not None and not any(
        path.is_relative_to(Path(root).expanduser().resolve()) for root in local_roots
    ):
        raise StagingError(
            f"cannot copy {path}: local files must be under {', '.join(str(root) for root in local_roots)}"
        )
    if not path.exists():
        raise StagingError(f"cannot copy {path}: no such file or folder")
    if not os.access(path, os.R_OK):
        raise StagingError(f"cannot copy {path}: not readable")
    return Location(path=path)


def _unique(folder: Path, name: str) -> Path:
    target = folder / name
    counter = 1
    stem, suffix = os.path.splitext(name)
    while target.exists() or target.is_symlink():
        target = folder / f"{stem}-{counter}{suffix}"
        counter += 1
    return target


async def _download(client: httpx.AsyncClient, url: str, target: Path, limit: int) -> int:
    size = 0
    try:
        async with client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise StagingError(f"cannot download {url}: HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise StagingError(f"cannot download {url}: {int(declared)} bytes is more than the {limit} allowed")
            with open(target, "wb") as handle:
                async for chunk in response.aiter_bytes(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise StagingError(f"cannot download {url}: larger than the {limit} bytes allowed")
                    handle.write(chunk)
    except httpx.HTTPError as error:
        raise StagingError(f"cannot download {url}: {type(error).__name__}: {error}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return size


def _copy(source: Path, target: Path, limit: int) -> int:
    if source.is_dir():
        total = sum(item.stat().st_size for item in source.rglob("*") if item.is_file())
        if total > limit:
            raise StagingError(f"cannot copy {source}: {total} bytes is more than the {limit} allowed")
        shutil.copytree(source, target, symlinks=False)
        return total
    size = source.stat().st_size
    if size > limit:
        raise StagingError(f"cannot copy {source}: {size} bytes is more than the {limit} allowed")
    shutil.copyfile(source, target)
    return size


async def fetch(location: Location, folder: Path, name: str, limit: int, client: httpx.AsyncClient) -> tuple[Path, int]:
    """Bring one item into ``folder`` as ``name`` (made unique); return where it went and its size."""
    import asyncio

    target = _unique(folder, name)
    if location.url:
        return target, await _download(client, location.url, target, limit)
    assert location.path is not None
    return target, await asyncio.to_thread(_copy, location.path, target, limit)


@dataclass
class Staged:
    """What PREPARING produced: the executable's path and one line per item for the history."""

    entry: Path
    notes: list[str] = field(default_factory=list)


async def stage(
    executable: tuple[str, str],
    data: list[tuple[str, str]],
    storage: list[str],
    session_dir: Path,
    *,
    local_roots: list[Path] | None,
    limit: int,
) -> Staged:
    """Prepare ``session_dir``: ``work/`` with the executable and data, ``storage/<name>`` folders.

    ``executable`` is (location, default file name); ``data`` is a list of (location, preferred
    name); ``storage`` the folder names to create.
    """
    work = session_dir / "work"
    (work / "outputs").mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if storage:
        storage_root = session_dir / "storage"
        for name in storage:
            (storage_root / safe_name(name, "storage")).mkdir(parents=True, exist_ok=True)
        link = work / "storage"
        if not link.exists():
            link.symlink_to(storage_root, target_is_directory=True)
        notes.append(f"created {len(storage)} storage folder(s): {', '.join(safe_name(n, 'storage') for n in storage)}")
    async with httpx.AsyncClient(
        follow_redirects=True, trust_env=False, timeout=httpx.Timeout(60.0, connect=20.0)
    ) as client:
        location, default_name = executable
        where = resolve_location(location, local_roots)
        entry, size = await fetch(where, work, where.name or default_name, limit, client)
        notes.append(f"fetched the executable {entry.name} ({size} bytes) from {where}")
        for location, preferred in data:
            where = resolve_location(location, local_roots)
            target, size = await fetch(where, work, where.name or safe_name(preferred, "data"), limit, client)
            notes.append(f"fetched {target.name} ({size} bytes) from {where}")
    return Staged(entry=entry, notes=notes)
