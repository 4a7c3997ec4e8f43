"""The quality gates of the daily DAG: silver after the silver task, gold after the gold task.

Each gate validates the Delta snapshot of the run's partition (collected to pandas: a day is
~1,000 rows, where GX's pandas engine answers in well under a second), records every result in
``quality.results``, prints the Data Docs page, and raises on critical failures so nothing
downstream runs on bad data.
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common.dates import OPERATING_TZ
from jobs.common.delta import DeltaTables, TableSpec
from jobs.common.schema import struct
from jobs.common.settings import Settings
from jobs.lakehouse import source
from jobs.lakehouse import tables as tb
from jobs.quality import trends
from jobs.quality.gx_runner import ValidationOutcome, enforce, load_suite, validate

log = logging.getLogger(__name__)

QUALITY_RESULTS = TableSpec(
    name="quality.results",
    schema=struct(
        "logical_date date",
        "layer string",
        "suite string",
        "expectation string",
        "column string",
        "kwargs string",
        "severity string",
        "success boolean",
        "observed_value string",
        "exception string",
        "_run_id string",
    ),
    partition_by=("layer", "logical_date"),
    description="Every expectation evaluated by a quality gate, per day and layer",
    run_metadata=("_run_id",),
)


def record(
    tables: DeltaTables, layer: str, day: dt.date, outcomes: list[ValidationOutcome], run_id: str
) -> None:
    rows = [row for outcome in outcomes for row in outcome.rows]
    data = pa.Table.from_pylist(rows, schema=QUALITY_RESULTS.arrow_schema)
    tables.overwrite_partitions(
        QUALITY_RESULTS, data, {"layer": [layer], "logical_date": [day]}, run_id=run_id
    )
    for outcome in outcomes:
        log.info("Data Docs for %s on %s: %s", outcome.suite, day, outcome.docs_page)


def quarantine_rate_row(tables: DeltaTables, settings: Settings, day: dt.date, run_id: str) -> dict:
    """The silver job's quarantine rate for flights, as a gate result (critical above the
    configured maximum)."""
    recon = tables.read(
        tb.RECONCILIATION, partitions={"source_table": ["flights"], "logical_date": [day]}
    ).first()
    rate = recon["quarantined"] / recon["landed"] if recon and recon["landed"] else 0.0
    return {
        "logical_date": day,
        "layer": "silver",
        "suite": "silver_flights",
        "expectation": "quarantine_rate_at_most",
        "column": None,
        "kwargs": f'{{"max_value": {settings.max_quarantine_rate}}}',
        "severity": "critical",
        "success": rate <= settings.max_quarantine_rate,
        "observed_value": f"{rate:.4f}",
        "exception": None,
        "_run_id": run_id,
    }


def check_bronze(
    spark: SparkSession, tables: DeltaTables, settings: Settings, day: dt.date, run_id: str
) -> dict:
    """Structure of what landed: run by the bronze task right after it writes, before silver."""
    flights = tables.read(tb.BRONZE["flights"], partitions={"_logical_date": [day]})
    columns = [*source.FLIGHT_COLUMNS, *(c.split()[0] for c in tb.BRONZE_META)]
    outcome = validate(
        collect(flights, settings),
        "bronze_flights",
        "bronze",
        day,
        {"columns": columns},
        settings,
        run_id,
    )
    record(tables, "bronze", day, [outcome], run_id)
    enforce(outcome)
    return {"expectations": len(outcome.rows), "failed": len(outcome.failed)}


SILVER_CHECKED_COLUMNS = (
    "flight_id",
    "carrier",
    "origin",
    "dest",
    "sched_dep_utc",
    "distance",
    "dep_delay",
    "arr_delay",
    "tailnum",
)


def silver_frame(flights: DataFrame) -> DataFrame:
    """The silver columns the suites check, plus the scheduled departure's local date."""
    local = F.from_utc_timestamp("sched_dep_utc", OPERATING_TZ)
    return flights.select(
        *SILVER_CHECKED_COLUMNS, F.date_format(local, "yyyy-MM-dd").alias("sched_dep_local_date")
    )


def silver_parameters(tables: DeltaTables, day: dt.date) -> dict:
    """Reference values for the silver suite: the dimension snapshots' codes (sorted: the
    results table records them, and a table's read order is no contract) and the day."""

    def codes(spec, column: str) -> list[str]:
        return sorted(r[column] for r in tables.read(spec).select(column).collect())

    return {
        "carriers": codes(tb.SILVER_AIRLINES, "carrier"),
        "airports": codes(tb.SILVER_AIRPORTS, "faa"),
        "logical_date": [day.isoformat()],
    }


def collect(frame: DataFrame, settings: Settings) -> DataFrame | pd.DataFrame:
    """The frame GX runs on: collected to pandas (fastest for a day: see `make bench-quality`)
    or left in Spark (``NIGHTJAR_QUALITY_ENGINE=spark``, for days too big for one process)."""
    return frame if settings.quality_engine == "spark" else frame.toPandas()


def check_silver(
    spark: SparkSession, tables: DeltaTables, settings: Settings, day: dt.date, run_id: str
) -> dict:
    frame = collect(
        silver_frame(tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": [day]})), settings
    )
    parameters = silver_parameters(tables, day)
    outcome = validate(frame, "silver_flights", "silver", day, parameters, settings, run_id)
    outcome.rows.append(quarantine_rate_row(tables, settings, day, run_id))
    trend_suite = load_suite("silver_flights_trends")
    daily = trends.daily_stats(tables, tb.SILVER_FLIGHTS, "flight_date", day, trend_suite)
    bands, history = trends.trailing_parameters(daily, day, trend_suite)
    log.info("cross-day bands for %s from %d days of history: %s", day, history, bands)
    trend = validate(frame, "silver_flights_trends", "silver", day, bands, settings, run_id)
    trend.rows += trends.correlation_rows(daily, day, trend_suite, run_id)
    outcomes = [outcome, trend]
    record(tables, "silver", day, outcomes, run_id)
    for outcome in outcomes:
        enforce(outcome)
    return {
        "expectations": sum(len(o.rows) for o in outcomes),
        "failed": sum(len(o.failed) for o in outcomes),
    }


def check_gold(
    spark: SparkSession, tables: DeltaTables, settings: Settings, day: dt.date, run_id: str
) -> dict:
    flights = collect(
        tables.read(tb.GOLD_FLIGHTS, partitions={"flight_date": [day]}).withColumn(
            # as 0/1: GX's Spark engine cannot average a boolean (it observes null)
            "is_disrupted",
            F.col("is_disrupted").cast("int"),
        ),
        settings,
    )
    silver_rows = tables.count_rows(tb.SILVER_FLIGHTS, {"flight_date": [day]})
    window = max(settings.rolling_windows_days)
    stacked = None
    for entity, key in tb.ENTITY_KEYS.items():
        spec = tb.gold_stats(entity, settings.rolling_windows_days)
        stats = tables.read(spec, partitions={"as_of_date": [day]}).select(
            F.lit(entity).alias("entity"),
            F.col(key).alias("entity_key"),
            F.col("event_ts").cast("string").alias("event_ts"),
            F.col(f"disrupted_rate_{window}d").alias("disrupted_rate_window"),
            F.col(f"cancel_rate_{window}d").alias("cancel_rate_window"),
            F.col(f"flights_{window}d").alias("flights_window"),
        )
        stacked = stats if stacked is None else stacked.unionByName(stats)
    end_of_day = pd.Timestamp(day + dt.timedelta(days=1)).tz_localize(OPERATING_TZ)
    outcomes = [
        validate(
            flights, "gold_flights", "gold", day, {"silver_rows": silver_rows}, settings, run_id
        ),
        validate(
            collect(stacked, settings),
            "gold_entity_stats",
            "gold",
            day,
            {"event_ts": [str(end_of_day.tz_convert("UTC").tz_localize(None))]},
            settings,
            run_id,
        ),
    ]
    record(tables, "gold", day, outcomes, run_id)
    for outcome in outcomes:
        enforce(outcome)
    return {
        "expectations": sum(len(o.rows) for o in outcomes),
        "failed": sum(len(o.failed) for o in outcomes),
    }
