"""Reading a Delta snapshot into Arrow without Spark (jobs/common/delta/snapshot.py)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from jobs.common.delta.snapshot import read_arrow

DAYS = [dt.date(2013, 3, d) for d in (1, 2, 3, 4)]


def _table(tmp_path) -> str:
    """A day per partition, each row stamped at the end of its day (like gold's statistics)."""
    uri = str(tmp_path / "stats")
    for day in DAYS:
        end = dt.datetime.combine(day, dt.time(23, 59), tzinfo=dt.UTC)
        rows = pa.table(
            {
                "key": ["a", "b"],
                "as_of_date": [day, day],
                "event_ts": pa.array([end, end], pa.timestamp("us", "UTC")),
            }
        )
        write_deltalake(uri, rows, mode="append", partition_by=["as_of_date"])
    return uri


def test_a_time_window_reads_only_the_files_whose_statistics_overlap_it(tmp_path, monkeypatch):
    uri = _table(tmp_path)
    built = []
    stock = DeltaTable.to_pyarrow_dataset
    monkeypatch.setattr(
        DeltaTable,
        "to_pyarrow_dataset",
        lambda self, **kwargs: built.append(stock(self, **kwargs)) or built[-1],
    )
    low = dt.datetime(2013, 3, 2, 12, tzinfo=dt.UTC)
    high = dt.datetime(2013, 3, 3, 23, 59, tzinfo=dt.UTC)

    rows = read_arrow(uri, between=("event_ts", low, high))

    assert sorted(set(rows.column("as_of_date").to_pylist())) == DAYS[1:3]
    assert rows.num_rows == 4
    assert len(built[-1].files) == 2  # of the table's 4: the others are never opened


def test_a_time_window_with_naive_bounds_and_partitions_keeps_both_filters(tmp_path):
    uri = _table(tmp_path)
    low, high = dt.datetime(2013, 3, 1), dt.datetime(2013, 3, 5)  # naive: UTC

    rows = read_arrow(
        uri, partitions={"as_of_date": [DAYS[0], DAYS[3]]}, between=("event_ts", low, high)
    )

    assert sorted(set(rows.column("as_of_date").to_pylist())) == [DAYS[0], DAYS[3]]
    assert rows.num_rows == 4


def test_a_time_window_prunes_a_column_without_a_time_zone_too(tmp_path):
    uri = str(tmp_path / "naive")
    for day in DAYS:
        noon = pa.array([dt.datetime.combine(day, dt.time(12))], pa.timestamp("us"))
        write_deltalake(uri, pa.table({"key": ["a"], "event_ts": noon}), mode="append")
    low = dt.datetime(2013, 3, 2, tzinfo=dt.UTC)
    high = dt.datetime(2013, 3, 2, 23, tzinfo=dt.UTC)

    rows = read_arrow(uri, between=("event_ts", low, high))

    assert rows.column("event_ts").to_pylist() == [dt.datetime(2013, 3, 2, 12)]
