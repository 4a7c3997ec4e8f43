"""Start, check and stop the local platform's long-lived processes.

* ``spark-connect``: one Spark Connect server; every task is a thin client of it, so a task pays
  an import and a gRPC handshake, not a ~10 s JVM start.
* ``spark-master``, ``spark-worker-N``: with ``spark_workers`` set, a Spark standalone cluster
  (a master and worker JVMs whose executors run the tasks) that the Connect server drives.
* ``api-server``, ``scheduler``, ``dag-processor``, ``triggerer``: Airflow 3's components.
* ``pushgateway``, ``alertmanager``, ``prometheus``: metrics and alerts, on request
  (``tooling/observability.py``).

Pid files and logs live in ``<state_dir>/run``. A pid file names its process by pid, start time
and boot (``tooling/process.py``), and is acted on only while that process (or what it
started) runs: a pid the kernel has since given to another process is never signalled. Each
service leads a session of its own, so stopping one stops what it started too, even once the
service itself has crashed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from jobs.common import files
from jobs.common.settings import Settings
from jobs.common.spark import java_home, static_conf
from tooling import process
from tooling.airflow_env import (
    airflow_env,
    metadata_database,
    metadata_db_url,
    on_private_postgres,
)

BIN = Path(sys.executable).parent
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
_children: dict[str, subprocess.Popen] = {}  # started by this process (reaped, so exits show)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int | None = None  # health check: the port accepts connections
    umask: int = -1  # -1: the caller's; Airflow's components: 0o077 (see airflow_service)


def spark_home() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent)


LOG4J2_CONFIG = Path(__file__).with_name("spark_connect_log4j2.properties")


def _spark_env(settings: Settings) -> dict[str, str]:
    from jobs.common import storage

    # The Python workers (scoring's UDFs read feature files) reach the bucket the jobs use.
    env = {**os.environ, **storage.environment(settings)}
    env["SPARK_HOME"] = spark_home()
    if (home := java_home()) is not None:
        env["JAVA_HOME"] = home
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # Python UDFs (batch scoring) run in this venv, where the model's libraries are
    env["PYSPARK_PYTHON"] = str(BIN / "python")
    env["SPARK_LOCAL_DIRS"] = str(settings.spark_dir / "tmp")
    env["SPARK_LOG_DIR"] = str(settings.run_dir)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    return env


def master_ui_port(settings: Settings) -> int:
    """The standalone master's web UI (and its JSON status), next to its own port."""
    return settings.spark_master_port + 1


def spark_master_service(settings: Settings) -> Service:
    command = [
        str(BIN / "spark-class"),
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.spark_master_port),
        "--webui-port",
        str(master_ui_port(settings)),
    ]
    return Service("spark-master", command, _spark_env(settings), settings.spark_master_port)


def spark_worker_service(settings: Settings, number: int) -> Service:
    command = [
        str(BIN / "spark-class"),
        "org.apache.spark.deploy.worker.Worker",
        "--host",
        "127.0.0.1",
        "--cores",
        str(settings.spark_worker_cores),
        "--memory",
        settings.spark_worker_memory,
        "--work-dir",
        str(settings.spark_dir / "work"),
        "--webui-port",
        "0",  # any free port: several workers share the host
        settings.spark_cluster_master,
    ]
    return Service(f"spark-worker-{number}", command, _spark_env(settings))


def spark_services(settings: Settings) -> list[Service]:
    """The JVMs Spark runs in: a standalone cluster's master and workers (if any), then the
    Connect server, in start order."""
    cluster = [spark_master_service(settings)] if settings.spark_workers else []
    cluster += [spark_worker_service(settings, n) for n in range(1, settings.spark_workers + 1)]
    return [*cluster, spark_connect_service(settings)]


def spark_connect_service(settings: Settings) -> Service:
    confs = static_conf(settings)
    confs = {
        **confs,
        "spark.driver.extraJavaOptions": (
            f"{confs['spark.driver.extraJavaOptions']} -Dlog4j2.configurationFile={LOG4J2_CONFIG}"
        ),
        "spark.connect.grpc.binding.address": settings.spark_connect_bind,
        "spark.connect.grpc.binding.port": str(settings.spark_connect_port),
        "spark.connect.session.manager.defaultSessionTimeout": (
            f"{settings.spark_connect_idle_timeout_minutes}m"
        ),
    }
    # The configuration goes in a file only this user reads, not in `--conf` arguments: with
    # object storage it holds the S3 keys, and every process's arguments are public (`ps`).
    properties = settings.run_dir / "spark-connect.properties"
    properties.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{key} {escape_property(value)}\n" for key, value in confs.items())
    command = [
        str(BIN / "spark-submit"),
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master",
        settings.spark_cluster_master,
        "--name",
        "nightjar-spark-connect",
        "--properties-file",
        str(properties),
    ]
    return Service("spark-connect", command, _spark_env(settings), settings.spark_connect_port)


def escape_property(value: str) -> str:
    """A value as Java's properties format reads it back (backslashes are escapes there)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def airflow_service(settings: Settings, component: str) -> Service:
    """An Airflow component. What it writes (the generated admin password file, its logs, its
    tasks' output) is for this user only: umask 0o077, whatever the caller's."""
    port = settings.airflow_port if component == "api-server" else None
    command = [str(BIN / "airflow"), component]
    return Service(component, command, airflow_env(settings), port, umask=0o077)


def all_services(settings: Settings, airflow: bool = True, spark: bool = True) -> list[Service]:
    services = spark_services(settings) if spark else []
    if airflow:
        services += [airflow_service(settings, c) for c in AIRFLOW_COMPONENTS]
    return services


def _pidfile(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.pid"


def record_pid(settings: Settings, name: str, pid: int) -> None:
    """Write the service's pid file: the pid, its process's start time and the boot, replaced
    whole (a reader never sees half of it)."""
    proc = process.read(pid, exited=True)
    if proc is None:
        raise ProcessLookupError(f"no process {pid} to record for {name}")
    record = {"pid": pid, "start": proc.start, "boot": process.boot_id()}
    files.replace_whole(_pidfile(settings, name), json.dumps(record))


def _leader(settings: Settings, name: str) -> process.Proc | None:
    """The process the pid file names (running or not); None without a pid file. One that
    names no process of ours (another boot's, or a bare pid now another process's) is removed."""
    path = _pidfile(settings, name)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        record = None
    if isinstance(record, dict) and record.get("boot") == process.boot_id():
        return process.Proc(record["pid"], record["start"])
    if isinstance(record, int) and (proc := _legacy(path, record)):
        return proc
    log.warning("%s names no process of ours: removed, nothing signalled", path)
    path.unlink(missing_ok=True)
    return None


def _legacy(path: Path, pid: int) -> process.Proc | None:
    """An older version's pid file, a bare pid: its process if that leads a session of its own
    and started before the file was written (a process given the pid since started after)."""
    proc = process.read(pid)
    if proc and proc.sid == pid and process.started_at(proc) <= path.stat().st_mtime + 1:
        return proc
    return None


def _forget(settings: Settings, name: str, leader: process.Proc) -> None:
    """Remove the pid file of a service that has nothing left running."""
    path = _pidfile(settings, name)
    if process.read(leader.pid) is not None:
        log.warning("%s: pid %d is another process now: stale pid file removed", path, leader.pid)
    path.unlink(missing_ok=True)


def pid_of(settings: Settings, name: str) -> int | None:
    """The service's pid while the process it started runs. A crashed service whose processes
    still run keeps its pid file, so that `stop` (or `start`) stops them."""
    leader = _leader(settings, name)
    if leader is None:
        return None
    if process.alive(leader):
        return leader.pid
    if not process.started_by(leader):
        _forget(settings, name, leader)
    return None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def start(settings: Settings, service: Service) -> int:
    if (pid := pid_of(settings, service.name)) is not None:
        return pid
    stop(settings, service.name)  # what a crashed one left running (it may hold the port)
    if service.port and port_open(service.port):
        raise RuntimeError(
            f"cannot start {service.name}: port {service.port} is already in use by another "
            "process (stop it, or set another port in the settings)"
        )
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    (settings.spark_dir / "tmp").mkdir(parents=True, exist_ok=True)
    log = open(settings.run_dir / f"{service.name}.log", "ab")  # noqa: SIM115 - child keeps it
    proc = subprocess.Popen(
        service.command,
        env=service.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=settings.state_dir,
        umask=service.umask,
    )
    record_pid(settings, service.name, proc.pid)  # a child: not reaped, even if it has exited
    _children[service.name] = proc
    return proc.pid


def wait_ready(settings: Settings, service: Service, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _children.get(service.name)
        if pid_of(settings, service.name) is None or (child and child.poll() is not None):
            raise RuntimeError(
                f"{service.name} exited during start-up; see "
                f"{settings.run_dir / (service.name + '.log')}"
            )
        if service.port is None or port_open(service.port):
            return
        time.sleep(0.5)
    raise TimeoutError(
        f"{service.name} did not open port {service.port} within {timeout:.0f}s; "
        f"see {settings.run_dir / (service.name + '.log')}"
    )


def metadata_db_is_sqlite(settings: Settings) -> bool:
    return airflow_env(settings)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite")


def migrate_airflow_db(settings: Settings) -> None:
    """Airflow's metadata DB created or brought to this Airflow's schema; on the private
    PostgreSQL, the server started first and the state folder's database created."""
    env = airflow_env(settings)
    if on_private_postgres(settings) and (
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == metadata_db_url(settings)
    ):
        from tooling import servers

        servers.ensure_database(settings, metadata_database(settings))
    subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=settings.state_dir,
    )
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    if url.startswith("sqlite:///"):
        # Write-ahead logging lets the scheduler, API server and tasks read while one of them
        # writes; in the default rollback-journal mode they collide ("database is locked") and
        # a scheduler can die of it. The mode is stored in the database file.
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            db.execute("PRAGMA journal_mode=WAL")


def up(
    settings: Settings,
    airflow: bool = True,
    spark: bool = True,
    defer: frozenset[str] = frozenset(),
    observability: bool = False,
) -> list[Service]:
    """Start what is not running; ``spark=False`` when a Spark Connect server is already up at
    ``settings.spark_connect_port`` under another state folder (a second platform in tests).
    Services named in ``defer`` are left for the caller to start. ``observability``: also
    Prometheus, its Pushgateway and Alertmanager (``tooling/observability.py``), first,
    so the first task's metrics have somewhere to go."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    services = [s for s in all_services(settings, airflow, spark) if s.name not in defer]
    if observability:
        from tooling import observability as obs

        if obs.available():
            watching = obs.all_services(settings)
            for service in watching:
                start(settings, service)
            services = [*watching, *services]
        else:
            print(obs.missing_hint(), file=sys.stderr)
    # Each piece boots while the next is prepared: the JVM during Airflow's migration, Airflow
    # during Feast's apply (only tasks read the registry, and none runs yet).
    spark_names = {s.name for s in spark_services(settings)}
    for service in services:
        if service.name in spark_names:
            start(settings, service)
            if service.name == "spark-master":  # workers and the driver register with it
                wait_ready(settings, service)
    if airflow:
        from jobs.features.store import apply as feast_apply

        migrate_airflow_db(settings)
        for service in services:
            if service.name not in spark_names:
                start(settings, service)
        feast_apply(settings)  # the DAG's materialize task reads the current definitions
    for service in services:
        wait_ready(settings, service)
    return services


# How often a service that has not exited is sent SIGTERM again (see `stop`).
TERM_REPEAT_S = 5
# How long what a service leaves running has, after SIGTERM, before SIGKILL: a crashed
# scheduler's LocalExecutor workers inherit its SIGTERM handler, which ignores the signal in them.
LEFTOVER_GRACE_S = 10


def stop(settings: Settings, name: str, timeout: float = 30, signum: int = signal.SIGTERM) -> bool:
    """SIGTERM (or ``signum``) the service, then what it started that runs on once it has
    exited, and SIGKILL all of it after ``timeout``; returns whether anything ran.

    The service is signalled alone first, so that it stops its own children in its own order;
    what it leaves running is stopped after it. A service still running gets SIGTERM again
    every TERM_REPEAT_S, what it started with it: Airflow's components exit by raising
    SystemExit from their signal handler, and when the signal lands while Python runs a weakref
    callback (SQLAlchemy's, in the scheduler), Python ignores that exception and the process
    carries on ("Exception ignored in: <function _collection_gced ...>"). The triggerer
    sometimes takes 10 s: its supervisor misses its trigger runner's exit and waits out the
    escalation delay (about one stop in four, Airflow 3.3), until the repeated signal forces it.
    A service that crashed leaves its children running (a scheduler's LocalExecutor workers and
    log server): they are stopped the same way."""
    leader = _leader(settings, name)
    if leader is None:
        return False
    child = _children.pop(name, None)

    def running() -> bool:
        if child is not None:
            child.poll()  # our own child is reaped here; another process's is reaped by init
        return process.alive(leader)

    if running():
        process.send([leader], signum)
    elif left := process.started_by(leader):
        pids = ", ".join(str(p.pid) for p in left)
        log.warning("%s has exited; stopping what it left running (pids %s)", name, pids)
    else:
        _forget(settings, name, leader)
        return False
    began = time.monotonic()
    deadline, repeat = began + timeout, began + TERM_REPEAT_S
    leftovers_signalled = False
    while time.monotonic() < deadline:
        if not running():
            if not (left := process.started_by(leader)):
                break
            if not leftovers_signalled:
                process.send(left, signal.SIGTERM)
                leftovers_signalled = True
                deadline = min(deadline, time.monotonic() + LEFTOVER_GRACE_S)
        elif time.monotonic() > repeat:
            repeat += TERM_REPEAT_S
            process.send(process.started_by(leader), signal.SIGTERM)
        time.sleep(0.1)
    else:
        process.send(process.started_by(leader), signal.SIGKILL)
    _pidfile(settings, name).unlink(missing_ok=True)
    return True


def restart_dead(settings: Settings, airflow: bool = True) -> list[str]:
    """Start again any service whose process has died (stopping first what it left running);
    returns their names. A service without a pid file whose port answers is served from
    elsewhere (another state folder) and left be."""
    restarted = []
    for service in all_services(settings, airflow):
        if pid_of(settings, service.name) is not None:  # a zombie child of ours reads as dead
            continue
        if (
            not _pidfile(settings, service.name).exists()
            and service.port
            and port_open(service.port)
        ):
            continue
        start(settings, service)
        restarted.append(service.name)
    return restarted


def down(settings: Settings, names: tuple[str, ...] | None = None) -> list[str]:
    """Stop the services (default: all of them) at once (one at a time, their shutdowns added
    up to seconds); returns the names of those that were running."""
    from tooling.observability import NAMES as OBSERVABILITY

    everything = not names
    names = names or (*(s.name for s in reversed(all_services(settings))), *OBSERVABILITY)
    with ThreadPoolExecutor(len(names)) as pool:
        stopped = list(pool.map(lambda name: stop(settings, name), names))
    stopped_names = [name for name, was_running in zip(names, stopped, strict=True) if was_running]
    if everything:  # last, once Airflow no longer uses it: the private PostgreSQL, if started here
        from tooling import servers

        if servers.stop(settings, "postgres"):
            stopped_names.append("postgres")
    return stopped_names


def status(settings: Settings) -> dict[str, int | None]:
    return {s.name: pid_of(settings, s.name) for s in all_services(settings)}
