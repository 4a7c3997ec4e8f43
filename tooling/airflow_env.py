"""The environment every Airflow component (and the tests) runs with.

Airflow's home is ``<state_dir>/airflow``: config, logs (and the SQLite DB where Airflow runs on
SQLite). Its metadata DB is a database of its own in the platform's private PostgreSQL, where
PostgreSQL is installed (``settings.airflow_database``). The DAGs and plugins come straight
from the repository. Production values (another Postgres, other ports) are set the usual Airflow
way, with ``AIRFLOW__SECTION__KEY`` variables, which win over these defaults.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from pathlib import Path

from jobs.common import files
from jobs.common.settings import PROJECT_ROOT, Settings


def _secret(path: Path) -> str:
    """A random secret generated once per state folder (shared by all components), readable
    by its owner only."""
    if not path.exists():  # the first of two components starting at once wins
        files.create_whole(path, secrets.token_urlsafe(32), mode=0o600)
    return path.read_text().strip()


def on_private_postgres(settings: Settings) -> bool:
    """Whether Airflow's metadata DB is the private PostgreSQL's (``airflow_database``)."""
    if settings.airflow_database != "auto":
        return settings.airflow_database == "postgres"
    from tooling import servers

    return servers.installed("postgres")


def metadata_database(settings: Settings) -> str:
    """The private PostgreSQL's database for this state folder's Airflow: one per folder, so
    platforms sharing a server (the tests') never share a metadata DB."""
    folder = str(settings.state_dir.resolve()).encode()
    return f"airflow_{hashlib.sha1(folder).hexdigest()[:12]}"


def metadata_db_url(settings: Settings) -> str:
    """Airflow's metadata DB unless AIRFLOW__DATABASE__SQL_ALCHEMY_CONN says otherwise.

    PostgreSQL where it is installed: on SQLite, a long backfill created while the scheduler
    runs can be refused ("database is locked") and stop the scheduler (docs/backfill.md). The
    history rebuild takes as long on either (docs/benchmarks.md, "Backfills")."""
    if on_private_postgres(settings):
        from tooling import servers

        return servers.local_postgres(settings).url(metadata_database(settings))
    return f"sqlite:///{settings.airflow_home / 'airflow.db'}"


def airflow_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    home = settings.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    api = f"http://{settings.airflow_host}:{settings.airflow_port}"
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Load plugins at start-up: plugins/nightjar_preload.py warms the scheduler, from which
        # every task process is forked.
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "6",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db_url(settings),
        "AIRFLOW__API__HOST": settings.airflow_host,
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": _secret(home / ".api_secret"),
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home / ".jwt_secret"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        # How long a scheduler loop that queued nothing sleeps (Airflow's default 1 s). Every
        # loop re-checks `depends_on_past` for each active run, so shorter costs CPU the tasks
        # need (0.2 s: 101 CPU-s of `make run`; 0.5 s: 72, the next task starting 0.1 s later).
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # Airflow's own metrics, tagged InfluxDB-style, to the StatsD exporter
        # (tooling/observability.py), which Prometheus scrapes
        "AIRFLOW__METRICS__STATSD_ON": str(settings.metrics_enabled),
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(settings.statsd_port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
        "AIRFLOW__METRICS__LEGACY_NAMES_ON": "False",
        # Keep tools' home-directory state inside the project.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    env = dict(base if base is not None else os.environ)
    for key, value in defaults.items():
        env.setdefault(key, value)
    if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):
        # A new connection per session on SQLite (SQLAlchemy 1.x's default for a file). A pooled
        # connection returned with a result left unread keeps its WAL read snapshot: the next
        # request on it does not see rows committed since ("Task Instance not found" for a task
        # the backfill just queued) and cannot write ("database is locked").
        env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_ENABLED", "False")
    # Tasks are thin Spark Connect clients of the server `nightjar services up` starts.
    env.setdefault("NIGHTJAR_SPARK_REMOTE", f"sc://127.0.0.1:{settings.spark_connect_port}")
    env.setdefault("NIGHTJAR_STATE_DIR", str(settings.state_dir))
    # Components start each other by the bare name `airflow`: the venv's bin must be on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env
