"""Silver: typed, cleaned, de-duplicated records with UTC timestamps, joined to dimensions.

Every landed record ends in exactly one place: accepted into a silver table, quarantined with a
reason code, or counted as a duplicate removed. ``silver.reconciliation`` records the counts per
run and source, and the run fails before writing anything if landed != accepted + quarantined +
duplicates.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Sequence

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common.dates import as_days, span
from jobs.common.delta import DeltaTables
from jobs.common.errors import NightjarError
from jobs.common.settings import Settings
from jobs.lakehouse import frames
from jobs.lakehouse import tables as tb

log = logging.getLogger(__name__)

NULL_TOKENS = ("NA", "")
ACCEPTED, QUARANTINED, DUPLICATE = "accepted", "quarantined", "duplicate"

# Raw column -> Spark type, per source. Columns not listed stay strings.
FLIGHT_TYPES = {
    "year": "int",
    "month": "int",
    "day": "int",
    "dep_time": "int",
    "sched_dep_time": "int",
    "dep_delay": "double",
    "arr_time": "int",
    "sched_arr_time": "int",
    "arr_delay": "double",
    "flight": "int",
    "air_time": "double",
    "distance": "double",
    "hour": "int",
    "minute": "int",
}
WEATHER_TYPES = {
    "year": "int",
    "month": "int",
    "day": "int",
    "hour": "int",
    "temp": "double",
    "dewp": "double",
    "humid": "double",
    "wind_dir": "double",
    "wind_speed": "double",
    "wind_gust": "double",
    "precip": "double",
    "pressure": "double",
    "visib": "double",
}
AIRPORT_TYPES = {"lat": "double", "lon": "double", "alt": "int", "tz": "int"}
PLANE_TYPES = {"year": "int", "engines": "int", "seats": "int", "speed": "int"}
TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ssX"


# --- parsing: typed values plus a reason code for every failed check ----------------------------
def is_missing(raw: Column) -> Column:
    return raw.isNull() | raw.isin(*NULL_TOKENS)


def parse(frame: DataFrame, types: dict[str, str], required: list[str]) -> DataFrame:
    """Replace raw text columns by typed values; collect reasons in ``_reasons`` (array)."""
    reasons = [F.when(F.col("_corrupt_record").isNotNull(), F.lit("MALFORMED_ROW"))]
    reasons += [F.when(is_missing(F.col(c)), F.lit(f"MISSING_VALUE:{c}")) for c in required]
    values = {}
    for name, type_name in types.items():
        raw = F.col(name)
        if type_name == "timestamp":
            value = F.try_to_timestamp(raw, F.lit(TIMESTAMP_FORMAT))
        else:
            value = raw.try_cast(type_name)
        value = F.when(is_missing(raw), F.lit(None)).otherwise(value)
        values[name] = value
        reasons.append(F.when(~is_missing(raw) & value.isNull(), F.lit(f"INVALID_TYPE:{name}")))
    raw_json = F.to_json(F.struct(*[F.col(c) for c in frame.columns if c != "_logical_date"]))

    def clean(c: str) -> Column:  # metadata columns pass through; raw text loses "NA" tokens
        return F.col(c) if c.startswith("_") else F.when(~is_missing(F.col(c)), F.col(c))

    out = frame.select(
        *[values.get(c, clean(c)).alias(c) for c in frame.columns],
        raw_json.alias("_record"),
        F.array_compact(F.array(*reasons)).alias("_reasons"),  # evaluated on the raw text
    )
    return out


def check(condition: Column, reason: str) -> Column:
    """``reason`` where ``condition`` holds, else null (a null condition does not hold)."""
    return F.when(F.coalesce(condition, F.lit(False)), F.lit(reason))


def add_reasons(frame: DataFrame, checks: list[Column]) -> DataFrame:
    """Append the reasons of failed ``checks`` to ``_reasons`` in one expression (chaining one
    column rewrite per check would grow the optimized plan exponentially)."""
    if not checks:
        return frame
    return frame.withColumn("_reasons", F.concat("_reasons", F.array_compact(F.array(*checks))))


def make_date(year: str, month: str, day: str) -> Column:
    """The date, or null where the parts do not form one (instead of failing under ANSI)."""
    return F.to_date(F.try_make_timestamp(year, month, day, F.lit(0), F.lit(0), F.lit(0)))


def valid_hhmm(value: Column, allow_2400: bool = False) -> Column:
    ok = (value >= 0) & (value % 100 < 60) & (F.floor(value / 100) < 24)
    return (ok | (value == 2400)) if allow_2400 else ok


def classify(frame: DataFrame, key: list[str], completeness: Column | None = None) -> DataFrame:
    """``_status``: quarantined (any reason), else one accepted row per key, else duplicate.

    The kept duplicate is the most complete, ties broken by the raw record, so the choice never
    depends on file order.
    """
    bad = F.size("_reasons") > 0
    order = ([completeness.desc()] if completeness is not None else []) + [F.col("_record")]
    rank = F.row_number().over(Window.partitionBy(bad, *key).orderBy(*order))
    return frame.withColumn(
        "_status", F.when(bad, QUARANTINED).when(rank == 1, ACCEPTED).otherwise(DUPLICATE)
    )


# --- sources ------------------------------------------------------------------------------------
def dimension(frame: DataFrame, types: dict[str, str], key: str) -> DataFrame:
    """A day's dimension snapshot (one snapshot per ``_logical_date``), tagged."""
    return classify(parse(frame, types, required=[key]), [key, "_logical_date"])


def flights(
    frame: DataFrame,
    airports: DataFrame,
    airlines: DataFrame,
    planes: DataFrame,
    *,
    with_outcomes: bool,
) -> DataFrame:
    """Operated flights of the landed day (``with_outcomes``) or the timetable it landed for
    the next day, tagged with ``_status``; joined to the dimensions landed the same day."""
    types = {k: v for k, v in FLIGHT_TYPES.items() if k in frame.columns}
    types["time_hour"] = "timestamp"
    required = [
        "year",
        "month",
        "day",
        "sched_dep_time",
        "carrier",
        "flight",
        "origin",
        "dest",
        "time_hour",
    ]
    df = parse(frame, types, required)
    df = df.withColumn("flight_date", make_date("year", "month", "day"))
    # a day's export holds that day's flights and the next day's timetable
    expected_date = F.date_add("_logical_date", 0 if with_outcomes else 1)
    checks = [
        check(F.col("flight_date") != expected_date, "WRONG_DATE"),
        check(~valid_hhmm(F.col("sched_dep_time")), "OUT_OF_RANGE:sched_dep_time"),
        check(F.col("distance") <= 0, "OUT_OF_RANGE:distance"),
    ]
    if with_outcomes:
        checks.append(
            check(~valid_hhmm(F.col("dep_time"), allow_2400=True), "OUT_OF_RANGE:dep_time")
        )

    day = "_logical_date"
    origin = airports.select(
        F.col("faa").alias("origin"),
        F.col("name").alias("origin_name"),
        F.col("tzone").alias("origin_tz"),
        day,
    )
    dest = airports.select(
        F.col("faa").alias("dest"),
        F.col("name").alias("dest_name"),
        F.col("tzone").alias("dest_tz"),
        day,
    )
    carrier = airlines.select("carrier", F.col("name").alias("carrier_name"), day)
    plane = planes.select(
        "tailnum",
        *[
            F.col(c).alias(f"plane_{c}")
            for c in ("year", "type", "manufacturer", "model", "engines", "seats", "engine")
        ],
        day,
    )
    df = (
        df.join(F.broadcast(origin), ["origin", day], "left")
        .join(F.broadcast(dest), ["dest", day], "left")
        .join(F.broadcast(carrier), ["carrier", day], "left")
        .join(F.broadcast(plane), ["tailnum", day], "left")
    )
    # Without the origin's time zone the departure cannot be placed in UTC.
    checks += [
        check(F.col("origin").isNotNull() & F.col("origin_tz").isNull(), "UNKNOWN_AIRPORT:origin"),
        check(F.col("carrier").isNotNull() & F.col("carrier_name").isNull(), "UNKNOWN_CARRIER"),
    ]
    df = add_reasons(df, checks)

    sched_local = F.try_make_timestamp(
        "year",
        "month",
        "day",
        F.floor(F.col("sched_dep_time") / 100).cast("int"),
        (F.col("sched_dep_time") % 100).cast("int"),
        F.lit(0),
    )
    ok = F.size("_reasons") == 0
    df = df.withColumn(
        "sched_dep_utc", F.when(ok, F.to_utc_timestamp(sched_local, F.col("origin_tz")))
    )
    df = df.withColumn(
        "flight_id",
        F.concat_ws("-", F.date_format("flight_date", "yyyyMMdd"), "carrier", "flight", "origin"),
    )
    completeness = None
    if with_outcomes:
        # The actual departure is the schedule plus the delay (dep_time alone is ambiguous
        # across midnight); a flight with no departure time was cancelled.
        df = df.withColumn(
            "dep_utc",
            F.when(
                ok, F.col("sched_dep_utc") + F.make_interval(mins=F.col("dep_delay").cast("int"))
            ),
        )
        df = df.withColumn("is_cancelled", F.col("dep_time").isNull())
        completeness = sum(
            F.col(c).isNotNull().cast("int") for c in ("dep_time", "arr_time", "air_time")
        )
    return classify(df, ["flight_id"], completeness)


def weather(frame: DataFrame) -> DataFrame:
    df = parse(
        frame,
        {**WEATHER_TYPES, "time_hour": "timestamp"},
        required=["origin", "year", "month", "day", "hour", "time_hour"],
    )
    df = df.withColumn("obs_date", make_date("year", "month", "day"))
    df = add_reasons(df, [check(F.col("obs_date") != F.col("_logical_date"), "WRONG_DATE")])
    return classify(df, ["origin", "time_hour"])


# --- the job ------------------------------------------------------------------------------------
SILVER_OUTPUTS = {
    "flights": tb.SILVER_FLIGHTS,
    "schedule": tb.SILVER_SCHEDULE,
    "weather": tb.SILVER_WEATHER,
    "airports": tb.SILVER_AIRPORTS,
    "airlines": tb.SILVER_AIRLINES,
    "planes": tb.SILVER_PLANES,
}


def collect(tagged: DataFrame, source_table: str, run_id: str, settings: Settings, rows: int):
    """Run the source's Spark plan once (see ``frames``), with what the writers need."""
    duplicate = F.col("_status") == DUPLICATE
    return frames.run_once(
        tagged.select(
            "*",
            F.lit(source_table).alias("source_table"),
            F.col("_logical_date").alias("logical_date"),
            F.col("_source_file").alias("source_file"),
            F.col("_record").alias("record"),
            F.when(duplicate, F.lit("DUPLICATE")).otherwise(F.get("_reasons", 0)).alias("reason"),
            F.when(duplicate, F.lit("DUPLICATE"))
            .otherwise(F.array_join("_reasons", ";"))
            .alias("reasons"),
            F.lit(run_id).alias("_run_id"),
        ).drop("_reasons"),
        settings,
        rows,
    )


def with_status(data, status: str):
    return frames.where_in(data, "_status", [status])


def run(
    spark: SparkSession,
    tables: DeltaTables,
    settings: Settings,
    days: dt.date | Sequence[dt.date],
    run_id: str,
) -> dict[str, dict[str, int]]:
    """Build silver for each day (one, or an interval's: one Spark job per source) from bronze;
    returns the reconciliation counts per source, summed over the days, and the quarantined
    rows per source and reason (``quarantine_reasons``)."""
    days = as_days(days)

    def bronze(export: str) -> DataFrame:
        df = tables.read(tb.BRONZE[export], partitions={"_logical_date": days})
        return df.drop("_rescued_data", "_run_id")

    dims_tagged = {
        "airports": dimension(bronze("airports"), AIRPORT_TYPES, "faa"),
        "airlines": dimension(bronze("airlines"), {}, "carrier"),
        "planes": dimension(bronze("planes"), PLANE_TYPES, "tailnum"),
    }
    landed = {
        name: tables.count_rows_per(tb.BRONZE[name], "_logical_date", days) for name in tb.BRONZE
    }

    def run_once(name: str, tagged: DataFrame):
        return collect(tagged, name, run_id, settings, sum(landed[name].values()))

    data = {name: run_once(name, df) for name, df in dims_tagged.items()}
    # The flights join the accepted dimension rows just computed (a few thousand rows a day, sent
    # back as local relations) instead of re-running the dimensions' plans inside every join.
    dims = {
        name: frames.as_frame(
            spark,
            with_status(data[name], ACCEPTED).select(
                [*SILVER_OUTPUTS[name].columns, "_logical_date"]
            ),
        )
        for name in dims_tagged
    }
    tagged = {
        "flights": flights(bronze("flights"), **dims, with_outcomes=True),
        "schedule": flights(bronze("schedule"), **dims, with_outcomes=False),
        "weather": weather(bronze("weather")),
    }
    data |= {name: run_once(name, df) for name, df in tagged.items()}
    counts = reconcile(data, landed)

    # Everything is checked; now write. Each write replaces exactly this run's partitions.
    tomorrows = [day + dt.timedelta(days=1) for day in days]
    partitions = {"flights": days, "schedule": tomorrows, "weather": days}
    for name, rows in data.items():
        spec = SILVER_OUTPUTS[name]
        accepted = with_status(rows, ACCEPTED)
        if name in partitions:
            tables.overwrite_partitions(
                spec,
                accepted.select(spec.columns),
                {spec.partition_by[0]: partitions[name]},
                run_id=run_id,
            )
        else:  # the newest snapshot's value of each key, as the days' merges in turn would leave
            latest = frames.latest(accepted, list(spec.key), "_logical_date")
            tables.merge(spec, latest.select(spec.columns), run_id=run_id)
    # Removed duplicates are kept beside the rejects (reason DUPLICATE): nothing is lost, and
    # the reconciliation still counts them apart.
    quarantined = frames.concat(
        [
            frames.where_in(rows, "_status", [QUARANTINED, DUPLICATE]).select(tb.QUARANTINE.columns)
            for rows in data.values()
        ]
    )
    tables.overwrite_partitions(
        tb.QUARANTINE,
        quarantined,
        {"source_table": list(data), "logical_date": days},
        run_id=run_id,
    )
    recon = pa.Table.from_pylist(
        [
            {"source_table": name, "logical_date": day, **c, "_run_id": run_id}
            for (name, day), c in counts.items()
        ],
        schema=tb.RECONCILIATION.arrow_schema,
    )
    tables.overwrite_partitions(
        tb.RECONCILIATION,
        recon,
        {"source_table": list(data), "logical_date": days},
        run_id=run_id,
    )
    totals: dict[str, Counter] = {name: Counter() for name in data}
    for (name, _), c in counts.items():
        totals[name].update(c)
    log.info("silver %s: %s", span(days), totals)
    reasons: dict[str, dict[str, int]] = {name: {} for name in data}
    by_reason = frames.value_counts_by(quarantined, ["source_table", "reason"])
    for (name, reason), n in by_reason.items():
        reasons[name][reason] = n
    return {**{name: dict(c) for name, c in totals.items()}, "quarantine_reasons": reasons}


def reconcile(
    data: dict, landed: dict[str, dict[dt.date, int]]
) -> dict[tuple[str, dt.date], dict[str, int]]:
    """Counts per source and day; fails loudly if any landed record is unaccounted for."""
    counts = {}
    for name, rows in data.items():
        by_status = frames.value_counts_by(rows, ["_logical_date", "_status"])
        for day, landed_rows in landed[name].items():
            c = {
                "landed": landed_rows,
                "accepted": by_status.get((day, ACCEPTED), 0),
                "quarantined": by_status.get((day, QUARANTINED), 0),
                "duplicates": by_status.get((day, DUPLICATE), 0),
            }
            if c["landed"] != c["accepted"] + c["quarantined"] + c["duplicates"]:
                raise NightjarError(
                    f"silver {name} on {day}: counts do not reconcile: {c}; nothing written"
                )
            counts[(name, day)] = c
    return counts
