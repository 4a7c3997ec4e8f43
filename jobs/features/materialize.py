"""The daily DAG's ``materialize`` task: load the features of day D into the online store.

Features of D are stamped with the end of D, so the window ``(end of D-1, end of D]`` holds
exactly D's entity statistics, D's weather and the timetable of D+1. The online store serves
the newest features, so a run for a day older than the newest one materialized (a backfill, a
re-run after a correction) rewrites the newest day's window instead of putting older values
online; the offline store, read at the Delta snapshot, serves every day's corrected values
either way. Writes replace the stored values (Redis with ``skip_dedup``), so re-running a day
is idempotent and a corrected value reaches the online store. The DAG runs one ``materialize``
at a time, so the newest-day check cannot race.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from jobs.common.dates import OPERATING_TZ, as_days, end_of_day_utc
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


def run(settings: Settings, days: dt.date | Sequence[dt.date]) -> dict:
    """Put the newest of ``days`` (one, or an interval's) online: the store serves the newest
    features only, and the offline store reads every day from the Delta snapshot."""
    day = as_days(days)[-1]
    store = feature_store(settings)
    newest = newest_materialized_day(store)
    target = max(day, newest) if newest else day
    if target != day:
        log.info(
            "online store already holds %s; rewriting that day's window, not %s's", newest, day
        )
    start = end_of_day_utc(target - dt.timedelta(days=1)) + dt.timedelta(microseconds=1)
    end = end_of_day_utc(target)
    store.materialize(start_date=start, end_date=end)
    views = [view.name for view in store.list_feature_views()]
    log.info("materialized %s (%s .. %s] into the online store: %s", target, start, end, views)
    return {"materialized_day": target.isoformat(), "feature_views": len(views)}
