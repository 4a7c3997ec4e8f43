"""Delta Lake I/O behind one interface (see ``base.py``); ``open_tables`` picks the backend."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from jobs.common.delta.base import (
    DeltaIOError,
    DeltaTables,
    Partitions,
    TableSpec,
    partition_predicate,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.common.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "DeltaIOError",
    "DeltaTables",
    "Partitions",
    "TableSpec",
    "open_tables",
    "partition_predicate",
]


def open_tables(spark: SparkSession, settings: Settings, backend: str | None = None) -> DeltaTables:
    """The Delta backend chosen by ``settings.delta_backend`` ('auto' detects Spark's jars)."""
    from jobs.common.delta.rs import DeltaRsTables
    from jobs.common.delta.spark_native import SparkNativeTables, spark_delta_available

    choice = backend or settings.delta_backend
    if choice == "delta-rs":
        return DeltaRsTables(spark, settings)
    available, why = spark_delta_available(spark)
    if choice == "spark":
        if not available:
            raise DeltaIOError(f"NIGHTJAR_DELTA_BACKEND=spark but {why}")
        return SparkNativeTables(spark, settings)
    log.info("Delta backend: %s (%s)", "spark" if available else "delta-rs", why)
    return SparkNativeTables(spark, settings) if available else DeltaRsTables(spark, settings)
