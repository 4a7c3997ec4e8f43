"""Landing: export one logical day from the upstream system into the landing zone.

For day D the export holds, as CSV files in ``<landing>/<D>/``:
``flights.csv`` (D's flights with their outcomes), ``schedule.csv`` (D+1's timetable, no outcomes),
``weather.csv`` (D's hourly observations at the origins), and snapshots of ``planes.csv``,
``airlines.csv`` and ``airports.csv``. The folder appears atomically (written aside, then renamed),
so a reader never sees half an export, and re-landing a day replaces it whole.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import uuid
from pathlib import Path

import pandas as pd

from jobs.common.dates import check_in_range
from jobs.common.settings import Settings
from jobs.lakehouse import source

log = logging.getLogger(__name__)

EXPORTS = {
    "flights": source.FLIGHT_COLUMNS,
    "schedule": source.SCHEDULE_COLUMNS,
    "weather": source.WEATHER_COLUMNS,
    "planes": source.PLANE_COLUMNS,
    "airlines": source.AIRLINE_COLUMNS,
    "airports": source.AIRPORT_COLUMNS,
}


def landing_dir(settings: Settings, day: dt.date) -> Path:
    return Path(settings.landing) / day.isoformat()


def landing_file(settings: Settings, day: dt.date, export: str) -> Path:
    return landing_dir(settings, day) / f"{export}.csv"


def export_day(day: dt.date, cache_dir: Path | None = None) -> dict[str, pd.DataFrame]:
    """What the upstream system exports for day ``day``, as raw text."""
    tomorrow = day + dt.timedelta(days=1)

    def table(name: str, on: dt.date | None = None) -> pd.DataFrame:
        return source.table(name, cache_dir, on)

    return {
        "flights": table("flights", day)[source.FLIGHT_COLUMNS],
        "schedule": table("flights", tomorrow)[source.SCHEDULE_COLUMNS],
        "weather": table("weather", day)[source.WEATHER_COLUMNS],
        "planes": table("planes")[source.PLANE_COLUMNS],
        "airlines": table("airlines")[source.AIRLINE_COLUMNS],
        "airports": table("airports")[source.AIRPORT_COLUMNS],
    }


def run(day: dt.date, settings: Settings) -> dict[str, int]:
    """Land day ``day``; returns rows per exported file."""
    check_in_range(day)
    target = landing_dir(settings, day)
    staging = target.parent / f".{day.isoformat()}.{uuid.uuid4().hex}.tmp"
    staging.mkdir(parents=True)
    counts = {}
    try:
        for name, frame in export_day(day, settings.state_dir / "source_cache").items():
            frame.to_csv(staging / f"{name}.csv", index=False)
            counts[name] = len(frame)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("landed %s into %s: %s", day, target, counts)
    return counts
