"""PREPARING: bring a session's executable and data into its working folder, make its storage.

Locations may be ``http(s)`` URLs (downloaded, streamed to disk with a size limit), ``file://``
URIs or local paths (copied from the provider's ``local_roots``). Each item becomes a file (or a
folder) in the working folder under its own name, next to the executable, so a notebook opens its
data with a relative path. Storage resources become folders under ``storage/`` (linked from the
working folder as ``storage``) that outlive the run until their lifetime ends.

Everything here is done on behalf of a user the server does not trust, with the server's rights, so:

* a local path is resolved (symlinks followed) and must stay under one of the roots; so must every
  symlink inside a copied folder, and every file must be a regular file or folder (no ``/dev/zero``,
  no FIFO, no ``/proc`` entry, whatever its size claims); hidden names (``.ssh``, ``.jupyter``) are
  refused below a root; when the server runs as root, files must be readable by everyone (another
  user's ``0600`` file is theirs, not the caller's);
* without ``local_roots``, a platform that serves several people copies no local file at all (the
  provider names the folders); a single-user platform copies from anywhere but the system folders
  (``/etc``, ``/proc``, ``/dev``, ``/var`` ...);
* bytes are counted while copying, and the copy stops at the item's limit and at the session's total
  (its booked storage): the session fails with that reason and the partial copy is removed;
* ``http(s)`` URLs whose host resolves to a loopback, private, link-local or otherwise special
  address are refused unless the provider allows private URLs, and a redirect is followed only
  within the same origin (at most five);
* a full disk is the session's failure, with a reason, and what was written is removed at once so
  the database (which may share the disk) can still record it.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import re
import shutil
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx

__all__ = ["Location", "StagingError", "Staged", "default_roots", "resolve_location", "stage", "safe_name"]

CHUNK = 1024 * 1024
MAX_REDIRECTS = 5
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


#: Never copied from when no roots are named: the system's state, devices and configuration.
#: (Home folders are not listed: their secrets live under hidden names, which are always refused.)
SYSTEM_FOLDERS = tuple(Path(name) for name in ("/proc", "/sys", "/dev", "/run", "/etc", "/boot", "/var"))

_ANYWHERE = Path("/")


def default_roots(multi_user: bool = False) -> list[Path]:
    """Where local files may come from when the provider names no roots: nowhere for a platform that
    serves several people; anywhere but :data:`SYSTEM_FOLDERS` for a single user's platform."""
    return [] if multi_user else [_ANYWHERE]


def _roots(local_roots: list[Path] | None, multi_user: bool = False) -> list[Path]:
    if local_roots is None:
        return default_roots(multi_user)
    return [Path(root).expanduser().resolve() for root in local_roots]


def _root_of(path: Path, roots: list[Path]) -> Path | None:
    for root in roots:
        if root == _ANYWHERE and any(path == system or path.is_relative_to(system) for system in SYSTEM_FOLDERS):
            continue
        if path == root or path.is_relative_to(root):
            return root
    return None


def _check_local(path: Path, roots: list[Path], shown: str) -> None:
    """``path`` (already resolved) is under a root, not hidden below it, readable by anyone if we are root."""
    root = _root_of(path, roots)
    if root is None:
        if not roots:
            raise StagingError(
                f"cannot copy {shown}: this platform copies no local files (its provider has named no local_roots); "
                "give an http(s) URL"
            )
        if roots == [_ANYWHERE]:
            raise StagingError(f"cannot copy {shown}: files in system folders are not copied")
        where = ", ".join(str(item) for item in roots)
        raise StagingError(f"cannot copy {shown}: it is outside the folders local files may come from ({where})")
    hidden = [part for part in path.relative_to(root).parts if part.startswith(".")]
    if hidden:
        raise StagingError(f"cannot copy {shown}: hidden files and folders ({hidden[0]}) are not copied")


def _check_readable(path: Path, shown: str) -> None:
    """Readable by us, and by everyone unless it is the server user's own (and the server is not root):
    another user's private file is theirs, not the caller's."""
    info = path.stat()
    own = info.st_uid == os.geteuid() and os.geteuid() != 0
    if not os.access(path, os.R_OK) or not (own or info.st_mode & stat.S_IROTH):
        raise StagingError(f"cannot copy {shown}: it is not readable by everyone")


def resolve_location(location: str, local_roots: list[Path] | None = None, *, multi_user: bool = False) -> Location:
    """Check ``location`` and say how it will be fetched; raise :class:`StagingError` if it cannot be."""
    text = location.strip()
    if "\x00" in text:
        raise StagingError("cannot fetch a location that holds a NUL character")
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
    if not path.is_absolute():
        path = Path.cwd() / path
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise StagingError(f"cannot copy {path}: no such file or folder") from None
    except (OSError, RuntimeError) as error:  # a symlink loop, a name too long
        raise StagingError(f"cannot copy {path}: {error}") from None
    shown = f"{path} (a symlink to {resolved})" if resolved != path.absolute() else str(path)
    _check_local(resolved, _roots(local_roots, multi_user), shown)
    mode = resolved.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise StagingError(f"cannot copy {shown}: only regular files and folders are copied")
    _check_readable(resolved, shown)
    return Location(path=resolved)


def _unique(folder: Path, name: str) -> Path:
    target = folder / name
    counter = 1
    stem, suffix = os.path.splitext(name)
    while target.exists() or target.is_symlink():
        target = folder / f"{stem}-{counter}{suffix}"
        counter += 1
    return target


class _Budget:
    """Bytes an item, and the whole session, may still write."""

    def __init__(self, item: int, total: int | None, what: str) -> None:
        self.item_left = item
        self.item = item
        self.total = total
        self.what = what

    def take(self, size: int, shared: list[int]) -> None:
        self.item_left -= size
        if self.item_left < 0:
            raise StagingError(f"cannot copy {self.what}: larger than the {self.item} bytes allowed for one item")
        if self.total is not None:
            shared[0] += size
            if shared[0] > self.total:
                raise StagingError(
                    f"cannot copy {self.what}: the session's inputs exceed its booked storage of {self.total} bytes"
                )


def _disk_error(error: OSError, what: str) -> StagingError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StagingError(f"cannot copy {what}: the disk is full")
    return StagingError(f"cannot copy {what}: {error.strerror or error}")


def _copy_file(source: Path, target: Path, budget: _Budget, shared: list[int]) -> int:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    descriptor = os.open(source, flags)
    written = 0
    with os.fdopen(descriptor, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):  # swapped for something else meanwhile
            raise StagingError(f"cannot copy {source}: only regular files and folders are copied")
        with open(target, "xb") as writer:
            while chunk := reader.read(CHUNK):
                budget.take(len(chunk), shared)
                writer.write(chunk)
                written += len(chunk)
    return written


def _copy_tree(source: Path, target: Path, roots: list[Path], budget: _Budget, shared: list[int]) -> int:
    """Copy folder ``source``; every entry is checked, symlinks are followed only within the roots."""
    total = 0
    target.mkdir()
    for entry in sorted(os.scandir(source), key=lambda item: item.name):
        if entry.name.startswith("."):
            continue  # hidden entries (.git, .ipynb_checkpoints, .ssh) stay behind
        path = Path(entry.path)
        destination = target / entry.name
        if entry.is_symlink():
            try:
                resolved = path.resolve(strict=True)
            except (OSError, RuntimeError):
                raise StagingError(f"cannot copy {path}: it is a broken symlink") from None
            _check_local(resolved, roots, f"{path} (a symlink to {resolved})")
        else:
            resolved = path
            _check_local(path, roots, str(path))
        _check_readable(resolved, str(path))
        mode = resolved.stat().st_mode
        if stat.S_ISDIR(mode):
            if entry.is_symlink():  # a link to a folder inside the roots: copied as a folder, once
                raise StagingError(f"cannot copy {path}: symlinks to folders are not copied")
            total += _copy_tree(resolved, destination, roots, budget, shared)
        elif stat.S_ISREG(mode):
            total += _copy_file(resolved, destination, budget, shared)
        else:
            raise StagingError(f"cannot copy {path}: only regular files and folders are copied")
    return total


def _copy(source: Path, target: Path, roots: list[Path], budget: _Budget, shared: list[int]) -> int:
    try:
        if source.is_dir():
            return _copy_tree(source, target, roots, budget, shared)
        return _copy_file(source, target, budget, shared)
    except OSError as error:
        raise _disk_error(error, str(source)) from None


def _special(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def check_url(url: str, private_urls: bool) -> None:
    """Refuse a URL whose host is (or resolves to) a loopback, private or other non-public address."""
    if private_urls:
        return
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as error:
        raise StagingError(f"cannot download {url}: the host {host!r} cannot be resolved ({error})") from None
    for info in infos:
        if _special(str(info[4][0])):
            raise StagingError(
                f"cannot download {url}: {host} is a loopback, private or reserved address "
                "(the provider has not allowed private URLs)"
            )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


async def _download(
    client: httpx.AsyncClient, url: str, target: Path, budget: _Budget, shared: list[int], private_urls: bool
) -> int:
    size = 0
    current = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            await check_url(current, private_urls)
            async with client.stream("GET", current) as response:
                if response.is_redirect:
                    following = urljoin(current, response.headers.get("Location", ""))
                    if _origin(following) != _origin(url):
                        raise StagingError(f"cannot download {url}: it redirects to another origin ({following})")
                    current = following
                    continue
                if response.status_code >= 400:
                    raise StagingError(f"cannot download {url}: HTTP {response.status_code}")
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > budget.item:
                    raise StagingError(
                        f"cannot download {url}: {int(declared)} bytes is more than the {budget.item} allowed"
                    )
                with open(target, "wb") as handle:
                    async for chunk in response.aiter_bytes(CHUNK):
                        budget.take(len(chunk), shared)
                        size += len(chunk)
                        handle.write(chunk)
                return size
        raise StagingError(f"cannot download {url}: more than {MAX_REDIRECTS} redirects")
    except httpx.HTTPError as error:
        raise StagingError(f"cannot download {url}: {type(error).__name__}: {error}") from None
    except OSError as error:
        raise _disk_error(error, url) from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _remove(target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)


async def fetch(
    location: Location,
    folder: Path,
    name: str,
    limit: int,
    client: httpx.AsyncClient,
    *,
    local_roots: list[Path] | None = None,
    multi_user: bool = False,
    total: int | None = None,
    used: list[int] | None = None,
    private_urls: bool = False,
) -> tuple[Path, int]:
    """Bring one item into ``folder`` as ``name`` (made unique); return where it went and its size.

    On any failure what was written is removed before the error goes on.
    """
    target = _unique(folder, name)
    budget = _Budget(limit, total, str(location))
    shared = used if used is not None else [0]
    try:
        if location.url:
            return target, await _download(client, location.url, target, budget, shared, private_urls)
        assert location.path is not None
        roots = _roots(local_roots, multi_user)
        return target, await asyncio.to_thread(_copy, location.path, target, roots, budget, shared)
    except BaseException:
        await asyncio.to_thread(_remove, target)
        raise


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
    total_limit: int | None = None,
    private_urls: bool = False,
    multi_user: bool = False,
) -> Staged:
    """Prepare ``session_dir``: ``work/`` with the executable and data, ``storage/<name>`` folders.

    ``executable`` is (location, default file name); ``data`` is a list of (location, preferred
    name); ``storage`` the folder names to create. ``limit`` bounds each item, ``total_limit`` (the
    booked storage) all of them together.
    """
    work = session_dir / "work"
    notes: list[str] = []
    try:
        (work / "outputs").mkdir(parents=True, exist_ok=True)
        if storage:
            storage_root = session_dir / "storage"
            for name in storage:
                (storage_root / safe_name(name, "storage")).mkdir(parents=True, exist_ok=True)
            link = work / "storage"
            if not link.exists():
                link.symlink_to(storage_root, target_is_directory=True)
            created = ", ".join(safe_name(n, "storage") for n in storage)
            notes.append(f"created {len(storage)} storage folder(s): {created}")
    except OSError as error:
        raise _disk_error(error, "the session's folders") from None
    used = [0]
    options = {
        "local_roots": local_roots,
        "multi_user": multi_user,
        "total": total_limit,
        "used": used,
        "private_urls": private_urls,
    }
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=httpx.Timeout(60.0, connect=20.0)
    ) as client:
        location, default_name = executable
        where = resolve_location(location, local_roots, multi_user=multi_user)
        entry, size = await fetch(where, work, where.name or default_name, limit, client, **options)  # type: ignore[arg-type]
        notes.append(f"fetched the executable {entry.name} ({size} bytes) from {where}")
        for location, preferred in data:
            where = resolve_location(location, local_roots, multi_user=multi_user)
            target, size = await fetch(
                where, work, where.name or safe_name(preferred, "data"), limit, client, **options
            )  # type: ignore[arg-type]
            notes.append(f"fetched {target.name} ({size} bytes) from {where}")
    return Staged(entry=entry, notes=notes)
