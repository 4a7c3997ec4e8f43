"""The daily DAG through real Airflow: scheduler, LocalExecutor, backfills, re-runs.

Airflow's components run as `nightjar services up` starts them, with this test run's state
folder and ports; tasks are thin clients of the test session's Spark Connect server.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from jobs.common.delta import open_tables
from jobs.lakehouse import source
from jobs.lakehouse import tables as tb
from jobs.observability.metrics import day_seconds
from jobs.pipeline import LAKEHOUSE_STAGES, STAGES, run_stage
from tests.alert_receiver import AlertReceiver, MailReceiver
from tests.conftest import TEST_STATE
from tests.lakehouse.snapshot import assert_same, snapshot
from tooling import demo, observability, services
from tooling.airflow_api import AirflowAPI
from tooling.lakehouse_diff import assert_same_lakehouse, lakehouse_content

pytestmark = pytest.mark.airflow
DAG_ID = "nightjar_daily"
START, END = dt.date(2013, 1, 1), dt.date(2013, 1, 3)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]
DEADLINE_S = 2


@pytest.fixture(scope="module")
def alerts(settings):
    with AlertReceiver(settings.alert_webhook_url) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def mails(settings):
    with MailReceiver(settings.alert_smtp) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def api(settings, spark, alerts, mails):
    # Spark Connect is already up (the spark fixture); adds Airflow, and Prometheus with its
    # Pushgateway and Alertmanager (delivering to `alerts`). As in `make run`, the scheduler
    # is left to the first backfill, which starts it: every test that needs it goes through
    # `backfilled`.
    if not observability.available():
        pytest.fail(f"the tests need Prometheus: {observability.missing_hint()}", pytrace=False)
    with pytest.MonkeyPatch.context() as env:
        # every night of this module misses its Deadline Alert: two seconds after queueing
        env.setenv("NIGHTJAR_ALERT_NIGHT_DEADLINE_HOURS", str(DEADLINE_S / 3600))
        services.up(settings, defer=frozenset({"scheduler"}), observability=True)
    client = AirflowAPI(settings)
    client.wait_for_dag(DAG_ID)
    client.patch(f"/dags/{DAG_ID}", {"is_paused": False})
    yield client
    services.down(settings, (*services.AIRFLOW_COMPONENTS, *observability.NAMES))


@pytest.fixture(scope="module")
def backfilled(api, settings, spark):
    runs = demo.backfill(api, START, END, max_active_runs=3)
    return runs, open_tables(spark, settings)


@pytest.fixture(scope="module")
def backfilled_on_a_cluster(backfilled, settings):
    """The same days through a second platform configured for scale: a Spark standalone
    cluster of two worker JVMs behind its own Connect server (NIGHTJAR_SPARK_WORKERS=2), and
    jobs writing with Delta Lake's own Spark writer (NIGHTJAR_DELTA_BACKEND=spark). Its own
    state folder, Airflow on the next port; no code differs."""
    from jobs.common.settings import Settings

    state = TEST_STATE / "daily-cluster"
    connect_port = settings.spark_connect_port + 1
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "NIGHTJAR_DELTA_BACKEND": "spark",
            "NIGHTJAR_SPARK_WORKERS": "2",
            "NIGHTJAR_SPARK_WORKER_MEMORY": "1g",
            "NIGHTJAR_SPARK_CONNECT_PORT": str(connect_port),
            "NIGHTJAR_SPARK_REMOTE": f"sc://127.0.0.1:{connect_port}",
            "NIGHTJAR_STATE_DIR": str(state),
            "AIRFLOW_HOME": str(state / "airflow"),
            "NIGHTJAR_AIRFLOW_PORT": str(settings.airflow_port + 1),
        }.items():
            env.setenv(key, value)
        # no object storage here: its jars (the AWS SDK, 660 MB) would be shipped to each worker
        env.delenv("NIGHTJAR_S3_ENDPOINT")
        cluster = Settings()
        try:
            services.up(cluster, defer=frozenset({"scheduler"}))
            client = AirflowAPI(cluster)
            client.wait_for_dag(DAG_ID)
            client.patch(f"/dags/{DAG_ID}", {"is_paused": False})
            runs = demo.backfill(client, START, END, max_active_runs=3)
            yield cluster, runs, client
        finally:
            services.down(cluster)


def wait_for_run(api, run_id, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            return run
        time.sleep(2)
    raise TimeoutError(f"run {run_id} still {run['state']} after {timeout}s")


def test_dag_is_parsed_with_docs_tags_and_assets(api):
    dag = api.get(f"/dags/{DAG_ID}/details")
    assert {t["name"] for t in dag["tags"]} == {"nightjar", "lakehouse"}
    assert "land" in dag["doc_md"] and "gold" in dag["doc_md"]
    tasks = {t["task_id"]: t for t in api.get(f"/dags/{DAG_ID}/tasks")["tasks"]}
    assert {k: t["downstream_task_ids"] for k, t in tasks.items()} == {
        "land": ["bronze"],
        "bronze": ["silver"],
        "silver": ["check_silver"],
        "check_silver": ["gold"],
        "gold": ["check_gold"],
        "check_gold": ["materialize"],
        "materialize": ["score"],
        "score": ["monitor"],
        "monitor": ["request_retrain"],
        "request_retrain": [],
    }
    assert all(t["doc_md"] for t in tasks.values())
    assets = {a["name"] for a in api.get("/assets", limit=100)["assets"]}
    assert {"gold.flights", "gold.carrier_stats", "gold.origin_weather_daily"} <= assets
    assert {t for t, v in tasks.items() if v["depends_on_past"]} == {
        "gold",
        "monitor",
        "request_retrain",
    }
    assert all(t["retries"] == 2 for t in tasks.values())
    assert api.get("/importErrors")["total_entries"] == 0


def test_backfill_builds_every_layer_matching_the_source(backfilled):
    runs, tables = backfilled
    assert sorted(r["logical_date"][:10] for r in runs) == [d.isoformat() for d in DAYS]
    assert {r["state"] for r in runs} == {"success"}
    flights = source.table("flights")
    for day in DAYS:
        src = flights[(flights.month == "1") & (flights.day == str(day.day))]
        disrupted = (src.dep_time == "NA") | (
            src.dep_delay.where(src.dep_delay != "NA").astype(float) >= 15
        )
        gold = tables.read(tb.GOLD_FLIGHTS, partitions={"flight_date": [day]})
        assert gold.count() == len(src)
        assert gold.where("is_disrupted").count() == int(disrupted.sum())
        assert tables.count_rows(tb.BRONZE["flights"], {"_logical_date": [day]}) == len(src)
        recon = tables.read(
            tb.RECONCILIATION, partitions={"source_table": ["flights"], "logical_date": [day]}
        ).first()
        assert recon["landed"] == recon["accepted"] + recon["quarantined"] + recon["duplicates"]
    # Day 3's 28-day statistics include days 1-3 and nothing else.
    carrier = (
        tables.read(tb.gold_stats("carrier", (7, 28)), partitions={"as_of_date": [END]})
        .where("carrier = 'UA'")
        .first()
    )
    src = flights[
        (flights.month == "1") & flights.day.isin(["1", "2", "3"]) & (flights.carrier == "UA")
    ]
    assert carrier["flights_28d"] == len(src)


def test_the_password_airflow_generated_is_for_its_owner_only(api, settings):
    passwords = settings.airflow_home / "passwords.json"
    assert passwords.exists() and passwords.stat().st_mode & 0o077 == 0


def prometheus_value(settings, expr: str, expected=None, timeout: float = 60) -> float:
    """The single value of ``expr`` once Prometheus has scraped it (and, given ``expected``,
    once it equals that: the last of a backfill's pushes may still be on its way)."""
    deadline = time.monotonic() + timeout
    while True:
        result = observability.query(settings, expr)
        values = [float(r["value"][1]) for r in result]
        if len(values) == 1 and (expected is None or values[0] == expected):
            return values[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{expr}: {result}, expected one value {expected}")
        time.sleep(1)


def test_every_task_reports_its_figures_to_prometheus(backfilled, settings, spark):
    """Read back through Prometheus' HTTP API: what the tasks pushed to the Pushgateway."""
    _, tables = backfilled

    def of(metric: str, task: str) -> str:
        return f'{metric}{{dag="{DAG_ID}",task="{task}"}}'

    last = day_seconds(DAYS[-1])
    # gold waits for the day before, materialize runs one at a time: both end on the last day
    prometheus_value(settings, of("nightjar_task_logical_date_timestamp_seconds", "gold"), last)
    prometheus_value(settings, "nightjar_online_store_newest_day_timestamp_seconds", last)
    for table, ahead in (("gold.flights", 0), ("gold.scheduled_flights", 1)):
        prometheus_value(
            settings,
            f'nightjar_table_newest_partition_timestamp_seconds{{table="{table}"}}',
            day_seconds(DAYS[-1] + dt.timedelta(days=ahead)),
        )
    recon = tables.read(tb.RECONCILIATION).toPandas()
    accepted = set(recon[recon.source_table == "flights"].accepted.astype(float))
    rows = prometheus_value(
        settings, 'nightjar_rows{task="silver",table="flights",outcome="accepted"}'
    )
    assert rows in accepted  # the counts of the day whose silver ran last
    assert prometheus_value(settings, 'nightjar_quarantine_ratio{table="flights"}') == 0
    for gate in ("check_silver", "check_gold"):
        passed = f'nightjar_quality_expectations{{task="{gate}",outcome="passed"}}'
        assert prometheus_value(settings, passed) > 10
    for stage in LAKEHOUSE_STAGES:
        assert prometheus_value(settings, of("nightjar_task_duration_seconds", stage)) > 0
    # no champion: score is skipped, yet reports that it finished
    since = "time() - " + of("nightjar_task_success_timestamp_seconds", "score")
    assert prometheus_value(settings, since) < 600
    assert observability.query(settings, "nightjar_predictions") == []


def test_airflows_own_metrics_reach_the_same_prometheus(backfilled, settings):
    """Over StatsD, through the StatsD exporter: the scheduler's heartbeat and the task
    instances of the backfill, labelled by DAG, task and state."""
    assert prometheus_value(settings, "sum(airflow_scheduler_heartbeats_total)") > 0
    finished = f'sum by (task_id) (airflow_task_instances_finished_total{{dag_id="{DAG_ID}"}})'
    deadline = time.monotonic() + 30
    while len(found := observability.query(settings, finished)) < len(LAKEHOUSE_STAGES):
        assert time.monotonic() < deadline, found
        time.sleep(1)
    by_task = {r["metric"]["task_id"]: float(r["value"][1]) for r in found}
    assert all(by_task[stage] >= len(DAYS) for stage in LAKEHOUSE_STAGES), by_task


def test_a_two_worker_cluster_with_spark_native_delta_builds_the_same_tables(
    api, backfilled, backfilled_on_a_cluster, settings
):
    """Land through request_retrain through Airflow, on the cluster: every task succeeds as on
    the local platform, every table has the content the local delta-rs runs wrote (run metadata
    left out), Delta Lake's Spark writer made the commits, and both workers' executors ran
    tasks."""
    from deltalake import DeltaTable

    cluster, runs, client = backfilled_on_a_cluster
    assert {r["state"] for r in runs} == {"success"} and len(runs) == len(DAYS)

    def task_states(platform, run_ids):
        return [
            sorted((t["task_id"], t["state"]) for t in platform.task_instances(DAG_ID, run_id))
            for run_id in sorted(run_ids)
        ]

    cluster_states = task_states(client, [r["dag_run_id"] for r in runs])
    assert cluster_states == task_states(api, [r["dag_run_id"] for r in backfilled[0]])
    assert {task for states in cluster_states for task, _ in states} == set(STAGES)
    mine, theirs = lakehouse_content(cluster.lakehouse), lakehouse_content(settings.lakehouse)
    assert {"silver.flights", "gold.flights", "ml.monitoring_metrics", "quality.results"} <= set(
        mine
    )
    assert_same_lakehouse(mine, theirs)
    engine = DeltaTable(cluster.table_uri(tb.GOLD_FLIGHTS.name)).history(1)[0]["engineInfo"]
    assert engine.startswith("Apache-Spark/") and "Delta-Lake/" in engine
    # a standalone worker keeps each executor's log under <work>/<app>/<executor id>/
    executor_logs = sorted((cluster.spark_dir / "work").glob("app-*/*/stderr"))
    assert len(executor_logs) == 2
    assert all("Running task" in log.read_text() for log in executor_logs)
    # each executor JVM ran with Nightjar's flags, as the driver does (its first log line is
    # the command the worker started it with)
    from jobs.common.spark import JVM_OPTIONS

    for log in executor_logs:
        command = log.read_text().partition("\n")[0]
        assert command.startswith("Spark Executor Command:")
        assert all(f'"{flag}"' in command for flag in JVM_OPTIONS), command


def test_rerunning_a_day_through_airflow_changes_no_table_content(backfilled, api, settings):
    _, tables = backfilled
    before = snapshot(tables, settings.rolling_windows_days)
    version = tables.version(tb.SILVER_FLIGHTS)
    run_id = next(
        r["dag_run_id"]
        for r in api.dag_runs(DAG_ID)
        if r["logical_date"].startswith(DAYS[1].isoformat())
    )
    api.post(
        f"/dags/{DAG_ID}/clearTaskInstances",
        {"dag_run_id": run_id, "dry_run": False, "reset_dag_runs": True, "only_failed": False},
    )
    assert wait_for_run(api, run_id)["state"] == "success"
    assert tables.version(tb.SILVER_FLIGHTS) > version  # it really ran again
    assert_same(before, snapshot(tables, settings.rolling_windows_days))


def test_backfill_equals_running_the_days_one_by_one(backfilled, settings, spark, tmp_path):
    _, tables = backfilled
    one_by_one = settings.model_copy(
        update={
            "lakehouse_uri": str(tmp_path / "lakehouse"),
            "landing_uri": str(tmp_path / "landing"),
        }
    )
    for day in DAYS:
        for stage in LAKEHOUSE_STAGES:
            run_stage(stage, day, f"manual__{day}", one_by_one, spark=spark)
    assert_same(
        snapshot(tables, settings.rolling_windows_days),
        snapshot(open_tables(spark, one_by_one), settings.rolling_windows_days),
    )


def test_a_date_outside_the_data_fails_clearly_without_retries(api, backfilled):
    # A REST trigger without a logical date names the day in the run's conf (the `date` param).
    run = api.post(
        f"/dags/{DAG_ID}/dagRuns",
        {
            "logical_date": None,
            "dag_run_id": "manual__out_of_range",
            "conf": {"date": "2014-01-01"},
        },
    )
    assert wait_for_run(api, run["dag_run_id"])["state"] == "failed"
    land = next(t for t in api.task_instances(DAG_ID, run["dag_run_id"]) if t["task_id"] == "land")
    assert land["state"] == "failed" and land["try_number"] == 1
    log = api.get(
        f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/land/logs/1", full_content=True
    )
    text = str(log)
    assert "logical date 2014-01-01 is outside the source data's range" in text


def test_a_failed_task_raises_exactly_one_alert_naming_its_run_task_day_and_log(
    api, backfilled, settings, alerts, mails
):
    """The failure above, as an operator receives it: Airflow's failure notifier pushed it,
    Prometheus' rule fired, Alertmanager delivered it once to the webhook and once by mail."""
    failed = {"alertname": "NightjarTaskFailed", "run_id": "manual__out_of_range"}
    (alert,) = alerts.wait_for(**failed)
    assert alert["labels"]["dag"] == DAG_ID and alert["labels"]["task"] == "land"
    assert alert["labels"]["logical_date"] == "2014-01-01"
    log_url = alert["annotations"]["log_url"]
    assert log_url.startswith(f"http://127.0.0.1:{settings.airflow_port}/")
    assert log_url.endswith(f"/dags/{DAG_ID}/runs/manual__out_of_range/tasks/land?try_number=1")
    assert "day 2014-01-01" in alert["annotations"]["description"]
    time.sleep(5)  # several evaluation and group intervals later: still the one delivery
    assert len(alerts.firing(**failed)) == 1
    # and one mail to the operator, with the same facts
    mail = mails.about("manual__out_of_range")
    (mail,) = [m for m in mail if "NightjarTaskFailed" in m["Subject"]]
    assert mail["To"] == settings.alert_email_to
    assert log_url in mails.body(mail).replace("&amp;", "&")


def test_a_night_not_finished_by_its_deadline_raises_an_alert(backfilled, alerts):
    """Airflow's Deadline Alert on the nightly run (here two seconds after queueing, which
    every night misses) called its callback in the triggerer; Prometheus' rule fired."""
    runs, _ = backfilled
    (alert, *_) = alerts.wait_for(alertname="NightjarDeadlineMissed", dag=DAG_ID)
    assert alert["labels"]["run_id"] in {r["dag_run_id"] for r in runs}
    assert alert["labels"]["logical_date"] in {d.isoformat() for d in DAYS}
    assert "missed its deadline" in alert["annotations"]["summary"]


def test_the_backfill_leaves_the_newest_day_in_the_online_store(backfilled, settings):
    from jobs.features import materialize
    from jobs.features.store import feature_store

    store = feature_store(settings)
    assert materialize.newest_materialized_day(store) == DAYS[-1]
    carriers = ["UA", "AA", "B6"]
    online = store.get_online_features(
        features=["carrier_stats:flights_1d"], entity_rows=[{"carrier": c} for c in carriers]
    ).to_dict()
    last = source.table("flights", day=DAYS[-1])  # every flight of that day was accepted
    assert online["flights_1d"] == [int((last.carrier == c).sum()) for c in carriers]


def test_without_a_champion_scoring_is_skipped_with_the_reason_in_its_log(backfilled, api):
    runs, _ = backfilled
    run_id = runs[-1]["dag_run_id"]
    score = next(t for t in api.task_instances(DAG_ID, run_id) if t["task_id"] == "score")
    assert score["state"] == "skipped"
    log = api.get(
        f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/score/logs/{score['try_number']}",
        full_content=True,
    )
    assert "no version of flight_disruption has been trained yet: nothing to score" in str(log)


def test_a_critical_quality_failure_stops_the_run_before_gold(backfilled, api, spark):
    """A crafted bad silver partition: re-running the gate fails it, gold does not run, and the
    gold tables keep their version."""
    from pyspark.sql import functions as F

    _, tables = backfilled
    day = DAYS[2]
    flights = tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": [day]})
    tables.overwrite_partitions(
        tb.SILVER_FLIGHTS,
        flights.withColumn("carrier", F.lit(None).cast("string")).toArrow(),
        {"flight_date": [day]},
    )
    gold_version = tables.version(tb.GOLD_FLIGHTS)
    run_id = next(
        r["dag_run_id"]
        for r in api.dag_runs(DAG_ID)
        if r["logical_date"].startswith(day.isoformat())
    )
    tries_before = {t["task_id"]: t["try_number"] for t in api.task_instances(DAG_ID, run_id)}
    api.post(
        f"/dags/{DAG_ID}/clearTaskInstances",
        {
            "dag_run_id": run_id,
            "task_ids": ["check_silver"],
            "include_downstream": True,
            "dry_run": False,
            "reset_dag_runs": True,
            "only_failed": False,
        },
    )
    assert wait_for_run(api, run_id)["state"] == "failed"
    states = {t["task_id"]: t for t in api.task_instances(DAG_ID, run_id)}
    assert states["check_silver"]["state"] == "failed"
    assert states["gold"]["state"] == "upstream_failed"
    assert tables.version(tb.GOLD_FLIGHTS) == gold_version
    try_number = states["check_silver"]["try_number"]
    log = str(
        api.get(
            f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/check_silver/logs/{try_number}",
            full_content=True,
        )
    )
    assert "expect_column_values_to_not_be_null(carrier)" in log
    assert try_number == tries_before["check_silver"] + 1  # one attempt: a failed gate is final
