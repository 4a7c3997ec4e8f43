"""Feast's point-in-time join, run on Spark: a feature service's features for entity rows that
are a Spark DataFrame, so that no row passes through the task.

It gives what Feast's ibis join gives (``feast.infra.offline_stores.ibis.point_in_time_join``):
for each view, an entity row gets the view's row with the same join keys whose timestamp is at
or before the row's and no older than the view's TTL, the newest of those (then the newest
created); no such row, or a null key, gives nulls. Columns are ``<view>__<feature>`` (the
projection's alias in place of the view's name, where it has one). It reads
plain services only: every view a ``FeatureView`` over a Delta table of the lakehouse, without
a field mapping; :func:`views` says whether a service is one, and the caller lets Feast answer
for the others.

- Replaces: ``FeatureStore.get_historical_features`` (through Nightjar's offline store) for the
  night's scoring at scale, which takes D+1's flights into the task as pandas and joins them
  there (``feature_retrieval``: ``auto`` uses this join where the stages keep their outputs on
  the cluster).
- Why: the task held the night: at 1M flights `score` peaked at 5.8 GB in the task through
  Feast, at its baseline (+0.1 GB) through this join (``make bench-scale``); 10M cannot fit.
- Written for: Feast 0.67 (its ibis point-in-time join's semantics) and Spark 4.
- Back to stock: ``NIGHTJAR_FEATURE_RETRIEVAL=feast``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from feast import FeatureStore, FeatureView
from feast.data_format import DeltaFormat
from feast.errors import FeatureViewNotFoundException
from feast.infra.offline_stores.file_source import FileSource
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.delta import DeltaTables, TableSpec

log = logging.getLogger(__name__)

# A view's rows picked for the entity rows (at most one per distinct keys and time) are sent
# whole to every executor when there are at most this many: the entity rows are then not
# shuffled for that view's join. 100k rows of a view's features are ~10 MB, Spark's own
# broadcast threshold. At 1M flights (bench-scale's day, two single-core executors, warm),
# broadcasting the carrier, origin, route, plane and weather views took the join alone from 29.8
# to 20.4 s.
BROADCAST_ROWS = 100_000


@dataclass(frozen=True)
class ViewRead:
    """What the join reads of one of a service's views."""

    prefix: str  # the columns' prefix: the projection's alias, or the view's name
    table: TableSpec  # the lakehouse table the view's source reads
    join_keys: dict[str, str]  # the table's key column -> the entity rows' column
    timestamp_field: str
    created_timestamp_column: str | None
    features: tuple[str, ...]
    ttl: dt.timedelta | None

    @property
    def columns(self) -> dict[str, str]:
        """The retrieval's column of each feature -> the table's column."""
        return {f"{self.prefix}__{name}": name for name in self.features}


def views(
    store: FeatureStore, lakehouse: Mapping[str, TableSpec], service: str
) -> list[ViewRead] | None:
    """How to read ``service``'s views on Spark, given the ``lakehouse`` tables by URI; None
    when one of them is not plain (an on-demand view, a source that is not one of those Delta
    tables, a field mapping)."""
    reads = []
    for projection in store.get_feature_service(service).feature_view_projections:
        try:
            view = store.get_feature_view(projection.name)
        except FeatureViewNotFoundException:
            log.warning(
                "%s: %s is not a feature view (on-demand?): Feast answers", service, projection.name
            )
            return None
        source = view.batch_source
        plain = (
            isinstance(view, FeatureView)
            and isinstance(source, FileSource)
            and isinstance(source.file_format, DeltaFormat)
            and not source.field_mapping
            and source.path in lakehouse
        )
        if not plain:
            log.warning(
                "%s: view %s does not read a lakehouse Delta table as it is (source %s): Feast "
                "answers",
                service,
                view.name,
                getattr(source, "path", source),
            )
            return None
        keys = [column.name for column in view.entity_columns]
        reads.append(
            ViewRead(
                prefix=projection.name_alias or view.name,
                table=lakehouse[source.path],
                join_keys=projection.join_key_map or {key: key for key in keys},  # as Feast
                timestamp_field=source.timestamp_field,
                created_timestamp_column=source.created_timestamp_column or None,
                features=tuple(f.name for f in projection.features),
                ttl=view.ttl or None,
            )
        )
    return reads


def historical_features(
    tables: DeltaTables, reads: list[ViewRead], entities: DataFrame, event_timestamp: str
) -> DataFrame:
    """``entities`` with every view's features as of each row's ``event_timestamp``.

    Each view is matched to the distinct (keys, time) of the entity rows, which for a night's
    flights are a few thousand carriers, routes and planes, not one per flight, and reads only
    the rows of its table that those times can pick; views that read one table the same way are
    matched together."""
    groups = _by_source(reads)
    keys = [list(same[0].join_keys.values()) for same in groups]
    at = F.unix_micros(event_timestamp)  # a collected timestamp would be naive, in local time
    low, high, *sizes = entities.agg(
        F.min(at),
        F.max(at),
        *[F.approx_count_distinct(F.struct(*k, event_timestamp)) for k in keys],
    ).first()
    low, high = _utc(low), _utc(high)
    out = entities
    for same, k, size in zip(groups, keys, sizes, strict=True):
        picked = _latest_before(tables, same, entities.select(*k, event_timestamp), low, high)
        if size <= BROADCAST_ROWS:  # then the entity rows are not shuffled for this view
            picked = F.broadcast(picked)
        out = out.join(picked, on=[*k, event_timestamp], how="left")
    return out.select(*entities.columns, *[c for read in reads for c in read.columns])


def _by_source(reads: list[ViewRead]) -> list[list[ViewRead]]:
    """The views that read one table the same way (keys, stamps, TTL), together: each group is
    one read and one join (a service's schedule and timetable views both read
    gold.scheduled_flights by flight id)."""
    groups: dict[tuple, list[ViewRead]] = {}
    for read in reads:
        how = (
            read.table.name,
            tuple(read.join_keys.items()),
            read.timestamp_field,
            read.created_timestamp_column,
            read.ttl,
        )
        groups.setdefault(how, []).append(read)
    return list(groups.values())


def _utc(micros: int | None) -> dt.datetime:
    """A Spark timestamp's microseconds as an aware UTC datetime (none: 1970, no entity rows)."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros or 0)


def _latest_before(
    tables: DeltaTables,
    same: list[ViewRead],
    entity_rows: DataFrame,
    low: dt.datetime,
    high: dt.datetime,
) -> DataFrame:
    """(keys, time, features) for each distinct (keys, time) of ``entity_rows`` that the views
    (``same`` source) have a row in time for: its newest at or before the time, within the
    TTL."""
    read, event = same[0], entity_rows.columns[-1]
    columns = {column: source for view in same for column, source in view.columns.items()}
    earliest = low - read.ttl if read.ttl else dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    rows = tables.read(read.table, between=(read.timestamp_field, earliest, high))
    stamps = [F.col(read.timestamp_field).alias("_feature_ts")]
    if read.created_timestamp_column:
        stamps.append(F.col(read.created_timestamp_column).alias("_created_ts"))
    rows = rows.select(
        *[F.col(key).alias(f"_key_{i}") for i, key in enumerate(read.join_keys)],
        *stamps,
        *[F.col(source).alias(column) for column, source in columns.items()],
    )
    times = entity_rows.distinct()
    matches = [
        times[column] == rows[f"_key_{i}"] for i, column in enumerate(read.join_keys.values())
    ]
    matches.append(rows["_feature_ts"] <= times[event])
    if read.ttl:
        matches.append(rows["_feature_ts"] >= times[event] - F.lit(read.ttl))
    newest = [F.col("_feature_ts").desc()]
    if read.created_timestamp_column:
        newest.append(F.col("_created_ts").desc())
    keys = list(read.join_keys.values())
    rank = F.row_number().over(Window.partitionBy(*keys, event).orderBy(*newest))
    return (
        times.join(rows, matches, "inner")
        .withColumn("_rank", rank)
        .where(F.col("_rank") == 1)
        .select(*keys, event, *columns)
    )
