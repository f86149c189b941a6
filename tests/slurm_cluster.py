"""A real single-node Slurm cluster on 127.0.0.1 in a temporary folder, for the Slurm tests and bench.

Everything runs as child processes of the test run, with its own configuration, state, keys and
ports, so it never touches a system-wide Slurm: munged (own key and socket), MariaDB (own data
folder, loopback only) and slurmdbd (association limits come from ``sacctmgr``, which needs the
accounting database), slurmctld and slurmd in the foreground. Settings work without systemd or
cgroups (``proctrack/pgid``, ``task/none``), and the scheduler intervals are short so that jobs
start within a second or two.

The node is declared with 4 CPUs and 4 GiB (``SlurmdParameters=config_overrides``), whatever the
machine has, so that tests see the same capacity on a laptop and on a 2-core CI runner; the jobs
the tests run are tiny.

``SLURM_CONF`` in :attr:`SlurmCluster.environment` points every Slurm command at this cluster.
Without Slurm installed the fixtures skip, except in CI (``CI=true`` or
``EXECPLANNER_REQUIRE_SLURM=1``), where a missing piece is a failure.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["SlurmCluster", "SlurmUnavailable", "missing_programs", "require_slurm", "slurm_cluster"]

CLUSTER_NAME = "execplanner"
PARTITION = "debug"
NODE = "localhost"
NODE_CPUS = 4
NODE_MEMORY_MIB = 4096
#: The partition's MaxTime in minutes (tests check the NO it produces).
MAX_TIME_MINUTES = 60
#: The account the tests' limits are set on, and its core limit.
LIMITED_ACCOUNT = "gaia-dmp"
LIMITED_CORES = 2
#: An account with no limits (the default for the user running the tests).
OPEN_ACCOUNT = "science"

PROGRAMS = ("munged", "slurmctld", "slurmd", "slurmdbd", "sbatch", "sacctmgr", "mariadbd", "mariadb-install-db")
REQUIRE_VARIABLE = "EXECPLANNER_REQUIRE_SLURM"
#: The daemons run as the user running the tests (SlurmUser), who is also the only job submitter.
#: As root (CI containers) everything works; as another user slurmd cannot change users, which the
#: tests never need.
USER = getpass.getuser()


class SlurmUnavailable(RuntimeError):
    """Slurm (or a piece it needs here) is not installed, or the cluster did not come up."""


def missing_programs() -> list[str]:
    """Programs this fixture needs that are not on PATH (sbin included)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in PROGRAMS if shutil.which(name, path=path) is None]


def _required() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get(REQUIRE_VARIABLE) == "1"


def require_slurm() -> None:
    """Skip the calling test when Slurm is missing; fail instead in CI."""
    missing = missing_programs()
    if not missing:
        return
    reason = f"Slurm test cluster needs {', '.join(missing)} (Debian: slurm-wlm slurmdbd munge mariadb-server)"
    if _required():
        pytest.fail(f"CI requires Slurm, but: {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sbin(name: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    found = shutil.which(name, path=path)
    if found is None:
        raise SlurmUnavailable(f"{name} is not installed")
    return found


class SlurmCluster:
    """Starts and stops the daemons; runs Slurm commands against them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "etc" / "slurm.conf"
        self.processes: dict[str, subprocess.Popen] = {}
        self.munge_socket = root / "munge" / "munge.socket.2"
        self.db_port = _free_port()
        self.dbd_port = _free_port()
        self.ctld_port = _free_port()
        self.slurmd_port = _free_port()
        self.partition = PARTITION
        self.node = NODE
        self.cpus = NODE_CPUS
        self.memory_mib = NODE_MEMORY_MIB

    # -- environment -------------------------------------------------------------------------

    @property
    def environment(self) -> dict[str, str]:
        """The variables every Slurm command of this cluster needs (add them to ``os.environ``)."""
        return {"SLURM_CONF": str(self.conf)}

    def env(self) -> dict[str, str]:
        environment = dict(os.environ)
        environment.update(self.environment)
        return environment

    def run(self, *command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a Slurm command of this cluster; return its completed process (text).

        Commands run in the cluster's ``jobs`` folder: a job submitted without ``--output`` or
        ``--chdir`` writes its ``slurm-N.out`` there, never into the caller's folder (the
        repository, when pytest runs from its root).
        """
        jobs = self.root / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            list(command), env=self.env(), capture_output=True, text=True, check=check, timeout=timeout, cwd=jobs
        )

    def sacctmgr(self, *arguments: str) -> str:
        return self.run("sacctmgr", "-i", *arguments).stdout

    def sbatch(self, *arguments: str) -> str:
        """Submit a job as a user who never heard of this project; return its id."""
        return self.run("sbatch", "--parsable", *arguments).stdout.strip().split(";")[0]

    def scancel_all(self) -> None:
        self.run("scancel", "--user", USER, check=False)

    def squeue_ids(self) -> list[str]:
        output = self.run("squeue", "--noheader", "--format=%i").stdout
        return [line.strip() for line in output.splitlines() if line.strip()]

    def reservation_names(self) -> list[str]:
        """Names of the reservations Slurm holds (``scontrol --oneliner``: one ``Key=Value`` line each)."""
        output = self.run("scontrol", "--oneliner", "show", "reservation").stdout
        return [line.split()[0].split("=", 1)[1] for line in output.splitlines() if line.startswith("ReservationName=")]

    def delete_reservations(self) -> None:
        for name in self.reservation_names():
            self.run("scontrol", "delete", f"ReservationName={name}", check=False)

    def clean(self) -> None:
        """Cancel every job and delete every reservation (between tests)."""
        self.scancel_all()
        self.delete_reservations()
        deadline = time.monotonic() + 30
        while self.squeue_ids() and time.monotonic() < deadline:
            time.sleep(0.3)

    def node_state(self) -> str:
        data = json.loads(self.run("sinfo", "--json").stdout)
        states = [
            "+".join(node.get("state_flags", []) and [node["state"], *node["state_flags"]] or [node["state"]])
            for node in data.get("nodes", [])
        ]
        return ",".join(states)

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        for folder in ("etc", "munge", "db", "dbd", "ctld", "spool", "log", "jobs"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        self._write_configs()
        self._start_munge()
        self._start_mariadb()
        self._start_slurmdbd()
        self._create_associations()
        self._start_daemon("slurmctld", [_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self.run("scontrol", "ping", check=False).returncode == 0, "slurmctld", 30)
        self._start_daemon("slurmd", [_sbin("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(self._node_idle, "the node to become idle", 60)

    def _write_configs(self) -> None:
        root = self.root
        self.conf.write_text(
            "\n".join(
                [
                    f"ClusterName={CLUSTER_NAME}",
                    "SlurmctldHost=localhost(127.0.0.1)",
                    f"SlurmctldPort={self.ctld_port}",
                    f"SlurmdPort={self.slurmd_port}",
                    f"SlurmUser={USER}",
                    f"SlurmdUser={USER}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={root / 'ctld'}",
                    f"SlurmdSpoolDir={root / 'spool'}",
                    f"SlurmctldPidFile={root / 'ctld' / 'slurmctld.pid'}",
                    f"SlurmdPidFile={root / 'spool' / 'slurmd.pid'}",
                    f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                    "SlurmctldDebug=info",
                    "SlurmdDebug=info",
                    "ProctrackType=proctrack/pgid",
                    "TaskPlugin=task/none",
                    "SwitchType=switch/none",
                    "MpiDefault=none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "SlurmdParameters=config_overrides",
                    "JobAcctGatherType=jobacct_gather/linux",
                    "JobAcctGatherFrequency=task=2",
                    "JobAcctGatherParams=OverMemoryKill",
                    "AccountingStorageType=accounting_storage/slurmdbd",
                    "AccountingStorageHost=localhost",
                    f"AccountingStoragePort={self.dbd_port}",
                    f"AccountingStoragePass={self.munge_socket}",
                    "AccountingStorageEnforce=associations,limits",
                    "JobCompType=jobcomp/none",
                    "SchedulerType=sched/backfill",
                    "SchedulerParameters=sched_interval=1,bf_interval=1,sched_min_interval=100000,"
                    "bf_resolution=60,default_queue_depth=2000,bf_max_job_test=2000",
                    "MinJobAge=600",
                    "DefMemPerCPU=256",
                    "KillWait=2",
                    "OverTimeLimit=0",
                    "InactiveLimit=0",
                    "ReturnToService=2",
                    "MessageTimeout=20",
                    "SlurmctldTimeout=30",
                    "SlurmdTimeout=60",
                    "TreeWidth=65533",
                    "MaxJobCount=20000",
                    f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MIB} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime={MAX_TIME_MINUTES} State=UP",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        dbd = root / "etc" / "slurmdbd.conf"
        dbd.write_text(
            "\n".join(
                [
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "DbdHost=localhost",
                    "DbdAddr=127.0.0.1",
                    f"DbdPort={self.dbd_port}",
                    f"SlurmUser={USER}",
                    f"PidFile={root / 'dbd' / 'slurmdbd.pid'}",
                    f"LogFile={root / 'log' / 'slurmdbd.log'}",
                    "DebugLevel=info",
                    "StorageType=accounting_storage/mysql",
                    "StorageHost=127.0.0.1",
                    f"StoragePort={self.db_port}",
                    f"StorageUser={USER}",
                    "StorageLoc=slurm_acct_db",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        dbd.chmod(0o600)

    def _start_daemon(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command,
            env=self.env(),
            cwd=self.root,  # never the caller's folder: nothing a daemon writes lands in the repository
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = process
        return process

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise SlurmUnavailable(
                        f"{name} exited ({process.returncode}) while waiting for {what}: {self.logs(name)}"
                    )
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.2)
        raise SlurmUnavailable(f"timed out waiting for {what}: {self.logs()}")

    def logs(self, name: str | None = None, tail: int = 2000) -> str:
        """The end of the daemons' logs, for error messages."""
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            if name is None or path.name.startswith(name):
                text = path.read_text(encoding="utf-8", errors="replace")[-tail:]
                parts.append(f"--- {path.name}\n{text}")
        return "\n".join(parts)

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._start_daemon(
            "munged",
            [
                _sbin("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
        )
        self._wait(self.munge_socket.exists, "munged", 15)

    def _start_mariadb(self) -> None:
        data = self.root / "db" / "data"
        subprocess.run(
            [
                _sbin("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={data}",
                f"--user={USER}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            check=True,
            timeout=120,
        )
        self._start_daemon(
            "mariadbd",
            [
                _sbin("mariadbd"),
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={self.root / 'db' / 'mysql.sock'}",
                f"--pid-file={self.root / 'db' / 'mariadbd.pid'}",
                f"--log-error={self.root / 'log' / 'mariadbd.log'}",
                f"--port={self.db_port}",
                "--bind-address=127.0.0.1",
                f"--user={USER}",
                "--skip-grant-tables",
                "--innodb-buffer-pool-size=64M",
                "--innodb-lock-wait-timeout=900",
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-log-bin",
            ],
        )
        self._wait(lambda: _port_open(self.db_port), "MariaDB", 60)

    def _start_slurmdbd(self) -> None:
        self._start_daemon("slurmdbd", [_sbin("slurmdbd"), "-D"])
        self._wait(lambda: _port_open(self.dbd_port), "slurmdbd", 60)

    def _create_associations(self) -> None:
        """The cluster, an open account and a limited one, the test user in both."""
        self._wait(lambda: self.run("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME).returncode == 0, "sacctmgr", 30)
        self.sacctmgr("add", "account", OPEN_ACCOUNT, "Description=open", "Organization=execplanner")
        self.sacctmgr("add", "account", LIMITED_ACCOUNT, "Description=limited", "Organization=execplanner")
        self.sacctmgr("add", "user", USER, f"Account={OPEN_ACCOUNT}", f"DefaultAccount={OPEN_ACCOUNT}")
        self.sacctmgr("add", "user", USER, f"Account={LIMITED_ACCOUNT}")
        self.sacctmgr("modify", "account", LIMITED_ACCOUNT, "set", f"GrpTRES=cpu={LIMITED_CORES}")

    def _node_idle(self) -> bool:
        data = json.loads(self.run("sinfo", "--json").stdout)
        nodes = data.get("nodes", [])
        return bool(nodes) and all(str(node.get("state", "")).lower() == "idle" for node in nodes)

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the daemons in reverse order; kill what does not stop within a few seconds."""
        with contextlib.suppress(Exception):
            self.run("scancel", "--user", USER, check=False, timeout=10)
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 15)
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 9)
                process.wait(timeout=5)
        self.processes.clear()


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def running_cluster(root: Path) -> Iterator[SlurmCluster]:
    """A started cluster in ``root``, stopped on exit (for the bench and the demo)."""
    cluster = SlurmCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


_shared: dict[str, object] = {"cluster": None, "users": 0, "previous": None}


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """One cluster for the whole test session; ``SLURM_CONF`` is set for the session's own calls.

    Test modules import this fixture, and pytest keeps one session fixture per defining module, so
    the cluster itself is shared (counted) and started only once per test run.
    """
    require_slurm()
    if _shared["cluster"] is None:
        cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        _shared["cluster"], _shared["previous"] = cluster, os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(cluster.conf)
    _shared["users"] = int(_shared["users"]) + 1  # type: ignore[call-overload]
    try:
        yield _shared["cluster"]  # type: ignore[misc]
    finally:
        _shared["users"] = int(_shared["users"]) - 1  # type: ignore[call-overload]
        if _shared["users"] == 0:
            cluster, _shared["cluster"] = _shared["cluster"], None
            cluster.stop()  # type: ignore[union-attr]
            previous = _shared["previous"]
            if previous is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = str(previous)


SLURM_ENTRY_POINT = "slurm = jupyter_server_extension.hosted.executors.slurm:SlurmExecutor"


_registered_in: list[Path] = []


def ensure_slurm_executor(folder: Path) -> str:
    """Make ``executor: slurm`` resolvable even before the packaging lists it.

    The project's packaging registers the executor under ``execplanner.executors``; an editable
    install made before that line existed does not know it yet. Outside CI, a throwaway
    distribution in ``folder`` (added to ``sys.path``) carries the same entry-point line; in CI the
    real registration must be there (a missing line is a failure, not something to paper over).

    Returns what a child process (a kernel, a second server) needs in ``PYTHONPATH`` to see the
    same registration: the folder used, or ``""`` when the installation has it.
    """
    import importlib
    import sys

    from jupyter_server_extension.hosted.executors import executor_names

    if "slurm" in executor_names():
        return str(_registered_in[0]) if _registered_in else ""
    if _required():
        pytest.fail(f"the 'slurm' executor is not registered: add `{SLURM_ENTRY_POINT}` to the entry points")
    info = folder / "execplanner_slurm_tests-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: execplanner-slurm-tests\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[execplanner.executors]\n{SLURM_ENTRY_POINT}\n")
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    importlib.invalidate_caches()
    assert "slurm" in executor_names()
    _registered_in.append(folder)
    return str(folder)
