"""Shared fixtures: one Spark Connect server (and so one Spark session) for the whole run.

Tests run against real components on small data. Their state lives in ``.state/test`` and they
use their own ports, so they do not disturb a `make airflow` running beside them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A second test run beside this one (another checkout's work, a helper) picks its own folder and
# ports with these two variables; two runs sharing them would stop each other's servers.
TEST_STATE = Path(os.environ.get("NIGHTJAR_TEST_STATE_DIR", ROOT / ".state" / "test")).resolve()
PORT_OFFSET = int(os.environ.get("NIGHTJAR_TEST_PORT_OFFSET", "0"))
os.environ.update(
    {
        "NIGHTJAR_STATE_DIR": str(TEST_STATE),
        "NIGHTJAR_SPARK_CONNECT_PORT": str(15102 + PORT_OFFSET),
        "NIGHTJAR_SPARK_REMOTE": f"sc://127.0.0.1:{15102 + PORT_OFFSET}",
        "NIGHTJAR_SPARK_MASTER_PORT": str(17177 + PORT_OFFSET),
        "NIGHTJAR_AIRFLOW_PORT": str(18080 + PORT_OFFSET),
        "NIGHTJAR_POSTGRES_PORT": str(15532 + PORT_OFFSET),
        "NIGHTJAR_REDIS_PORT": str(16479 + PORT_OFFSET),
        # The run's private S3 server (the object-storage tests); every Spark session can reach
        # it, and only tests that name a bucket keep data there.
        "NIGHTJAR_S3_PORT": str(19100 + PORT_OFFSET),
        "NIGHTJAR_S3_ENDPOINT": f"http://127.0.0.1:{19100 + PORT_OFFSET}",
        "NIGHTJAR_S3_ACCESS_KEY": "nightjar-test",
        "NIGHTJAR_S3_SECRET_KEY": "nightjar-test-secret",
        # Metrics and alerts: the stack tests/e2e/test_daily_dag.py starts, evaluated every
        # second, delivering to its webhook receiver; elsewhere pushes find no gateway (a warning)
        "NIGHTJAR_PUSHGATEWAY_PORT": str(19191 + PORT_OFFSET),
        "NIGHTJAR_PROMETHEUS_PORT": str(19190 + PORT_OFFSET),
        "NIGHTJAR_ALERTMANAGER_PORT": str(19193 + PORT_OFFSET),
        "NIGHTJAR_STATSD_PORT": str(19196 + PORT_OFFSET),
        "NIGHTJAR_STATSD_EXPORTER_PORT": str(19197 + PORT_OFFSET),
        "NIGHTJAR_METRICS_INTERVAL_SECONDS": "1",
        "NIGHTJAR_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{19194 + PORT_OFFSET}/alerts",
        "NIGHTJAR_ALERT_EMAIL_TO": "operator@nightjar.test",
        "NIGHTJAR_ALERT_SMTP": f"127.0.0.1:{19195 + PORT_OFFSET}",
        # The suite's one session sits idle while an end-to-end test's Airflow runs for minutes
        "NIGHTJAR_SPARK_CONNECT_IDLE_TIMEOUT_MINUTES": "120",
        "AIRFLOW_HOME": str(TEST_STATE / "airflow"),
        # Nothing in ~ (the Makefile sets these too; a bare `pytest` must not differ)
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
)

from jobs.common.settings import Settings  # noqa: E402
from tests.feature_lake import feast_lake  # noqa: E402, F401  (a shared fixture)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


SERVERS = ("postgres", "redis", "s3")


@pytest.fixture(scope="session")
def fresh_state(settings) -> None:
    """Start from nothing: stop what an interrupted run left behind, drop its state (Airflow
    DB, lakehouse, servers' data), so every run sees the same fresh platform."""
    from tooling import servers, services

    services.down(settings)
    for name in SERVERS:
        servers.stop(settings, name)
    shutil.rmtree(TEST_STATE, ignore_errors=True)


def _server(settings, name):
    """A private server for this run (started once, stopped at the end); a test that needs
    one this machine cannot start fails saying how to install it."""
    from tooling import servers

    try:
        with servers.running(settings, name) as server:
            yield server
    except servers.ServerUnavailable as exc:
        pytest.fail(f"the tests need a {name} server: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def postgres(settings, fresh_state):
    """The run's private PostgreSQL (tooling/servers.py), on its own port."""
    yield from _server(settings, "postgres")


@pytest.fixture(scope="session")
def redis_server(settings, fresh_state):
    """The run's private Redis (tooling/servers.py), on its own port."""
    yield from _server(settings, "redis")


@pytest.fixture(scope="session")
def object_store(settings, fresh_state):
    """The run's private S3 server (versitygw, tooling/servers.py), on its own port."""
    yield from _server(settings, "s3")


@pytest.fixture(scope="session")
def spark(settings, fresh_state):
    from jobs.common.spark import get_spark
    from tooling import services

    services.up(settings, airflow=False)
    session = get_spark(settings)
    yield session
    session.stop()
    services.down(settings)


@pytest.fixture()
def lake(settings, tmp_path) -> Settings:
    """Settings whose landing zone and lakehouse are empty folders private to the test."""
    return settings.model_copy(
        update={
            "lakehouse_uri": str(tmp_path / "lakehouse"),
            "landing_uri": str(tmp_path / "landing"),
        }
    )


@pytest.fixture()
def tables(spark, lake):
    from jobs.common.delta import open_tables

    return open_tables(spark, lake)
