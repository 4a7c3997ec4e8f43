"""Read a Delta table's current snapshot into Arrow without Spark (delta-rs), for Python-side
jobs (training sets, scoring) and Feast's offline store: only the files the Delta log lists as
live are read, never files a correction has removed."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from jobs.common.delta.base import Partitions


def read_arrow(
    uri: str,
    partitions: Partitions | None = None,
    columns: Sequence[str] | None = None,
    version: int | None = None,
) -> pa.Table:
    from deltalake import DeltaTable

    table = DeltaTable(uri, version=version)
    filters = [
        (column, "in", [str(v) for v in values]) for column, values in (partitions or {}).items()
    ]
    return table.to_pyarrow_table(
        filters=filters or None, columns=list(columns) if columns else None
    )


def append_arrow(uri: str, data: pa.Table) -> int:
    """Append ``data`` to the Delta table at ``uri`` (created on first write); returns the
    new version. For small Python-side records (model decisions, predictions' lineage)."""
    from deltalake import DeltaTable, write_deltalake

    write_deltalake(uri, data, mode="append")
    return DeltaTable(uri).version()
