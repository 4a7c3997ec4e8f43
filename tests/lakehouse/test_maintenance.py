"""Table maintenance (jobs/lakehouse/maintenance.py) on real Delta tables of the platform's own
shapes: bronze (partitioned by ``_logical_date``: a folder name vacuum must not take for a
hidden one), quarantine (two partition columns), a merged dimension (unpartitioned).

Most tests write through the delta-rs backend with Arrow rows (no Spark); the last one writes
and reads through Spark with both backends, as the stages do."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyarrow import fs as pafs

from jobs.common import storage
from jobs.common.delta.rs import DeltaRsTables
from jobs.lakehouse import maintenance
from jobs.lakehouse import tables as tb

D1, D2 = dt.date(2013, 1, 1), dt.date(2013, 1, 2)
DAY = 86400
BRONZE = tb.BRONZE["flights"]


def bronze_rows(day: dt.date, *flights: int) -> pa.Table:
    rows = [
        {"flight": str(n), "carrier": "UA", "_source_file": f"f{n}.csv", "_logical_date": day}
        for n in flights
    ]
    return pa.Table.from_pylist(rows, schema=BRONZE.arrow_schema)


def quarantine_rows(source: str, day: dt.date, *records: str) -> pa.Table:
    rows = [
        {"source_table": source, "logical_date": day, "record": r, "reason": "MALFORMED_ROW"}
        for r in records
    ]
    return pa.Table.from_pylist(rows, schema=tb.QUARANTINE.arrow_schema)


def airline_rows(*codes: str) -> pa.Table:
    rows = [{"carrier": c, "name": f"{c} Airlines"} for c in codes]
    return pa.Table.from_pylist(rows, schema=tb.SILVER_AIRLINES.arrow_schema)


def content(uri: str, version: int | None = None) -> list[tuple]:
    table = DeltaTable(uri, version=version).to_pyarrow_table()
    return sorted(tuple(str(v) for v in row.values()) for row in table.to_pylist())


def flights(uri: str, version: int | None = None) -> list[tuple[str, str]]:
    """(day, flight) of every bronze row, sorted."""
    rows = DeltaTable(uri, version=version).to_pyarrow_table(columns=["_logical_date", "flight"])
    return sorted((str(r["_logical_date"]), r["flight"]) for r in rows.to_pylist())


def files_per_partition(uri: str) -> dict[tuple, int]:
    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pylist()
    counts: dict[tuple, int] = {}
    for action in actions:
        key = tuple(str(v) for k, v in sorted(action.items()) if k.startswith("partition."))
        counts[key] = counts.get(key, 0) + 1
    return counts


def plant_orphan(folder: Path, age_s: float, rows: pa.Table) -> Path:
    """A Parquet file named like a delta-rs data file that no commit references: what a write
    killed between writing its files and committing leaves."""
    path = folder / f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
    pq.write_table(rows, path)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def records(lake, run_id: str) -> dict[str, dict]:
    rows = DeltaTable(lake.table_uri(tb.MAINTENANCE.name)).to_pyarrow_table().to_pylist()
    return {r["table_name"]: r for r in rows if r["run_id"] == run_id}


@pytest.fixture()
def store(lake):
    """The delta-rs backend without Spark: every write here is Arrow rows."""
    return DeltaRsTables(None, lake)


@pytest.fixture()
def three_tables(store, lake):
    """Several small writes to one partition of each table, as nights and re-runs leave them;
    returns the bronze version whose content a later overwrite replaced."""
    store.append(BRONZE, bronze_rows(D1, 1, 2))
    old_version = store.append(BRONZE, bronze_rows(D1, 3))
    store.append(BRONZE, bronze_rows(D2, 10))
    store.overwrite_partitions(BRONZE, bronze_rows(D1, 4), {"_logical_date": [D1]})  # a re-run
    store.append(BRONZE, bronze_rows(D1, 5))
    store.append(BRONZE, bronze_rows(D1, 6))

    for records_ in (["a"], ["b", "c"], ["d"]):
        store.append(tb.QUARANTINE, quarantine_rows("flights", D1, *records_))
    for records_ in (["w1"], ["w2"]):
        store.append(tb.QUARANTINE, quarantine_rows("weather", D1, *records_))
    store.append(tb.QUARANTINE, quarantine_rows("flights", D2, "e"))

    for codes in (["AA"], ["UA", "AA"], ["DL"]):  # each merge inserts its new keys in a file
        store.merge(tb.SILVER_AIRLINES, airline_rows(*codes))
    return old_version


def test_maintenance_compacts_vacuums_orphans_keeps_the_window_and_records(
    store, lake, three_tables
):
    bronze = lake.table_uri(BRONZE.name)
    quarantine = lake.table_uri(tb.QUARANTINE.name)
    airlines = lake.table_uri(tb.SILVER_AIRLINES.name)
    uris = (bronze, quarantine, airlines)
    old_version = three_tables
    old_rows = flights(bronze, old_version)
    assert old_rows == [(str(D1), "1"), (str(D1), "2"), (str(D1), "3")]
    assert flights(bronze) == [(str(D1), "4"), (str(D1), "5"), (str(D1), "6"), (str(D2), "10")]

    before = {uri: content(uri) for uri in uris}
    assert files_per_partition(bronze) == {(str(D1),): 3, (str(D2),): 1}
    assert files_per_partition(quarantine) == {
        (str(D1), "flights"): 3,
        (str(D1), "weather"): 2,
        (str(D2), "flights"): 1,
    }
    assert files_per_partition(airlines) == {(): 3}
    day1 = Path(bronze) / f"_logical_date={D1}"
    on_disk_before = set(day1.glob("*.parquet"))
    data = bronze_rows(D1, 99).drop(["_logical_date"])
    old_orphan = plant_orphan(day1, 10 * DAY, data)  # older than the 7-day window
    young_orphan = plant_orphan(day1, 1 * DAY, data)
    orphan_bytes = old_orphan.stat().st_size
    (Path(lake.lakehouse) / "tmp" / "not_a_table").mkdir(parents=True)  # not taken for one

    result = maintenance.run(lake, "maint-1", quiet_hours=0)

    # one file per partition now, and the same rows
    assert files_per_partition(bronze) == {(str(D1),): 1, (str(D2),): 1}
    assert set(files_per_partition(quarantine).values()) == {1}
    assert files_per_partition(airlines) == {(): 1}
    assert {uri: content(uri) for uri in uris} == before
    # the killed write's old orphan is gone; the young one and every file a version of the
    # window references (the replaced day's, the compacted ones) are kept
    assert not old_orphan.exists()
    assert young_orphan.exists()
    assert on_disk_before <= set(day1.glob("*.parquet"))
    # time travel to the version the re-run replaced, inside the window, still reads it
    assert flights(bronze, old_version) == old_rows
    # a checkpoint at the newest version
    table = DeltaTable(bronze)
    log = Path(bronze) / "_delta_log"
    assert (log / f"{table.version():020d}.checkpoint.parquet").exists()
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == table.version()

    rows = records(lake, "maint-1")
    assert sorted(rows) == [BRONZE.name, tb.SILVER_AIRLINES.name, tb.QUARANTINE.name]
    b = rows[BRONZE.name]
    assert (b["status"], b["retention_hours"]) == ("ok", 168)
    assert (b["files_before"], b["files_after"]) == (4, 2)
    assert (b["files_removed"], b["files_added"], b["partitions_compacted"]) == (3, 1, 1)
    assert (b["vacuumed_files"], b["vacuumed_bytes"]) == (1, orphan_bytes)
    assert b["version_after"] == b["checkpoint_version"] == table.version()
    assert b["version_after"] > b["version_before"]
    assert b["bytes_after"] == sum(
        a["size_bytes"] for a in pa.table(table.get_add_actions(flatten=True)).to_pylist()
    )
    q, a = rows[tb.QUARANTINE.name], rows[tb.SILVER_AIRLINES.name]
    assert (q["files_before"], q["files_after"], q["partitions_compacted"]) == (6, 3, 2)
    assert (q["files_removed"], q["vacuumed_files"]) == (5, 0)
    assert (a["files_before"], a["files_after"], a["files_removed"]) == (3, 1, 3)
    assert (result["files_before"], result["files_after"], result["vacuumed_files"]) == (13, 6, 1)

    # A window of 0 hours: every file no current version needs goes, and with it time travel
    # to the replaced version (what the 168-hour window protected above).
    again = maintenance.run(lake, "maint-2", retention_hours=0, quiet_hours=0)
    assert not young_orphan.exists()
    assert {uri: content(uri) for uri in uris} == before
    with pytest.raises(Exception):  # noqa: B017 - its files are gone
        flights(bronze, old_version)
    rows = records(lake, "maint-2")
    assert tb.MAINTENANCE.name in rows  # the record table is maintained too
    # bronze: the 2 files the re-run replaced, the 3 compacted away, the young orphan
    assert rows[BRONZE.name]["vacuumed_files"] == 6
    assert again["files_removed"] == 0  # nothing left to compact


def test_the_window_counts_from_a_files_removal_not_from_its_age(store, lake):
    """A file written 30 days ago and replaced today belongs to a version inside the window:
    vacuum keeps it (only files no commit ever referenced are judged by their age)."""
    uri = lake.table_uri(BRONZE.name)
    store.append(BRONZE, bronze_rows(D1, 1))
    then = time.time() - 30 * DAY
    for action in pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pylist():
        os.utime(Path(uri) / action["path"], (then, then))
    version = DeltaTable(uri).version()
    store.overwrite_partitions(BRONZE, bronze_rows(D1, 2), {"_logical_date": [D1]})

    maintenance.run(lake, "maint-old-files", quiet_hours=0)

    assert flights(uri, version) == [(str(D1), "1")]


def test_a_pinned_version_outside_the_window_keeps_its_files(store, lake, three_tables):
    bronze = lake.table_uri(BRONZE.name)
    pinned = three_tables
    old_rows = flights(bronze, pinned)

    maintenance.run(
        lake, "maint-pin", retention_hours=0, quiet_hours=0, keep_versions={BRONZE.name: [pinned]}
    )

    assert flights(bronze, pinned) == old_rows == [(str(D1), "1"), (str(D1), "2"), (str(D1), "3")]
    assert records(lake, "maint-pin")[BRONZE.name]["vacuumed_files"] == 3  # those it needs not


def test_recently_written_partitions_are_left_for_the_next_run(store, lake):
    uri = lake.table_uri(BRONZE.name)
    for day in (D1, D1, D2, D2):
        store.append(BRONZE, bronze_rows(day, 1))

    maintenance.run(lake, "maint-quiet", quiet_hours=1)  # everything was written just now

    assert files_per_partition(uri) == {(str(D1),): 2, (str(D2),): 2}
    row = records(lake, "maint-quiet")[BRONZE.name]
    assert (row["partitions_deferred"], row["partitions_compacted"], row["files_removed"]) == (
        2,
        0,
        0,
    )
    maintenance.run(lake, "maint-now", quiet_hours=0)
    assert files_per_partition(uri) == {(str(D1),): 1, (str(D2),): 1}


def test_a_compaction_that_loses_to_a_writer_is_a_recorded_skip(store, lake, monkeypatch):
    """The nightly writer re-runs D1 while compaction is reading D1: delta-rs refuses the
    compaction's commit; the writer's rows stand, the run goes on and does not fail."""
    uri = lake.table_uri(BRONZE.name)
    for n in (1, 2, 3):
        store.append(BRONZE, bronze_rows(D1, n))
    for n in (10, 11):
        store.append(BRONZE, bronze_rows(D2, n))
    opened = maintenance.compaction_snapshot

    def racing_writer(table_uri: str) -> DeltaTable:
        snapshot = opened(table_uri)
        store.overwrite_partitions(BRONZE, bronze_rows(D1, 7), {"_logical_date": [D1]})
        return snapshot

    monkeypatch.setattr(maintenance, "compaction_snapshot", racing_writer)

    result = maintenance.run(lake, "maint-race", quiet_hours=0)

    row = records(lake, "maint-race")[BRONZE.name]
    assert row["status"] == "conflict" and "lost to a writer" in row["detail"]
    assert result["conflicts"] == 1 and result["failed"] == []
    assert flights(uri) == [(str(D1), "7"), (str(D2), "10"), (str(D2), "11")]  # the writer's
    assert files_per_partition(uri) == {(str(D1),): 1, (str(D2),): 2}
    assert row["files_removed"] == 0
    assert row["checkpoint_version"] == row["version_after"] == DeltaTable(uri).version()

    monkeypatch.setattr(maintenance, "compaction_snapshot", opened)
    maintenance.run(lake, "maint-after-race", quiet_hours=0)
    assert files_per_partition(uri) == {(str(D1),): 1, (str(D2),): 1}
    assert flights(uri) == [(str(D1), "7"), (str(D2), "10"), (str(D2), "11")]


def test_a_table_that_fails_is_recorded_and_fails_the_run_after_the_others(store, lake):
    store.append(BRONZE, bronze_rows(D1, 1))
    store.append(BRONZE, bronze_rows(D1, 2))
    broken = Path(lake.table_uri("bronze.broken")) / "_delta_log"
    broken.mkdir(parents=True)
    (broken / f"{0:020d}.json").write_text("not a commit\n")

    with pytest.raises(maintenance.MaintenanceFailed, match="bronze.broken"):
        maintenance.run(lake, "maint-broken", quiet_hours=0)

    rows = records(lake, "maint-broken")
    assert rows["bronze.broken"]["status"] == "failed"
    assert "DeltaError" in rows["bronze.broken"]["detail"]
    assert rows[BRONZE.name]["status"] == "ok"
    assert files_per_partition(lake.table_uri(BRONZE.name)) == {(str(D1),): 1}


def first_write_killed_before_its_commit(store, spec, rows, age_s: float) -> list[Path]:
    """A table's first write whose commit never came (the crash harness's leftover): delta-rs's
    data files of a real first write, its log taken away, dated ``age_s`` back; returns them."""
    folder = Path(store.settings.table_uri(spec.name))
    before = set(folder.rglob("*.parquet"))
    store.append(spec, rows)
    for commit in (folder / "_delta_log").iterdir():
        commit.unlink()
    (folder / "_delta_log").rmdir()
    files = sorted(set(folder.rglob("*.parquet")) - before)
    then = time.time() - age_s
    for file in files:
        os.utime(file, (then, then))
    return files


def test_a_first_write_killed_before_its_commit_is_vacuumed_table_or_not(store, lake):
    """A killed first write leaves data files in a folder with no Delta log. Once older than
    the window they are deleted: in a folder that is still no table (and the folder with them),
    and in one a later first write made a table (where they are its orphans). Younger ones, as
    a first write in progress has, stay."""
    quarantine = Path(lake.table_uri(tb.QUARANTINE.name))
    old = first_write_killed_before_its_commit(
        store, tb.QUARANTINE, quarantine_rows("flights", D1, "a"), 10 * DAY
    )
    young = first_write_killed_before_its_commit(
        store, tb.QUARANTINE, quarantine_rows("flights", D2, "b"), 1 * DAY
    )
    bronze = Path(lake.table_uri(BRONZE.name))
    orphans = first_write_killed_before_its_commit(store, BRONZE, bronze_rows(D1, 1), 10 * DAY)
    store.append(BRONZE, bronze_rows(D1, 2))  # the re-run: the table's first commit
    assert not DeltaTable.is_deltatable(str(quarantine)) and old and young and orphans

    maintenance.run(lake, "maint-unlogged", quiet_hours=0)

    assert not any(f.exists() for f in old + orphans)
    assert all(f.exists() for f in young)
    assert flights(str(bronze)) == [(str(D1), "2")]
    rows = records(lake, "maint-unlogged")
    q = rows[tb.QUARANTINE.name]
    assert (q["status"], q["vacuumed_files"], q["files_after"]) == ("ok", len(old), len(young))
    assert "no Delta log" in q["detail"] and q["version_after"] is None
    assert rows[BRONZE.name]["vacuumed_files"] == len(orphans)

    maintenance.run(lake, "maint-unlogged-0", retention_hours=0, quiet_hours=0)
    assert not quarantine.exists()  # its last files gone, the folder with them
    assert records(lake, "maint-unlogged-0")[tb.QUARANTINE.name]["vacuumed_files"] == len(young)
    assert tb.QUARANTINE.name not in maintenance.unlogged_folders(lake)


def test_a_window_longer_than_the_tables_retention_raises_it_once(store, lake):
    """A checkpoint forgets removals older than delta.deletedFileRetentionDuration (7 days):
    a longer window needs the property raised, or files of versions inside it would be
    judged by their age alone."""
    uri = lake.table_uri(tb.SILVER_AIRLINES.name)
    store.merge(tb.SILVER_AIRLINES, airline_rows("AA"))

    maintenance.run(lake, "maint-long", retention_hours=1000, quiet_hours=0)
    configuration = DeltaTable(uri).metadata().configuration
    assert configuration["delta.deletedFileRetentionDuration"] == "interval 1000 hours"
    assert configuration["delta.logRetentionDuration"] == "interval 1000 hours"
    version = DeltaTable(uri).version()

    maintenance.run(lake, "maint-long-again", retention_hours=1000, quiet_hours=0)
    assert DeltaTable(uri).version() == version  # nothing to do commits nothing


@pytest.mark.parametrize(
    "text,hours",
    [("interval 7 days", 168), ("interval 720 hours", 720), ("2 weeks", 336), (None, 168)],
)
def test_delta_interval_properties_are_read(text, hours):
    default = dt.timedelta(days=7)
    assert maintenance.interval(text, default) == dt.timedelta(hours=hours)


@pytest.mark.parametrize("backend", ["delta-rs", "spark"])
def test_tables_written_through_spark_read_the_same_after_maintenance(spark, lake, backend):
    """The stages' own path: frames written by either backend, read back through it (the
    delta-rs backend lists the compacted files from the log; Spark-native reads the table),
    the current snapshot and a version inside the window."""
    from jobs.common.delta import open_tables

    def frame(*flights: int):
        rows = bronze_rows(D1, *flights).to_pylist()
        return spark.createDataFrame([tuple(r.values()) for r in rows], BRONZE.schema)

    tables = open_tables(spark, lake, backend=backend)
    tables.append(BRONZE, frame(1))
    old = tables.append(BRONZE, frame(2))
    tables.overwrite_partitions(BRONZE, frame(3), {"_logical_date": [D1]})
    tables.append(BRONZE, frame(4))

    maintenance.run(lake, f"maint-{backend}", quiet_hours=0)

    assert files_per_partition(lake.table_uri(BRONZE.name)) == {(str(D1),): 1}
    assert sorted(r["flight"] for r in tables.read(BRONZE).collect()) == ["3", "4"]
    assert sorted(r["flight"] for r in tables.read(BRONZE, version=old).collect()) == ["1", "2"]


def test_the_dag_runs_the_job_weekly_with_the_platforms_retries_and_alert(store, lake, monkeypatch):
    """The DAG file reads its schedule from the environment (the DAG processor imports no job
    code): its default must stay the settings' default. Its task runs the job."""
    from jobs.common.settings import Settings

    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "dags"))
    monkeypatch.delenv("NIGHTJAR_MAINTENANCE_SCHEDULE", raising=False)
    import nightjar_alerts
    import nightjar_maintenance

    default = Settings.model_fields["maintenance_schedule"].default
    assert nightjar_maintenance.maintenance_schedule() == default == "0 8 * * 0"
    dag = nightjar_maintenance.dag
    assert dag.timetable.summary == default
    assert dag.max_active_runs == 1 and not dag.catchup
    task = dag.get_task("maintain")
    assert task.retries == nightjar_alerts.DEFAULT_ARGS["retries"] == 2
    assert isinstance(task.on_failure_callback[0], nightjar_alerts.TaskFailureAlert)

    store.append(BRONZE, bronze_rows(D1, 1))
    store.append(BRONZE, bronze_rows(D1, 2))
    monkeypatch.setenv("NIGHTJAR_LAKEHOUSE_URI", lake.lakehouse)
    monkeypatch.setenv("NIGHTJAR_MAINTENANCE_QUIET_HOURS", "0")
    result = nightjar_maintenance.maintain.function(run_id="scheduled__2026-01-04T08:00:00")
    assert (result["files_before"], result["files_after"], result["failed"]) == (2, 1, [])
    assert records(lake, "scheduled__2026-01-04T08:00:00")[BRONZE.name]["files_removed"] == 2


def test_maintenance_of_a_lakehouse_in_a_bucket(object_store, lake, tmp_path):
    """The same on S3 (the run's private server): the tables are found by listing the bucket,
    a killed write's orphan object is vacuumed once older than the window (S3 keeps each
    object's upload time), the checkpoint and the record are written there."""
    object_store.create_bucket("nightjar-maint")
    bucket = lake.model_copy(
        update={"s3_bucket": "nightjar-maint", "lakehouse_uri": None, "state_dir": tmp_path}
    )
    uri = bucket.table_uri(BRONZE.name)
    assert uri == "s3://nightjar-maint/lakehouse/bronze/flights"
    s3 = DeltaRsTables(None, bucket)
    first = s3.append(BRONZE, bronze_rows(D1, 1))
    for n in (2, 3):
        s3.append(BRONZE, bronze_rows(D1, n))
    filesystem, root = storage.filesystem(uri)
    orphan = f"{root}/_logical_date={D1}/part-00000-{uuid.uuid4()}-c000.snappy.parquet"
    with filesystem.open_output_stream(orphan) as out:
        pq.write_table(bronze_rows(D1, 99).drop(["_logical_date"]), out)

    maintenance.run(bucket, "maint-s3", quiet_hours=0)

    assert files_per_partition(uri) == {(str(D1),): 1}
    assert flights(uri) == [(str(D1), "1"), (str(D1), "2"), (str(D1), "3")]
    assert flights(uri, first) == [(str(D1), "1")]
    assert filesystem.get_file_info(orphan).size > 0  # uploaded just now: inside the window
    version = DeltaTable(uri).version()
    checkpoint = f"{root}/_delta_log/{version:020d}.checkpoint.parquet"
    assert filesystem.get_file_info(checkpoint).size > 0
    row = records(bucket, "maint-s3")[BRONZE.name]
    assert (row["files_before"], row["files_after"], row["files_removed"]) == (3, 1, 3)

    maintenance.run(bucket, "maint-s3-all", retention_hours=0, quiet_hours=0)
    assert filesystem.get_file_info(orphan).type == pafs.FileType.NotFound
    assert records(bucket, "maint-s3-all")[BRONZE.name]["vacuumed_files"] == 4  # 3 + orphan
    assert flights(uri) == [(str(D1), "1"), (str(D1), "2"), (str(D1), "3")]
