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

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common.dates import span, takes_days
from jobs.common.delta import DeltaTables
from jobs.common.errors import NightjarError
from jobs.common.settings import Settings
from jobs.lakehouse import frames, snapshots
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

# The contract's plausibility ranges: values no flight, instrument or aircraft can have
# (closed bounds; NaN and infinities fall outside). A typed value outside is quarantined as
# OUT_OF_RANGE:<column>. The suites warn on narrower, typical ranges (expectations/); a test
# keeps them inside these. Date parts are checked as dates, HHMM times by HHMM_TIMES.
PLAUSIBLE = {
    "flights": {
        "dep_delay": (-1440, 4320),  # a day early to three days late, in minutes
        "arr_delay": (-1440, 4320),
        "air_time": (1, 1440),
        "distance": (1, 12_000),  # miles; the longest flight ever scheduled is ~9,500
        "flight": (1, 99_999_999),  # an identifier, positive (the scale generator renumbers)
        "hour": (0, 23),
        "minute": (0, 59),
    },
    "weather": {
        "hour": (0, 23),
        "temp": (-130, 135),  # Fahrenheit; Earth's records are -128.6 and 134.1
        "dewp": (-130, 100),
        "humid": (0, 100),  # percent
        "wind_dir": (0, 360),  # degrees
        "wind_speed": (0, 260),  # mph; the strongest gust ever measured is 253
        "wind_gust": (0, 260),
        "precip": (0, 20),  # inches per hour
        "pressure": (850, 1090),  # millibars; records are 870 and 1084
        "visib": (0, 100),  # miles
    },
    "planes": {"year": (1903, 2100), "engines": (1, 16), "seats": (1, 1000), "speed": (0, 2500)},
    "airports": {"lat": (-90, 90), "lon": (-180, 180), "alt": (-1500, 30_000), "tz": (-12, 14)},
}
# HHMM local times; an actual time may read 2400 (midnight at the end of the day).
HHMM_TIMES = {"sched_dep_time": False, "sched_arr_time": False, "dep_time": True, "arr_time": True}
# Control characters never belong in a text field (a NUL, a stray escape): quarantined as
# INVALID_TEXT:<column>. A byte that is not UTF-8 reaches Spark as U+FFFD: INVALID_ENCODING.
CONTROL_CHARACTERS = r"[\x00-\x1F\x7F]"
REPLACEMENT_CHARACTER = "\ufffd"


# --- parsing: typed values plus a reason code for every failed check ----------------------------
def is_missing(raw: Column) -> Column:
    return raw.isNull() | raw.isin(*NULL_TOKENS)


def parse(frame: DataFrame, types: dict[str, str], required: list[str]) -> DataFrame:
    """Replace raw text columns by typed values; collect reasons in ``_reasons`` (array)."""
    raw_json = F.to_json(F.struct(*[F.col(c) for c in frame.columns if c != "_logical_date"]))
    text = [c for c in frame.columns if not c.startswith("_") and c not in types]
    reasons = [
        F.when(F.col("_corrupt_record").isNotNull(), F.lit("MALFORMED_ROW")),
        F.when(raw_json.contains(REPLACEMENT_CHARACTER), F.lit("INVALID_ENCODING")),
    ]
    reasons += [F.when(is_missing(F.col(c)), F.lit(f"MISSING_VALUE:{c}")) for c in required]
    reasons += [
        F.when(F.col(c).rlike(CONTROL_CHARACTERS), F.lit(f"INVALID_TEXT:{c}")) for c in text
    ]
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


def plausible(frame: DataFrame, source: str) -> list[Column]:
    """Checks that the contract's ranges and HHMM times hold for the columns ``frame`` has."""
    ranges = PLAUSIBLE[source].items()
    checks = [
        check(~F.col(c).between(low, high), f"OUT_OF_RANGE:{c}")
        for c, (low, high) in ranges
        if c in frame.columns
    ]
    if source == "flights":
        checks += [
            check(~valid_hhmm(F.col(c), allow_2400), f"OUT_OF_RANGE:{c}")
            for c, allow_2400 in HHMM_TIMES.items()
            if c in frame.columns
        ]
    return checks


def invalid_date(date: Column) -> Column:
    """The date parts are there but name no day (a 13th month, 30 February)."""
    return check(date.isNull(), "INVALID_DATE")


def make_date(year: str, month: str, day: str) -> Column:
    """The date, or null where the parts do not form one (instead of failing under ANSI)."""
    return F.to_date(F.try_make_timestamp(year, month, day, F.lit(0), F.lit(0), F.lit(0)))


def valid_hhmm(value: Column, allow_2400: bool = False) -> Column:
    ok = (value >= 0) & (value % 100 < 60) & (F.floor(value / 100) < 24)
    return (ok | (value == 2400)) if allow_2400 else ok


def classify(frame: DataFrame, key: list[str], completeness: Column | None = None) -> DataFrame:
    """``_status``: quarantined (any reason), else one accepted row per key, else duplicate.

    The kept duplicate is the most complete, ties broken by the raw record, so the choice never
    depends on file order. ``_conflict`` marks a removed duplicate whose content differs from
    the kept one (reason DUPLICATE_CONFLICT rather than DUPLICATE).
    """
    bad = F.size("_reasons") > 0
    order = ([completeness.desc()] if completeness is not None else []) + [F.col("_record")]
    by_key = Window.partitionBy(bad, *key).orderBy(*order)
    rank = F.row_number().over(by_key)
    return frame.withColumn(
        "_status", F.when(bad, QUARANTINED).when(rank == 1, ACCEPTED).otherwise(DUPLICATE)
    ).withColumn("_conflict", F.col("_record") != F.first("_record").over(by_key))


# --- sources ------------------------------------------------------------------------------------
def dimension(frame: DataFrame, source: str, types: dict[str, str], key: str) -> DataFrame:
    """A day's dimension snapshot (one snapshot per ``_logical_date``), tagged."""
    df = parse(frame, types, required=[key])
    df = add_reasons(df, plausible(df, source) if source in PLAUSIBLE else [])
    return classify(df, [key, "_logical_date"])


def flights(
    frame: DataFrame,
    airports: DataFrame,
    airlines: DataFrame,
    planes: DataFrame,
    *,
    with_outcomes: bool,
) -> DataFrame:
    """Operated flights of the landed day (``with_outcomes``) or the timetable it landed for
    the next day, tagged with ``_status``; joined to the dimensions landed the same day (each
    given as :func:`frames.spans` of its daily snapshots)."""
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
        invalid_date(F.col("flight_date")),
        check(F.col("flight_date") != expected_date, "WRONG_DATE"),
        *plausible(df, "flights"),
    ]

    def join(frame: DataFrame, dimension: DataFrame, key: str, on: str, **columns: str):
        """``frame`` with ``columns`` (new name: the dimension's) of the ``dimension`` span
        whose ``key`` is the row's ``on`` and whose days hold the row's landed day."""
        span = dimension.select(
            F.col(key).alias("_key"),
            *[F.col(c).alias(new) for new, c in columns.items()],
            F.col("_from").alias("_span_from"),
            F.col("_to").alias("_span_to"),
        )
        held = (F.col(on) == F.col("_key")) & F.col("_logical_date").between(
            F.col("_span_from"), F.col("_span_to")
        )
        return frame.join(F.broadcast(span), held, "left").drop("_key", "_span_from", "_span_to")

    plane_columns = ("year", "type", "manufacturer", "model", "engines", "seats", "engine")
    df = join(df, airports, "faa", "origin", origin_name="name", origin_tz="tzone")
    df = join(df, airports, "faa", "dest", dest_name="name", dest_tz="tzone")
    df = join(df, airlines, "carrier", "carrier", carrier_name="name")
    df = join(df, planes, "tailnum", "tailnum", **{f"plane_{c}": c for c in plane_columns})
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
    checks = [
        invalid_date(F.col("obs_date")),
        check(F.col("obs_date") != F.col("_logical_date"), "WRONG_DATE"),
        *plausible(df, "weather"),
    ]
    df = add_reasons(df, checks)
    return classify(df, ["origin", "time_hour"])


# --- the job ------------------------------------------------------------------------------------
# Each dimension: its key and typed columns
DIMENSIONS = {
    "airports": ("faa", AIRPORT_TYPES),
    "airlines": ("carrier", {}),
    "planes": ("tailnum", PLANE_TYPES),
}
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
    duplicate = F.when(
        F.col("_status") == DUPLICATE,
        F.when(F.col("_conflict"), F.lit("DUPLICATE_CONFLICT")).otherwise(F.lit("DUPLICATE")),
    )
    return frames.run_once(
        tagged.select(
            "*",
            F.lit(source_table).alias("source_table"),
            F.col("_logical_date").alias("logical_date"),
            F.col("_source_file").alias("source_file"),
            F.col("_record").alias("record"),
            F.coalesce(duplicate, F.get("_reasons", 0)).alias("reason"),
            F.coalesce(duplicate, F.array_join("_reasons", ";")).alias("reasons"),
            F.lit(run_id).alias("_run_id"),
        ).drop("_reasons", "_conflict"),
        settings,
        rows,
    )


def classify_dimension(settings: Settings, name: str, days, landed: dict, classify_days):
    """A dimension's classified rows for ``days``: each distinct snapshot of the interval
    classified once (``classify_days(name, days)``), copied to the days with an equal one
    (``snapshots``). Every day classified where the rows stay on the cluster."""
    if len(days) == 1 or frames.stays_on_cluster(settings, sum(landed.values())):
        return classify_days(name, days)
    groups, files = snapshots.equal_days(settings.table_uri(tb.BRONZE[name].name), days)
    if len(groups) == len(days):
        return classify_days(name, days)
    copied = snapshots.copy_to_days(classify_days(name, list(groups)), groups, files)
    if copied is None:  # a record that does not name its file as expected
        log.warning("silver %s: snapshots not copied; every day classified", name)
        return classify_days(name, days)
    log.info("silver %s: %d distinct snapshot(s) for %d days", name, len(groups), len(days))
    return copied


def with_status(data, status: str):
    return frames.where_in(data, "_status", [status])


@takes_days
def run(
    spark: SparkSession, tables: DeltaTables, settings: Settings, days: list[dt.date], run_id: str
) -> dict[str, dict[str, int]]:
    """Build silver for each day (one, or an interval's: one Spark job per source) from bronze;
    returns the reconciliation counts per source, summed over the days, and the quarantined
    rows per source and reason (``quarantine_reasons``)."""

    def bronze(export: str, on: list[dt.date] = days) -> DataFrame:
        df = tables.read(tb.BRONZE[export], partitions={"_logical_date": on})
        return df.drop("_rescued_data", "_run_id")

    landed = {
        name: tables.count_rows_per(tb.BRONZE[name], "_logical_date", days) for name in tb.BRONZE
    }

    def run_once(name: str, tagged: DataFrame):
        return collect(tagged, name, run_id, settings, sum(landed[name].values()))

    def classify_days(name: str, on: list[dt.date]):
        key, types = DIMENSIONS[name]
        return run_once(name, dimension(bronze(name, on), name, types, key))

    data = {
        name: classify_dimension(settings, name, days, landed[name], classify_days)
        for name in DIMENSIONS
    }
    # The flights join the accepted dimension rows just computed (a few thousand rows a day, sent
    # back as local relations) instead of re-running the dimensions' plans inside every join;
    # an interval's daily snapshots as spans of unchanged days (frames.spans).
    dims = {
        name: frames.as_frame(
            spark,
            frames.spans(
                with_status(data[name], ACCEPTED).select(
                    [*SILVER_OUTPUTS[name].columns, "_logical_date"]
                ),
                SILVER_OUTPUTS[name].key[0],
                "_logical_date",
            ),
        )
        for name in DIMENSIONS
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
