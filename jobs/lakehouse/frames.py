"""Where a stage's rows live between its one Spark job and its writes.

A stage runs each output's plan once, then counts, checks and writes the result. Day-sized,
the result comes to the task as Arrow: one job, and delta-rs writes it from memory (fastest for
~1,000 rows a day, see `make bench-delta`). At scale it must stay on the cluster: the result is
checkpointed on the executors, counted there, and written by them (Spark-native Delta, or
delta-rs committing the files the executors wrote). :func:`run_once` decides per output, from
the Delta settings and the rows the stage expects (``collect_max_rows``): small outputs (the
dimensions, a day's weather) are still collected on a cluster, where a checkpoint, a count and a
write job would each cost more than the rows. The helpers below work on either form.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.settings import Settings


def on_cluster(settings: Settings) -> bool:
    """Results stay on the executors when the executors write Delta files."""
    return settings.delta_backend == "spark" or settings.delta_rs_write_path == "executors"


def stays_on_cluster(settings: Settings, expected_rows: int) -> bool:
    """Whether :func:`run_once` keeps an output of ``expected_rows`` on the executors."""
    return on_cluster(settings) and expected_rows > settings.collect_max_rows


def run_once(frame: DataFrame, settings: Settings, expected_rows: int):
    """``frame``'s plan, run once: as Arrow in the task, or checkpointed on the executors when
    they write Delta and the output is expected to exceed ``collect_max_rows``."""
    if stays_on_cluster(settings, expected_rows):
        return frame.localCheckpoint()
    return frame.toArrow()


def num_rows(rows) -> int:
    return rows.num_rows if isinstance(rows, pa.Table) else rows.count()


def where_in(rows, column: str, values: Sequence[Any]):
    if isinstance(rows, pa.Table):
        return rows.filter(pc.is_in(rows[column], pa.array(list(values))))
    return rows.where(F.col(column).isin(list(values)))


def value_counts_by(rows, columns: list[str]) -> dict[tuple, int]:
    """Rows per combination of ``columns``' values."""
    if isinstance(rows, pa.Table):
        counts = rows.group_by(columns).aggregate([([], "count_all")]).to_pylist()
        return {tuple(c[k] for k in columns): c["count_all"] for c in counts}
    return {tuple(r[:-1]): r[-1] for r in rows.groupBy(*columns).count().collect()}


def latest(rows, key: list[str], order: str):
    """One row per ``key``: the one with the greatest ``order``."""
    if isinstance(rows, pa.Table):
        newest = rows.group_by(key).aggregate([(order, "max")])
        return rows.join(
            newest, keys=[*key, order], right_keys=[*key, f"{order}_max"], join_type="inner"
        )
    rank = F.row_number().over(Window.partitionBy(*key).orderBy(F.col(order).desc()))
    return rows.withColumn("_rank", rank).where(F.col("_rank") == 1).drop("_rank")


def spans(rows, key: str, day: str):
    """Each ``key``'s rows on consecutive days, identical apart from ``day``, as one row with
    its first and last day (``_from``, ``_to``, in place of ``day``). A dimension lands a whole
    snapshot every day, nearly all of it unchanged: over a month, 31 copies of every airport
    and plane, which each join of a month's flights would build into its hash table. A key
    that changes, or is missing on a day, starts a new span."""
    names = rows.column_names if isinstance(rows, pa.Table) else rows.columns
    columns = [c for c in names if c not in (key, day)]
    if isinstance(rows, pa.Table):
        ordered = rows.sort_by([(key, "ascending"), (day, "ascending")])
        n = ordered.num_rows

        def before(c):  # each row's predecessor, aligned with rows 1..n-1
            return ordered[c].slice(0, n - 1)

        def after(c):
            return ordered[c].slice(1)

        dates = pc.cast(ordered[day], pa.int32())
        same = pc.and_(
            pc.equal(after(key), before(key)),
            pc.equal(pc.subtract(dates.slice(1), dates.slice(0, n - 1)), 1),
        )
        for c in columns:
            equal = pc.equal(after(c), before(c))
            both_null = pc.and_(pc.is_null(after(c)), pc.is_null(before(c)))
            same = pc.and_(same, pc.fill_null(pc.or_(equal, both_null), both_null))
        starts = pa.concat_arrays(
            [pa.array([True] if n else [], pa.bool_()), *pc.invert(same).chunks]
        )
        numbered = ordered.append_column("_span", pc.cumulative_sum(pc.cast(starts, pa.int64())))
        grouped = numbered.group_by([key, "_span", *columns], use_threads=False).aggregate(
            [(day, "min"), (day, "max")]
        )
        return grouped.select([key, *columns, f"{day}_min", f"{day}_max"]).rename_columns(
            [key, *columns, "_from", "_to"]
        )
    by_key = Window.partitionBy(key).orderBy(day)
    previous = F.lag(day).over(by_key)
    starts = previous.isNull() | (F.datediff(F.col(day), previous) != 1)
    for c in columns:
        starts = starts | ~F.col(c).eqNullSafe(F.lag(c).over(by_key))
    span = F.sum(starts.cast("int")).over(by_key.rowsBetween(Window.unboundedPreceding, 0))
    return (
        rows.withColumn("_span", span)
        .groupBy(key, "_span", *columns)
        .agg(F.min(day).alias("_from"), F.max(day).alias("_to"))
        .select(key, *columns, "_from", "_to")
    )


def as_frame(spark, rows) -> DataFrame:
    """``rows`` on the cluster: a collected result is sent back as a local relation."""
    return spark.createDataFrame(rows) if isinstance(rows, pa.Table) else rows


def concat(parts: list):
    """One result of ``parts``: Arrow if every part is, else a frame on the cluster (a small
    collected part is sent back to it; an empty one is left out)."""
    if all(isinstance(p, pa.Table) for p in parts):
        return pa.concat_tables(parts)
    spark = next(p for p in parts if isinstance(p, DataFrame)).sparkSession
    kept = [p for p in parts if not (isinstance(p, pa.Table) and p.num_rows == 0)]
    return functools.reduce(DataFrame.unionByName, [as_frame(spark, p) for p in kept])


def to_pandas(frame: DataFrame):
    """``frame`` collected to pandas, without the query's metrics that Spark Connect attaches as
    ``attrs``: pandas deep-copies a frame's attrs into every frame derived from it (each
    column, slice and mask), 9% of a month's check_silver CPU and 18% of check_gold's."""
    rows = frame.toPandas()
    rows.attrs.clear()
    return rows
