"""A throw-away PostgreSQL server on 127.0.0.1 in a temporary folder, for the tests that book on
PostgreSQL as well as SQLite and for ``bench/bench_accepts.py``.

Run as root, it runs as the ``postgres`` user (PostgreSQL refuses root). Durability is off
(``fsync=off``): the server lives for one test module or one benchmark and is removed after.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["PostgresUnavailable", "throwaway_postgres"]


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says what is missing."""


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def throwaway_postgres(**settings: Any) -> Iterator[str]:
    """Start a server (``settings`` become ``-c name=value`` options) and yield its SQLAlchemy URL;
    :class:`PostgresUnavailable` if psycopg, ``initdb``/``pg_ctl`` or (as root) the ``postgres``
    user is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresUnavailable("psycopg is not installed (pip install '.[postgres]')") from None
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise PostgresUnavailable("PostgreSQL (initdb, pg_ctl) is not installed")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        import pwd

        if not shutil.which("runuser"):
            raise PostgresUnavailable("running as root without runuser: cannot start PostgreSQL")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no postgres user to run PostgreSQL") from None
        prefix = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="execplanner-pg-"))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", _free_port()
    run: dict[str, Any] = {"check": True, "capture_output": True, "timeout": 120}
    options = " ".join(
        [f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"]
        + [f"-c {name}={value}" for name, value in settings.items()]
    )
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "execplanner", "--auth=trust", "-E", "UTF8"], **run)
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"], **run
        )
        yield f"postgresql+psycopg://execplanner@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(folder, ignore_errors=True)
