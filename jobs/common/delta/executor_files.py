"""Large writes on the delta-rs backend: Spark's executors write the Parquet files, delta-rs
commits them.

The delta-rs backend normally fetches a job's frame to the task as Arrow and lets delta-rs write
it: fastest for a day's few thousand rows, but then the whole output passes through one process
(1.3 GB of task RSS for 10M rows, `make bench-delta`). With ``delta_rs_write_path = "executors"``
Spark writes the files instead, into a folder of their own under the table root, and delta-rs
commits them as add actions. The statistics Delta needs for data skipping (row count, min, max,
null count per column) come from each file's Parquet footer, which Spark's writer fills in: no
data is read back. Merges still go through Arrow (delta-rs merges in-process); use the
Spark-native backend for merges larger than a task should hold.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# Spark's name for a null partition value in a folder name.
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def staging_folder(write_id: str) -> str:
    """Where one write's files go, relative to the table root. Not hidden (no leading `_` or
    `.`): VACUUM must see the files once a later write removes them from the table."""
    return f"spark-write-{write_id}"


def write_files(df: DataFrame, uri: str, partition_by: tuple[str, ...]) -> None:
    """Spark's executors write ``df`` as Parquet under ``uri`` (a folder no one else uses: two
    writes into one folder would share Spark's ``_temporary`` and clean up each other's)."""
    writer = df.write.mode("error")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(uri)


def add_actions(root: str, folder: str) -> list[AddAction]:
    """One add action per data file under ``root/folder``, with its partition values (from
    the folder names Spark wrote) and its statistics (from its footer)."""
    fs, base = pafs.FileSystem.from_uri(f"{root.rstrip('/')}/{folder}")
    root_path = base[: -len(folder)].rstrip("/")
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    actions = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
            continue  # _SUCCESS, checksums
        relative = info.path[len(root_path) + 1 :]
        with fs.open_input_file(info.path) as handle:
            metadata = pq.ParquetFile(handle).metadata
        actions.append(
            AddAction(
                path=relative,
                size=info.size,
                partition_values=partition_values(relative),
                modification_time=info.mtime_ns // 1_000_000,
                data_change=True,
                stats=file_stats(metadata),
            )
        )
    return actions


def partition_values(relative_path: str) -> dict[str, str | None]:
    values = {}
    for segment in relative_path.split("/")[1:-1]:  # between the write's folder and the file
        key, _, value = segment.partition("=")
        value = unquote(value)
        values[unquote(key)] = None if value == HIVE_NULL else value
    return values


def file_stats(metadata: pq.FileMetaData) -> str:
    """Delta's per-file statistics (JSON) from a Parquet footer: top-level primitive columns;
    nested ones (maps, lists) get a null count only where the footer has one, as in Delta."""
    minimum, maximum, nulls = {}, {}, {}
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            column = row_group.column(index)
            name = column.path_in_schema
            if "." in name:  # a leaf of a nested column
                continue
            stats = column.statistics
            if stats is None or not stats.has_null_count:
                nulls[name] = None  # unknown from here on: left out below
                continue
            if name not in nulls or nulls[name] is not None:
                nulls[name] = nulls.get(name, 0) + stats.null_count
            if stats.has_min_max:
                low, high = _json_value(stats.min, "min"), _json_value(stats.max, "max")
                if low is None or high is None:
                    minimum[name] = maximum[name] = None  # a NaN: no bound for the file
                    continue
                if name in minimum and minimum[name] is None:
                    continue
                minimum[name] = low if name not in minimum else min(minimum[name], low)
                maximum[name] = high if name not in maximum else max(maximum[name], high)
    return json.dumps(
        {
            "numRecords": metadata.num_rows,
            "minValues": {k: v for k, v in minimum.items() if v is not None},
            "maxValues": {k: v for k, v in maximum.items() if v is not None},
            "nullCount": {k: v for k, v in nulls.items() if v is not None},
        }
    )


def _json_value(value, bound: str):
    """A footer's min or max as Delta's stats JSON writes it. Timestamps keep milliseconds, as
    Delta's do: the minimum rounded down and the maximum up, so the bounds still hold."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        floor = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if bound == "max" and floor != value:
            floor += dt.timedelta(milliseconds=1)
        return floor.strftime("%Y-%m-%dT%H:%M:%S.") + f"{floor.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return None  # binary: Delta keeps no bounds
    return value
