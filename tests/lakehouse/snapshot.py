"""Table contents as comparable frames (run metadata left out: it records *which* run wrote)."""

from __future__ import annotations

import json

import pandas as pd

from jobs.common.delta import DeltaTables, TableSpec
from jobs.lakehouse import tables as tb


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


# Columns that record *which* run or *when* (run ids, wall-clock times, paths under the state
# folder), not what was computed.
RUN_METADATA = {
    "_run_id",
    "run_id",
    "mlflow_run_id",
    "airflow_run_id",
    "decided_at",
    "recorded_at",
    "_source_file",
    "source_file",
    "report",
}


def _canonical(text: str) -> str:
    """A JSON text with its floats to 12 significant digits (a quality result's observed value,
    say: a mean over rows read in another order differs in the last bits); other text as is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text

    def rounded(v):
        if isinstance(v, float):
            return float(f"{v:.12g}")
        if isinstance(v, list):
            return [rounded(x) for x in v]
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        return v

    return json.dumps(rounded(value), sort_keys=True)


def lakehouse_content(root: str) -> dict[str, pd.DataFrame]:
    """Every Delta table under a lakehouse root (read by delta-rs), run metadata left out,
    rows in a stable order."""
    from pathlib import Path

    from jobs.common.delta.snapshot import read_arrow

    tables = {}
    for path in sorted(p.parent for p in Path(root).glob("*/*/_delta_log")):
        frame = read_arrow(str(path)).to_pandas()
        frame = frame.drop(columns=sorted(RUN_METADATA & set(frame.columns)))
        for column in [c for c in frame.columns if frame[c].dtype.kind == "O"]:
            # maps and arrays compare by their text
            frame[column] = frame[column].astype(str).map(_canonical)
        # floats rounded for the order only: sums in another order differ in the last bits
        keys = frame.apply(lambda c: c.round(9) if c.dtype.kind == "f" else c.astype(str))
        order = keys.sort_values(list(keys.columns)).index
        tables[f"{path.parent.name}.{path.name}"] = frame.loc[order].reset_index(drop=True)
    return tables


# The date column each table is partitioned by (first found), for comparing two lakehouses on
# the days one of them holds.
DATE_COLUMNS = ("_logical_date", "flight_date", "as_of_date", "obs_date", "logical_date")


def restrict_to(
    content: dict[str, pd.DataFrame], like: dict[str, pd.DataFrame]
) -> dict[str, pd.DataFrame]:
    """``content``'s tables that ``like`` has, each cut to the days ``like``'s table holds."""
    out = {}
    for name, frame in like.items():
        theirs = content[name]
        column = next((c for c in DATE_COLUMNS if c in frame.columns), None)
        if column is not None:
            theirs = theirs[theirs[column].isin(set(frame[column]))]
        out[name] = theirs.reset_index(drop=True)
    return out


def assert_same_lakehouse(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert sorted(left) == sorted(right)
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name, rtol=1e-12)


def snapshot(tables: DeltaTables, windows: tuple[int, ...]) -> dict[str, pd.DataFrame]:
    return {spec.name: content(tables, spec) for spec in all_specs(windows) if tables.exists(spec)}


def assert_same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert sorted(left) == sorted(right)
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name)
