"""The helpers a stage's rows go through (jobs/lakehouse/frames.py), on Arrow and on Spark."""

import datetime as dt

import pyarrow as pa

from jobs.lakehouse import frames


def day(n: int) -> dt.date:
    return dt.date(2013, 1, n)


SNAPSHOTS = pa.table(
    {
        "faa": ["EWR", "EWR", "EWR", "JFK", "JFK", "JFK", "LGA", "LGA", "ORD"],
        "tzone": ["NY", "NY", "NY", None, None, "NY", "NY", "NY", "CHI"],
        "alt": [18, 18, 19, 13, 13, 13, 22, 22, 672],
        "_logical_date": [day(1), day(2), day(3), day(1), day(2), day(3), day(1), day(3), day(2)],
    }
)
# unchanged days join up; a change (EWR's altitude, JFK's zone from null) or a missing day
# (LGA on the 2nd) starts a new span; nulls equal nulls
EXPECTED = [
    ("EWR", "NY", 18, day(1), day(2)),
    ("EWR", "NY", 19, day(3), day(3)),
    ("JFK", None, 13, day(1), day(2)),
    ("JFK", "NY", 13, day(3), day(3)),
    ("LGA", "NY", 22, day(1), day(1)),
    ("LGA", "NY", 22, day(3), day(3)),
    ("ORD", "CHI", 672, day(2), day(2)),
]


def rows(table) -> list[tuple]:
    return sorted((tuple(r.values()) for r in table.to_pylist()), key=lambda r: (r[0], r[3]))


def test_spans_of_daily_snapshots_in_arrow():
    spans = frames.spans(SNAPSHOTS, "faa", "_logical_date")
    assert spans.column_names == ["faa", "tzone", "alt", "_from", "_to"]
    assert rows(spans) == EXPECTED


def test_spans_of_daily_snapshots_on_spark(spark):
    spans = frames.spans(spark.createDataFrame(SNAPSHOTS), "faa", "_logical_date")
    assert spans.columns == ["faa", "tzone", "alt", "_from", "_to"]
    assert rows(spans.toArrow()) == EXPECTED


def test_one_day_is_one_span_per_key():
    one = SNAPSHOTS.filter(pa.compute.equal(SNAPSHOTS["_logical_date"], day(3)))
    assert rows(frames.spans(one, "faa", "_logical_date")) == [
        ("EWR", "NY", 19, day(3), day(3)),
        ("JFK", "NY", 13, day(3), day(3)),
        ("LGA", "NY", 22, day(3), day(3)),
    ]


def test_to_pandas_leaves_spark_connects_query_metrics_behind(spark):
    """Spark Connect attaches the query's metrics to a collected frame, and pandas deep-copies
    attrs into every frame derived from it; the gates and the trend bands collect without."""
    frame = spark.createDataFrame([(1,), (2,)], "x int")
    assert "metrics" in frame.toPandas().attrs  # what the helper is for
    rows = frames.to_pandas(frame)
    assert rows.x.tolist() == [1, 2] and rows.attrs == {}
    assert rows[rows.x > 1].attrs == {}
