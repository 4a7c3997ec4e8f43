"""The Delta I/O contract: the same cases against every backend.

The Spark-native backend needs the Delta jars on Spark's classpath; where they are missing (this
machine: no Maven Central) its cases are skipped with the reason printed in the summary.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from jobs.common.delta import DeltaIOError, TableSpec, open_tables
from jobs.common.delta.spark_native import spark_delta_available

D1, D2, D3 = dt.date(2013, 1, 1), dt.date(2013, 1, 2), dt.date(2013, 1, 3)
SPEC = TableSpec(
    name="test.events",
    schema=T.StructType(
        [
            T.StructField("k", T.StringType()),
            T.StructField("d", T.DateType()),
            T.StructField("v", T.DoubleType()),
            T.StructField("ts", T.TimestampType()),
        ]
    ),
    partition_by=("d",),
    key=("k",),
)


@pytest.fixture(params=["delta-rs", "spark"])
def store(request, spark, lake):
    if request.param == "spark":
        available, why = spark_delta_available(spark, probe=True)
        if not available:
            pytest.skip(f"Spark-native Delta backend not available here: {why}")
    return open_tables(spark, lake, backend=request.param)


def rows(spark, data):
    return spark.createDataFrame(
        [(k, d, v, dt.datetime(2013, 1, 1, 12)) for k, d, v in data], SPEC.schema
    )


def content(store, **kwargs):
    return sorted((r["k"], r["d"], r["v"]) for r in store.read(SPEC, **kwargs).collect())


def test_create_is_idempotent_and_refuses_another_schema(store):
    store.create(SPEC)
    store.create(SPEC)
    assert store.version(SPEC) == 0
    other = TableSpec(SPEC.name, T.StructType(SPEC.schema.fields[:2]), ("d",))
    with pytest.raises(DeltaIOError, match="existing table"):
        store.create(other)


def test_append_then_read_with_timestamps_in_utc(store, spark):
    store.append(SPEC, rows(spark, [("a", D1, 1.0), ("b", D2, 2.0)]))
    got = store.read(SPEC).orderBy("k").collect()
    assert [(r["k"], r["d"], r["v"]) for r in got] == [("a", D1, 1.0), ("b", D2, 2.0)]
    assert got[0]["ts"] == dt.datetime(2013, 1, 1, 12)


def test_overwrite_partitions_replaces_exactly_the_selected_partitions(store, spark):
    store.append(SPEC, rows(spark, [("a", D1, 1.0), ("b", D2, 2.0), ("c", D3, 3.0)]))
    store.overwrite_partitions(SPEC, rows(spark, [("x", D2, 9.0)]), {"d": [D2]})
    assert content(store) == [("a", D1, 1.0), ("c", D3, 3.0), ("x", D2, 9.0)]
    # Replacing with nothing empties the partition (a re-run that produced no rows).
    store.overwrite_partitions(SPEC, spark.createDataFrame([], SPEC.schema), {"d": [D3]})
    assert content(store) == [("a", D1, 1.0), ("x", D2, 9.0)]


def test_overwrite_refuses_rows_outside_the_partitions_and_writes_nothing(store, spark):
    store.append(SPEC, rows(spark, [("a", D1, 1.0)]))
    before = store.version(SPEC)
    with pytest.raises(Exception, match="(?i)outside|replaceWhere|does not conform"):
        store.overwrite_partitions(SPEC, rows(spark, [("b", D1, 2.0), ("c", D2, 3.0)]), {"d": [D1]})
    assert store.version(SPEC) == before
    assert content(store) == [("a", D1, 1.0)]


def test_arrow_frames_are_accepted_like_spark_frames(store, spark):
    data = pa.table({"k": ["a"], "d": [D1], "v": [1.5], "ts": [None]})
    store.overwrite_partitions(SPEC, data, {"d": [D1]})
    assert content(store) == [("a", D1, 1.5)]


def test_frames_with_other_columns_are_refused(store, spark):
    bad = rows(spark, [("a", D1, 1.0)]).withColumnRenamed("v", "value")
    with pytest.raises(
        DeltaIOError, match=r"missing columns \['v'\], unexpected columns \['value'\]"
    ):
        store.append(SPEC, bad)


def test_merge_updates_changed_rows_and_inserts_new_keys(store, spark):
    store.append(SPEC, rows(spark, [("a", D1, 1.0), ("b", D1, 2.0)]))
    store.merge(SPEC, rows(spark, [("b", D1, 20.0), ("c", D2, 3.0), ("a", D1, 1.0)]))
    assert content(store) == [("a", D1, 1.0), ("b", D1, 20.0), ("c", D2, 3.0)]
    history = store.history(SPEC)
    assert history[0]["operation"] == "MERGE"


def test_merge_refuses_duplicate_source_keys(store, spark):
    store.create(SPEC)
    with pytest.raises(DeltaIOError, match=r"duplicate keys .*\('a',\)"):
        store.merge(SPEC, rows(spark, [("a", D1, 1.0), ("a", D1, 2.0)]))
    assert store.count_rows(SPEC) == 0


def test_read_a_version_and_prune_partitions(store, spark):
    v1 = store.append(SPEC, rows(spark, [("a", D1, 1.0), ("b", D2, 2.0)]))
    store.overwrite_partitions(SPEC, rows(spark, [("a", D1, 5.0)]), {"d": [D1]})
    assert content(store, version=v1) == [("a", D1, 1.0), ("b", D2, 2.0)]
    assert content(store, partitions={"d": [D2]}) == [("b", D2, 2.0)]
    assert store.versions_read[SPEC.name] == store.version(SPEC)
    assert store.count_rows(SPEC, {"d": [D1]}) == 1
    assert store.count_rows(SPEC) == 2


def test_history_lists_every_commit_newest_first(store, spark):
    store.append(SPEC, rows(spark, [("a", D1, 1.0)]))
    store.overwrite_partitions(SPEC, rows(spark, [("a", D1, 2.0)]), {"d": [D1]}, run_id="r-42")
    history = store.history(SPEC)
    assert [h["version"] for h in history] == [2, 1, 0]
    assert history[0]["operation"] == "WRITE"


def test_delta_rs_writes_a_real_delta_log(store, spark, lake):
    if store.backend_name != "delta-rs":
        pytest.skip("checks delta-rs's own log")
    store.overwrite_partitions(SPEC, rows(spark, [("a", D1, 1.0)]), {"d": [D1]}, run_id="r-7")
    table = DeltaTable(lake.table_uri(SPEC.name))
    assert table.metadata().partition_columns == ["d"]
    assert table.history(1)[0]["nightjar.run_id"] == "r-7"


def test_delta_rs_checkpoints_every_ten_commits_and_writes_return_their_version(store, spark, lake):
    """Opening a table replays the commits since its last checkpoint; delta-rs's default of one
    checkpoint per 100 commits made every open of a daily table slower as history grew."""
    if store.backend_name != "delta-rs":
        pytest.skip("checks delta-rs's own log")
    versions = [
        store.overwrite_partitions(SPEC, rows(spark, [("a", D1, float(i))]), {"d": [D1]})
        for i in range(12)
    ]
    assert versions == list(range(1, 13))  # each write's version is its own commit's
    table = DeltaTable(lake.table_uri(SPEC.name))
    assert table.metadata().configuration["delta.checkpointInterval"] == "10"
    log = Path(lake.table_uri(SPEC.name)) / "_delta_log"
    assert list(log.glob("*.checkpoint.parquet")) and (log / "_last_checkpoint").exists()
    assert content(store) == [("a", D1, 11.0)]
