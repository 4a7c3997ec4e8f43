"""The Delta I/O interface every job uses.

Jobs never touch parquet files or ``_delta_log``: they call these operations on a
:class:`TableSpec`. Two backends implement them (``rs.py``: delta-rs, the embedded default;
``spark_native.py``: Spark's own Delta writer when the Delta jars are on the classpath), and the
contract tests in ``tests/common/test_delta_contract.py`` run the same cases against both.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from jobs.common.settings import Settings

# What writes accept: a Spark DataFrame, or an Arrow table already collected (a job that needs
# a frame's row counts before writing collects it once instead of running Spark twice).
Frame = "DataFrame | pa.Table"

# A partition selection: column -> the values to select, e.g. {"flight_date": [date(2013,1,1)]}.
Partitions = Mapping[str, Sequence[Any]]
# (timestamp column, low, high): the rows whose column lies in [low, high] (naive bounds are UTC)
Between = tuple[str, dt.datetime, dt.datetime]


class DeltaIOError(RuntimeError):
    """A Delta operation was refused; nothing was written."""


def commit_metadata(run_id: str | None, operation: str) -> tuple[str, str]:
    """(write id, the commit's ``userMetadata``): who made a commit, recorded the same way by
    both backends so that either reads the other's history. The write id finds the commit
    again among concurrent ones."""
    write_id = uuid.uuid4().hex
    meta = {"nightjar.operation": operation, "nightjar.write_id": write_id}
    if run_id:
        meta["nightjar.run_id"] = run_id
    return write_id, json.dumps(meta, sort_keys=True)


def history_entry(
    version: int,
    timestamp: dt.datetime,
    operation: str,
    user_metadata: str | None,
    parameters: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One commit in :meth:`DeltaTables.history`'s shape."""
    try:
        meta = json.loads(user_metadata) if user_metadata else {}
    except ValueError:  # written by another tool: kept as it is
        meta = {"userMetadata": user_metadata}
    return {
        "version": int(version),
        "timestamp": timestamp,
        "operation": operation,
        "run_id": meta.get("nightjar.run_id"),
        "write_id": meta.get("nightjar.write_id"),
        "parameters": dict(parameters or {}),
        "metrics": dict(metrics or {}),
    }


@dataclass(frozen=True)
class TableSpec:
    """A Delta table's contract: name (``layer.table``), schema, partitioning, key."""

    name: str
    schema: T.StructType
    partition_by: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    description: str = ""
    # Columns excluded from content comparisons because they record *which run* wrote a row.
    run_metadata: tuple[str, ...] = field(default=())
    # The last columns, appended by later versions of the code (in order): a table written
    # before them gets them in place (DeltaTables.add_new_columns), its older rows reading null.
    appended: tuple[str, ...] = field(default=())

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.schema.fields]

    @property
    def arrow_schema(self) -> pa.Schema:
        return to_arrow_schema(self.schema, timezone="UTC")


def sql_literal(value: Any) -> str:
    """A value as a SQL literal understood by both Spark SQL and delta-rs (DataFusion)."""
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def partition_predicate(partitions: Partitions) -> str:
    """``{"d": [a, b], "o": ["JFK"]}`` -> ``d IN (DATE 'a', DATE 'b') AND o IN ('JFK')``."""
    clauses = []
    for column, values in partitions.items():
        if not values:
            raise DeltaIOError(f"empty value list for partition column {column!r}")
        clauses.append(f"{column} IN ({', '.join(sql_literal(v) for v in values)})")
    return " AND ".join(clauses)


def utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` made aware; a naive one is UTC (a ``Between``'s bounds)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def between_filter(between: Between):
    """``between`` as a Spark filter (inclusive bounds, as delta-rs prunes by them)."""
    from pyspark.sql import functions as F

    column, low, high = between
    return F.col(column).between(F.lit(utc(low)), F.lit(utc(high)))


class DeltaTables(abc.ABC):
    """Operations on the lakehouse's Delta tables, resolved by :class:`TableSpec`."""

    backend_name: str

    def __init__(self, spark: SparkSession, settings: Settings):
        self.spark = spark
        self.settings = settings
        # name -> version of every snapshot read through this object (lineage for models).
        self.versions_read: dict[str, int] = {}

    def uri(self, spec: TableSpec) -> str:
        return self.settings.table_uri(spec.name)

    # --- operations every backend implements -------------------------------------------------
    @abc.abstractmethod
    def exists(self, spec: TableSpec) -> bool: ...

    @abc.abstractmethod
    def create(self, spec: TableSpec) -> None:
        """Create the table if missing; refuse if it exists with another schema/partitioning."""

    @abc.abstractmethod
    def append(self, spec: TableSpec, df: Frame, *, run_id: str | None = None) -> int:
        """Append rows; returns the new table version."""

    @abc.abstractmethod
    def overwrite_partitions(
        self, spec: TableSpec, df: Frame, partitions: Partitions, *, run_id: str | None = None
    ) -> int:
        """Atomically replace exactly the selected partitions with ``df`` (replaceWhere).

        Every row of ``df`` must fall inside the selection, else nothing is written.
        """

    @abc.abstractmethod
    def merge(self, spec: TableSpec, df: Frame, *, run_id: str | None = None) -> int:
        """Upsert ``df`` by ``spec.key``: update rows whose values changed, insert new keys.

        Unchanged rows are left alone, so a daily upsert of an unchanged snapshot rewrites no
        files.
        """

    @abc.abstractmethod
    def read(
        self,
        spec: TableSpec,
        *,
        version: int | None = None,
        partitions: Partitions | None = None,
        between: Between | None = None,
    ) -> DataFrame:
        """The table's current snapshot (or ``version``) as a Spark DataFrame.

        ``partitions`` prunes files using the log, so reading one day costs one day's files;
        ``between`` keeps the rows of a time window, and reads only the files whose statistics
        overlap it.
        """

    @abc.abstractmethod
    def count_rows(self, spec: TableSpec, partitions: Partitions | None = None) -> int:
        """Rows in the current snapshot (of the selected partitions)."""

    def count_rows_per(self, spec: TableSpec, column: str, values: Sequence[Any]) -> dict:
        """Rows in each of the partitions ``column = value``, for every value of ``values``."""
        return {value: self.count_rows(spec, {column: [value]}) for value in values}

    @abc.abstractmethod
    def version(self, spec: TableSpec) -> int: ...

    @abc.abstractmethod
    def history(self, spec: TableSpec, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits, newest first, in one shape for both backends: ``version``, ``timestamp``
        (UTC), ``operation`` (Delta's name: WRITE, MERGE, ...), ``run_id`` (the Nightjar run that
        made it, or None), ``parameters`` (Delta's operationParameters), ``metrics``."""

    @abc.abstractmethod
    def vacuum(self, spec: TableSpec, retain_hours: int = 168, *, enforce: bool = True) -> int:
        """Delete data files no version newer than ``retain_hours`` references; returns how
        many. ``enforce=False`` allows a retention below the table's (7 days), which breaks
        time travel to older versions: tests and deliberate clean-ups only."""

    def committed_version(self, spec: TableSpec, write_id: str) -> int:
        """The version of the commit a write made, found by its write id (other writers may
        have committed since: the newest version is not necessarily ours). Delta makes no
        commit for a write that changes nothing: then the table's version."""
        for limit in (1, 50, None):  # almost always ours is the newest
            for entry in self.history(spec, limit=limit):
                if entry["write_id"] == write_id:
                    return entry["version"]
        return self.version(spec)

    def add_new_columns(self, spec: TableSpec, run_id: str | None = None) -> list[str]:
        """Bring a table written before ``spec`` appended its ``appended`` columns to ``spec``:
        the ones it lacks (those of every version of the code after the one that wrote it:
        the table's columns are the spec's up to some point of ``appended``) are added in a
        commit that changes the table's metadata alone (no data file is rewritten; the rows
        already there read null). Returns the columns added. A missing table, or one of any
        other shape, is left alone, for the write's own layout check."""
        from deltalake import CommitProperties, DeltaTable
        from deltalake.exceptions import TableNotFoundError
        from deltalake.schema import Field

        uri = self.uri(spec)

        def columns() -> list[str]:
            return [f.name for f in DeltaTable(uri).schema().fields]

        try:
            have = columns()
        except TableNotFoundError:
            return []
        first = len(spec.columns) - len(spec.appended)  # where the appended columns start
        if (
            not spec.appended
            or spec.columns[first:] != list(spec.appended)
            or not first <= len(have) < len(spec.columns)
            or have != spec.columns[: len(have)]
        ):
            return []  # already this shape, or not ours to change
        new = spec.schema.fields[len(have) :]
        try:
            if self.backend_name == "spark":  # the Delta writer that writes the table
                added = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in new)
                self.spark.sql(f"ALTER TABLE delta.`{uri}` ADD COLUMNS ({added})")
            else:
                metadata = commit_metadata(run_id, "add_columns")[1]
                DeltaTable(uri).alter.add_columns(
                    [Field.from_json(json.dumps(f.jsonValue())) for f in new],
                    commit_properties=CommitProperties(custom_metadata={"userMetadata": metadata}),
                )
        except Exception:
            if columns() != spec.columns:
                raise
            return []  # a concurrent run (a backfill's) added them first
        return [f.name for f in new]

    # --- shared checks -----------------------------------------------------------------------
    @staticmethod
    def check_layout(
        spec: TableSpec, uri: str, fields: Sequence[T.StructField], partition_by: Sequence[str]
    ) -> None:
        """An existing table must have the spec's columns, types and partitioning."""
        have = [(f.name, f.dataType.simpleString()) for f in fields]
        want = [(f.name, f.dataType.simpleString()) for f in spec.schema]
        if have != want or tuple(partition_by) != spec.partition_by:
            differ = sorted(set(have) ^ set(want)) or "column order"
            raise DeltaIOError(
                f"{spec.name}: existing table at {uri} does not match the code's schema "
                f"(differs in {differ}; partitioned by {tuple(partition_by)}, the code expects "
                f"{spec.partition_by}). Migrate or drop the table deliberately; nothing written."
            )

    @staticmethod
    def check_columns(spec: TableSpec, columns: list[str]) -> None:
        have, want = set(columns), set(spec.columns)
        if have != want:
            raise DeltaIOError(
                f"{spec.name}: frame does not match the table schema; "
                f"missing columns {sorted(want - have)}, unexpected columns {sorted(have - want)}"
            )

    def conform(self, spec: TableSpec, df: DataFrame) -> DataFrame:
        """Check ``df`` has exactly the table's columns; order and type them like the table."""
        from pyspark.sql import functions as F

        self.check_columns(spec, df.columns)
        return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in spec.schema])

    def conform_arrow(self, spec: TableSpec, frame: Frame) -> pa.Table:
        """The frame as an Arrow table with exactly the table's columns and types."""
        if not isinstance(frame, pa.Table):
            frame = self.conform(spec, frame).toArrow()
        self.check_columns(spec, frame.column_names)
        return frame.select(spec.columns).cast(spec.arrow_schema)

    @staticmethod
    def check_merge_keys(spec: TableSpec, data: pa.Table) -> None:
        if not spec.key:
            raise DeltaIOError(f"{spec.name}: merge needs a key; the TableSpec declares none")
        counts = data.group_by(list(spec.key)).aggregate([([], "count_all")])
        dupes = counts.filter(pa.compute.greater(counts["count_all"], 1)).slice(0, 5).to_pylist()
        if dupes:
            shown = ", ".join(str(tuple(r[k] for k in spec.key)) for r in dupes)
            raise DeltaIOError(
                f"{spec.name}: merge source has duplicate keys {spec.key}: {shown}; nothing written"
            )


def ensure_tables(tables: DeltaTables, specs: Iterable[TableSpec]) -> None:
    for spec in specs:
        tables.create(spec)
