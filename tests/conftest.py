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
        "NIGHTJAR_AIRFLOW_PORT": str(18080 + PORT_OFFSET),
        "AIRFLOW_HOME": str(TEST_STATE / "airflow"),
    }
)

from jobs.common.settings import Settings  # noqa: E402
from tests.feature_lake import feast_lake  # noqa: E402, F401  (a shared fixture)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def spark(settings):
    from jobs.common.spark import get_spark
    from jobs.platform import services

    # Start from nothing: stop what an interrupted run left behind, drop its state (Airflow DB,
    # lakehouse), so every run sees the same fresh platform.
    services.down(settings)
    shutil.rmtree(TEST_STATE, ignore_errors=True)
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
