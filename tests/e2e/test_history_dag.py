"""The history DAG through real Airflow: a backfill from the same REST call as the UI's form,
one run per month, tables equal to the daily runs of the same days.

Its own state folder and Airflow (the next ports), so the daily DAG's tests keep theirs; tasks
are thin clients of the test session's Spark Connect server.
"""

from __future__ import annotations

import datetime as dt

import pytest

from jobs.common.delta import open_tables
from jobs.lakehouse import tables as tb
from jobs.pipeline import LAKEHOUSE_STAGES, run_stage
from tests.conftest import TEST_STATE
from tooling import demo, services
from tooling.airflow_api import AirflowAPI
from tooling.lakehouse_diff import assert_same_lakehouse, lakehouse_content, restrict_to

pytestmark = pytest.mark.airflow
DAG_ID = "nightjar_history"
JANUARY = [dt.date(2013, 1, 1) + dt.timedelta(days=i) for i in range(31)]
DAILY = JANUARY[:3]  # the reference: these days run one by one


@pytest.fixture(scope="module")
def history(settings, spark):
    from jobs.common.settings import Settings

    state = TEST_STATE / "history"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NIGHTJAR_STATE_DIR", str(state))
        env.setenv("AIRFLOW_HOME", str(state / "airflow"))
        env.setenv("NIGHTJAR_AIRFLOW_PORT", str(settings.airflow_port + 2))
        env.delenv("NIGHTJAR_S3_ENDPOINT")  # local files, like the daily DAG's tests
        platform = Settings()
        services.up(platform, spark=False, defer=frozenset({"scheduler"}))
        try:
            api = AirflowAPI(platform)
            api.wait_for_dag(DAG_ID)
            api.patch(f"/dags/{DAG_ID}", {"is_paused": False})
            # the UI's backfill form posts the same request: January 1st..15th
            runs = demo.backfill(api, JANUARY[0], JANUARY[14], max_active_runs=2, dag_id=DAG_ID)
            yield platform, api, runs
        finally:
            services.down(platform, services.AIRFLOW_COMPONENTS)


def test_a_backfill_makes_one_run_per_month_that_builds_every_day(history, spark):
    platform, api, runs = history
    assert [(r["logical_date"][:10], r["state"]) for r in runs] == [("2013-01-01", "success")]
    tasks = {t["task_id"]: t for t in api.task_instances(DAG_ID, runs[0]["dag_run_id"])}
    assert set(tasks) == {*LAKEHOUSE_STAGES, "materialize"}
    assert {t["state"] for t in tasks.values()} == {"success"}
    tables = open_tables(spark, platform)
    days = tables.read(tb.GOLD_FLIGHTS).select("flight_date").distinct().toPandas()
    assert sorted(days.flight_date) == JANUARY  # the whole month, not the 15 days asked
    results = tables.read(tb.GOLD_FLIGHTS).groupBy("flight_date").count().toPandas()
    assert (results["count"] > 500).all()


def test_its_tables_equal_the_daily_runs_of_the_same_days(history, settings, spark, tmp_path):
    platform, _, _ = history
    daily = settings.model_copy(
        update={
            "lakehouse_uri": str(tmp_path / "lakehouse"),
            "landing_uri": str(tmp_path / "landing"),
        }
    )
    for day in DAILY:
        for stage in LAKEHOUSE_STAGES:
            run_stage(stage, day, f"manual__{day}", daily, spark=spark)
    reference = lakehouse_content(daily.lakehouse)
    rebuilt = restrict_to(lakehouse_content(platform.lakehouse), reference)
    assert len(reference["gold.flights"]) > 2_000
    assert_same_lakehouse(reference, rebuilt)


def test_the_online_store_ends_on_the_months_last_day(history):
    from jobs.features import materialize
    from jobs.features.store import feature_store

    platform, _, _ = history
    assert materialize.newest_materialized_day(feature_store(platform)) == JANUARY[-1]
