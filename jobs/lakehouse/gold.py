"""Gold: ML-ready tables, each row with an entity key and an event timestamp.

* ``gold.flights`` (flight_date = D) and ``gold.scheduled_flights`` (flight_date = D+1, no label):
  one row per flight with its prediction time, the instant day D closed (midnight New York time
  before the flight's day). The scheduled flights also carry what D+1's whole timetable says
  about each flight (``tables.TIMETABLE_FEATURES``): known when it lands with D.
* ``gold.<entity>_stats`` for carrier, origin, route, plane and flight number (carrier, number
  and origin: ``flight_number``, "UA-1545-EWR"): trailing 1/7/28-day disruption statistics as
  of day D, computed only from flights on or before D; ``event_ts`` = end of D.
* ``gold.origin_weather_daily``: day D's weather per origin, and where it was heading as the day
  closed (the barometer's trend, the last readings); ``event_ts`` = end of D.
* ``gold.entity_daily``: day D's counts and sums per entity, what the statistics add up.

A run over days D1..Dn (one day for the daily DAG, an interval for the history DAG) reads
their silver and the 27 days of ``gold.entity_daily`` before D1 (a few rows per entity and day),
so its cost grows with the days' flights and the number of entities, not with the window times
the daily volume. Days of the window whose counts are missing (gold never ran for them, or ran
before it kept one of the entities it keeps now) are counted from silver in the same job. Every
table is one Spark job for the whole interval.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from pandas.tseries.holiday import USFederalHolidayCalendar
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common.dates import OPERATING_TZ, as_days, span, takes_days
from jobs.common.delta import DeltaTables
from jobs.common.settings import Settings
from jobs.lakehouse import frames
from jobs.lakehouse import tables as tb

log = logging.getLogger(__name__)


def end_of_day(day: Column) -> Column:
    """The UTC instant day ``day`` closes in the operating time zone (next local midnight)."""
    return F.to_utc_timestamp(F.date_add(day, 1).cast("timestamp"), OPERATING_TZ)


def flight_rows(
    silver: DataFrame, settings: Settings, with_label: bool, extra: Sequence[str] = ()
) -> DataFrame:
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
        *extra,
        # a flight id without its date: the flight number's statistics' key
        F.concat_ws("-", "carrier", "flight", "origin").alias("flight_number"),
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


def days_to_holiday(days: Sequence[dt.date]) -> Column:
    """Days from ``flight_date`` (one of ``days``) to the nearest US federal holiday, before or
    after it: a calendar fact, known in advance."""
    holidays = (
        USFederalHolidayCalendar()
        .holidays(f"{min(days).year - 1}-01-01", f"{max(days).year + 1}-12-31")
        .date
    )
    nearest = {d: min(abs((d - h).days) for h in holidays) for d in days}
    pairs = [F.lit(x) for d, n in nearest.items() for x in (d, n)]
    return F.element_at(F.create_map(*pairs), F.col("flight_date")).cast("int")


def timetable_features(timetable: DataFrame, days: Sequence[dt.date]) -> DataFrame:
    """``timetable`` (silver.schedule: whole days of a timetable, ``days``) with
    ``tables.TIMETABLE_FEATURES``, computed from those rows alone: no outcome and no other
    day's timetable, so every value is known when the timetable lands."""
    hour = F.hour(F.from_utc_timestamp("sched_dep_utc", OPERATING_TZ)).alias("_hour")
    rows = timetable.select("*", hour)
    slot = ["flight_date", "origin", "_hour"]
    in_hour = rows.groupBy(*slot).agg(F.count(F.lit(1)).cast("int").alias("origin_hour_departures"))
    # each hour's departures count towards itself and the hours either side
    around = (
        in_hour.select(
            "flight_date",
            "origin",
            F.explode(F.sequence(F.col("_hour") - 1, F.col("_hour") + 1)).alias("_hour"),
            "origin_hour_departures",
        )
        .groupBy(*slot)
        .agg(F.sum("origin_hour_departures").cast("int").alias("origin_3h_departures"))
    )
    # a leg's scheduled arrival, placed in UTC by its destination's time zone (HHMM local,
    # after midnight when earlier than the departure)
    local_arrival = F.try_make_timestamp(
        F.year("flight_date"),
        F.month("flight_date"),
        F.dayofmonth("flight_date"),
        F.floor(F.col("sched_arr_time") / 100).cast("int"),
        (F.col("sched_arr_time") % 100).cast("int"),
        F.lit(0),
    )
    arrival = F.to_utc_timestamp(local_arrival, F.col("dest_tz"))
    arrival = F.when(
        arrival < F.col("sched_dep_utc"), arrival + F.make_interval(days=F.lit(1))
    ).otherwise(arrival)
    plane_day = Window.partitionBy("flight_date", "tailnum")
    legs = plane_day.orderBy("sched_dep_utc", "flight_id")
    has_plane = F.col("tailnum").isNotNull()
    previous_arrival = F.lag(arrival).over(legs)
    turn = (F.unix_seconds("sched_dep_utc") - F.unix_seconds(previous_arrival)) / 60
    return (
        rows.join(in_hour, slot, "left")
        .join(around, slot, "left")
        .select(
            *timetable.columns,
            "origin_hour_departures",
            "origin_3h_departures",
            F.when(has_plane, F.count(F.lit(1)).over(plane_day)).cast("int").alias("plane_legs"),
            F.when(has_plane, F.row_number().over(legs)).cast("int").alias("plane_leg_number"),
            F.when(has_plane, turn).cast("double").alias("sched_turn_minutes"),
            days_to_holiday(days).alias("days_to_holiday"),
        )
    )


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
    daily: DataFrame, entity: str, days: dt.date | Sequence[dt.date], windows: tuple[int, ...]
) -> DataFrame:
    """Trailing statistics per key of ``entity`` as of each of ``days``, from per-day counts.

    A day's counts count towards the statistics of each of ``days`` it precedes by less than
    the longest window, and never towards an earlier day's: only flights on or before the
    as-of day are used, whatever was read. The windows are nested (1 day, 7, 28...): each day's
    counts fall into one band of ages (D; D-6..D-1; D-27..D-7), summed per (key, as-of day,
    band); a window is then the sum of its bands.
    """
    days = as_days(days)
    key = tb.ENTITY_KEYS[entity]
    bounds = sorted({1, *windows})
    first, last, longest = F.lit(days[0]), F.lit(days[-1]), bounds[-1]
    flight_date = F.col("flight_date")
    as_of = F.explode(
        F.sequence(
            F.greatest(flight_date, first), F.least(F.date_add(flight_date, longest - 1), last)
        )
    )
    contributions = daily.where(
        (F.col("entity") == F.lit(entity))
        & (flight_date <= last)
        & (flight_date >= F.date_sub(first, longest - 1))
    ).select("*", as_of.alias("as_of_date"))
    age = F.datediff("as_of_date", "flight_date")  # 0 for the as-of day itself
    band = F.lit(len(bounds))
    for i, bound in reversed(list(enumerate(bounds))):
        band = F.when(age < bound, F.lit(i)).otherwise(band)
    banded = contributions.groupBy(
        F.col("entity_key").alias(key), "as_of_date", band.alias("band")
    ).agg(
        *[F.sum(c).alias(c) for c in ("flights", "disrupted", "cancelled", "delay_sum", "delay_n")]
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
    out = banded.groupBy(key, "as_of_date").agg(*aggs)
    return out.select(
        key,
        "as_of_date",
        end_of_day(F.col("as_of_date")).alias("event_ts"),
        *[c for c in out.columns if c not in (key, "as_of_date")],
    )


def weather_daily(weather: DataFrame) -> DataFrame:
    """Per origin and day: the day's weather (every day of ``weather`` read)."""
    late = F.col("hour") >= 18  # the last six hours before the day closes
    morning = F.col("hour").between(6, 11)

    def trend(column: str) -> Column:
        return F.avg(F.when(late, F.col(column))) - F.avg(F.when(morning, F.col(column)))

    def last(column: Column) -> Column:
        return F.max_by(column, "time_hour")

    out = weather.groupBy("origin", F.col("obs_date").alias("as_of_date")).agg(
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
        trend("pressure").alias("pressure_trend"),
        last(F.col("pressure")).alias("pressure_last"),
        last(F.col("temp") - F.col("dewp")).alias("temp_dewp_spread_last"),
        F.avg(F.when(late, F.col("humid"))).alias("humid_mean_last6h"),
        last(F.col("wind_dir")).alias("wind_dir_last"),
        F.max(F.when(late, F.col("wind_gust"))).alias("wind_gust_max_last6h"),
        trend("temp").alias("temp_trend"),
    )
    return out.select(
        "origin",
        "as_of_date",
        end_of_day(F.col("as_of_date")).alias("event_ts"),
        *[c for c in out.columns if c not in ("origin", "as_of_date")],
    )


def trailing_daily(
    tables: DeltaTables, settings: Settings, days: list[dt.date], flights: DataFrame
) -> DataFrame:
    """Per-day counts of ``days`` and of the window before them: the days' own from
    ``flights`` (their gold flights), earlier days' from ``gold.entity_daily``, or from silver
    where gold never counted them, or counted them before it kept an entity it keeps now (a
    day whose stored counts lack one of ``ENTITY_KEYS`` is counted again, every entity)."""
    history = [days[0] - dt.timedelta(days=i) for i in range(1, max(settings.rolling_windows_days))]
    parts = [entity_daily(flights)]
    counted: set[dt.date] = set()
    if tables.exists(tb.GOLD_ENTITY_DAILY):
        stored = tables.read(tb.GOLD_ENTITY_DAILY, partitions={"flight_date": history})
        kept = stored.groupBy("flight_date").agg(F.collect_set("entity").alias("entities"))
        counted = {r.flight_date for r in kept.collect() if set(r.entities) >= set(tb.ENTITY_KEYS)}
        parts.append(stored.where(F.col("flight_date").isin(sorted(counted))))
    if missing := [d for d in history if d not in counted]:
        silver = tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": missing})
        parts.append(entity_daily(flight_rows(silver, settings, True)))
    return frames.concat(parts)


@takes_days
def run(
    spark: SparkSession, tables: DeltaTables, settings: Settings, days: list[dt.date], run_id: str
) -> dict[str, int]:
    """Build gold for each day (one, or an interval's: one Spark job per table)."""
    windows = settings.rolling_windows_days
    tomorrows = [day + dt.timedelta(days=1) for day in days]

    day_flights = flight_rows(
        tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": days}), settings, True
    ).localCheckpoint()
    daily = trailing_daily(tables, settings, days, day_flights).localCheckpoint()
    flights = tables.count_rows(tb.SILVER_FLIGHTS, {"flight_date": days})
    # (table, frame, partitions it replaces); the flight tables' rows are the days' flights, the
    # others hold a few rows per entity and day
    outputs: list[tuple] = [
        (tb.GOLD_FLIGHTS, day_flights, {"flight_date": days}),
        (
            tb.GOLD_SCHEDULED_FLIGHTS,
            flight_rows(
                timetable_features(
                    tables.read(tb.SILVER_SCHEDULE, partitions={"flight_date": tomorrows}),
                    tomorrows,
                ),
                settings,
                False,
                extra=tb.TIMETABLE_FEATURES.names,
            ),
            {"flight_date": tomorrows},
        ),
        (
            tb.GOLD_WEATHER,
            weather_daily(tables.read(tb.SILVER_WEATHER, partitions={"obs_date": days})),
            {"as_of_date": days},
        ),
    ]
    for entity in tb.ENTITY_KEYS:
        outputs.append(
            (
                tb.gold_stats(entity, windows),
                entity_stats(daily, entity, days, windows),
                {"as_of_date": days},
            )
        )
    # last: a day whose statistics were written is a day whose counts the next day can use
    outputs.append(
        (
            tb.GOLD_ENTITY_DAILY,
            daily.where(F.col("flight_date").between(days[0], days[-1])),
            {"flight_date": days},
        )
    )
    # tables from before the timetable and weather-trend features and the flight number get
    # their columns (older days read null until gold runs for them again)
    for spec in (tb.GOLD_FLIGHTS, tb.GOLD_SCHEDULED_FLIGHTS, tb.GOLD_WEATHER):
        if added := tables.add_new_columns(spec, run_id):
            log.info("%s: added %s", spec.name, added)
    counts = {}
    for spec, frame, partitions in outputs:
        # Every output but the weather grows with the flights: the flight tables, and the
        # statistics' and counts' keys (a plane, a flight number per few flights: ~10M rows a
        # day at 10M flights, past what a task should collect). The weather has a row per origin.
        expected = 0 if spec is tb.GOLD_WEATHER else flights
        data = frames.run_once(frame, settings, expected)  # one Spark job
        tables.overwrite_partitions(spec, data, partitions, run_id=run_id)
        counts[spec.name] = frames.num_rows(data)
    log.info("gold %s: %s", span(days), counts)
    return counts
