"""The quality gates of the daily DAG: silver after the silver task, gold after the gold task.

Each gate validates the Delta snapshot of the run's partitions, each day on its own with its
own parameters (an interval's rows are read once, then split by day; collected to pandas: a day
is ~1,000 rows, where GX's pandas engine answers in well under a second), records every result
in ``quality.results``, prints the Data Docs pages, and raises on critical failures (naming the
days) so nothing downstream runs on bad data.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common.dates import OPERATING_TZ, end_of_day_utc, takes_days
from jobs.common.delta import DeltaTables, TableSpec
from jobs.common.schema import struct
from jobs.common.settings import Settings
from jobs.lakehouse import frames, source
from jobs.lakehouse import tables as tb
from jobs.quality import trends
from jobs.quality.gx_runner import ValidationOutcome, enforce, load_suite, validate_days

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
    tables: DeltaTables,
    layer: str,
    days: list[dt.date],
    outcomes: list[ValidationOutcome],
    run_id: str,
) -> None:
    rows = [row for outcome in outcomes for row in outcome.rows]
    data = pa.Table.from_pylist(rows, schema=QUALITY_RESULTS.arrow_schema)
    tables.overwrite_partitions(
        QUALITY_RESULTS, data, {"layer": [layer], "logical_date": days}, run_id=run_id
    )
    for outcome in outcomes:
        log.info("Data Docs for %s on %s: %s", outcome.suite, outcome.day, outcome.docs_page)


def summary(outcomes: list[ValidationOutcome]) -> dict:
    return {
        "expectations": sum(len(o.rows) for o in outcomes),
        "failed": sum(len(o.failed) for o in outcomes),
    }


def quarantine_rate_rows(
    tables: DeltaTables, settings: Settings, days: list[dt.date], run_id: str
) -> dict[dt.date, dict]:
    """The silver job's quarantine rate for flights on each day, as a gate result (critical
    above the configured maximum)."""
    recon = {
        r["logical_date"]: r
        for r in tables.read(
            tb.RECONCILIATION, partitions={"source_table": ["flights"], "logical_date": days}
        ).collect()
    }
    rows = {}
    for day in days:
        counts = recon.get(day)
        rate = counts["quarantined"] / counts["landed"] if counts and counts["landed"] else 0.0
        rows[day] = {
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
    return rows


Outcomes = Callable[[DeltaTables, Settings, list[dt.date], str], list[ValidationOutcome]]


def gate(layer: str) -> Callable[[Outcomes], Callable[..., dict]]:
    """A layer's gate from ``outcomes(tables, settings, days, run_id)``, what its suites found
    for each of the days: the gate, ``check(spark, tables, settings, days, run_id)`` as the
    stages call it, takes one day or several, records every result in ``quality.results``,
    raises on critical failures and returns the :func:`summary`."""

    def make(outcomes: Outcomes) -> Callable[..., dict]:
        @takes_days
        def check(
            spark: SparkSession,
            tables: DeltaTables,
            settings: Settings,
            days: list[dt.date],
            run_id: str,
        ) -> dict:
            found = outcomes(tables, settings, days, run_id)
            record(tables, layer, days, found, run_id)
            enforce(*found)
            return summary(found)

        return functools.wraps(outcomes)(check)

    return make


def per_day(
    frame: DataFrame, column: str, days: list[dt.date], settings: Settings, *, drop: bool = False
) -> dict[dt.date, DataFrame | pd.DataFrame]:
    """Each day's rows of ``frame`` (by its date ``column``) as the frame GX runs on, read once:
    collected to pandas (fastest for days of ~1,000 rows: see `make bench-quality`) or left in
    Spark (``NIGHTJAR_QUALITY_ENGINE=spark``, for days too big for one process). ``drop``
    leaves the date column out."""
    if settings.quality_engine == "spark":
        parts = {day: frame.where(F.col(column) == F.lit(day)) for day in days}
        return {day: part.drop(column) if drop else part for day, part in parts.items()}
    rows = frames.to_pandas(frame)
    dates = rows[column]
    parts = {day: rows[dates == day].reset_index(drop=True) for day in days}
    return {day: part.drop(columns=column) if drop else part for day, part in parts.items()}


@gate("bronze")
def check_bronze(
    tables: DeltaTables, settings: Settings, days: list[dt.date], run_id: str
) -> list[ValidationOutcome]:
    """Structure of what landed: run by the bronze task right after it writes, before silver."""
    flights = tables.read(tb.BRONZE["flights"], partitions={"_logical_date": days})
    columns = [*source.FLIGHT_COLUMNS, *(c.split()[0] for c in tb.BRONZE_META)]
    return validate_days(
        per_day(flights, "_logical_date", days, settings),
        "bronze_flights",
        "bronze",
        {day: {"columns": columns} for day in days},
        settings,
        run_id,
    )


SILVER_CHECKED_COLUMNS = (
    "flight_id",
    "carrier",
    "origin",
    "dest",
    "sched_dep_utc",
    "distance",
    "dep_delay",
    "arr_delay",
    "air_time",
    "tailnum",
)


def silver_frame(flights: DataFrame) -> DataFrame:
    """The silver columns the suites check, plus the scheduled departure's local date (and the
    flight date, to split an interval by)."""
    local = F.from_utc_timestamp("sched_dep_utc", OPERATING_TZ)
    return flights.select(
        *SILVER_CHECKED_COLUMNS,
        F.date_format(local, "yyyy-MM-dd").alias("sched_dep_local_date"),
        "flight_date",
    )


def reference_codes(tables: DeltaTables) -> dict:
    """The dimension snapshots' codes the silver suite checks against (sorted: the results
    table records them, and a table's read order is no contract)."""

    def codes(spec, column: str) -> list[str]:
        return sorted(r[column] for r in tables.read(spec).select(column).collect())

    return {
        "carriers": codes(tb.SILVER_AIRLINES, "carrier"),
        "airports": codes(tb.SILVER_AIRPORTS, "faa"),
    }


@gate("silver")
def check_silver(
    tables: DeltaTables, settings: Settings, days: list[dt.date], run_id: str
) -> list[ValidationOutcome]:
    """Each day's silver flights alone (``silver_flights``) and against its own trailing window
    (``silver_flights_trends``), plus its quarantine rate."""
    day_frames = per_day(
        silver_frame(tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": days})),
        "flight_date",
        days,
        settings,
        drop=True,
    )
    parameters, bands, windows = silver_parameters(tables, days)
    outcomes = validate_days(day_frames, "silver_flights", "silver", parameters, settings, run_id)
    rates = quarantine_rate_rows(tables, settings, days, run_id)
    for outcome in outcomes:
        outcome.rows.append(rates[outcome.day])

    trend_outcomes = validate_days(
        day_frames, "silver_flights_trends", "silver", bands, settings, run_id
    )
    trend_suite = load_suite("silver_flights_trends")
    for outcome in trend_outcomes:
        outcome.rows += trends.correlation_rows(
            windows[outcome.day], outcome.day, trend_suite, run_id
        )
    outcomes += trend_outcomes
    return outcomes


def silver_parameters(tables: DeltaTables, days: list[dt.date]) -> tuple[dict, dict, dict]:
    """What ``check_silver`` validates each day with: the ``silver_flights`` suite's parameters
    (the dimensions' codes, the day), the ``silver_flights_trends`` suite's bands, and the
    trailing window of daily statistics each day's bands come from."""
    codes = reference_codes(tables)
    parameters = {day: {**codes, "logical_date": [day.isoformat()]} for day in days}
    trend_suite = load_suite("silver_flights_trends")
    daily = trends.daily_stats(tables, tb.SILVER_FLIGHTS, "flight_date", days, trend_suite)
    windows = {day: trends.window(daily, day, trend_suite) for day in days}
    bands = {}
    for day, window in windows.items():
        bands[day], history = trends.trailing_parameters(window, day, trend_suite)
        log.info("cross-day bands for %s from %d days of history: %s", day, history, bands[day])
    return parameters, bands, windows


@gate("gold")
def check_gold(
    tables: DeltaTables, settings: Settings, days: list[dt.date], run_id: str
) -> list[ValidationOutcome]:
    """Each day's gold flights and entity statistics."""
    flights = per_day(
        tables.read(tb.GOLD_FLIGHTS, partitions={"flight_date": days}).withColumn(
            # as 0/1: GX's Spark engine cannot average a boolean (it observes null)
            "is_disrupted",
            F.col("is_disrupted").cast("int"),
        ),
        "flight_date",
        days,
        settings,
    )
    silver_rows = tables.count_rows_per(tb.SILVER_FLIGHTS, "flight_date", days)
    window = max(settings.rolling_windows_days)
    stacked = frames.concat(
        [
            tables.read(
                tb.gold_stats(entity, settings.rolling_windows_days),
                partitions={"as_of_date": days},
            ).select(
                F.lit(entity).alias("entity"),
                F.col(key).alias("entity_key"),
                F.col("event_ts").cast("string").alias("event_ts"),
                F.col(f"disrupted_rate_{window}d").alias("disrupted_rate_window"),
                F.col(f"cancel_rate_{window}d").alias("cancel_rate_window"),
                F.col(f"flights_{window}d").alias("flights_window"),
                "as_of_date",
            )
            for entity, key in tb.ENTITY_KEYS.items()
        ]
    )

    return validate_days(
        flights,
        "gold_flights",
        "gold",
        {day: {"silver_rows": silver_rows[day]} for day in days},
        settings,
        run_id,
    ) + validate_days(
        per_day(stacked, "as_of_date", days, settings, drop=True),
        "gold_entity_stats",
        "gold",
        # the instant each day closes, as the stats table's event_ts reads as text (UTC)
        {day: {"event_ts": [str(end_of_day_utc(day).replace(tzinfo=None))]} for day in days},
        settings,
        run_id,
    )
