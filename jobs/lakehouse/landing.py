"""Landing: export one logical day from the upstream system into the landing zone.

For day D the export holds, as CSV files in ``<landing>/<D>/``:
``flights.csv`` (D's flights with their outcomes), ``schedule.csv`` (D+1's timetable, no outcomes),
``weather.csv`` (D's hourly observations at the origins), and snapshots of ``planes.csv``,
``airlines.csv`` and ``airports.csv``. On a file system the folder appears atomically (written
aside, then renamed), so a reader never sees half an export, and re-landing a day replaces it
whole. An object store has no rename: there the day's files are moved in one by one, and the DAG
runs bronze only after landing has finished.

The staging folder, ``<landing>/.<D>.<owner>.<uuid>.tmp``, names the process that writes it
(``jobs/common/owner.py``: pid, start time, host). A landing killed before its rename (SIGKILL
runs no clean-up) leaves it behind; the next landing of D removes it before it stages its own,
and says so in its log, when its owner is dead: a process of this host that no longer runs, or
any other (another host's, or an older name's) while this process holds D's claim
(``jobs/common/day_claims.py``: every landing stages under its day's claim, so a staging folder
of D that is not the holder's is a dead run's). A live landing's folder is never touched.
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

from jobs.common import day_claims, owner
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
    remove_dead_staging(settings, day)
    staging = (
        f"{target.rsplit('/', 1)[0]}/{staging_prefix(day)}{owner.current()}.{uuid.uuid4().hex}.tmp"
    )
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


def staging_prefix(day: dt.date) -> str:
    return f".{day.isoformat()}."


def staging_owner(name: str, day: dt.date) -> owner.Owner | None:
    """The owner a staging folder of ``day`` names (None: an older name, without one)."""
    middle = name.removeprefix(staging_prefix(day)).removesuffix(".tmp")
    return owner.Owner.parse(middle.rpartition(".")[0])


def remove_dead_staging(settings: Settings, day: dt.date) -> list[str]:
    """Remove the staging folders of ``day`` that landings killed before their rename left
    (see the module's doc: only a dead owner's); returns their names."""
    files, target = filesystem(landing_dir(settings, day))
    root = target.rsplit("/", 1)[0]
    prefix = staging_prefix(day)
    found = [
        info
        for info in files.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        if info.base_name.startswith(prefix) and info.base_name.endswith(".tmp")
    ]
    removed: list[str] = []
    held: bool | None = None  # whether this process holds the day's claim, asked once
    for info in found:
        writer = staging_owner(info.base_name, day)
        alive = writer.alive() if writer else None
        if alive is None:  # another host's, or no owner named: dead if the day is ours
            if held is None:
                held = day_claims.held_here(settings, day)
            if not held:
                log.info("left %s: its landing (%s) may be running, on a host this one cannot "
                         "check, and this process does not hold %s's claim",
                         info.path, writer or "no owner named", day)  # fmt: skip
                continue
            why = f"this process holds {day}'s claim, so its landing ({writer}) is over"
        elif alive:
            log.info("left %s: its landing (pid %s) is running", info.path, writer.pid)
            continue
        else:
            why = f"its landing (pid {writer.pid} on {writer.host}) died"
        files.delete_dir(info.path)
        removed.append(info.base_name)
        log.warning("removed %s, a staging folder a killed landing left: %s", info.path, why)
    return removed


def _publish(files: pafs.FileSystem, staging: str, target: str) -> None:
    """Replace ``target`` with the staged export."""
    if files.get_file_info(target).type != pafs.FileType.NotFound:
        files.delete_dir(target)
    if isinstance(files, pafs.LocalFileSystem):
        files.move(staging, target)  # one rename
        return
    for staged in files.get_file_info(pafs.FileSelector(staging)):
        files.move(staged.path, f"{target}/{staged.base_name}")
