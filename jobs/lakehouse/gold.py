"""Gold: ML-ready tables, each row with an entity key and an event timestamp.

* ``gold.flights`` (flight_date = D) and ``gold.scheduled_flights`` (flight_date = D+1, no label):
  one row per flight with its prediction time, the instant day D closed (midnight New York time
  before the flight's day).
* ``gold.<entity>_stats`` for carrier, origin, route and plane: trailing 1/7/28-day disruption
  statistics as of day D, computed only from flights on or before D; ``event_ts`` = end of D.
* ``gold.origin_weather_daily``: day D's weather per origin; ``event_ts`` = end of D.
* ``gold.entity_daily``: day D's counts and sums per entity, what the statistics add up.

Run D reads day D's silver and the trailing 28 days of ``gold.entity_daily`` (a few rows per
entity and day), so its cost grows with a day's flights and the number of entities, not with the
window times the daily volume. Days of the window whose counts are missing (gold never ran for
them) are counted from silver in the same job.
"""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common.dates import OPERATING_TZ
from jobs.common.delta import DeltaTables
from jobs.common.settings import Settings
from jobs.lakehouse import frames
from jobs.lakehouse import tables as tb

log = logging.getLogger(__name__)


def end_of_day(day: Column) -> Column:
    """The UTC instant day ``day`` closes in the operating time zone (next local midnight)."""
    return F.to_utc_timestamp(F.date_add(day, 1).cast("timestamp"), OPERATING_TZ)


def flight_rows(silver: DataFrame, settings: Settings, with_label: bool) -> DataFrame:
    local_dep = F.from_utc_timestamp("sched_dep_utc", OPERATING_TZ)
    cols = [
        "flight_id",
        "flight_date",
        end_of_day(F.date_sub("flight_date", 1)).alias("prediction_ts"),
        "carrier",
        "flight",
        "tailnum",
        "origin",
        "dest",
        F.concat_ws("-", "origin", "dest").alias("route"),
        "sched_dep_utc",
        F.hour(local_dep).alias("sched_dep_hour"),
        F.dayofweek("flight_date").alias("day_of_week"),
        F.month("flight_date").alias("month"),
        "distance",
        "plane_year",
        "plane_seats",
    ]
    if with_label:
        disrupted = F.col("is_cancelled") | (
            F.col("dep_delay") >= settings.disruption_delay_minutes
        )
        cols += [
            "is_cancelled",
            "dep_delay",
            F.coalesce(disrupted, F.lit(False)).alias("is_disrupted"),
        ]
    return silver.select(*cols)


def entity_daily(flights: DataFrame) -> DataFrame:
    """Per flight day and entity (every key of ``ENTITY_KEYS``): the sums the statistics use."""
    per_entity = [
        flights.where(F.col(key).isNotNull()).select(
            F.lit(entity).alias("entity"),
            F.col(key).alias("entity_key"),
            "flight_date",
            "is_disrupted",
            "is_cancelled",
            "dep_delay",
        )
        for entity, key in tb.ENTITY_KEYS.items()
    ]
    return (
        frames.concat(per_entity)
        .groupBy("entity", "entity_key", "flight_date")
        .agg(
            F.count(F.lit(1)).alias("flights"),
            F.sum(F.col("is_disrupted").cast("long")).alias("disrupted"),
            F.sum(F.col("is_cancelled").cast("long")).alias("cancelled"),
            F.sum("dep_delay").alias("delay_sum"),
            F.count("dep_delay").alias("delay_n"),
        )
    )


def entity_stats(
    daily: DataFrame, entity: str, day: dt.date, windows: tuple[int, ...]
) -> DataFrame:
    """Trailing statistics per key of ``entity`` as of ``day``, from per-day counts.

    Only days ``<= day`` are used: the filter is part of the computation, not an assumption
    about what was read. The windows are nested (1 day, 7, 28...): each day's counts fall into
    one band of days (D; D-6..D-1; D-27..D-7), summed per (key, band); a window is then the sum
    of its bands.
    """
    key = tb.ENTITY_KEYS[entity]
    bounds = sorted({1, *windows})
    age = F.datediff(F.lit(day), F.col("flight_date"))  # 0 for D
    band = F.lit(len(bounds))  # older than every window: the key is still listed, with zeros
    for i, bound in reversed(list(enumerate(bounds))):
        band = F.when(age < bound, F.lit(i)).otherwise(band)
    banded = (
        daily.where((F.col("entity") == F.lit(entity)) & (F.col("flight_date") <= F.lit(day)))
        .groupBy(F.col("entity_key").alias(key), band.alias("band"))
        .agg(
            *[
                F.sum(c).alias(c)
                for c in ("flights", "disrupted", "cancelled", "delay_sum", "delay_n")
            ]
        )
    )

    def within(w: int, column: str) -> Column:
        inside = F.col("band") <= F.lit(bounds.index(w))
        return F.sum(F.when(inside, F.col(column)).otherwise(F.lit(0)))

    aggs = []
    for w in (1, *windows):
        n = within(w, "flights")
        aggs += [
            n.alias(f"flights_{w}d"),
            F.try_divide(within(w, "disrupted"), n).alias(f"disrupted_rate_{w}d"),
            F.try_divide(within(w, "cancelled"), n).alias(f"cancel_rate_{w}d"),
            F.try_divide(within(w, "delay_sum"), within(w, "delay_n")).alias(f"avg_dep_delay_{w}d"),
        ]
    out = banded.groupBy(key).agg(*aggs)
    return out.select(
        key,
        F.lit(day).alias("as_of_date"),
        end_of_day(F.lit(day)).alias("event_ts"),
        *[c for c in out.columns if c != key],
    )


def weather_daily(weather: DataFrame, day: dt.date) -> DataFrame:
    late = F.col("hour") >= 18  # the last six hours before the day closes
    out = (
        weather.where(F.col("obs_date") == F.lit(day))
        .groupBy("origin")
        .agg(
            F.count(F.lit(1)).alias("n_obs"),
            F.avg("temp").alias("temp_mean"),
            F.min("temp").alias("temp_min"),
            F.avg("humid").alias("humid_mean"),
            F.max("wind_speed").alias("wind_speed_max"),
            F.max("wind_gust").alias("wind_gust_max"),
            F.sum("precip").alias("precip_total"),
            F.sum((F.col("precip") > 0).cast("long")).alias("precip_hours"),
            F.min("visib").alias("visib_min"),
            F.avg("pressure").alias("pressure_mean"),
            F.sum(F.when(late, F.col("precip"))).alias("precip_last6h"),
            F.min(F.when(late, F.col("visib"))).alias("visib_min_last6h"),
            F.max(F.when(late, F.col("wind_speed"))).alias("wind_speed_max_last6h"),
        )
    )
    return out.select(
        "origin",
        F.lit(day).alias("as_of_date"),
        end_of_day(F.lit(day)).alias("event_ts"),
        *[c for c in out.columns if c != "origin"],
    )


def trailing_daily(
    tables: DeltaTables, settings: Settings, day: dt.date, today: DataFrame
) -> DataFrame:
    """Per-day counts of the window ending at ``day``: D's from ``today`` (its gold flights),
    earlier days' from ``gold.entity_daily``, or from silver where gold never counted them."""
    history = [day - dt.timedelta(days=i) for i in range(1, max(settings.rolling_windows_days))]
    parts = [entity_daily(today)]
    counted: set[dt.date] = set()
    if tables.exists(tb.GOLD_ENTITY_DAILY):
        stored = tables.read(tb.GOLD_ENTITY_DAILY, partitions={"flight_date": history})
        counted = {r.flight_date for r in stored.select("flight_date").distinct().collect()}
        parts.append(stored)
    if missing := [d for d in history if d not in counted]:
        silver = tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": missing})
        parts.append(entity_daily(flight_rows(silver, settings, True)))
    return frames.concat(parts)


def run(
    spark: SparkSession, tables: DeltaTables, settings: Settings, day: dt.date, run_id: str
) -> dict[str, int]:
    windows = settings.rolling_windows_days
    tomorrow = day + dt.timedelta(days=1)

    today_flights = flight_rows(
        tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": [day]}), settings, True
    ).localCheckpoint()
    daily = trailing_daily(tables, settings, day, today_flights).localCheckpoint()
    flights = tables.count_rows(tb.SILVER_FLIGHTS, {"flight_date": [day]})
    # (table, frame, partitions it replaces); the flight tables' rows are the day's flights, the
    # others hold a few rows per entity
    outputs: list[tuple] = [
        (tb.GOLD_FLIGHTS, today_flights, {"flight_date": [day]}),
        (
            tb.GOLD_SCHEDULED_FLIGHTS,
            flight_rows(
                tables.read(tb.SILVER_SCHEDULE, partitions={"flight_date": [tomorrow]}),
                settings,
                False,
            ),
            {"flight_date": [tomorrow]},
        ),
        (
            tb.GOLD_WEATHER,
            weather_daily(tables.read(tb.SILVER_WEATHER, partitions={"obs_date": [day]}), day),
            {"as_of_date": [day]},
        ),
    ]
    for entity in tb.ENTITY_KEYS:
        outputs.append(
            (
                tb.gold_stats(entity, windows),
                entity_stats(daily, entity, day, windows),
                {"as_of_date": [day]},
            )
        )
    # last: a day whose statistics were written is a day whose counts the next day can use
    outputs.append(
        (
            tb.GOLD_ENTITY_DAILY,
            daily.where(F.col("flight_date") == F.lit(day)),
            {"flight_date": [day]},
        )
    )
    counts = {}
    for spec, frame, partitions in outputs:
        per_flight = spec in (tb.GOLD_FLIGHTS, tb.GOLD_SCHEDULED_FLIGHTS)
        data = frames.run_once(frame, settings, flights if per_flight else 0)  # one Spark job
        tables.overwrite_partitions(spec, data, partitions, run_id=run_id)
        counts[spec.name] = frames.num_rows(data)
    log.info("gold %s: %s", day, counts)
    return counts
