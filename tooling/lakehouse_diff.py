"""Two lakehouses compared table by table, for the harnesses that rebuild one another way (the
backfill and crash benchmarks, the end-to-end and interval tests): every Delta table read by
delta-rs with the columns that record *which* run or *when* left out, rows in a stable order."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

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
# The date column each table is partitioned by (first found), for comparing two lakehouses on
# the days one of them holds.
DATE_COLUMNS = ("_logical_date", "flight_date", "as_of_date", "obs_date", "logical_date")


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
    """Raise AssertionError at the first table that differs (or a table only one side has)."""
    if sorted(left) != sorted(right):
        raise AssertionError(f"different tables: {sorted(left)} != {sorted(right)}")
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], obj=name, rtol=1e-12)
