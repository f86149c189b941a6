"""User code on hosted platforms is isolated: each test below tries to get out.

First the sandbox itself (real bubblewrap, real processes): a run cannot read its parent's or any
other process's environment, another session's files, the database file or the secrets folder, and
can write only inside its own session folder. Then through a real ``jupyter server``: a run on a
multi-user hosted platform looks for the server's token in its environment and in ``/proc``, and for
another run's results; a data folder holding a symlink out of the allowed roots is refused; and
after ``kill -9`` of the server, no process of the run is left once the server is restarted.

Needs bubblewrap (Debian ``bubblewrap``) with user namespaces or root; without it these tests skip,
except in CI (``CI=true``), where a missing bubblewrap is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from jupyter_live import run_jupyter_server

from jupyter_server_extension.hosted.executors.base import RunSpec
from jupyter_server_extension.hosted.executors.sandbox import (
    IsolationOptions,
    IsolationUnavailable,
    choose_sandbox,
    probe,
)

SECRET = "the-server-secret-4b1f0c"

#: The probe every isolated run executes: it tries each way out and writes what it found as JSON.
PROBE = textwrap.dedent(
    """
    import glob, json, os, sys
    targets = json.loads(sys.argv[1])
    found = {"uid": os.getuid(), "pid": os.getpid(), "secret_in_env": any(%(secret)r in v for v in os.environ.values())}
    leaks = []
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            if %(secret)r.encode() in open(path, "rb").read():
                leaks.append(path)
        except OSError:
            pass
    found["environ_leaks"] = leaks
    found["visible_pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    readable = {}
    for path in targets["read"]:
        try:
            if os.path.isdir(path):
                readable[path] = sorted(os.listdir(path))
            else:
                with open(path, "rb") as handle:
                    readable[path] = handle.read(64).decode("latin-1")
        except OSError as error:
            readable[path] = None
    found["readable"] = {k: v for k, v in readable.items() if v is not None}
    written = []
    for path in targets["write"]:
        try:
            with open(path, "w") as handle:
                handle.write("x")
            written.append(path)
        except OSError:
            pass
    found["written"] = written
    out = targets["report"]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(found, handle)
    """
) % {"secret": SECRET}


def need_bubblewrap() -> None:
    support = probe()
    if support.bubblewrap is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must isolate runs: {support.problem}")
        pytest.skip(f"no isolation on this machine: {support.problem}")


def spec_for(folder: Path, session: str = "s1") -> RunSpec:
    (folder / "work").mkdir(parents=True, exist_ok=True)
    (folder / "results").mkdir(parents=True, exist_ok=True)
    return RunSpec(
        session=session,
        kind="python-script",
        entry=folder / "work" / "probe.py",
        workdir=folder / "work",
        results=folder / "results",
        cores=1,
        memory_gib=1,
        deadline=datetime.now(timezone.utc) + timedelta(minutes=5),
    )


def run_isolated(spec: RunSpec, targets: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    sandbox = choose_sandbox(None, multi_user=True)
    sandbox.prepare(spec.workdir.parent)
    argv, env = sandbox.command(
        [sys.executable, "-I", "-c", PROBE, json.dumps(targets)], spec, file_size_bytes=10**8, **kwargs
    )
    done = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return json.loads(Path(targets["report"]).read_text())


# ----------------------------------------------------------------------------- the sandbox itself


def test_a_run_sees_only_its_own_session_folder(tmp_path, monkeypatch):
    need_bubblewrap()
    monkeypatch.setenv("PLATFORM_TOKEN", SECRET)  # what a broker platform's token_env looks like
    data = tmp_path / "data"
    mine, other = data / "hosted" / "p" / "mine", data / "hosted" / "p" / "other"
    spec = spec_for(mine)
    (other / "results").mkdir(parents=True)
    (other / "results" / "private.csv").write_text("other user's result")
    database = data / "hosted.sqlite"
    database.write_text("SQLite format 3")
    secrets = data / "secrets"
    secrets.mkdir()
    (secrets / "token").write_text(SECRET)
    report = str(mine / "results" / "report.json")
    found = run_isolated(
        spec,
        {
            "read": [str(other / "results" / "private.csv"), str(other), str(data / "hosted" / "p"), str(database),
                     str(secrets / "token"), str(Path(__file__)), "/root", "/home", "/etc/shadow", str(mine / "work")],
            "write": [str(mine / "work" / "ok.txt"), str(mine / "results" / "ok.txt"), str(data / "x.txt"),
                      str(tmp_path / "x.txt"), "/etc/x", "/usr/x"],
            "report": report,
        },
    )  # fmt: skip
    assert found["secret_in_env"] is False
    assert found["environ_leaks"] == []
    assert max(found["visible_pids"]) < 50, "the run sees the host's processes"
    assert found["pid"] < 10, "the run is not in a PID namespace of its own"
    assert set(found["readable"]) == {str(mine / "work")}, found["readable"]
    assert found["written"] == [str(mine / "work" / "ok.txt"), str(mine / "results" / "ok.txt")]
    assert not (data / "x.txt").exists() and not (tmp_path / "x.txt").exists()
    if os.geteuid() == 0:
        assert found["uid"] != 0, "a root server must run user code as another user"


def test_a_symlink_in_the_session_folder_leads_nowhere(tmp_path):
    need_bubblewrap()
    outside = tmp_path / "outside.txt"
    outside.write_text("outside")
    spec = spec_for(tmp_path / "s")
    (spec.workdir / "link").symlink_to(outside)
    report = str(spec.results / "report.json")
    found = run_isolated(spec, {"read": [str(spec.workdir / "link"), str(outside)], "write": [], "report": report})
    assert found["readable"] == {}


def test_file_size_and_process_limits(tmp_path):
    need_bubblewrap()
    spec = spec_for(tmp_path / "s")
    sandbox = choose_sandbox(IsolationOptions(processes=32), multi_user=True)
    sandbox.prepare(spec.workdir.parent)
    code = textwrap.dedent(
        """
        import os, subprocess
        try:
            open("big", "wb").write(b"x" * 3_000_000)
            print("big: written")
        except OSError as error:
            print("big: refused", error.errno)
        children = []
        try:
            for _ in range(200):
                children.append(subprocess.Popen(["sleep", "5"]))
            print("forks: all")
        except OSError as error:
            print("forks: refused after", len(children))
        for child in children:
            child.kill()
        """
    )
    argv, env = sandbox.command([sys.executable, "-c", code], spec, file_size_bytes=1_000_000)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "big: refused" in done.stdout, done.stdout + done.stderr
    if os.geteuid() == 0:  # RLIMIT_NPROC counts per user: only a user of its own makes it bite
        assert "forks: refused after" in done.stdout, done.stdout + done.stderr


def test_without_isolation_a_multi_user_platform_refuses_to_start(tmp_path, monkeypatch):
    """A machine without bubblewrap: PATH without it (the real probe, not a mock)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    probe.cache_clear()
    try:
        with pytest.raises(IsolationUnavailable) as refused:
            choose_sandbox(None, multi_user=True, platform="shared")
        assert "bubblewrap" in str(refused.value) and "isolation: none" in str(refused.value)
        assert "shared" in str(refused.value)
        with pytest.raises(IsolationUnavailable):
            choose_sandbox(IsolationOptions(mode="bubblewrap"), multi_user=False)
        single = choose_sandbox(None, multi_user=False)
        assert single.mode == "none" and "NOT isolated" in single.describe()
        accepted = choose_sandbox(IsolationOptions.model_validate("none"), multi_user=True)
        assert accepted.mode == "none" and "isolation: none" in accepted.describe()
    finally:
        probe.cache_clear()


# ------------------------------------------------------------------------- through a real server


TESTS = Path(__file__).resolve().parent


class Named:
    """A live server called as a named user (``X-Test-User`` through test_hosted_support's identity
    provider): a platform for several people serves only callers it can name."""

    def __init__(self, live: Any, user: str) -> None:
        self.live, self.user = live, user

    def __getattr__(self, name: str) -> Any:
        return getattr(self.live, name)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.live.token}", "X-Test-User": self.user}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("follow_redirects", True)  # as LiveServer.get
        return httpx.get(self.live.url + path, headers=self._headers(), timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("follow_redirects", True)  # as LiveServer.post
        return httpx.post(self.live.url + path, headers=self._headers(), timeout=30, **kwargs)


@contextmanager
def serve(root: Path, platforms: Path, user: str = "alice") -> Iterator[Named]:
    """``run_jupyter_server`` with named callers (the identity provider is imported from tests/)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), before]))
    try:
        identity = {"ServerApp": {"identity_provider_class": "test_hosted_support.HeaderIdentityProvider"}}
        with run_jupyter_server(root, platforms, extra_config=identity) as live:
            yield Named(live, user)
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def platforms_file(path: Path, roots: Path, isolation: Any = None) -> Path:
    hosted: dict[str, Any] = {
        "cores": 2,
        "memory": 2,
        "storage": 4,
        "offers": 1,
        "local_roots": [str(roots)],
        "allocations": {"alice": {"cores": 2}, "bob": {"cores": 2}},
    }
    if isolation is not None:
        hosted["isolation"] = isolation
    document = {"timeout": 30, "platforms": [{"name": "shared", "title": "A shared platform", "hosted": hosted}]}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def book(server: Any, document: dict[str, Any]) -> str:
    answer = server.post("execplanner/platforms/shared/requests", json=document)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] == "YES", body
    uuid = body["offers"][0]["meta"]["uuid"]
    accepted = server.post(
        f"execplanner/platforms/shared/sessions/{uuid}",
        json={"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"},
    )
    assert accepted.status_code == 200, accepted.text
    return uuid


def wait_final(server: Any, uuid: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = server.get(f"execplanner/platforms/shared/sessions/{uuid}").json()
        if session["phase"] in ("COMPLETED", "FAILED", "CANCELLED", "REJECTED", "EXPIRED"):
            return session
        time.sleep(0.3)
    raise AssertionError(f"session {uuid} did not end within {timeout} s: {session}")


def script_request(
    location: Path, arguments: list[str] | None = None, duration: str = "PT2M", data: list[Path] | None = None
) -> dict[str, Any]:
    executable: dict[str, Any] = {"kind": "python-script", "location": str(location)}
    if arguments:
        executable["arguments"] = arguments
    document: dict[str, Any] = {
        "executable": executable,
        "compute": {"cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"duration": duration}},
    }
    if data:
        document["data"] = [{"kind": "simple-data-resource", "location": str(item)} for item in data]
    return document


def test_a_hosted_run_cannot_read_the_servers_secrets_or_another_runs_files(tmp_path, monkeypatch):
    need_bubblewrap()
    monkeypatch.setenv("PLATFORM_TOKEN", SECRET)
    roots = tmp_path / "inputs"
    roots.mkdir()
    (roots / "probe.py").write_text(PROBE)
    (roots / "first.py").write_text(
        "import os\nopen(os.path.join(os.environ['EXECPLANNER_OUTPUTS'], 'mine.txt'), 'w').write('first run')\n"
    )
    (tmp_path / "first-outputs").mkdir()
    with serve(tmp_path / "server", platforms_file(tmp_path / "platforms.yaml", roots)) as server:
        first = book(server, script_request(roots / "first.py"))
        done = wait_final(server, first)
        assert done["phase"] == "COMPLETED", done["meta"]["messages"]
        state = tmp_path / "server" / "state"
        first_files = [str(path) for path in state.rglob("*") if first in str(path) and path.is_file()]
        assert first_files, "the first run's results are on disk"
        databases = [str(path) for path in state.rglob("*.sqlite*")]
        targets = {
            "read": [*first_files, str(state), *databases, str(tmp_path / "server" / "config"),
                     str(tmp_path / "server" / "runtime")],
            "write": [str(state / "x.txt")],
            "report": "outputs/report.json",
        }  # fmt: skip
        second = book(server, script_request(roots / "probe.py", [json.dumps(targets)]))
        done = wait_final(server, second)
        assert done["phase"] == "COMPLETED", done["meta"]["messages"]
        report = server.get(f"execplanner/platforms/shared/sessions/{second}/results/outputs/report.json")
        assert report.status_code == 200, report.text
        found = report.json()
    assert found["secret_in_env"] is False
    assert found["environ_leaks"] == [], "the run read the server's environment"
    assert found["readable"] == {}, found["readable"]
    assert found["written"] == []
    if os.geteuid() == 0:
        assert found["uid"] != 0


def test_a_symlink_out_of_the_allowed_roots_is_refused(tmp_path):
    roots = tmp_path / "inputs"
    (roots / "dataset").mkdir(parents=True)
    (roots / "dataset" / "table.csv").write_text("a,b\n1,2\n")
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET)
    (roots / "dataset" / "innocent.csv").symlink_to(secret)
    (roots / "script.py").write_text("print('hello')\n")
    (roots / "linked.py").symlink_to(secret)
    with serve(tmp_path / "server", platforms_file(tmp_path / "platforms.yaml", roots)) as server:
        outcomes = []
        for document in (
            script_request(roots / "script.py", data=[roots / "dataset"]),
            script_request(roots / "linked.py"),
        ):
            answer = server.post("execplanner/platforms/shared/requests", json=document)
            if answer.status_code != 200 or answer.json()["result"] != "YES":
                outcomes.append(("refused", answer.text))
                continue
            uuid = answer.json()["offers"][0]["meta"]["uuid"]
            server.post(
                f"execplanner/platforms/shared/sessions/{uuid}",
                json={"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"},
            )
            session = wait_final(server, uuid)
            outcomes.append((session["phase"], json.dumps(session["meta"]["messages"])))
        copied = [path for path in (tmp_path / "server" / "state").rglob("*") if path.is_file()
                  and SECRET in path.read_text(errors="replace")]  # fmt: skip
    for outcome, text in outcomes:
        assert outcome in ("refused", "FAILED"), text
        assert "symlink" in text.lower() or "outside" in text.lower(), text
    assert copied == [], "the target of a symlink out of the roots was copied"


def _run_processes(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.mark.parametrize("isolation", [None, "none"], ids=["isolated", "isolation-none"])
def test_the_orphan_after_kill_9_is_stopped_by_the_restarted_server(tmp_path, isolation):
    if isolation is None:
        need_bubblewrap()
    roots = tmp_path / "inputs"
    roots.mkdir()
    marker = f"orphan-{os.getpid()}-{time.monotonic_ns()}.py"
    (roots / marker).write_text("import time\nprint('running', flush=True)\ntime.sleep(600)\n")
    platforms = platforms_file(tmp_path / "platforms.yaml", roots, isolation)
    server_root = tmp_path / "server"
    with serve(server_root, platforms) as server:
        uuid = book(server, script_request(roots / marker, duration="PT30M"))
        deadline = time.monotonic() + 60
        while not _run_processes(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _run_processes(marker), "the run did not start"
        os.kill(server.pid, signal.SIGKILL)
        time.sleep(1.0)
    try:
        with serve(server_root, platforms) as server:
            session = wait_final(server, uuid, timeout=90)
            assert session["phase"] == "FAILED"
            deadline = time.monotonic() + 30
            while _run_processes(marker) and time.monotonic() < deadline:
                time.sleep(0.3)
            assert _run_processes(marker) == [], "the run is still going after the restart"
    finally:
        for process in _run_processes(marker):
            process.kill()


def test_a_multi_user_platform_that_cannot_isolate_is_refused_with_the_reason(tmp_path, monkeypatch):
    """The server runs where bubblewrap cannot be found (PATH without it): the multi-user platform is not
    served, every call says why (503), and a platform that says ``isolation: none`` is served."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    roots = tmp_path / "inputs"
    roots.mkdir()
    with run_jupyter_server(tmp_path / "refused", platforms_file(tmp_path / "p1.yaml", roots)) as server:
        answer = server.get("execplanner/platforms/shared")
        assert answer.status_code == 503, answer.text
        assert "isolation: none" in answer.json()["message"] and "bubblewrap" in answer.json()["message"]
    with run_jupyter_server(tmp_path / "accepted", platforms_file(tmp_path / "p2.yaml", roots, "none")) as server:
        assert server.get("execplanner/platforms/shared").status_code == 200
