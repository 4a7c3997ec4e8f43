"""Equal dimension snapshots of a data interval, classified once.

Each day lands a full snapshot of the dimensions (planes, airports, airlines): 71% of the rows
bronze held for 2013, whose 365 snapshots of each dimension are all the same. Silver classifies
a snapshot's rows by their content alone (no check reads the day), so an interval's days whose
bronze snapshots are equal row for row get the same classification. :func:`equal_days` groups
them; silver classifies the first day of each group and :func:`copy_to_days` gives every other
day of the group a copy under its own date and landing file. A warm month of silver (February
2013) took 12.1 JVM CPU-seconds classifying every day, 8.6-9.6 grouped, for 0.5 more in the
task (reading and comparing the snapshots). A single day (the daily DAG) is its own group and
reads nothing more.
"""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.compute as pc

from jobs.common.delta.snapshot import read_arrow

# Where a bronze row came from, not what it says: left out when snapshots are compared.
LINEAGE = ("_logical_date", "_source_file", "_run_id")
# The classified rows' columns that name the day and its landing file (silver.collect)
DATE_COLUMNS = ("_logical_date", "logical_date")
FILE_COLUMNS = ("_source_file", "source_file")
RECORD_COLUMNS = ("_record", "record")  # the raw row as JSON, its landing file included

Groups = dict[dt.date, list[dt.date]]  # first day -> every day with the same snapshot


def equal_days(uri: str, days: list[dt.date]) -> tuple[Groups, dict[dt.date, str]]:
    """The bronze table's ``days`` grouped by snapshot (equal as multisets of rows, lineage
    aside), and each day's landing file. A day is compared only with days of as many rows."""
    if len(days) == 1:
        return {days[0]: list(days)}, {}
    rows = read_arrow(uri, {"_logical_date": days})
    content = [c for c in rows.column_names if c not in LINEAGE]
    groups: Groups = {}
    canonical: dict[dt.date, pa.Table] = {}
    files: dict[dt.date, str] = {}
    for day in days:
        snapshot = rows.filter(pc.equal(rows["_logical_date"], pa.scalar(day, pa.date32())))
        landed = pc.unique(snapshot["_source_file"]).to_pylist()
        if len(landed) != 1:  # nothing landed (or several files): classified on its own
            groups[day] = [day]
            continue
        files[day] = landed[0]
        snapshot = snapshot.select(content).sort_by([(c, "ascending") for c in content])
        same = next(
            (
                first
                for first, other in canonical.items()
                if other.num_rows == snapshot.num_rows and other.equals(snapshot)
            ),
            None,
        )
        if same is None:
            groups[day], canonical[day] = [day], snapshot
        else:
            groups[same].append(day)
    return groups, files


def _file_in_record(file: str) -> str:
    """How the landing file reads inside a record (Spark's ``to_json``: no escaped '/')."""
    return f'"_source_file":{json.dumps(file, ensure_ascii=False)}'


def copy_to_days(rows: pa.Table, groups: Groups, files: dict[dt.date, str]) -> pa.Table | None:
    """``rows`` (the first days' classified rows) with a copy for every other day of each
    group, under that day's date and landing file; None if a record does not name its file as
    expected (then the caller classifies every day)."""
    parts = []
    for first, days in groups.items():
        own = rows.filter(pc.equal(rows["_logical_date"], pa.scalar(first, pa.date32())))
        parts.append(own)
        if len(days) == 1:
            continue
        named = _file_in_record(files[first])
        for record in RECORD_COLUMNS:
            if own.num_rows and not pc.all(pc.match_substring(own[record], named)).as_py():
                return None
        for day in days[1:]:
            relabelled = {
                **{
                    c: pa.array([day] * own.num_rows, own.schema.field(c).type)
                    for c in DATE_COLUMNS
                },
                **{
                    c: pa.array([files[day]] * own.num_rows, own.schema.field(c).type)
                    for c in FILE_COLUMNS
                },
                **{
                    c: pc.replace_substring(
                        own[c], named, _file_in_record(files[day]), max_replacements=1
                    )
                    for c in RECORD_COLUMNS
                },
            }
            copy = own
            for column, values in relabelled.items():
                copy = copy.set_column(copy.schema.get_field_index(column), column, values)
            parts.append(copy)
    return pa.concat_tables(parts)
