"""Interoperability: a table written by one Delta backend reads back identically through the
other, both ways, for every table shape the platform has, and either can go on writing it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from jobs.common.delta import open_tables
from jobs.common.delta.snapshot import read_arrow
from tests.common.test_delta_contract import D1, D2, D3, SPEC, content, rows

PAIRS = [("delta-rs", "spark"), ("spark", "delta-rs")]


def partitioned(store, spark):
    store.append(SPEC, rows(spark, [("a", D1, 1.0), ("b", D2, 2.0), ("c", D3, 3.0)]), run_id="r1")
    store.overwrite_partitions(SPEC, rows(spark, [("x", D2, 9.0)]), {"d": [D2]}, run_id="r2")
    return [("a", D1, 1.0), ("c", D3, 3.0), ("x", D2, 9.0)]


def merged(store, spark):
    store.append(SPEC, rows(spark, [("a", D1, 1.0), ("b", D1, 2.0)]), run_id="r1")
    store.merge(SPEC, rows(spark, [("b", D1, 20.0), ("c", D2, 3.0), ("a", D1, 1.0)]), run_id="r2")
    return [("a", D1, 1.0), ("b", D1, 20.0), ("c", D2, 3.0)]


def checkpointed(store, spark):
    for i in range(12):  # past a checkpoint (every 10 commits, on both backends)
        day = (D1, D2)[i % 2]
        store.overwrite_partitions(SPEC, rows(spark, [(f"k{i}", day, float(i))]), {"d": [day]})
    return [("k10", D1, 10.0), ("k11", D2, 11.0)]


SHAPES = {"partitioned": partitioned, "merged": merged, "checkpointed": checkpointed}


@pytest.mark.parametrize("writer,reader", PAIRS, ids=["rs-to-spark", "spark-to-rs"])
@pytest.mark.parametrize("shape", SHAPES)
def test_a_table_written_by_one_backend_reads_back_identically_through_the_other(
    spark, lake, shape, writer, reader
):
    written_by = open_tables(spark, lake, backend=writer)
    read_by = open_tables(spark, lake, backend=reader)
    expected = SHAPES[shape](written_by, spark)

    assert content(written_by) == content(read_by) == expected
    assert read_by.read(SPEC).schema == written_by.read(SPEC).schema
    assert read_by.version(SPEC) == written_by.version(SPEC)
    assert read_by.count_rows(SPEC, {"d": [D1]}) == written_by.count_rows(SPEC, {"d": [D1]})
    mine, theirs = read_by.history(SPEC), written_by.history(SPEC)
    assert [(h["version"], h["run_id"]) for h in mine] == [
        (h["version"], h["run_id"]) for h in theirs
    ]
    # Python-side jobs (scoring, training sets, Feast's offline store) read through delta-rs
    arrow = read_arrow(lake.table_uri(SPEC.name), columns=["k", "d", "v"]).to_pylist()
    assert sorted((r["k"], r["d"], r["v"]) for r in arrow) == expected
    if shape == "checkpointed":
        log = Path(lake.table_uri(SPEC.name)) / "_delta_log"
        assert list(log.glob("*.checkpoint.parquet"))

    # ...and the other backend can go on writing it, readable by the first
    version = read_by.overwrite_partitions(
        SPEC, rows(spark, [("z", D3, 7.0)]), {"d": [D3]}, run_id="other"
    )
    assert version == written_by.version(SPEC)
    assert ("z", D3, 7.0) in content(written_by)
    assert written_by.history(SPEC, limit=1)[0]["run_id"] == "other"
    first = written_by.read(SPEC).where("k = 'z'").first()
    assert first["ts"] == dt.datetime(2013, 1, 1, 12)
