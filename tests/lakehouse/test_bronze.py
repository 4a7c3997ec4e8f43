"""Bronze keeps what landed, and refuses landing problems before writing anything."""

import datetime as dt
import json
from pathlib import Path

import pytest

from jobs.common.errors import LandingError
from jobs.lakehouse import bronze
from jobs.lakehouse import tables as tb
from tests.lakehouse.helpers import land, read_csv, write_csv

DAY = dt.date(2013, 2, 1)


def bronze_version(tables):
    spec = tb.BRONZE["flights"]
    return tables.version(spec) if tables.exists(spec) else None


def test_bronze_keeps_every_landed_record_as_raw_text(spark, tables, lake):
    folder = land(lake, DAY)
    counts = bronze.run(spark, tables, lake, DAY, "run-1")
    landed = read_csv(folder / "flights.csv")
    assert counts["flights"] == len(landed) - 1
    df = tables.read(tb.BRONZE["flights"], partitions={"_logical_date": [DAY]})
    raw = {tuple(r[:19]) for r in landed[1:]}
    got = {tuple(r[c] for c in landed[0]) for r in df.collect()}
    assert got == raw  # exactly the landed text, "NA" tokens included
    row = df.first()
    assert row["_run_id"] == "run-1" and row["_logical_date"] == DAY
    assert row["_source_file"].endswith(f"{DAY}/flights.csv")


def test_rerunning_a_date_replaces_its_partition(spark, tables, lake):
    land(lake, DAY)
    bronze.run(spark, tables, lake, DAY, "run-1")
    bronze.run(spark, tables, lake, DAY, "run-2")
    df = tables.read(tb.BRONZE["flights"])
    assert df.count() == len(read_csv(lake_file(lake, "flights"))) - 1
    assert {r["_run_id"] for r in df.select("_run_id").distinct().collect()} == {"run-2"}


def lake_file(lake, export):
    from jobs.lakehouse.landing import landing_file

    return Path(landing_file(lake, DAY, export))


def test_malformed_rows_are_kept_with_their_raw_line(spark, tables, lake):
    land(lake, DAY)
    path = lake_file(lake, "flights")
    rows = read_csv(path)
    rows[3] = rows[3][:5]  # a truncated line
    write_csv(path, rows)
    bronze.run(spark, tables, lake, DAY, "r")
    bad = tables.read(tb.BRONZE["flights"]).where("_corrupt_record IS NOT NULL").collect()
    assert len(bad) == 1
    assert bad[0]["_corrupt_record"] == ",".join(rows[3])


def test_an_extra_column_is_rescued_not_dropped(spark, tables, lake):
    land(lake, DAY)
    path = lake_file(lake, "flights")
    rows = read_csv(path)
    write_csv(path, [rows[0] + ["gate"]] + [r + [f"G{i}"] for i, r in enumerate(rows[1:])])
    bronze.run(spark, tables, lake, DAY, "r")
    df = tables.read(tb.BRONZE["flights"]).orderBy("_rescued_data")
    assert df.count() == len(rows) - 1
    assert json.loads(df.first()["_rescued_data"]) == {"gate": "G0"}


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing_column", r"lacks expected column\(s\) \['dep_delay'\]"),
        ("empty_file", r"empty landing file .*flights.csv: header only"),
        ("zero_bytes", r"empty landing file .*flights.csv: no header"),
        ("missing_file", r"missing landing file .*flights.csv"),
    ],
)
def test_landing_problems_stop_the_run_and_write_nothing(spark, tables, lake, damage, message):
    land(lake, DAY)
    path = lake_file(lake, "flights")
    rows = read_csv(path)
    if damage == "missing_column":
        i = rows[0].index("dep_delay")
        write_csv(path, [r[:i] + r[i + 1 :] for r in rows])
    elif damage == "empty_file":
        write_csv(path, rows[:1])
    elif damage == "zero_bytes":
        path.write_text("")
    else:
        path.unlink()
    with pytest.raises(LandingError, match=message):
        bronze.run(spark, tables, lake, DAY, "r")
    # Checked before any table was written: no bronze table exists at all.
    for spec in tb.BRONZE.values():
        assert not tables.exists(spec)
