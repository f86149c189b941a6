"""Run isolation: user code runs where it sees only its own session folder, as nobody in particular.

A hosted platform may be opened to many users, and a run is arbitrary code. Without isolation a run
could read the server's environment (``/proc/<parent>/environ`` held every broker token), other
users' result files and the database. With isolation on (the default), each run:

* starts from an environment built from scratch (:func:`clean_environment`): none of the server's
  variables, only PATH, HOME in the session, locale, thread counts and the session's own variables;
* lives in its own PID namespace (it sees its own processes in a new ``/proc``, not the server's
  nor other runs'), IPC and UTS namespaces, and by default its own network namespace (loopback
  only: it cannot reach the server's API, the database or the Dask scheduler on this host);
* sees a new root holding only the system folders (``/usr``, ``/lib*``, a few ``/etc`` files) and
  the Python runtime read-only, a private ``/tmp`` of bounded size, and its session folder as the
  only writable (and the only visible) place of ours: not the data folder of other sessions, not
  the database file, not the secrets folder;
* runs as an unprivileged user (``run_as``, default ``nobody``) with no capabilities and
  ``no_new_privs`` when the server runs as root; otherwise as the server's user inside a user
  namespace, which still hides everything above;
* is killed with its whole namespace when the server dies (``--die-with-parent``), so a
  ``kill -9`` of the server leaves no orphan;
* has rlimits: processes, open files, file size (the booked storage), no core dumps; memory and
  CPUs are applied by the task program (``RLIMIT_AS``, CPU affinity); with a delegated, writable
  cgroup v2 folder (``cgroup:``) each run also gets its own cgroup with ``memory.max``,
  ``pids.max`` and ``cpu.max``.

The mechanism is bubblewrap (``bwrap``, Debian package ``bubblewrap``): no daemon, no container
engine, works unprivileged where user namespaces are allowed and as root. :func:`probe` checks what
this machine really allows by starting a tiny sandbox once. Where nothing works, a single-user
platform runs without isolation and says so; a multi-user platform refuses to start unless the
provider wrote ``isolation: none`` (:class:`IsolationUnavailable` carries the reason).

:meth:`Sandbox.command` turns a command line and a :class:`RunSpec` into the isolated command line
and its environment; the executor starts that with :func:`asyncio.create_subprocess_exec`.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import RunSpec

__all__ = [
    "IsolationOptions",
    "IsolationUnavailable",
    "MachineSupport",
    "Sandbox",
    "choose_sandbox",
    "clean_environment",
    "probe",
]

#: Files and folders of /etc a Python run needs (names, certificates, time zone, the loader cache).
ETC_ENTRIES = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "fonts", "group", "host.conf", "hostname",
    "hosts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "locale.alias", "localtime", "mime.types",
    "nsswitch.conf", "passwd", "protocols", "resolv.conf", "services", "ssl", "timezone", "jupyter",
    "matplotlibrc", "pki", "crypto-policies",
)  # fmt: skip

#: System folders bound read-only (symlinks, as on merged-/usr systems, are recreated as symlinks).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

MIB = 1024**2
GIB = 1024**3


class IsolationUnavailable(RuntimeError):
    """This machine cannot isolate runs and the provider did not accept running without isolation."""


class IsolationOptions(BaseModel):
    """``isolation:`` of a hosted platform that runs user code on this machine.

    A string is short for ``{mode: ...}``: ``isolation: none`` turns isolation off (the provider
    accepts that runs can read what the server's user can).
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "bubblewrap", "none"] = Field(
        default="auto",
        description="auto: bubblewrap where it works; a multi-user platform without it refuses to start. "
        "bubblewrap: required. none: no isolation (the provider accepts the risk)",
    )
    network: bool = Field(default=False, description="Runs may use the network (else loopback only)")
    run_as: str = Field(default="nobody", description="Unix user (name or uid) runs use when the server runs as root")
    readonly: list[Path] = Field(
        default_factory=list, description="More folders runs may read (a conda install, shared reference data)"
    )
    tmp_size: int = Field(default=1024, ge=16, description="Size of the run's private /tmp in MiB")
    processes: int = Field(default=512, ge=16, description="Most processes (and threads) per run user")
    open_files: int = Field(default=4096, ge=64, description="Most open files per process")
    cgroup: Path | None = Field(
        default=None, description="A delegated, writable cgroup v2 folder; each run gets its own cgroup below it"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return {"mode": value} if isinstance(value, str) else value


@dataclass(frozen=True)
class MachineSupport:
    """What this machine offers for isolation, found by trying (see :func:`probe`)."""

    bubblewrap: str | None  # path of a bwrap that really started a sandbox here
    problem: str | None  # why bubblewrap is not usable, when it is not
    setpriv: str | None
    prlimit: str | None
    root: bool


def _try(command: list[str]) -> str | None:
    """``None`` if ``command`` ran and exited 0, else the reason in one line."""
    try:
        done = subprocess.run(command, capture_output=True, timeout=20, env={"PATH": "/usr/bin:/bin"}, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return str(error)
    if done.returncode == 0:
        return None
    text = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()
    return text[-1] if text else f"exit code {done.returncode}"


@functools.lru_cache(maxsize=1)
def probe() -> MachineSupport:
    """Start one tiny sandbox to learn whether bubblewrap works here (user namespaces may be off)."""
    bwrap = shutil.which("bwrap")
    setpriv = shutil.which("setpriv")
    prlimit = shutil.which("prlimit")
    root = os.geteuid() == 0
    problem = None
    if bwrap is None:
        problem = "bubblewrap (bwrap) is not installed; on Debian: apt-get install bubblewrap"
    else:
        test = [bwrap, *_namespace_flags(network=False), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
        if root and setpriv:
            test += ["--", setpriv, *_drop_flags(65534, 65534), "/bin/true"]
        else:
            test += ["--", "/bin/true"]
        failure = _try(test)
        if failure:
            problem = f"bubblewrap cannot start a sandbox here ({failure}); user namespaces may be disabled"
            bwrap = None
    if root and bwrap and not setpriv:
        problem, bwrap = "the server runs as root and setpriv (util-linux) is missing to drop to another user", None
    return MachineSupport(bubblewrap=bwrap, problem=problem, setpriv=setpriv, prlimit=prlimit, root=root)


def _namespace_flags(network: bool) -> list[str]:
    flags = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent"]
    flags += ["--new-session"]
    if not network:
        flags.append("--unshare-net")
    return flags


def _drop_flags(uid: int, gid: int) -> list[str]:
    return [
        f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
        "--no-new-privs", "--",
    ]  # fmt: skip


def _run_user(name: str) -> tuple[int, int]:
    """uid and gid of ``name`` (a user name or a number); a number needs no account."""
    if name.isdigit():
        return int(name), int(name)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise IsolationUnavailable(f"isolation.run_as: there is no user {name!r} on this machine") from None
    if entry.pw_uid == 0:
        raise IsolationUnavailable("isolation.run_as: runs must not run as root")
    return entry.pw_uid, entry.pw_gid


def _python_dirs() -> list[Path]:
    """Folders the Python that runs tasks needs: the venv and the interpreter it was made from."""
    found: list[Path] = []
    for text in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        path = Path(text)
        if path.is_dir() and not any(
            str(path).startswith(f"{system}/") or str(path) == system for system in SYSTEM_DIRS
        ):
            found.append(path)
    executable = Path(sys.executable).resolve().parent.parent
    in_system = any(str(executable) == system or str(executable).startswith(f"{system}/") for system in SYSTEM_DIRS)
    if executable.is_dir() and executable not in found and not in_system:
        found.append(executable)
    return sorted(found)


def clean_environment(spec: RunSpec, session_dir: Path, cores: int | None = None) -> dict[str, str]:
    """The whole environment of a run, built from nothing: none of the server's variables.

    HOME is a folder of the session (IPython and matplotlib write there); the session's own
    variables (``spec.environment``) come last.
    """
    threads = str(max(1, cores or spec.cores))
    home = session_dir / "runtime" / "home"
    environment = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "USER": "execplanner",
        "LOGNAME": "execplanner",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "TMPDIR": "/tmp",
        "SHELL": "/bin/sh",
        "OMP_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(home / ".matplotlib"),
        "PYTHONUNBUFFERED": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "JUPYTER_RUNTIME_DIR": str(session_dir / "runtime"),
        "EXECPLANNER_SESSION": spec.session,
    }
    environment.update({str(key): str(value) for key, value in spec.environment.items()})
    return environment


@dataclass
class Sandbox:
    """How runs of one platform are isolated; :meth:`command` builds each run's command line."""

    mode: Literal["bubblewrap", "none"]
    options: IsolationOptions
    support: MachineSupport
    uid: int | None = None  # set when the server is root: runs drop to this user
    gid: int | None = None
    reason: str | None = None  # why there is no isolation, when there is none

    def describe(self) -> str:
        """One sentence for the log and the platform's description."""
        if self.mode == "none":
            return f"runs are NOT isolated ({self.reason or 'isolation: none'}): they run as the server's user"
        who = f"as uid {self.uid}" if self.uid is not None else "as the server's user in a user namespace"
        network = "with network" if self.options.network else "without network"
        return f"runs are isolated with bubblewrap {who}, {network}, seeing only their session folder"

    def prepare(self, session_dir: Path) -> None:
        """Make the session folder the run's own: HOME inside it, owned by the run's user."""
        (session_dir / "runtime" / "home").mkdir(parents=True, exist_ok=True)
        if self.mode == "none" or self.uid is None:
            return
        for folder, _, files in os.walk(session_dir):
            os.chown(folder, self.uid, self.gid or self.uid, follow_symlinks=False)
            for name in files:
                os.chown(os.path.join(folder, name), self.uid, self.gid or self.uid, follow_symlinks=False)
        os.chmod(session_dir, 0o700)

    def limits(self, file_size_bytes: int | None) -> list[str]:
        """``prlimit`` in front of the command: processes, open files, file size, no core dumps."""
        if not self.support.prlimit:
            return []
        flags = [self.support.prlimit, f"--nofile={self.options.open_files}", "--core=0"]
        if self.mode != "none":  # RLIMIT_NPROC counts per user: only meaningful for a user of its own
            flags.append(f"--nproc={self.options.processes}")
        if file_size_bytes:
            flags.append(f"--fsize={int(file_size_bytes)}")
        return [*flags, "--"]

    def command(
        self,
        command: list[str],
        spec: RunSpec,
        *,
        session_dir: Path | None = None,
        file_size_bytes: int | None = None,
        cgroup: Path | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        """The isolated command line for ``command`` and the environment to start it with.

        ``session_dir`` (default: the parent of ``spec.workdir``) is bound read-write at its own
        path, so paths in the task file stay valid; the run starts in ``spec.workdir``.
        """
        session_dir = Path(session_dir or spec.workdir.parent).resolve()
        environment = clean_environment(spec, session_dir)
        limits = self.limits(file_size_bytes)
        if self.mode == "none":
            return [*limits, *command], environment
        bwrap = self.support.bubblewrap
        assert bwrap is not None
        argv = [bwrap, *_namespace_flags(self.options.network), "--clearenv"]
        for key, value in environment.items():
            argv += ["--setenv", key, value]
        for system in SYSTEM_DIRS:
            path = Path(system)
            if path.is_symlink():
                argv += ["--symlink", os.readlink(path), system]
            elif path.is_dir():
                argv += ["--ro-bind", system, system]
        folders = [Path(folder).resolve() for folder in [*_python_dirs(), *self.options.readonly]]
        # bubblewrap makes missing mount points 0700 root-owned: folders above a bind may be crossed
        # (0711) but not listed, so not even the names of our other folders show
        parents = sorted({str(up) for target in [*folders, session_dir] for up in target.parents if str(up) != "/"})
        argv += ["--perms", "0755", "--dir", "/etc", "--perms", "1777", "--dir", "/tmp"]
        for name in ETC_ENTRIES:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--perms", "1777", "--size", str(self.options.tmp_size * MIB), "--tmpfs", "/tmp"]
        for parent in parents:
            argv += ["--perms", "0711", "--dir", parent]
        for folder in folders:
            argv += ["--ro-bind-try", str(folder), str(folder)]
        argv += ["--bind", str(session_dir), str(session_dir), "--chdir", str(spec.workdir.resolve())]
        argv.append("--")
        if self.uid is not None and self.support.setpriv:
            argv += [self.support.setpriv, *_drop_flags(self.uid, self.gid or self.uid)]
        argv += command
        if cgroup is not None:  # join the run's cgroup before bubblewrap starts (the shell execs it)
            argv = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cgroup), *argv]
        # bubblewrap starts from --clearenv; it needs only PATH to find nothing (all paths are absolute)
        return [*limits, *argv], {"PATH": "/usr/bin:/bin"}

    # ------------------------------------------------------------------------- cgroup v2

    def make_cgroup(self, spec: RunSpec) -> Path | None:
        """A cgroup of the run's own under the delegated folder, with memory, pids and CPU limits.

        Returns ``None`` when no writable cgroup v2 folder was configured (rlimits still apply).
        """
        parent = self.options.cgroup
        if parent is None or self.mode == "none":
            return None
        try:
            group = parent / f"run-{spec.session}"
            group.mkdir(exist_ok=True)
            (group / "memory.max").write_text(str(max(1, spec.memory_gib) * GIB))
            (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(self.options.processes))
            (group / "cpu.max").write_text(f"{max(1, spec.cores) * 100000} 100000")
        except OSError:
            return None
        return group

    @staticmethod
    def remove_cgroup(group: Path | None) -> None:
        """Kill whatever is left in the run's cgroup and remove it."""
        if group is None:
            return
        try:
            (group / "cgroup.kill").write_text("1")
        except OSError:
            pass
        try:
            group.rmdir()
        except OSError:
            pass


def choose_sandbox(options: IsolationOptions | None, *, multi_user: bool, platform: str = "") -> Sandbox:
    """The sandbox a platform's runs use, or :class:`IsolationUnavailable` saying why there is none.

    ``multi_user``: the platform serves more than one person (per-user allocations, a hub, ...);
    then running without isolation must be asked for explicitly with ``isolation: none``.
    """
    options = options or IsolationOptions()
    support = probe()
    where = f"platform {platform!r}: " if platform else ""
    if options.mode == "none":
        return Sandbox("none", options, support, reason="the provider set isolation: none")
    if options.cgroup is not None and not (options.cgroup / "cgroup.procs").is_file():
        raise IsolationUnavailable(f"{where}isolation.cgroup: {options.cgroup} is not a cgroup v2 folder")
    if support.bubblewrap is None:
        if options.mode == "bubblewrap" or multi_user:
            raise IsolationUnavailable(
                f"{where}runs cannot be isolated on this machine: {support.problem}. A platform for many users "
                "refuses to start without isolation; install bubblewrap and allow user namespaces, or set "
                "'isolation: none' to accept that runs can read everything the server's user can"
            )
        return Sandbox("none", options, support, reason=support.problem)
    uid = gid = None
    if support.root:
        uid, gid = _run_user(options.run_as)
    return Sandbox("bubblewrap", options, support, uid=uid, gid=gid)
