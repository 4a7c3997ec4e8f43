"""Spark-native Delta backend: used when the Delta jars are on Spark's classpath (a cluster, or
the project's container image). All operations go through Spark SQL / DataFrameWriter, so they
work the same for a classic session and a Spark Connect client.

This machine cannot fetch the jars (no Maven Central), so here the contract tests report this
backend as unavailable instead of running it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from jobs.common.delta.base import (
    DeltaIOError,
    DeltaTables,
    Frame,
    Partitions,
    TableSpec,
    partition_predicate,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def spark_delta_available(spark: SparkSession, probe: bool = False) -> tuple[bool, str]:
    """Whether this session can use Spark-native Delta, and why (not).

    Without ``probe`` a missing SQL extension answers at once (no Spark job); with it, the
    Delta data source itself is looked up too, so the reason says whether the jars are there.
    """
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    reasons = []
    if DELTA_EXTENSION not in extensions:
        reasons.append(f"spark.sql.extensions does not include {DELTA_EXTENSION}")
        if not probe:
            return False, reasons[0]
    try:
        spark.read.format("delta").load("/nonexistent/nightjar-delta-probe").limit(0).collect()
    except Exception as exc:  # the error's class tells whether the data source exists
        text = str(exc)
        if "DATA_SOURCE_NOT_FOUND" in text or "Failed to find data source: delta" in text:
            reasons.insert(
                0,
                "the Delta jars are not on Spark's classpath "
                "(format('delta') -> DATA_SOURCE_NOT_FOUND)",
            )
    if reasons:
        return False, "; ".join(reasons)
    return True, "format('delta') resolves and the Delta SQL extension is configured"


class SparkNativeTables(DeltaTables):
    backend_name = "spark"

    def _ident(self, spec: TableSpec) -> str:
        return f"delta.`{self.uri(spec)}`"

    def exists(self, spec: TableSpec) -> bool:
        try:
            self.spark.sql(f"DESCRIBE DETAIL {self._ident(spec)}").collect()
            return True
        except Exception:
            return False

    def create(self, spec: TableSpec) -> None:
        if self.exists(spec):
            detail = self.spark.sql(f"DESCRIBE DETAIL {self._ident(spec)}").first()
            have = self.spark.read.format("delta").load(self.uri(spec)).columns
            if have != spec.columns or tuple(detail["partitionColumns"]) != spec.partition_by:
                raise DeltaIOError(
                    f"{spec.name}: existing table has columns {have} partitioned by "
                    f"{detail['partitionColumns']}; the code expects {spec.columns} "
                    f"by {spec.partition_by}"
                )
            return
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in spec.schema)
        parts = f" PARTITIONED BY ({', '.join(spec.partition_by)})" if spec.partition_by else ""
        self.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {self._ident(spec)} ({columns}) USING delta{parts}"
        )

    def _spark_frame(self, spec: TableSpec, df: Frame) -> DataFrame:
        if isinstance(df, pa.Table):
            df = self.spark.createDataFrame(self.conform_arrow(spec, df))
        return self.conform(spec, df)

    def _writer(self, spec: TableSpec, df: Frame, run_id: str | None):
        writer = self._spark_frame(spec, df).write.format("delta")
        if run_id:
            writer = writer.option("userMetadata", f"nightjar.run_id={run_id}")
        return writer

    def append(self, spec: TableSpec, df: Frame, *, run_id: str | None = None) -> int:
        self.create(spec)
        self._writer(spec, df, run_id).mode("append").save(self.uri(spec))
        return self.version(spec)

    def overwrite_partitions(
        self, spec: TableSpec, df: Frame, partitions: Partitions, *, run_id: str | None = None
    ) -> int:
        self.create(spec)
        # Delta checks that every written row matches replaceWhere and fails the write if not.
        (
            self._writer(spec, df, run_id)
            .mode("overwrite")
            .option("replaceWhere", partition_predicate(partitions))
            .save(self.uri(spec))
        )
        return self.version(spec)

    def merge(self, spec: TableSpec, df: Frame, *, run_id: str | None = None) -> int:
        self.create(spec)
        source = self._spark_frame(spec, df)
        self.check_merge_keys(spec, source.select(*spec.key).toArrow())
        view = f"nightjar_merge_{spec.name.replace('.', '_')}"
        source.createOrReplaceTempView(view)
        on = " AND ".join(f"t.{k} = s.{k}" for k in spec.key)
        changed = (
            " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in spec.columns if c not in spec.key)
            or "true"
        )
        self.spark.sql(
            f"MERGE INTO {self._ident(spec)} t USING {view} s ON {on} "
            f"WHEN MATCHED AND ({changed}) THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        )
        return self.version(spec)

    def read(
        self, spec: TableSpec, *, version: int | None = None, partitions: Partitions | None = None
    ) -> DataFrame:
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        self.versions_read[spec.name] = version if version is not None else self.version(spec)
        df = reader.load(self.uri(spec))
        return df.where(partition_predicate(partitions)) if partitions else df

    def count_rows(self, spec: TableSpec, partitions: Partitions | None = None) -> int:
        return self.read(spec, partitions=partitions).count()

    def version(self, spec: TableSpec) -> int:
        return int(self.history(spec, limit=1)[0]["version"])

    def history(self, spec: TableSpec, limit: int | None = None) -> list[dict[str, Any]]:
        sql = f"DESCRIBE HISTORY {self._ident(spec)}" + (f" LIMIT {int(limit)}" if limit else "")
        return [row.asDict(recursive=True) for row in self.spark.sql(sql).collect()]
