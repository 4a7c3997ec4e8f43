"""Landing: export one logical day from the upstream system into the landing zone.

For day D the export holds, as CSV files in ``<landing>/<D>/``:
``flights.csv`` (D's flights with their outcomes), ``schedule.csv`` (D+1's timetable, no outcomes),
``weather.csv`` (D's hourly observations at the origins), and snapshots of ``planes.csv``,
``airlines.csv`` and ``airports.csv``. On a file system the folder appears atomically (written
aside, then renamed), so a reader never sees half an export, and re-landing a day replaces it
whole. An object store has no rename: there the day's files are moved in one by one, and the DAG
runs bronze only after landing has finished.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
from pyarrow import csv as pacsv
from pyarrow import fs as pafs

from jobs.common.dates import as_days, check_in_range
from jobs.common.settings import Settings
from jobs.common.storage import filesystem
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


# Arrow's CSV writer (fast enough for the scale generator's millions of flights a day) quotes
# every text value.
CSV_OPTIONS = pacsv.WriteOptions(quoting_style="needed")


def landing_root(settings: Settings) -> str:
    return settings.landing.rstrip("/")


def landing_dir(settings: Settings, day: dt.date) -> str:
    return f"{landing_root(settings)}/{day.isoformat()}"


def landing_file(settings: Settings, day: dt.date, export: str) -> str:
    return f"{landing_dir(settings, day)}/{export}.csv"


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


def run(days: dt.date | Sequence[dt.date], settings: Settings) -> dict[str, int]:
    """Land each day (one, or an interval's); returns rows per exported file, summed."""
    totals: Counter[str] = Counter()
    for day in as_days(days):
        check_in_range(day)
        totals.update(publish(settings, day, export_day(day, settings.state_dir / "source_cache")))
    return dict(totals)


def publish(
    settings: Settings, day: dt.date, exports: dict[str, pd.DataFrame | pa.Table]
) -> dict[str, int]:
    """Write ``exports`` (export name -> its text columns) as day ``day``'s landing folder,
    replacing any earlier landing of the day; returns rows per file."""
    files, target = filesystem(landing_dir(settings, day))
    staging = f"{target.rsplit('/', 1)[0]}/.{day.isoformat()}.{uuid.uuid4().hex}.tmp"
    files.create_dir(staging)
    counts = {}
    try:
        for name, frame in exports.items():
            data = (
                frame
                if isinstance(frame, pa.Table)
                else pa.Table.from_pandas(frame, preserve_index=False)
            )
            with files.open_output_stream(f"{staging}/{name}.csv") as out:
                pacsv.write_csv(data, out, CSV_OPTIONS)
            counts[name] = data.num_rows
        _publish(files, staging, target)
    finally:
        if files.get_file_info(staging).type != pafs.FileType.NotFound:
            files.delete_dir(staging)
    log.info("landed %s into %s: %s", day, landing_dir(settings, day), counts)
    return counts


def _publish(files: pafs.FileSystem, staging: str, target: str) -> None:
    """Replace ``target`` with the staged export."""
    if files.get_file_info(target).type != pafs.FileType.NotFound:
        files.delete_dir(target)
    if isinstance(files, pafs.LocalFileSystem):
        files.move(staging, target)  # one rename
        return
    for staged in files.get_file_info(pafs.FileSelector(staging)):
        files.move(staged.path, f"{target}/{staged.base_name}")
