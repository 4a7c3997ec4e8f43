"""The Delta I/O contract: the same cases against every backend.

The Spark-native backend needs the Delta jars on Spark's classpath (`make setup` fetches them);
where they are missing its cases fail, saying so: both backends are first-class.
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


# delta-rs-executors: the delta-rs backend with Spark's executors writing the files
BACKENDS = ["delta-rs", "spark", "delta-rs-executors"]


@pytest.fixture(params=BACKENDS)
def store(request, spark, lake):
    if request.param == "spark":
        available, why = spark_delta_available(spark, probe=True)
        assert available, f"Spark-native Delta backend not available: {why}"
    if request.param == "delta-rs-executors":
        executors = lake.model_copy(update={"delta_rs_write_path": "executors"})
        return open_tables(spark, executors, backend="delta-rs")
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
    # an Arrow frame without rows empties the partition (a clean day's quarantine)
    store.overwrite_partitions(SPEC, data.slice(0, 0), {"d": [D1]})
    assert content(store) == []


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
    # per partition, a partition with no rows included: what a stage over an interval reconciles
    store.append(SPEC, rows(spark, [("c", D2, 3.0)]))
    assert store.count_rows_per(SPEC, "d", [D1, D2, D3]) == {D1: 1, D2: 2, D3: 0}


def test_history_lists_every_commit_newest_first_with_its_run_id(store, spark):
    store.append(SPEC, rows(spark, [("a", D1, 1.0)]), run_id="r-41")
    store.overwrite_partitions(SPEC, rows(spark, [("a", D1, 2.0)]), {"d": [D1]}, run_id="r-42")
    history = store.history(SPEC)
    assert [h["version"] for h in history] == [2, 1, 0]
    assert [h["operation"] for h in history[:2]] == ["WRITE", "WRITE"]
    assert [h["run_id"] for h in history] == ["r-42", "r-41", None]
    assert history[0]["timestamp"] >= history[1]["timestamp"]
    assert history[0]["timestamp"].tzinfo is not None
    assert store.history(SPEC, limit=1)[0]["version"] == 2


def test_a_table_with_another_schema_is_refused_before_writing(store, spark):
    """Same column names, another type: the write is refused and the table left as it was."""
    store.append(SPEC, rows(spark, [("a", D1, 1.0)]))
    as_text = TableSpec(
        SPEC.name,
        T.StructType(
            [f if f.name != "v" else T.StructField("v", T.StringType()) for f in SPEC.schema]
        ),
        SPEC.partition_by,
        SPEC.key,
    )
    frame = spark.createDataFrame([("b", D2, "x", None)], as_text.schema)
    with pytest.raises(DeltaIOError, match=r"does not match the code's schema.*'v'"):
        store.append(as_text, frame)
    assert store.version(SPEC) == 1
    assert content(store) == [("a", D1, 1.0)]


def test_time_travel_reads_every_version_as_it_was(store, spark):
    v1 = store.append(SPEC, rows(spark, [("a", D1, 1.0)]))
    v2 = store.overwrite_partitions(SPEC, rows(spark, [("a", D1, 2.0)]), {"d": [D1]})
    v3 = store.merge(SPEC, rows(spark, [("b", D2, 3.0)]))
    assert (v1, v2, v3) == (1, 2, 3)
    assert content(store, version=0) == []
    assert content(store, version=v1) == [("a", D1, 1.0)]
    assert content(store, version=v2) == [("a", D1, 2.0)]
    assert content(store, version=v3) == [("a", D1, 2.0), ("b", D2, 3.0)]
    assert store.versions_read[SPEC.name] == v3


def test_concurrent_writers_to_different_partitions_both_commit(store, spark):
    """Two runs of a backfill replace two days of one table at once: both commits land (the
    loser of the race retries against the winner's version), and nothing else changes."""
    from concurrent.futures import ThreadPoolExecutor

    store.append(SPEC, rows(spark, [("a", D1, 1.0), ("b", D2, 2.0), ("c", D3, 3.0)]))
    writes = [(D1, "x", 10.0), (D2, "y", 20.0)]
    with ThreadPoolExecutor(len(writes)) as pool:
        versions = list(
            pool.map(
                lambda w: store.overwrite_partitions(
                    SPEC, rows(spark, [(w[1], w[0], w[2])]), {"d": [w[0]]}, run_id=f"run-{w[1]}"
                ),
                writes,
            )
        )
    assert sorted(versions) == [2, 3]
    assert content(store) == [("c", D3, 3.0), ("x", D1, 10.0), ("y", D2, 20.0)]
    assert {h["run_id"] for h in store.history(SPEC, limit=2)} == {"run-x", "run-y"}


def test_writers_that_find_no_table_create_it_at_once_and_all_commit(store, spark):
    """A backfill's first days: each run finds no table and creates it; the creations race and
    every day's write still lands."""
    from concurrent.futures import ThreadPoolExecutor

    writes = [(D1, "x", 10.0), (D2, "y", 20.0), (D3, "z", 30.0)]
    with ThreadPoolExecutor(len(writes)) as pool:
        list(
            pool.map(
                lambda w: store.overwrite_partitions(
                    SPEC, rows(spark, [(w[1], w[0], w[2])]), {"d": [w[0]]}
                ),
                writes,
            )
        )
    assert content(store) == [("x", D1, 10.0), ("y", D2, 20.0), ("z", D3, 30.0)]


def test_vacuum_deletes_unreferenced_files_and_keeps_the_snapshot(store, spark, lake):
    root = Path(lake.table_uri(SPEC.name))

    def data_files():
        return [p for p in root.rglob("*.parquet") if "_delta_log" not in p.parts]

    store.append(SPEC, rows(spark, [("a", D1, 1.0), ("b", D2, 2.0)]))
    store.overwrite_partitions(SPEC, rows(spark, [("a", D1, 5.0)]), {"d": [D1]})
    files_before = data_files()
    assert store.vacuum(SPEC) == 0  # nothing is older than the default retention of 7 days
    deleted = store.vacuum(SPEC, retain_hours=0, enforce=False)
    files_after = data_files()
    assert deleted == len(files_before) - len(files_after) >= 1
    assert content(store) == [("a", D1, 5.0), ("b", D2, 2.0)]
    with pytest.raises(Exception):  # noqa: B017 - the old version's files are gone
        store.read(SPEC, version=1).collect()


def test_delta_rs_writes_a_real_delta_log(spark, lake):
    store = open_tables(spark, lake, backend="delta-rs")
    store.overwrite_partitions(SPEC, rows(spark, [("a", D1, 1.0)]), {"d": [D1]}, run_id="r-7")
    table = DeltaTable(lake.table_uri(SPEC.name))
    assert table.metadata().partition_columns == ["d"]
    assert '"nightjar.run_id": "r-7"' in table.history(1)[0]["userMetadata"]


def test_both_backends_checkpoint_every_ten_commits_and_writes_return_their_version(
    store, spark, lake
):
    """Opening a table replays the commits since its last checkpoint; delta-rs's default of one
    checkpoint per 100 commits made every open of a daily table slower as history grew."""
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


def test_executor_written_files_carry_delta_statistics_and_a_refusal_leaves_none(spark, lake):
    """delta_rs_write_path=executors: Spark writes the files, delta-rs commits them with the
    statistics data skipping needs, taken from the files' footers; a refused write deletes
    its files; Delta Lake's own reader reads the table."""
    executors = open_tables(
        spark, lake.model_copy(update={"delta_rs_write_path": "executors"}), backend="delta-rs"
    )
    data = [("a", D1, 1.0), ("b", D1, None), ("c", D2, 3.5)]
    frame = spark.createDataFrame(
        [(k, d, v, dt.datetime(2013, 1, 1, 12, 0, 0, 123456)) for k, d, v in data], SPEC.schema
    )
    executors.append(SPEC, frame.repartition(1))
    root = Path(lake.table_uri(SPEC.name))
    actions = pa.table(DeltaTable(str(root)).get_add_actions(flatten=True)).to_pylist()
    assert all(a["path"].startswith("spark-write-") for a in actions)
    by_day = {a["partition.d"]: a for a in actions}
    assert sorted(by_day) == [D1, D2]
    first = by_day[D1]
    assert (first["num_records"], first["null_count.v"], first["null_count.k"]) == (2, 1, 0)
    assert (first["min.k"], first["max.k"], first["min.v"], first["max.v"]) == ("a", "b", 1.0, 1.0)
    # timestamps keep milliseconds: the bounds are widened to still hold
    assert first["min.ts"] <= dt.datetime(2013, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert first["max.ts"] >= dt.datetime(2013, 1, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)

    folders = sorted(p.name for p in root.iterdir())
    with pytest.raises(DeltaIOError, match="1 of 2 rows fall outside"):
        executors.overwrite_partitions(
            SPEC, rows(spark, [("x", D1, 1.0), ("y", D3, 2.0)]), {"d": [D1]}
        )
    assert sorted(p.name for p in root.iterdir()) == folders  # the refused write's files are gone

    native = open_tables(spark, lake, backend="spark")
    assert (
        content(native) == content(executors) == [("a", D1, 1.0), ("b", D1, None), ("c", D2, 3.5)]
    )
