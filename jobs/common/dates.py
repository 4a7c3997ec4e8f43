"""Logical dates: parsing, validation against the data's range, the operating time zone."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from jobs.common.errors import NightjarError
from jobs.common.settings import DATA_END, DATA_START

# The airline day closes at midnight New York time: "end of day D" and "prediction time for a
# flight on D+1" are both this instant.
OPERATING_TZ = "America/New_York"


def parse_date(value: str | dt.date | dt.datetime) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    # the whole text: a day, or an ISO timestamp (its day); "2013-01-05junk" is refused
    text = str(value).strip()
    try:
        if len(text) == len("YYYY-MM-DD"):
            return dt.date.fromisoformat(text)
        return dt.datetime.fromisoformat(text).date()
    except ValueError as exc:
        raise NightjarError(f"not a date: {value!r} (expected YYYY-MM-DD)") from exc


def check_in_range(day: dt.date) -> dt.date:
    if not DATA_START <= day <= DATA_END:
        raise NightjarError(
            f"logical date {day} is outside the source data's range {DATA_START}..{DATA_END}"
        )
    return day


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def interval_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """The days of the data interval ``[start, end)``, each checked against the data's range."""
    if end <= start:
        raise NightjarError(f"empty data interval [{start}, {end}): its end must follow its start")
    return [check_in_range(d) for d in days(start, end - dt.timedelta(days=1))]


def as_days(days_or_day: dt.date | Sequence[dt.date]) -> list[dt.date]:
    """The days a stage processes: one day (the daily DAG), or consecutive days (an interval).
    Every stage takes either: the daily run is the one-day case of the same code."""
    if isinstance(days_or_day, dt.date):
        return [days_or_day]
    out = sorted(days_or_day)
    if not out or out != days(out[0], out[-1]):
        raise NightjarError(f"a stage needs consecutive days, got {[str(d) for d in out]}")
    return out


T = TypeVar("T")


def takes_days(job: Callable[..., T]) -> Callable[..., T]:
    """A Spark stage's ``run(spark, tables, settings, days, run_id)`` (what
    ``StageRun.spark_args`` passes) from ``job``, which takes the same arguments but gets the
    days as :func:`as_days` reads them: the run takes one day or consecutive days."""

    @functools.wraps(job)
    def run(
        spark: Any, tables: Any, settings: Any, days: dt.date | Sequence[dt.date], run_id: str
    ) -> T:
        return job(spark, tables, settings, as_days(days), run_id)

    return run


def span(days: Sequence[dt.date]) -> str:
    """How logs name the days a stage ran: ``2013-01-03``, or ``2013-01-30..2013-02-02``."""
    return str(days[0]) if len(days) == 1 else f"{days[0]}..{days[-1]}"


def end_of_day_utc(day: dt.date) -> dt.datetime:
    """The UTC instant ``day`` closes in the operating time zone (the next local midnight):
    features of ``day`` are stamped with it, and it is the prediction time of ``day + 1``."""
    from zoneinfo import ZoneInfo

    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), ZoneInfo(OPERATING_TZ))
    return midnight.astimezone(dt.UTC)
