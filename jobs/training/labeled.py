"""The labeled days there are: the partitions of ``gold.flights`` (a day's outcomes land with
its data), read from the Delta log alone. Light to import: the retraining policy counts them
every night, and every default training window is sized by them."""

from __future__ import annotations

import datetime as dt

from jobs.common.delta.snapshot import partition_values
from jobs.common.errors import NightjarError
from jobs.common.settings import Settings
from jobs.lakehouse import tables as tb


def days(settings: Settings) -> list[dt.date]:
    return partition_values(settings.table_uri(tb.GOLD_FLIGHTS.name), "flight_date")


def days_until(settings: Settings, day: dt.date) -> int:
    """How many labeled days there are up to ``day``."""
    return sum(d <= day for d in days(settings))


def newest(settings: Settings) -> dt.date:
    labeled = days(settings)
    if not labeled:
        raise NightjarError("gold.flights holds no labeled day yet: run the daily DAG first")
    return labeled[-1]


def default_window(settings: Settings, end: dt.date) -> int:
    """The configured window, shrunk to the labeled days there are up to ``end``: early in the
    data a 60-day window would reach before the first day."""
    return min(settings.training_window_days, days_until(settings, end))
