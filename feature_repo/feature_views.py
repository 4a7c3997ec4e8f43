"""Feature views over the gold tables.

Every value is stamped with the instant it became known: entity statistics and weather with the
end of their day, a flight's schedule attributes with its prediction time (the end of the day
before it departs). A point-in-time join at a flight's prediction time therefore sees the
previous day's statistics, never the day being predicted. TTLs allow one missed day.
"""

from datetime import timedelta

import data_sources as src
import entities
from feast import FeatureView, Field
from feast.types import Float64, Int32, Int64, String

from jobs.common.settings import Settings
from jobs.lakehouse.tables import TIMETABLE_FEATURES, WEATHER_TREND_FEATURES

TTL = timedelta(days=2)
WINDOWS = (1, *Settings().rolling_windows_days)
FEAST_TYPES = {"int": Int32, "long": Int64, "double": Float64, "string": String}


def _stats_fields() -> list[Field]:
    fields = []
    for w in WINDOWS:
        fields += [
            Field(name=f"flights_{w}d", dtype=Int64),
            Field(name=f"disrupted_rate_{w}d", dtype=Float64),
            Field(name=f"cancel_rate_{w}d", dtype=Float64),
            Field(name=f"avg_dep_delay_{w}d", dtype=Float64),
        ]
    return fields


def _stats_view(name, entity, source, key) -> FeatureView:
    return FeatureView(
        name=name,
        entities=[entity],
        ttl=TTL,
        schema=[Field(name=key, dtype=String), *_stats_fields()],
        source=source,
        online=True,
        description=f"Trailing 1/7/28-day disruption statistics per {entity.name}",
        tags={"layer": "gold", "table": source.name},
    )


flight_schedule = FeatureView(
    name="flight_schedule",
    entities=[entities.flight],
    ttl=TTL,
    schema=[
        Field(name="flight_id", dtype=String),
        Field(name="sched_dep_hour", dtype=Int32),
        Field(name="day_of_week", dtype=Int32),
        Field(name="month", dtype=Int32),
        Field(name="distance", dtype=Float64),
        Field(name="plane_year", dtype=Int32),
        Field(name="plane_seats", dtype=Int32),
    ],
    source=src.scheduled_flights,
    online=True,
    description="Timetable attributes of a flight, known the evening before it departs",
    tags={"layer": "gold", "table": "gold.scheduled_flights"},
)


def _catalog_view(name, entity, key, columns, source, table, description) -> FeatureView:
    """A view of columns the table catalog declares (jobs/lakehouse/tables.py)."""
    fields = [Field(name=f.name, dtype=FEAST_TYPES[f.dataType.simpleString()]) for f in columns]
    return FeatureView(
        name=name,
        entities=[entity],
        ttl=TTL,
        schema=[Field(name=key, dtype=String), *fields],
        source=source,
        online=True,
        description=description,
        tags={"layer": "gold", "table": table},
    )


flight_timetable = _catalog_view(
    "flight_timetable",
    entities.flight,
    "flight_id",
    TIMETABLE_FEATURES,
    src.scheduled_flights,
    "gold.scheduled_flights",
    "What the flight's whole timetable says about it: departures scheduled at its origin around "
    "its hour, its plane's legs that day and its place among them, the scheduled turn before "
    "it, days to the nearest US holiday. Known the evening before it departs",
)
flight_route = FeatureView(
    name="flight_route",
    entities=[entities.flight],
    ttl=TTL,
    schema=[Field(name="flight_id", dtype=String), Field(name="route", dtype=String)],
    source=src.scheduled_flights,
    online=True,
    description="Where the flight goes: its route (origin-destination, e.g. EWR-ORD), a category "
    "for the model, from the timetable. Known the evening before it departs",
    tags={"layer": "gold", "table": "gold.scheduled_flights"},
)
carrier_stats = _stats_view("carrier_stats", entities.carrier, src.carrier_stats, "carrier")
origin_stats = _stats_view("origin_stats", entities.origin, src.origin_stats, "origin")
route_stats = _stats_view("route_stats", entities.route, src.route_stats, "route")
plane_stats = _stats_view("plane_stats", entities.plane, src.plane_stats, "tailnum")
flight_number_stats = _stats_view(
    "flight_number_stats", entities.flight_number, src.flight_number_stats, "flight_number"
)
origin_weather = FeatureView(
    name="origin_weather",
    entities=[entities.origin],
    ttl=TTL,
    schema=[
        Field(name="origin", dtype=String),
        Field(name="n_obs", dtype=Int64),
        Field(name="temp_mean", dtype=Float64),
        Field(name="temp_min", dtype=Float64),
        Field(name="humid_mean", dtype=Float64),
        Field(name="wind_speed_max", dtype=Float64),
        Field(name="wind_gust_max", dtype=Float64),
        Field(name="precip_total", dtype=Float64),
        Field(name="precip_hours", dtype=Int64),
        Field(name="visib_min", dtype=Float64),
        Field(name="pressure_mean", dtype=Float64),
        Field(name="precip_last6h", dtype=Float64),
        Field(name="visib_min_last6h", dtype=Float64),
        Field(name="wind_speed_max_last6h", dtype=Float64),
    ],
    source=src.origin_weather,
    online=True,
    description="The origin airport's weather on the day before departure",
    tags={"layer": "gold", "table": "gold.origin_weather_daily"},
)
origin_weather_trend = _catalog_view(
    "origin_weather_trend",
    entities.origin,
    "origin",
    WEATHER_TREND_FEATURES,
    src.origin_weather,
    "gold.origin_weather_daily",
    "Where the origin's weather was heading as the day before departure closed: the "
    "barometer's evening-minus-morning trend, the last readings, the evening's humidity and gusts",
)
