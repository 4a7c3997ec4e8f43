"""Private PostgreSQL, Redis and S3 servers under the state folder, on the platform's own ports.

Airflow's metadata DB (``ensure_database``: `nightjar services up` starts the server), and what
the tests (and a local production-like configuration) use for the MLflow backend store, the
Feast SQL registry, the Redis online store and object storage (a bucket for the landing zone, the
lakehouse and MLflow's artifacts). Nothing here touches a system service: each server
is started from the Debian packages' binaries (``make system-deps``), keeps its data in
``<state_dir>/servers/<name>`` and its pid file and log with the other services
(``<state_dir>/run``), and is stopped only by whoever started it.

PostgreSQL refuses to run as root; started by root, it runs as the ``postgres`` user the Debian
package creates. The S3 server is versitygw (``make setup`` builds it from its Go module) serving
a folder: each bucket is a subfolder.
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

from jobs.common.settings import PROJECT_ROOT, Settings
from tooling import services

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

    @contextlib.contextmanager
    def _admin(self):
        """A cursor outside transactions (CREATE DATABASE refuses to run in one)."""
        admin = self.connect()
        admin.autocommit = True
        with contextlib.closing(admin), admin.cursor() as cur:
            yield cur

    def create_database(self, database: str) -> None:
        """(Re)create an empty database (each test that needs one owns it)."""
        with self._admin() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{database}"')

    def ensure_database(self, database: str) -> None:
        """Create ``database`` unless it exists (what it holds is kept)."""
        with self._admin() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
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


@dataclass(frozen=True)
class ObjectStore:
    endpoint: str
    root: Path  # the served folder: one subfolder per bucket

    def create_bucket(self, bucket: str) -> None:
        (self.root / bucket).mkdir(parents=True, exist_ok=True)


def data_dir(settings: Settings, name: str) -> Path:
    return settings.state_dir / "servers" / name


def _find(name: str) -> str | None:
    """A server binary from PATH, or from Debian's versioned PostgreSQL folder (not on PATH)."""
    return shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )


def _binary(name: str, package: str) -> str:
    if not (found := _find(name)):
        raise ServerUnavailable(f"{name} not found: {INSTALL_HINT.format(package=package)}")
    return found


def installed(name: str) -> bool:
    """Whether the named server (postgres, redis) can be started here."""
    return _find({"postgres": "initdb", "redis": "redis-server"}[name]) is not None


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


VERSITYGW = PROJECT_ROOT / ".tools" / "bin" / "versitygw"


def s3_service(settings: Settings) -> services.Service:
    if not VERSITYGW.exists():
        raise ServerUnavailable(
            f"{VERSITYGW} not found: `make setup` builds it (needs Go: apt-get install golang-go)"
        )
    if not (settings.s3_access_key and settings.s3_secret_key):
        raise ServerUnavailable("the S3 server needs NIGHTJAR_S3_ACCESS_KEY and _SECRET_KEY")
    data = data_dir(settings, "s3")
    data.mkdir(parents=True, exist_ok=True)
    command = [
        str(VERSITYGW),
        "--port",
        f"127.0.0.1:{settings.s3_port}",
        "--region",
        settings.s3_region,
        "--quiet",
        "posix",
        str(data),
    ]
    # the root keys travel in the environment, never in the arguments (`ps` shows those)
    env = {
        **os.environ,
        "ROOT_ACCESS_KEY_ID": settings.s3_access_key,
        "ROOT_SECRET_ACCESS_KEY": settings.s3_secret_key,
    }
    return services.Service("s3", command, env, settings.s3_port)


# PostgreSQL's SIGTERM is a "smart" shutdown that waits for every client to disconnect; SIGINT
# is its fast shutdown (rolls back open transactions, then exits).
_STOP_SIGNAL = {"postgres": signal.SIGINT, "redis": signal.SIGTERM, "s3": signal.SIGTERM}


def start(settings: Settings, name: str) -> bool:
    """Start the named server unless its pid file says it runs; returns whether we started it."""
    if services.pid_of(settings, name) is not None:
        return False
    if name == "postgres":
        service = postgres_service(settings)
        _initdb(settings)
    elif name == "redis":
        service = redis_service(settings)
    elif name == "s3":
        service = s3_service(settings)
    else:
        raise ValueError(f"unknown server {name!r}; expected postgres, redis or s3")
    services.start(settings, service)
    services.wait_ready(settings, service, timeout=60)
    return True


def stop(settings: Settings, name: str) -> bool:
    return services.stop(settings, name, signum=_STOP_SIGNAL[name])


def local_postgres(settings: Settings) -> Postgres:
    return Postgres("127.0.0.1", settings.postgres_port)


def ensure_database(settings: Settings, database: str) -> Postgres:
    """``database`` on the private PostgreSQL: this state folder's server, started here if
    nothing listens on ``postgres_port`` yet, or the one that does (the tests' run shares one
    server among its platforms). Stopped by `nightjar services down`, with the rest, if it
    was started here."""
    if services.pid_of(settings, "postgres") is None and not services.port_open(
        settings.postgres_port
    ):
        start(settings, "postgres")
    import psycopg2

    server = local_postgres(settings)
    try:
        server.ensure_database(database)
    except psycopg2.OperationalError as exc:
        raise ServerUnavailable(
            f"Airflow's metadata DB: the PostgreSQL on 127.0.0.1:{settings.postgres_port} "
            f"refused the platform's connection ({' '.join(str(exc).split())}); free that "
            "port, set NIGHTJAR_POSTGRES_PORT to another, or NIGHTJAR_AIRFLOW_DATABASE=sqlite"
        ) from exc
    return server


@contextlib.contextmanager
def running(settings: Settings, name: str) -> Iterator[Postgres | Redis | ObjectStore]:
    """The named server while the block runs: a private one started here (and stopped after),
    or the one this state folder already runs (left running)."""
    started = start(settings, name)
    try:
        if name == "postgres":
            yield Postgres("127.0.0.1", settings.postgres_port)
        elif name == "redis":
            yield Redis("127.0.0.1", settings.redis_port)
        else:
            yield ObjectStore(f"http://127.0.0.1:{settings.s3_port}", data_dir(settings, "s3"))
    finally:
        if started:
            stop(settings, name)
