"""Spark-native Delta backend: Delta Lake's own Spark writer (delta-spark), used when its jars are
on Spark's classpath (``make setup`` fetches them, see ``jobs/common/spark_jars.py``).

Every operation is Spark SQL or a DataFrameWriter, so it runs the same through a classic session
and a Spark Connect client, and every write is distributed: the executors write the files and
the driver commits them; no rows pass through this process (a frame that arrives as Arrow is the
one exception: it is already here).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from jobs.common.delta.base import (
    Between,
    DeltaIOError,
    DeltaTables,
    Frame,
    Partitions,
    TableSpec,
    between_filter,
    commit_metadata,
    history_entry,
    partition_predicate,
)
from jobs.common.delta.rs import CHECKPOINT_INTERVAL

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# Delta's SQL conf that puts a string in the next commit's ``userMetadata`` (MERGE and VACUUM
# take no writer option).
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"


def spark_delta_available(spark: SparkSession, probe: bool = False) -> tuple[bool, str]:
    """Whether this session can use Spark-native Delta, and why (not).

    Without ``probe`` a missing SQL extension answers at once (no Spark job); with it, the
    Delta data source itself is looked up too, so the reason says whether the jars are there.
    """
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    reasons = []
    if DELTA_EXTENSION not in extensions:
        reasons.append(f"spark.sql.extensions does not include {DELTA_EXTENSION}")
    if not probe:  # the extension is only configured where `make setup` fetched the jars
        return (False, reasons[0]) if reasons else (True, "the Delta SQL extension is configured")
    try:
        spark.read.format("delta").load("/nonexistent/nightjar-delta-probe").limit(0).collect()
    except Exception as exc:  # the error's class tells whether the data source exists
        text = str(exc)
        if "DATA_SOURCE_NOT_FOUND" in text or "Failed to find data source: delta" in text:
            reasons.insert(
                0,
                "the Delta jars are not on Spark's classpath "
                "(format('delta') -> DATA_SOURCE_NOT_FOUND; run `make setup`)",
            )
    if reasons:
        return False, "; ".join(reasons)
    return True, "format('delta') resolves and the Delta SQL extension is configured"


# What a CREATE that lost a race with another creator of the same table fails with.
RACING_CREATE = ("DELTA_PROTOCOL_CHANGED", "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION")


def _not_a_table(exc: Exception) -> bool:
    text = str(exc)
    return "DELTA_MISSING_DELTA_TABLE" in text or "is not a Delta table" in text


class SparkNativeTables(DeltaTables):
    backend_name = "spark"

    def __init__(self, spark: SparkSession, settings):
        super().__init__(spark, settings)
        # (uri, layout) of the tables this object has created or checked: one check each
        self._checked: set[tuple] = set()

    def _ident(self, spec: TableSpec) -> str:
        return f"delta.`{self.uri(spec)}`"

    def _detail(self, spec: TableSpec) -> dict[str, Any] | None:
        try:
            with _expected_errors_unlogged():
                return self.spark.sql(f"DESCRIBE DETAIL {self._ident(spec)}").first().asDict()
        except Exception as exc:
            if _not_a_table(exc):
                return None
            raise

    def exists(self, spec: TableSpec) -> bool:
        return self._detail(spec) is not None

    def create(self, spec: TableSpec) -> None:
        layout = (self.uri(spec), spec.schema.simpleString(), spec.partition_by)
        if layout in self._checked:
            return
        detail = self._detail(spec)
        if detail is None:
            columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in spec.schema)
            parts = f" PARTITIONED BY ({', '.join(spec.partition_by)})" if spec.partition_by else ""
            comment = " COMMENT " + _quote(spec.description) if spec.description else ""
            try:
                with _expected_errors_unlogged():
                    self.spark.sql(
                        f"CREATE TABLE IF NOT EXISTS {self._ident(spec)} ({columns}) USING delta"
                        f"{parts}{comment} TBLPROPERTIES "
                        f"('delta.checkpointInterval' = '{CHECKPOINT_INTERVAL}')"
                    )
            except Exception as exc:
                # A backfill's first days create the table at once: a loser's CREATE conflicts
                # with the winner's commit, or finds the folder the winner is writing before
                # its first commit is there. The table then appears; check it like any other.
                if not any(code in str(exc) for code in RACING_CREATE):
                    raise
                detail = self._wait_for(spec)
                if detail is None:  # no winner: the folder holds something else
                    raise
        if detail is not None:
            schema = self.spark.read.format("delta").load(self.uri(spec)).schema
            self.check_layout(spec, self.uri(spec), schema.fields, detail["partitionColumns"])
        self._checked.add(layout)

    def _wait_for(self, spec: TableSpec, timeout_s: float = 30.0) -> dict[str, Any] | None:
        """The table's detail once a concurrent creator's first commit is visible."""
        deadline = time.monotonic() + timeout_s
        while (detail := self._detail(spec)) is None and time.monotonic() < deadline:
            time.sleep(0.5)
        return detail

    # --- writes ------------------------------------------------------------------------------
    def _spark_frame(self, spec: TableSpec, df: Frame) -> DataFrame:
        if isinstance(df, pa.Table):
            data = self.conform_arrow(spec, df)
            # Spark Connect cannot take the schema from an Arrow table without rows
            df = (
                self.spark.createDataFrame(data)
                if data.num_rows
                else self.spark.createDataFrame([], spec.schema)
            )
        return self.conform(spec, df)

    def _write(
        self,
        spec: TableSpec,
        df: Frame,
        run_id: str | None,
        operation: str,
        replace_where: str | None = None,
    ) -> int:
        self.create(spec)
        write_id, metadata = commit_metadata(run_id, operation)
        writer = self._spark_frame(spec, df).write.format("delta").option("userMetadata", metadata)
        if replace_where is None:
            writer.mode("append").save(self.uri(spec))
        else:
            # Delta checks that every written row matches replaceWhere and fails the write if not.
            writer.mode("overwrite").option("replaceWhere", replace_where).save(self.uri(spec))
        return self.committed_version(spec, write_id)

    def append(self, spec: TableSpec, df: Frame, *, run_id: str | None = None) -> int:
        return self._write(spec, df, run_id, "append")

    def overwrite_partitions(
        self, spec: TableSpec, df: Frame, partitions: Partitions, *, run_id: str | None = None
    ) -> int:
        return self._write(
            spec, df, run_id, "overwrite_partitions", replace_where=partition_predicate(partitions)
        )

    def merge(self, spec: TableSpec, df: Frame, *, run_id: str | None = None) -> int:
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        self.create(spec)
        source = self._spark_frame(spec, df)
        self.check_merge_keys_distributed(spec, source)
        # Only new or changed rows go into the MERGE: Delta rewrites every file holding a
        # matched row even when no column changed, so an unchanged snapshot must match nothing.
        target = self.spark.read.format("delta").load(self.uri(spec))
        same = F.lit(True)
        for field in spec.schema:
            ours, theirs = source[field.name], target[field.name]
            if isinstance(field.dataType, T.MapType):  # maps have no equality in Spark SQL
                ours, theirs = F.to_json(ours), F.to_json(theirs)
            same = same & ours.eqNullSafe(theirs)
        changed = source.join(target, on=same, how="left_anti")
        if changed.isEmpty():
            return self.version(spec)
        view = f"nightjar_merge_{uuid.uuid4().hex}"
        changed.createOrReplaceTempView(view)
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.key)
        write_id, metadata = commit_metadata(run_id, "merge")
        try:
            with _session_conf(self.spark, USER_METADATA_CONF, metadata):
                self.spark.sql(
                    f"MERGE INTO {self._ident(spec)} t USING {view} s ON {on} "
                    "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
                )
        finally:
            self.spark.catalog.dropTempView(view)
        return self.committed_version(spec, write_id)

    def check_merge_keys_distributed(self, spec: TableSpec, source: DataFrame) -> None:
        """:meth:`check_merge_keys` as a Spark aggregation: at most five keys reach here."""
        if not spec.key:
            raise DeltaIOError(f"{spec.name}: merge needs a key; the TableSpec declares none")
        dupes = source.groupBy(*spec.key).count().where("count > 1").limit(5).collect()
        if dupes:
            shown = ", ".join(str(tuple(r[k] for k in spec.key)) for r in dupes)
            raise DeltaIOError(
                f"{spec.name}: merge source has duplicate keys {spec.key}: {shown}; nothing written"
            )

    # --- maintenance ---------------------------------------------------------------------------
    def vacuum(self, spec: TableSpec, retain_hours: int = 168, *, enforce: bool = True) -> int:
        _, metadata = commit_metadata(None, "vacuum")
        with (
            _session_conf(self.spark, RETENTION_CHECK_CONF, str(enforce).lower()),
            _session_conf(self.spark, USER_METADATA_CONF, metadata),
        ):
            self.spark.sql(f"VACUUM {self._ident(spec)} RETAIN {int(retain_hours)} HOURS")
        for entry in self.history(spec, limit=5):
            if entry["operation"] == "VACUUM END":
                return int(entry["metrics"].get("numDeletedFiles", 0))
        return 0

    # --- reads -------------------------------------------------------------------------------
    def read(
        self,
        spec: TableSpec,
        *,
        version: int | None = None,
        partitions: Partitions | None = None,
        between: Between | None = None,
    ) -> DataFrame:
        # Pinned to one version, so that the version recorded for lineage is the one read.
        version = self.version(spec) if version is None else version
        self.versions_read[spec.name] = version
        df = self.spark.read.format("delta").option("versionAsOf", version).load(self.uri(spec))
        if partitions:
            df = df.where(partition_predicate(partitions))
        # Delta's data skipping reads only the files whose statistics overlap the window
        return df.where(between_filter(between)) if between else df

    def count_rows(self, spec: TableSpec, partitions: Partitions | None = None) -> int:
        return self.read(spec, partitions=partitions).count()

    def version(self, spec: TableSpec) -> int:
        try:
            row = self.spark.sql(f"DESCRIBE HISTORY {self._ident(spec)} LIMIT 1").first()
        except Exception as exc:
            if _not_a_table(exc):
                raise DeltaIOError(f"{spec.name}: no Delta table at {self.uri(spec)}") from exc
            raise
        return int(row["version"])

    def history(self, spec: TableSpec, limit: int | None = None) -> list[dict[str, Any]]:
        sql = f"DESCRIBE HISTORY {self._ident(spec)}" + (f" LIMIT {int(limit)}" if limit else "")
        return [
            history_entry(
                r["version"],
                r["timestamp"].replace(tzinfo=dt.UTC),  # the session time zone is UTC
                r["operation"],
                r["userMetadata"],
                r["operationParameters"],
                r["operationMetrics"],
            )
            for r in self.spark.sql(sql).collect()
        ]


@contextlib.contextmanager
def _expected_errors_unlogged():
    """A Spark Connect client logs every failed RPC at ERROR before raising it; "is not a Delta
    table" is an answer here, not a fault, and must not read as one in a task's log."""
    connect_log = logging.getLogger("pyspark.sql.connect.logging")
    level = connect_log.level
    connect_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        connect_log.setLevel(level)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _session_conf:
    """Set a runtime SQL conf for a block, then restore what was there."""

    def __init__(self, spark: SparkSession, key: str, value: str):
        self.spark, self.key, self.value = spark, key, value

    def __enter__(self) -> None:
        self.before = self.spark.conf.get(self.key, None)
        self.spark.conf.set(self.key, self.value)

    def __exit__(self, *exc) -> None:
        if self.before is None:
            self.spark.conf.unset(self.key)
        else:
            self.spark.conf.set(self.key, self.before)
