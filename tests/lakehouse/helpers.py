"""Helpers for lakehouse tests: land a real day, then tamper with its files."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from jobs.common.settings import Settings
from jobs.lakehouse import landing


def land(settings: Settings, day: dt.date) -> Path:
    landing.run(day, settings)
    return Path(landing.landing_dir(settings, day))


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


def write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def edit_row(path: Path, index: int, **changes: str) -> list[str]:
    """Change columns of data row ``index`` (0-based, after the header); returns the new row."""
    rows = read_csv(path)
    header = rows[0]
    for column, value in changes.items():
        rows[index + 1][header.index(column)] = value
    write_csv(path, rows)
    return rows[index + 1]
