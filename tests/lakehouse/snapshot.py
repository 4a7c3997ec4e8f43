"""Table contents as comparable frames (run metadata left out: it records *which* run wrote),
read through the tests' Spark session. Whole lakehouses read by delta-rs are compared by
tooling/lakehouse_diff.py (the benchmarks use it too)."""

from __future__ import annotations

import pandas as pd

from jobs.common.delta import DeltaTables, TableSpec
from jobs.lakehouse import tables as tb

# benchmarks/chaos.py reads a lakehouse through this module
from tooling.lakehouse_diff import lakehouse_content  # noqa: F401


def all_specs(windows: tuple[int, ...]) -> list[TableSpec]:
    return [
        *tb.BRONZE.values(),
        tb.SILVER_FLIGHTS,
        tb.SILVER_SCHEDULE,
        tb.SILVER_WEATHER,
        tb.SILVER_AIRPORTS,
        tb.SILVER_AIRLINES,
        tb.SILVER_PLANES,
        tb.QUARANTINE,
        tb.RECONCILIATION,
        tb.GOLD_FLIGHTS,
        tb.GOLD_SCHEDULED_FLIGHTS,
        tb.GOLD_WEATHER,
        tb.GOLD_ENTITY_DAILY,
        *[tb.gold_stats(e, windows) for e in tb.ENTITY_KEYS],
    ]


def content(tables: DeltaTables, spec: TableSpec) -> pd.DataFrame:
    frame = tables.read(spec).toPandas()
    # _source_file names the landing folder, which differs between two lakehouses compared.
    frame = frame.drop(columns=[*spec.run_metadata, "_source_file", "source_file"], errors="ignore")
    return frame.sort_values(list(frame.columns), ignore_index=True)


def snapshot(tables: DeltaTables, windows: tuple[int, ...]) -> dict[str, pd.DataFrame]:
    return {spec.name: content(tables, spec) for spec in all_specs(windows) if tables.exists(spec)}


def assert_same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert sorted(left) == sorted(right)
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name)
