"""DAG files only wire tasks: parsing them imports no job code, Spark, pandas or ML libraries."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import stages

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"pyspark", "pandas", "jobs", "deltalake", "feast", "mlflow", "xgboost", "evidently"}
# The Deadline Alert's callback, checked by Airflow at parse time, the stage registry and the
# gold tables' names: they import nothing at load.
LIGHT = {
    "jobs",
    "jobs.observability",
    "jobs.observability.deadline",
    "jobs.stages",
    "jobs.lakehouse",
    "jobs.lakehouse.gold_tables",
}


ONE_AT_A_TIME = {stage.name: 1 for stage in stages.STAGES if stage.one_at_a_time}


@pytest.mark.parametrize(
    ("dag_file", "tasks", "tags", "one_at_a_time"),
    [
        # the stages, wired as jobs/stages.py declares them
        ("nightjar_daily.py", list(stages.NAMES), ["lakehouse", "nightjar"], ONE_AT_A_TIME),
        (
            "nightjar_history.py",
            list(stages.INTERVAL),
            ["history", "lakehouse", "nightjar"],
            ONE_AT_A_TIME,
        ),
        ("nightjar_training.py", ["train"], ["nightjar", "training"], {}),
        ("nightjar_maintenance.py", ["maintain"], ["maintenance", "nightjar"], {}),
    ],
)
def test_parsing_a_dag_file_does_no_heavy_imports(dag_file, tasks, tags, one_at_a_time):
    code = (
        f"import runpy, sys; ns = runpy.run_path('dags/{dag_file}');"
        f"heavy = sorted({{m.split('.')[0] for m in set(sys.modules) - set({sorted(LIGHT)!r})}}"
        f" & set({sorted(HEAVY)!r}));"
        "dag = ns['dag']; limits = {t.task_id: t.max_active_tis_per_dag for t in dag.tasks"
        " if t.max_active_tis_per_dag};"
        "print(heavy, [t.task_id for t in dag.tasks], sorted(dag.tags), limits)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": "dags"},  # as Airflow does: the DAG folder is importable
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == f"[] {tasks} {tags} {one_at_a_time}"


def test_the_daily_dags_deadline_and_every_dags_failure_alert_come_from_the_settings(
    monkeypatch,
):
    """The DAG files read the deadline from the environment without importing the settings:
    their default must stay the settings' default."""
    import datetime as dt

    from jobs.common.settings import Settings

    monkeypatch.syspath_prepend(str(ROOT / "dags"))
    monkeypatch.delenv("NIGHTJAR_ALERT_NIGHT_DEADLINE_HOURS", raising=False)
    import nightjar_alerts

    default = Settings.model_fields["alert_night_deadline_hours"].default
    assert nightjar_alerts.night_deadline_hours() == default
    assert nightjar_alerts.NIGHT_DEADLINE.interval == dt.timedelta(hours=default)
    assert isinstance(
        nightjar_alerts.DEFAULT_ARGS["on_failure_callback"], nightjar_alerts.TaskFailureAlert
    )


def test_the_tasks_take_the_spark_endpoint_from_the_airflow_connection_when_there_is_one(
    monkeypatch,
):
    from jobs.common.settings import Settings

    monkeypatch.syspath_prepend(str(ROOT / "dags"))
    import nightjar_stages

    monkeypatch.setenv("NIGHTJAR_SPARK_REMOTE", "sc://127.0.0.1:15002")
    monkeypatch.delenv("AIRFLOW_CONN_NIGHTJAR_SPARK", raising=False)
    nightjar_stages.use_spark_connection()  # none configured: the settings' endpoint
    assert Settings().spark_remote == "sc://127.0.0.1:15002"
    monkeypatch.setenv("AIRFLOW_CONN_NIGHTJAR_SPARK", "sc://spark-connect:15002")
    nightjar_stages.use_spark_connection()
    assert Settings().spark_remote == "sc://spark-connect:15002"


def test_the_gold_assets_are_the_table_catalogs_published_gold_tables(monkeypatch):
    """The daily DAG's gold Assets and the catalog's gold TableSpecs take their names from one
    declaration (jobs/lakehouse/gold_tables.py), which a DAG file may import."""
    from jobs.common.settings import Settings
    from jobs.lakehouse import gold_tables
    from jobs.lakehouse import tables as tb

    monkeypatch.syspath_prepend(str(ROOT / "dags"))
    import nightjar_assets

    windows = Settings().rolling_windows_days
    catalog = [
        tb.GOLD_FLIGHTS,
        tb.GOLD_SCHEDULED_FLIGHTS,
        *(tb.gold_stats(entity, windows) for entity in tb.ENTITY_KEYS),
        tb.GOLD_WEATHER,
    ]
    assert [asset.name for asset in nightjar_assets.GOLD_ASSETS] == [t.name for t in catalog]
    assert nightjar_assets.GOLD_ASSETS[0].uri == "nightjar://lakehouse/gold/flights"
    assert tb.GOLD_ENTITY_DAILY.name == gold_tables.ENTITY_DAILY  # gold's own, no Asset
    assert tb.ENTITY_KEYS == gold_tables.ENTITY_KEYS
