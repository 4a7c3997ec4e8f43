"""Silver: typing, UTC timestamps, quarantine with reasons, reconciliation."""

import datetime as dt
import json

import pandas as pd
import pytest
from pyspark.sql import functions as F

from jobs.lakehouse import bronze, silver, source
from jobs.lakehouse import tables as tb
from tests.lakehouse.helpers import edit_row, land, read_csv, write_csv


def build(spark, tables, lake, day):
    bronze.run(spark, tables, lake, day, "r")
    return silver.run(spark, tables, lake, day, "r")


@pytest.mark.parametrize("day", [dt.date(2013, 3, 10), dt.date(2013, 7, 4)])
def test_clean_day_is_accepted_whole_with_correct_utc_times(spark, tables, lake, day):
    land(lake, day)
    counts = build(spark, tables, lake, day)
    src = source.table("flights", day=day)
    assert counts["flights"] == {
        "landed": len(src),
        "accepted": len(src),
        "quarantined": 0,
        "duplicates": 0,
    }
    df = tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": [day]})
    # The source's own UTC hour agrees with our local-time + time-zone conversion, DST included.
    assert df.where(F.date_trunc("hour", "sched_dep_utc") != F.col("time_hour")).count() == 0
    assert df.where("is_cancelled").count() == int((src.dep_time == "NA").sum())
    late = df.where("dep_utc != sched_dep_utc + make_interval(0,0,0,0,0,cast(dep_delay AS int),0)")
    assert late.count() == 0
    one = df.where(
        "flight_id = '{}'".format(
            f"{day:%Y%m%d}-{src.carrier.iloc[0]}-{src.flight.iloc[0]}-{src.origin.iloc[0]}"
        )
    ).first()
    assert one["carrier_name"] and one["origin_tz"] == "America/New_York"


def test_bad_records_are_quarantined_with_reasons_and_counts_reconcile(spark, tables, lake):
    day = dt.date(2013, 2, 3)
    folder = land(lake, day)
    path = folder / "flights.csv"
    edit_row(path, 0, dep_delay="twelve")  # wrong type
    edit_row(path, 1, carrier="ZZ")  # unknown carrier
    edit_row(path, 2, day="4")  # a row of another day
    edit_row(path, 3, sched_dep_time="2575")  # not a time
    rows = read_csv(path)
    rows.append(rows[10])  # an exact duplicate
    rows.append(rows[11][:7])  # a truncated line
    write_csv(path, rows)

    counts = build(spark, tables, lake, day)["flights"]
    landed = len(rows) - 1
    assert counts == {"landed": landed, "accepted": landed - 6, "quarantined": 5, "duplicates": 1}

    q = tables.read(tb.QUARANTINE).where("source_table = 'flights'").toPandas()
    assert sorted(q.reason) == sorted(
        [
            "INVALID_TYPE:dep_delay",
            "UNKNOWN_CARRIER",
            "WRONG_DATE",
            "OUT_OF_RANGE:sched_dep_time",
            "MALFORMED_ROW",
            "DUPLICATE",
        ]
    )
    duplicate = json.loads(q[q.reason == "DUPLICATE"].iloc[0].record)
    assert [duplicate[c] for c in rows[0]] == rows[10]  # the removed copy is kept, verbatim
    bad_type = q[q.reason == "INVALID_TYPE:dep_delay"].iloc[0]
    assert json.loads(bad_type.record)["dep_delay"] == "twelve"
    assert bad_type.source_file == str(path)
    recon = tables.read(tb.RECONCILIATION).where("source_table = 'flights'").first()
    assert (recon["landed"], recon["accepted"], recon["quarantined"], recon["duplicates"]) == (
        landed,
        landed - 6,
        5,
        1,
    )
    accepted = tables.read(tb.SILVER_FLIGHTS)
    assert accepted.count() == landed - 6
    assert accepted.select("flight_id").distinct().count() == landed - 6


def test_rerunning_silver_leaves_the_same_content(spark, tables, lake):
    day = dt.date(2013, 2, 3)
    land(lake, day)
    build(spark, tables, lake, day)
    first = tables.read(tb.SILVER_FLIGHTS).toPandas().sort_values("flight_id", ignore_index=True)
    silver.run(spark, tables, lake, day, "r")
    again = tables.read(tb.SILVER_FLIGHTS).toPandas().sort_values("flight_id", ignore_index=True)
    pd.testing.assert_frame_equal(first, again)
    assert tables.read(tb.SILVER_PLANES).count() == len(source.table("planes"))
    assert tables.history(tb.SILVER_PLANES)[0]["operation"] == "MERGE"
