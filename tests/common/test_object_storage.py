"""Object storage: the landing zone, the lakehouse, MLflow's artifacts and Feast's offline reads in
a bucket on a real S3 server (versitygw, started once per run), all reached through one set of
settings (``NIGHTJAR_S3_*``, see jobs/common/storage.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from unittest import mock

import mlflow
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from jobs.common import storage
from jobs.common.delta import TableSpec, open_tables
from jobs.common.settings import Settings
from jobs.features import store
from jobs.lakehouse import tables as tb
from jobs.pipeline import run_stage
from jobs.scoring import score
from jobs.scoring.predictions import PREDICTIONS
from jobs.training import tracking, train

BUCKET = "nightjar-it"
DAYS = [dt.date(2013, 3, d) for d in range(1, 5)]


@pytest.fixture(scope="module")
def bucket_lake(object_store, settings, tmp_path_factory) -> Settings:
    """Settings that keep everything in BUCKET; only Airflow-free local state (the Feast
    registry, MLflow's SQLite store) stays in a private folder."""
    object_store.create_bucket(BUCKET)
    root = tmp_path_factory.mktemp("bucket-state")
    return settings.model_copy(
        update={
            "s3_bucket": BUCKET,
            "state_dir": root,
            "feast_registry": str(root / "feast" / "registry.db"),
            "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "model_name": "flight_disruption_s3",
            "validation_days": 1,
            "test_days": 1,
            "promote_min_roc_auc": 0.55,
        }
    )


@mock.patch.dict(os.environ)  # a Settings with object storage exports its AWS_* variables
def test_one_setting_names_the_bucket_and_s3a_uris_mean_the_same_objects():
    lake = Settings(s3_bucket="b", s3_endpoint="http://127.0.0.1:1")
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert lake.lakehouse == "s3://b/lakehouse" and lake.landing == "s3://b/landing"
    assert lake.table_uri("gold.flights") == "s3://b/lakehouse/gold/flights"
    assert lake.mlflow_artifacts == "s3://b/mlflow"
    assert Settings(lakehouse_uri="s3a://other/lh").lakehouse == "s3://other/lh"
    conf = storage.spark_conf(lake)
    assert conf["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:1"
    assert any(j.endswith(".jar") and "hadoop-aws" in j for j in conf["spark.jars"].split(","))
    assert storage.environment(lake)["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert storage.environment(Settings(s3_endpoint=None)) == {}


def test_a_day_runs_end_to_end_in_the_bucket(spark, bucket_lake, object_store):
    lake = bucket_lake
    stages = ("land", "bronze", "silver", "check_silver", "gold", "check_gold")
    for stage in stages:  # the days before as one data interval, as a history run has them
        run_stage(stage, DAYS[0], "s3-history", lake, spark=spark, end=DAYS[-1])
    for stage in stages:  # the last night alone, as the daily DAG runs it
        run_stage(stage, DAYS[-1], "s3-run", lake, spark=spark)
    store.apply(lake)
    features = run_stage("materialize", DAYS[-1], "s3-run", lake)
    trained = train.run(lake, DAYS[-1], window_days=4)
    # trained on 03-04 itself, the decision log gives it nights from 03-05 on: night 03-04 is
    # scored with it explicitly (tests/scoring/test_scoring.py covers that rule)
    champion = score.load(tracking.client(lake), lake, trained.version, "champion")
    scored = score.run(spark, open_tables(spark, lake), lake, DAYS[-1], "s3-run", [champion])

    # everything is in the bucket, nothing in the local state folder
    served = object_store.root / BUCKET
    assert (served / "landing" / "2013-03-04" / "flights.csv").is_file()
    assert (served / "lakehouse" / "gold" / "flights" / "_delta_log").is_dir()
    assert not (lake.state_dir / "lakehouse").exists() and not (lake.state_dir / "landing").exists()

    # delta-rs and Spark (S3A) read the same snapshot of a table the jobs wrote
    gold = lake.table_uri(tb.GOLD_FLIGHTS.name)
    assert gold.startswith(f"s3://{BUCKET}/")
    delta_rs_rows = DeltaTable(gold).to_pyarrow_table().num_rows
    assert delta_rs_rows == open_tables(spark, lake).read(tb.GOLD_FLIGHTS).count() > 3000

    # Feast's offline reads came from the bucket, and materialization served them online
    fs = store.feature_store(lake)
    assert {s.path.rsplit("/", 2)[0] for s in fs.list_data_sources()} == {
        f"s3://{BUCKET}/lakehouse"
    }
    assert features["materialized_day"] == "2013-03-04"
    online = fs.get_online_features(
        features=["carrier_stats:flights_1d"], entity_rows=[{"carrier": "UA"}]
    ).to_dict()
    assert online["flights_1d"][0] > 0

    # MLflow's artifacts (the model the scorer loaded) are objects in the bucket
    run = tracking.client(lake).get_run(trained.run_id)
    assert run.info.artifact_uri.startswith(f"s3://{BUCKET}/mlflow/{lake.model_name}/")
    assert mlflow.artifacts.load_dict(f"runs:/{trained.run_id}/features.json")["features"]
    assert list((served / "mlflow").rglob("MLmodel"))

    # the night's predictions: one per flight of D+1's timetable, in the bucket
    predictions = DeltaTable(lake.table_uri(PREDICTIONS.name)).to_pyarrow_table()
    schedule = open_tables(spark, lake).read(tb.GOLD_SCHEDULED_FLIGHTS)
    tomorrow = schedule.where(schedule.flight_date == dt.date(2013, 3, 5)).count()
    assert scored["flights"] == predictions.num_rows == tomorrow > 0


WRITER = """
import sys
import pyarrow as pa
from jobs.common.delta.snapshot import append_arrow
for i in range(int(sys.argv[3])):
    append_arrow(sys.argv[1], pa.table({"writer": [sys.argv[2]], "i": [i]}))
"""


def test_two_processes_commit_to_one_table_in_the_bucket_at_once(bucket_lake):
    """delta-rs commits with S3's conditional put: every commit of two racing writers lands
    once, in one unbroken sequence of versions, and none overwrites another."""
    uri = f"s3://{BUCKET}/concurrency/commits"
    append = pa.table({"writer": ["setup"], "i": [0]})
    from jobs.common.delta.snapshot import append_arrow

    assert append_arrow(uri, append) == 0
    commits = 15
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, uri, name, str(commits)])
        for name in ("a", "b")
    ]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    table = DeltaTable(uri)
    assert table.version() == 2 * commits
    assert sorted(h["version"] for h in table.history()) == list(range(2 * commits + 1))
    rows = table.to_pyarrow_table().to_pylist()
    assert sorted((r["writer"], r["i"]) for r in rows if r["writer"] != "setup") == sorted(
        (w, i) for w in ("a", "b") for i in range(commits)
    )


SMALL = TableSpec(
    "it.spark_native",
    T.StructType([T.StructField("day", T.DateType()), T.StructField("n", T.LongType())]),
    partition_by=("day",),
)


def test_spark_native_delta_writes_through_s3a_and_delta_rs_reads_it(spark, bucket_lake):
    tables = open_tables(spark, bucket_lake, backend="spark")
    tables.create(SMALL)
    frame = spark.createDataFrame([(DAYS[0], 1), (DAYS[1], 2)], SMALL.schema)
    tables.append(SMALL, frame, run_id="s3a")
    uri = bucket_lake.table_uri(SMALL.name)
    assert uri.startswith(f"s3://{BUCKET}/")
    read = DeltaTable(uri)
    assert sorted(read.to_pyarrow_table().column("n").to_pylist()) == [1, 2]
    assert "Delta-Lake" in str(read.history(1)[0].get("engineInfo", ""))


def test_a_days_claim_in_the_bucket_is_taken_by_one_run_only(bucket_lake, object_store):
    """One writer per day on S3: a claim generation is created with If-None-Match, which the
    server honours, so of two runs creating it one is refused."""
    from jobs.common import day_claims

    store = day_claims.Store(bucket_lake)
    day = "2013-03-09"
    first = day_claims.acquire(store, day, "run-a", "silver", dt.timedelta(0))
    assert store.newest(day) == first
    assert not store.create(dataclasses.replace(first, run_id="run-b"))  # the same generation
    with pytest.raises(day_claims.DayBusy, match="processed by run run-a"):
        day_claims.acquire(store, day, "run-b", "silver", dt.timedelta(0))
    first.released_at = day_claims.now().isoformat()
    store.replace(first)
    assert day_claims.acquire(store, day, "run-b", "silver", dt.timedelta(0)).generation == 2
