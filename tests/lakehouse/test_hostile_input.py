"""A hostile-input corpus for every landing file: no bad row takes a day down.

Each bad row is quarantined with its reason, or the file is refused with a ``LandingError``
(an input error: the DAG fails it without retry) naming the file and the line; the counts
reconcile, and no library exception escapes raw.

The day is 2013-02-12, whose real weather holds a physically impossible observation (a
1,048 mph wind at EWR, 08:00 UTC): it is quarantined like the crafted ones.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from jobs.common.errors import LandingError
from jobs.lakehouse import bronze, silver
from jobs.lakehouse import tables as tb
from tests.lakehouse.helpers import land, read_csv

DAY = dt.date(2013, 2, 12)

# Row-level corruptions of flights.csv: (changes to one data row, the reason it must get).
# Each corrupted row is marked by its tailnum, which no check reads.
FLIGHT_ROWS = [
    ({"dep_delay": "NaN"}, "OUT_OF_RANGE:dep_delay"),
    ({"dep_delay": "Infinity"}, "OUT_OF_RANGE:dep_delay"),
    ({"dep_delay": "-1e308"}, "OUT_OF_RANGE:dep_delay"),
    ({"arr_delay": "1e308"}, "OUT_OF_RANGE:arr_delay"),
    ({"air_time": "-5"}, "OUT_OF_RANGE:air_time"),
    ({"distance": "1e400"}, "OUT_OF_RANGE:distance"),
    ({"flight": "99999999999"}, "INVALID_TYPE:flight"),
    ({"dep_time": "2460"}, "OUT_OF_RANGE:dep_time"),
    ({"arr_time": "9999"}, "OUT_OF_RANGE:arr_time"),
    ({"sched_arr_time": "-1"}, "OUT_OF_RANGE:sched_arr_time"),
    ({"hour": "24"}, "OUT_OF_RANGE:hour"),
    ({"minute": "75"}, "OUT_OF_RANGE:minute"),
    ({"month": "13"}, "INVALID_DATE"),
    ({"day": "30", "month": "2"}, "INVALID_DATE"),
    ({"year": "-2013"}, "WRONG_DATE"),
    ({"time_hour": "2013-02-12T25:00:00Z"}, "INVALID_TYPE:time_hour"),
    ({"time_hour": "2013-02-12 garbage"}, "INVALID_TYPE:time_hour"),
    ({"carrier": "U\udce9"}, "INVALID_ENCODING"),  # a Latin-1 byte in a UTF-8 file
    ({"dest": "IAH\x00"}, "INVALID_TEXT:dest"),  # a control character
]
# Weather and dimension rows with values no instrument or aircraft can have (from the 20th row:
# the real impossible wind is among the first).
OTHER_ROWS = {
    "weather": [
        ({"humid": "150"}, "OUT_OF_RANGE:humid"),
        ({"temp": "NaN"}, "OUT_OF_RANGE:temp"),
        ({"pressure": "-1"}, "OUT_OF_RANGE:pressure"),
        ({"wind_dir": "720"}, "OUT_OF_RANGE:wind_dir"),
    ],
    "planes": [
        ({"seats": "-1"}, "OUT_OF_RANGE:seats"),
        ({"year": "3013"}, "OUT_OF_RANGE:year"),
    ],
    "airports": [
        ({"lat": "200"}, "OUT_OF_RANGE:lat"),
        ({"tz": "99"}, "OUT_OF_RANGE:tz"),
    ],
}


def write_bytes_rows(path, rows: list[list[str]], newline: str = "\n") -> None:
    """Rows as CSV, text encoded as UTF-8 with surrogate escapes kept as the raw bytes they
    stand for (how a Latin-1 byte reaches a UTF-8 file)."""
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=newline).writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8", "surrogateescape"))


def read_rows(path) -> list[list[str]]:
    import csv

    with path.open(newline="", errors="surrogateescape") as f:
        return list(csv.reader(f))


def corrupt(path, cases, marker_column: str | None, first: int = 1):
    """Apply each case to its own data row from row ``first`` on; returns the header and
    {row key: expected reason}."""
    rows = read_rows(path)
    header = rows[0]
    expected = {}
    for i, (changes, reason) in enumerate(cases):
        row = rows[first + 3 * i]  # spaced out, so no two cases share a flight or an hour
        for column, value in changes.items():
            row[header.index(column)] = value
        if marker_column:
            row[header.index(marker_column)] = f"HOSTILE{i}"
            expected[f"HOSTILE{i}"] = reason
        else:
            expected[row_key(row)] = reason
    write_bytes_rows(path, rows)
    return header, expected


def row_key(values) -> tuple[str, ...]:
    return tuple(v or "" for v in values)  # Spark reads an empty field as null


def quarantine(tables, source_table: str):
    q = tables.read(tb.QUARANTINE).where(f"source_table = '{source_table}'").toPandas()
    return [(json.loads(r.record), r.reason, r.reasons) for r in q.itertuples()]


def reconciled(tables, source_table: str) -> dict:
    row = tables.read(tb.RECONCILIATION).where(f"source_table = '{source_table}'").first()
    return row.asDict()


def test_every_bad_row_is_quarantined_with_its_reason_and_the_counts_reconcile(spark, tables, lake):
    folder = land(lake, DAY)
    flights_path = folder / "flights.csv"
    _, expected = corrupt(flights_path, FLIGHT_ROWS, "tailnum")
    rows = read_rows(flights_path)
    header = rows[0]
    # a row truncated mid-way, a row with a field too many, a quoted field holding a line break
    # (two physical lines), an unterminated quote, and a conflicting copy of a flight
    rows.append(rows[70][:9])
    rows.append([*rows[71], "extra"])
    broken = list(rows[72])
    broken[header.index("dest")] = "IA\nH"
    rows.append(broken)
    conflicting = list(rows[73])
    conflicting[header.index("dep_delay")] = str(int(conflicting[header.index("dep_delay")]) + 7)
    rows.append(conflicting)
    write_bytes_rows(flights_path, rows)
    with flights_path.open("ab") as f:
        f.write(b'2013,2,12,,600,,,"UA,,,,\n')
    others = {
        name: corrupt(folder / f"{name}.csv", cases, None, first=20)
        for name, cases in OTHER_ROWS.items()
    }

    bronze.run(spark, tables, lake, DAY, "r")
    counts = silver.run(spark, tables, lake, DAY, "r")

    q = quarantine(tables, "flights")
    by_marker = {record.get("tailnum"): reason for record, reason, _ in q}
    for marker, reason in expected.items():
        assert by_marker.get(marker) == reason, (marker, reason)
    reasons = [reason for _, reason, _ in q]
    # truncated, extra field, two halves of the broken line, the unterminated quote
    assert reasons.count("MALFORMED_ROW") == 5
    conflict = [r for r in q if r[1] == "DUPLICATE_CONFLICT"]
    assert len(conflict) == 1
    assert conflict[0][0]["flight"] == rows[73][header.index("flight")]
    assert len(q) == len(FLIGHT_ROWS) + 5 + 1
    landed = len(rows) - 1 + 2  # the broken line counts twice, plus the unterminated quote
    assert counts["flights"] == {
        "landed": landed,
        "accepted": landed - len(q),
        "quarantined": len(q) - 1,
        "duplicates": 1,
    }
    recon = reconciled(tables, "flights")
    assert (recon["landed"], recon["accepted"]) == (landed, landed - len(q))
    silver_flights = tables.read(tb.SILVER_FLIGHTS)
    assert silver_flights.count() == landed - len(q)
    assert silver_flights.where("tailnum LIKE 'HOSTILE%'").count() == 0

    for name, (columns, cases) in others.items():
        got = {
            row_key(record.get(c) for c in columns): reason
            for record, reason, _ in quarantine(tables, name)
        }
        for row, reason in cases.items():
            assert got.get(row) == reason, (name, row, reason)
        extra = {r for row, r in got.items() if row not in cases}
        if name == "weather":  # the real 1,048 mph wind
            assert extra == {"OUT_OF_RANGE:wind_speed"}
        else:
            assert not extra
        recon = reconciled(tables, name)
        assert recon["landed"] == recon["accepted"] + recon["quarantined"] + recon["duplicates"]
        assert recon["quarantined"] == len(cases) + (name == "weather")


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"], ids=["crlf", "cr", "lf"])
def test_line_endings_and_a_byte_order_mark_are_read_as_the_same_records(
    spark, tables, lake, newline
):
    folder = land(lake, DAY)
    rows = read_csv(folder / "flights.csv")
    with_bom = folder / "flights.csv"
    write_bytes_rows(with_bom, rows, newline)
    with_bom.write_bytes(b"\xef\xbb\xbf" + with_bom.read_bytes())
    bronze.run(spark, tables, lake, DAY, "r")
    counts = silver.run(spark, tables, lake, DAY, "r")
    assert counts["flights"]["accepted"] == len(rows) - 1
    assert counts["flights"]["quarantined"] == 0


def edit_header(data: bytes, edit) -> bytes:
    header, rest = data.split(b"\n", 1)
    columns = header.split(b",")
    edit(columns)
    return b",".join(columns) + b"\n" + rest


def duplicate_second_column(columns):
    columns[1] = columns[0]


def rename_first_column(columns):
    columns[0] += b"_renamed"


FILE_REFUSALS = [
    ("utf-16", lambda b: b.decode().encode("utf-16"), r"line 1: not UTF-8.*UTF-16"),
    ("latin-1 header", lambda b: b"\xe9" + b, r"line 1: not UTF-8 text \(byte 0xe9 at column 1"),
    ("gzip", lambda b: __import__("gzip").compress(b), r"line 1: .*gzip-compressed"),
    (
        "duplicate column",
        lambda b: edit_header(b, duplicate_second_column),
        r"line 1: duplicate column",
    ),
    (
        "renamed column",
        lambda b: edit_header(b, rename_first_column),
        r"lacks expected column",
    ),
    ("header only", lambda b: b.split(b"\n", 1)[0] + b"\n", r"header only"),
    ("empty", lambda b: b"", r"no header and no records"),
]


@pytest.mark.parametrize("export", ["flights", "weather", "airports"])
@pytest.mark.parametrize(
    "mutate,message", [c[1:] for c in FILE_REFUSALS], ids=[c[0] for c in FILE_REFUSALS]
)
def test_an_unreadable_file_is_refused_naming_it_and_nothing_is_written(
    spark, tables, lake, export, mutate, message
):
    folder = land(lake, DAY)
    path = folder / f"{export}.csv"
    path.write_bytes(mutate(path.read_bytes()))
    if export == "weather" and "header only" in message:
        message = None  # a day may have no weather observations: an empty partition is fine
    if message is None:
        bronze.run(spark, tables, lake, DAY, "r")
        return
    with pytest.raises(LandingError, match=rf"{re.escape(str(path))}.*{message}"):
        bronze.run(spark, tables, lake, DAY, "r")
    assert not tables.exists(tb.BRONZE["flights"])


def test_every_numeric_column_has_a_plausible_range_and_the_suites_warn_inside_it():
    from jobs.quality.gx_runner import load_suite

    date_parts = {"year", "month", "day"}
    typed = {
        "flights": silver.FLIGHT_TYPES.keys() - date_parts - silver.HHMM_TIMES.keys(),
        "weather": silver.WEATHER_TYPES.keys() - date_parts,
        "planes": silver.PLANE_TYPES.keys(),
        "airports": silver.AIRPORT_TYPES.keys(),
    }
    for source, columns in typed.items():
        assert set(columns) == set(silver.PLAUSIBLE[source]), source
    ranges = silver.PLAUSIBLE["flights"]
    checked = set()
    for suite in ("silver_flights", "silver_flights_trends"):
        for e in load_suite(suite)["expectations"]:
            kwargs = e["kwargs"]
            if e["type"] != "expect_column_values_to_be_between" or kwargs["column"] not in ranges:
                continue
            low, high = ranges[kwargs["column"]]
            assert low <= kwargs["min_value"] and kwargs["max_value"] <= high, kwargs
            checked.add(kwargs["column"])
    assert {"dep_delay", "arr_delay", "air_time", "distance"} <= checked
