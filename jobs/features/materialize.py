"""The daily DAG's ``materialize`` task: load the features of day D into the online store.

Features of D are stamped with the end of D, so the window ``(end of D-1, end of D]`` holds
exactly D's entity statistics, D's weather and the timetable of D+1. The online store serves
the newest features, so a run for a day older than the newest one materialized (a backfill, a
re-run after a correction) rewrites the newest day's window instead of putting older values
online; the offline store, read at the Delta snapshot, serves every day's corrected values
either way. Writes replace the stored values (Redis with ``skip_dedup``), so re-running a day
is idempotent and a corrected value reaches the online store. The DAG runs one ``materialize``
at a time, so the newest-day check cannot race.

An online store can lose what was written (a Redis restart without persistence, a deleted
SQLite file, tables dropped by another state folder's ``feast apply``) while the registry still
records the days as materialized. Each run first checks, for one entity per feature view of
the newest day, that the store still serves it; if not, it recreates the tables and reloads
that day before its own, with a warning.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.type_map import python_values_to_proto_values

from jobs.common.dates import OPERATING_TZ, as_days, end_of_day_utc
from jobs.common.delta.snapshot import read_arrow
from jobs.common.settings import Settings
from jobs.features.store import feature_store

log = logging.getLogger(__name__)


def newest_materialized_day(store) -> dt.date | None:
    """The latest day whose window every feature view has materialized, from the registry."""
    ends = [view.most_recent_end_time for view in store.list_feature_views()]
    if not ends or any(end is None for end in ends):
        return None
    newest = min(ends)  # every view has reached it: the end of that day, New York time
    return (newest.astimezone(ZoneInfo(OPERATING_TZ)) - dt.timedelta(microseconds=1)).date()


def window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The event times of ``day``'s features: (end of the day before, end of the day]."""
    start = end_of_day_utc(day - dt.timedelta(days=1)) + dt.timedelta(microseconds=1)
    return start, end_of_day_utc(day)


def _sample(view, start: dt.datetime, end: dt.datetime) -> tuple[dict, EntityKey] | None:
    """An entity of the view's source with features in [start, end], and its key."""
    source = view.batch_source
    rows = read_arrow(
        source.path, columns=view.join_keys, between=(source.timestamp_field, start, end)
    ).drop_null()
    if not rows.num_rows:
        return None
    row = rows.slice(0, 1).to_pylist()[0]
    types = {field.name: field.dtype.to_value_type() for field in view.entity_columns}
    values = [python_values_to_proto_values([row[k]], t)[0] for k, t in types.items()]
    return row, EntityKey(join_keys=list(types), entity_values=values)


def lost_online(store, day: dt.date) -> list[str]:
    """What the online store no longer serves of ``day``'s materialization: per feature view,
    its table, or a sample entity of the day (its value missing or older than the day)."""
    start, end = window(day)
    provider, lost = store._get_provider(), []
    for view in store.list_feature_views():
        sample = _sample(view, start, end)
        try:
            found = provider.online_read(store.config, view, [sample[1]] if sample else [])
        except sqlite3.OperationalError as e:
            if "no such table" not in str(e):
                raise
            lost.append(f"{view.name}'s table")
            continue
        # a key Redis lacks reads as a value stamped 1970, one SQLite lacks as no value
        if sample and (found[0][0] is None or found[0][0] < start):
            lost.append(f"{view.name} of {sample[0]}")
    return lost


def recreate_online_tables(store) -> None:
    """Create the views' online tables that are missing (Feast's own update; existing ones
    are kept as they are)."""
    store._get_provider().update_infra(
        project=store.project,
        tables_to_delete=[],
        tables_to_keep=store.list_feature_views(),
        entities_to_delete=[],
        entities_to_keep=store.list_entities(),
        partial=True,
    )


def run(settings: Settings, days: dt.date | Sequence[dt.date]) -> dict:
    """Put the newest of ``days`` (one, or an interval's) online: the store serves the newest
    features only, and the offline store reads every day from the Delta snapshot. An online
    store that has lost the newest day materialized gets it back first."""
    day = as_days(days)[-1]
    store = feature_store(settings)
    newest = newest_materialized_day(store)
    target = max(day, newest) if newest else day
    if target != day:
        log.info(
            "online store already holds %s; rewriting that day's window, not %s's", newest, day
        )
    lost = lost_online(store, newest) if newest else []
    if lost:
        log.warning(
            "the online store has lost what was materialized (%s): recreating its tables and "
            "reloading %s, the newest day materialized",
            "; ".join(lost),
            newest,
        )
        recreate_online_tables(store)
    for load in sorted({newest, target} if lost else {target}):
        start, end = window(load)
        store.materialize(start_date=start, end_date=end)
        log.info("materialized %s (%s .. %s] into the online store", load, start, end)
    views = [view.name for view in store.list_feature_views()]
    log.info("online store holds %s: %s", target, views)
    return {
        "materialized_day": target.isoformat(),
        "feature_views": len(views),
        "reloaded_day": newest.isoformat() if lost else None,
    }
