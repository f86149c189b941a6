"""Staging on behalf of users the server does not trust: real files, symlinks, devices and HTTP servers.

Each test tries one way to make PREPARING copy or download what the caller may not have: a symlink
out of the allowed roots (at the top or deep in a folder), ``/dev/zero``, ``/proc/self/environ``,
another user's private file, more bytes than allowed, a loopback URL, a redirect to another origin.
Each must fail with a reason, and leave no partial copy behind.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_server_extension.hosted.staging import StagingError, resolve_location, stage


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    allowed = tmp_path / "allowed"
    (allowed / "dataset" / "nested").mkdir(parents=True)
    (allowed / "dataset" / "table.csv").write_text("a,b\n1,2\n")
    (allowed / "dataset" / ".hidden").write_text("not copied")
    (allowed / "dataset" / "nested" / "more.csv").write_text("c\n3\n")
    (allowed / "script.py").write_text("print('hello')\n")
    (allowed / "big.bin").write_bytes(b"x" * 5000)
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret")
    return allowed


async def run_stage(session: Path, location: str | Path, data: list[str | Path] = (), **options) -> list[str]:
    options.setdefault("local_roots", [session.parent / "allowed"])
    options.setdefault("limit", 10**6)
    await stage((str(location), "script.py"), [(str(item), "data") for item in data], [], session, **options)
    return sorted(str(path.relative_to(session / "work")) for path in (session / "work").rglob("*"))


def left_behind(session: Path) -> list[str]:
    work = session / "work"
    return sorted(str(path.relative_to(work)) for path in work.rglob("*") if path.name != "outputs")


@pytest.mark.asyncio
async def test_a_folder_is_copied_with_its_files_but_not_its_hidden_ones(tmp_path, roots):
    copied = await run_stage(tmp_path / "s", roots / "script.py", [roots / "dataset"])
    assert "dataset/table.csv" in copied and "dataset/nested/more.csv" in copied
    assert "dataset/.hidden" not in copied


@pytest.mark.asyncio
async def test_a_symlink_deep_in_a_folder_that_leaves_the_roots_is_refused(tmp_path, roots):
    (roots / "dataset" / "nested" / "innocent.csv").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(StagingError, match="outside the folders"):
        await run_stage(tmp_path / "s", roots / "script.py", [roots / "dataset"])
    assert not [name for name in left_behind(tmp_path / "s") if name.startswith("dataset")]
    (roots / "dataset" / "nested" / "innocent.csv").unlink()
    (roots / "dataset" / "shadow.csv").symlink_to("/etc/shadow")
    with pytest.raises(StagingError, match="outside the folders"):
        await run_stage(tmp_path / "s2", roots / "script.py", [roots / "dataset"])


@pytest.mark.asyncio
async def test_a_symlink_inside_the_roots_is_copied_as_the_file_it_names(tmp_path, roots):
    (roots / "dataset" / "alias.csv").symlink_to(roots / "dataset" / "table.csv")
    copied = await run_stage(tmp_path / "s", roots / "script.py", [roots / "dataset"])
    assert "dataset/alias.csv" in copied
    assert not (tmp_path / "s" / "work" / "dataset" / "alias.csv").is_symlink()


@pytest.mark.parametrize(
    "location, reason",
    [
        ("/etc/shadow", "system folders"),
        ("/dev/zero", "system folders"),
        ("/proc/self/environ", "system folders"),
    ],
)
def test_without_roots_a_single_user_platform_refuses_system_files(location, reason):
    with pytest.raises(StagingError, match=reason):
        resolve_location(location, None)


def test_without_roots_a_multi_user_platform_copies_no_local_file(roots):
    with pytest.raises(StagingError, match="copies no local files"):
        resolve_location(str(roots / "script.py"), None, multi_user=True)
    assert resolve_location(str(roots / "script.py"), None).path == (roots / "script.py").resolve()


def test_devices_are_refused_even_under_a_root():
    with pytest.raises(StagingError, match="only regular files"):
        resolve_location("/dev/zero", [Path("/dev")])


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server must refuse files that are not readable by everyone")
def test_a_root_server_does_not_copy_another_users_private_file(roots):
    private = roots / "private.csv"
    private.write_text("mine")
    os.chown(private, 65534, 65534)
    private.chmod(0o600)
    with pytest.raises(StagingError, match="not readable by everyone"):
        resolve_location(str(private), [roots])


@pytest.mark.asyncio
async def test_bytes_are_counted_per_item_and_against_the_booked_storage(tmp_path, roots):
    with pytest.raises(StagingError, match="larger than the 1000 bytes"):
        await run_stage(tmp_path / "s", roots / "big.bin", limit=1000)
    assert left_behind(tmp_path / "s") == []
    with pytest.raises(StagingError, match="booked storage"):
        await run_stage(tmp_path / "s2", roots / "script.py", [roots / "big.bin"], total_limit=3000)
    assert "big.bin" not in left_behind(tmp_path / "s2")


class _Redirecting(http.server.SimpleHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        if self.path.startswith("/away"):
            self.send_response(302)
            self.send_header("Location", self.target)
            self.end_headers()
            return
        if self.path.startswith("/here"):
            self.send_response(302)
            self.send_header("Location", "/script.py")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web(roots) -> Iterator[str]:
    handler = functools.partial(_Redirecting, directory=str(roots))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    _Redirecting.target = f"http://localhost:{server.server_address[1]}/script.py"  # same host, other origin
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.asyncio
async def test_loopback_urls_are_refused_unless_the_provider_allows_them(tmp_path, web):
    with pytest.raises(StagingError, match="loopback, private or reserved"):
        await run_stage(tmp_path / "s", f"{web}/script.py")
    copied = await run_stage(tmp_path / "s2", f"{web}/script.py", private_urls=True)
    assert copied == ["outputs", "script.py"]
    with pytest.raises(StagingError, match="loopback, private or reserved"):
        await run_stage(tmp_path / "s3", "http://10.1.2.3/data.csv")


@pytest.mark.asyncio
async def test_redirects_are_followed_only_within_the_origin(tmp_path, web):
    copied = await run_stage(tmp_path / "s", f"{web}/here", private_urls=True)
    assert "here" in copied or "script.py" in copied
    with pytest.raises(StagingError, match="redirects to another origin"):
        await run_stage(tmp_path / "s2", f"{web}/away", private_urls=True)
    assert left_behind(tmp_path / "s2") == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MiB file system (tmpfs) for the platform's database and session folders."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.asyncio
async def test_a_full_disk_fails_the_session_with_a_reason_and_the_database_goes_on(tmp_path, small_disk):
    from test_hosted_support import eventually, request_document

    from execplanner_widgets.core.platform import PlatformContext
    from execplanner_widgets.model import SessionPhase, parse_request
    from jupyter_server_extension.hosted.platform import HostedPlatform

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "big.bin").write_bytes(os.urandom(5 * 1024 * 1024))  # more than the whole disk
    (inputs / "hello.py").write_text("print('hello')\n")
    options = {"cores": 1, "memory": 1, "offers": 1, "local_roots": [str(inputs)], "isolation": "none"}
    platform = HostedPlatform.from_config("small", "Small", options, PlatformContext(data_dir=small_disk))

    async def run(document: dict) -> object:
        answer = await platform.offers(parse_request(document), user=None)
        assert answer.result == "YES", answer.reasons
        booked = await platform.accept(answer.offers[0].meta.uuid, user=None)

        async def final() -> object:
            session = await platform.session(booked.meta.uuid, user=None)
            return session if session.is_final else None

        return await eventually(final, 60)

    try:
        full = await run(request_document(inputs / "hello.py", data=[inputs / "big.bin"], duration="PT1M"))
        assert full.phase is SessionPhase.FAILED
        assert any("disk is full" in message.text for message in full.messages), [m.text for m in full.messages]
        after = await run(request_document(inputs / "hello.py", duration="PT1M"))  # the database still writes
        assert after.phase is SessionPhase.COMPLETED, [m.text for m in after.messages]
    finally:
        await platform.aclose()
