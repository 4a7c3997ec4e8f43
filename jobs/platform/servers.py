"""Private PostgreSQL and Redis servers under the state folder, on the platform's own ports.

What the tests (and a local production-like configuration) use for the MLflow backend store, the
Feast SQL registry and the Redis online store. Nothing here touches a system service: each server
is started from the Debian packages' binaries (``make system-deps``), keeps its data in
``<state_dir>/servers/<name>`` and its pid file and log with the other services
(``<state_dir>/run``), and is stopped only by whoever started it.

PostgreSQL refuses to run as root; started by root, it runs as the ``postgres`` user the Debian
package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from jobs.common.settings import Settings
from jobs.platform import services

INSTALL_HINT = "install it with `make system-deps` (as root: apt-get install {package})"


class ServerUnavailable(RuntimeError):
    """A server the caller needs is neither running nor startable here; says how to fix it."""


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str = "postgres"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=database)

    def create_database(self, database: str) -> None:
        """(Re)create an empty database (each test that needs one owns it)."""
        admin = self.connect()
        admin.autocommit = True
        with contextlib.closing(admin), admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{database}"')


@dataclass(frozen=True)
class Redis:
    host: str
    port: int

    def connection_string(self, db: int = 0) -> str:
        """Feast's form: ``host:port,db=N``."""
        return f"{self.host}:{self.port},db={db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis(host=self.host, port=self.port, db=db)


def data_dir(settings: Settings, name: str) -> Path:
    return settings.state_dir / "servers" / name


def _binary(name: str, package: str) -> str:
    """A server binary from PATH, or from Debian's versioned PostgreSQL folder (not on PATH)."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise ServerUnavailable(f"{name} not found: {INSTALL_HINT.format(package=package)}")
    return found


def _as_postgres_user() -> list[str]:
    """Run as the ``postgres`` user when we are root (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def postgres_service(settings: Settings) -> services.Service:
    data = data_dir(settings, "postgres")
    command = [
        *_as_postgres_user(),
        _binary("postgres", "postgresql"),
        "-D",
        str(data),
        "-p",
        str(settings.postgres_port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",  # TCP only: no socket in /var/run
        "-c",
        "max_connections=200",  # Airflow, MLflow and Feast each keep a pool
    ]
    return services.Service("postgres", command, dict(os.environ), settings.postgres_port)


def _initdb(settings: Settings) -> None:
    data = data_dir(settings, "postgres")
    if (data / "PG_VERSION").exists():
        return
    shutil.rmtree(data, ignore_errors=True)  # a half-made cluster from an interrupted initdb
    data.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    done = subprocess.run(
        [
            *_as_postgres_user(),
            _binary("initdb", "postgresql"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",  # loopback only, private to this state folder
            "--encoding=UTF8",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ServerUnavailable(f"initdb failed for {data}: {done.stderr.strip()[-500:]}")


def redis_service(settings: Settings) -> services.Service:
    data = data_dir(settings, "redis")
    data.mkdir(parents=True, exist_ok=True)
    command = [
        _binary("redis-server", "redis-server"),
        "--port",
        str(settings.redis_port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--save",
        "",  # an online store is rebuilt by materialization: no snapshots
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]
    return services.Service("redis", command, dict(os.environ), settings.redis_port)


# PostgreSQL's SIGTERM is a "smart" shutdown that waits for every client to disconnect; SIGINT
# is its fast shutdown (rolls back open transactions, then exits).
_STOP_SIGNAL = {"postgres": signal.SIGINT, "redis": signal.SIGTERM}


def start(settings: Settings, name: str) -> bool:
    """Start the named server unless its pid file says it runs; returns whether we started it."""
    if services.pid_of(settings, name) is not None:
        return False
    if name == "postgres":
        service = postgres_service(settings)
        _initdb(settings)
    elif name == "redis":
        service = redis_service(settings)
    else:
        raise ValueError(f"unknown server {name!r}; expected postgres or redis")
    services.start(settings, service)
    services.wait_ready(settings, service, timeout=60)
    return True


def stop(settings: Settings, name: str) -> bool:
    return services.stop(settings, name, signum=_STOP_SIGNAL[name])


@contextlib.contextmanager
def running(settings: Settings, name: str) -> Iterator[Postgres | Redis]:
    """The named server while the block runs: a private one started here (and stopped after),
    or the one this state folder already runs (left running)."""
    started = start(settings, name)
    try:
        server = Postgres if name == "postgres" else Redis
        port = settings.postgres_port if name == "postgres" else settings.redis_port
        yield server("127.0.0.1", port)
    finally:
        if started:
            stop(settings, name)
