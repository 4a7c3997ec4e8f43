"""The lakehouse's tables: one TableSpec per Delta table, by layer.

Partitioning follows principle 3 of the design brief: every task replaces the partition(s) keyed
on its run's logical date, so re-running a date replaces exactly that date's output.
"""

from __future__ import annotations

from jobs.common.delta import TableSpec
from jobs.common.schema import strings, struct
from jobs.lakehouse import gold_tables, source

# --- bronze: the landed records as they came, plus ingestion metadata -------------------------
BRONZE_META = [
    "_rescued_data string",  # JSON of columns the contract does not know (nothing is dropped)
    "_corrupt_record string",  # the raw line when it could not be split into the columns
    "_source_file string",
    "_run_id string",
    "_logical_date date",
]


def _bronze(name: str, columns: list[str]) -> TableSpec:
    return TableSpec(
        name=f"bronze.{name}",
        schema=struct(*strings(columns), *BRONZE_META),
        partition_by=("_logical_date",),
        description=f"Landed {name} export, raw text, one partition per logical date",
        run_metadata=("_run_id",),
    )


BRONZE = {
    "flights": _bronze("flights", source.FLIGHT_COLUMNS),
    "schedule": _bronze("schedule", source.SCHEDULE_COLUMNS),
    "weather": _bronze("weather", source.WEATHER_COLUMNS),
    "planes": _bronze("planes", source.PLANE_COLUMNS),
    "airlines": _bronze("airlines", source.AIRLINE_COLUMNS),
    "airports": _bronze("airports", source.AIRPORT_COLUMNS),
}

# --- silver: typed, cleaned, de-duplicated, conformed ------------------------------------------
_SCHEDULE_COLUMNS = [
    "flight_id string",
    "flight_date date",
    "carrier string",
    "flight int",
    "tailnum string",
    "origin string",
    "dest string",
    "sched_dep_time int",
    "sched_arr_time int",
    "distance double",
    "sched_dep_utc timestamp",
    "time_hour timestamp",
    "carrier_name string",
    "origin_name string",
    "origin_tz string",
    "dest_name string",
    "dest_tz string",
    "plane_year int",
    "plane_type string",
    "plane_manufacturer string",
    "plane_model string",
    "plane_engines int",
    "plane_seats int",
    "plane_engine string",
]
_OUTCOME_COLUMNS = [
    "dep_time int",
    "dep_delay double",
    "arr_time int",
    "arr_delay double",
    "air_time double",
    "dep_utc timestamp",
    "is_cancelled boolean",
]
_LINEAGE = ["_source_file string", "_run_id string"]

SILVER_FLIGHTS = TableSpec(
    name="silver.flights",
    schema=struct(*_SCHEDULE_COLUMNS, *_OUTCOME_COLUMNS, *_LINEAGE),
    partition_by=("flight_date",),
    key=("flight_id",),
    description="Operated flights with outcomes, UTC timestamps, joined to dimensions",
    run_metadata=("_run_id",),
)
SILVER_SCHEDULE = TableSpec(
    name="silver.schedule",
    schema=struct(*_SCHEDULE_COLUMNS, *_LINEAGE),
    partition_by=("flight_date",),
    key=("flight_id",),
    description="Next day's timetable (landed the day before), joined to dimensions",
    run_metadata=("_run_id",),
)
SILVER_WEATHER = TableSpec(
    name="silver.weather",
    schema=struct(
        "origin string",
        "obs_date date",
        "hour int",
        "time_hour timestamp",
        "temp double",
        "dewp double",
        "humid double",
        "wind_dir double",
        "wind_speed double",
        "wind_gust double",
        "precip double",
        "pressure double",
        "visib double",
        *_LINEAGE,
    ),
    partition_by=("obs_date",),
    key=("origin", "time_hour"),
    description="Hourly weather at the origin airports, typed; obs_date is the local date",
    run_metadata=("_run_id",),
)
SILVER_AIRPORTS = TableSpec(
    name="silver.airports",
    schema=struct(
        "faa string",
        "name string",
        "lat double",
        "lon double",
        "alt int",
        "tz int",
        "dst string",
        "tzone string",
    ),
    key=("faa",),
    description="Airports (current state, upserted from each day's snapshot)",
)
SILVER_AIRLINES = TableSpec(
    name="silver.airlines",
    schema=struct("carrier string", "name string"),
    key=("carrier",),
    description="Airlines (current state, upserted from each day's snapshot)",
)
SILVER_PLANES = TableSpec(
    name="silver.planes",
    schema=struct(
        "tailnum string",
        "year int",
        "type string",
        "manufacturer string",
        "model string",
        "engines int",
        "seats int",
        "speed int",
        "engine string",
    ),
    key=("tailnum",),
    description="Planes (current state, upserted from each day's snapshot)",
)
QUARANTINE = TableSpec(
    name="silver.quarantine",
    schema=struct(
        "source_table string",
        "logical_date date",
        "source_file string",
        "record string",
        "reason string",
        "reasons string",
        "_run_id string",
    ),
    partition_by=("source_table", "logical_date"),
    description="Records that could not be accepted, with a reason code per record",
    run_metadata=("_run_id",),
)
RECONCILIATION = TableSpec(
    name="silver.reconciliation",
    schema=struct(
        "source_table string",
        "logical_date date",
        "landed long",
        "accepted long",
        "quarantined long",
        "duplicates long",
        "_run_id string",
    ),
    partition_by=("source_table", "logical_date"),
    description="Per run and source: landed = accepted + quarantined + duplicates removed",
    run_metadata=("_run_id",),
)

# --- gold: ML-ready, each row has an entity key and an event timestamp -------------------------
_GOLD_FLIGHT_COLUMNS = [
    "flight_id string",
    "flight_date date",
    "prediction_ts timestamp",
    "carrier string",
    "flight int",
    "tailnum string",
    "origin string",
    "dest string",
    "route string",
    "sched_dep_utc timestamp",
    "sched_dep_hour int",
    "day_of_week int",
    "month int",
    "distance double",
    "plane_year int",
    "plane_seats int",
]
_LABEL_COLUMNS = ["is_cancelled boolean", "dep_delay double", "is_disrupted boolean"]
# The flight number's key (gold.flight_number_stats): carrier, number and origin, as the flight
# id reads without its date ("UA-1545-EWR"). Added after the tables' other columns.
FLIGHT_NUMBER = gold_tables.ENTITY_KEYS["flight_number"]
_FLIGHT_NUMBER_COLUMN = f"{FLIGHT_NUMBER} string"

GOLD_FLIGHTS = TableSpec(
    name=gold_tables.FLIGHTS,
    schema=struct(*_GOLD_FLIGHT_COLUMNS, *_LABEL_COLUMNS, _FLIGHT_NUMBER_COLUMN),
    partition_by=("flight_date",),
    key=("flight_id",),
    description="One row per operated flight: prediction time (end of the previous day), "
    "schedule attributes and the label (disrupted = cancelled or dep_delay >= 15 min)",
    appended=(FLIGHT_NUMBER,),
)
# What tomorrow's whole timetable says about each of its flights (gold.timetable_features):
# known when the timetable lands with day D, so fair to use for D+1's predictions.
_TIMETABLE_FEATURE_COLUMNS = [
    "origin_hour_departures int",  # departures scheduled at the origin in the flight's hour
    "origin_3h_departures int",  # ... in its hour and the hours either side
    "plane_legs int",  # the plane's departures that day (null: no tail number)
    "plane_leg_number int",  # this flight's place among them, 1 = the first
    "sched_turn_minutes double",  # since the plane's previous leg is scheduled to arrive
    "days_to_holiday int",  # to the nearest US federal holiday, either way
]
TIMETABLE_FEATURES = struct(*_TIMETABLE_FEATURE_COLUMNS)

GOLD_SCHEDULED_FLIGHTS = TableSpec(
    name=gold_tables.SCHEDULED_FLIGHTS,
    schema=struct(*_GOLD_FLIGHT_COLUMNS, *_TIMETABLE_FEATURE_COLUMNS, _FLIGHT_NUMBER_COLUMN),
    partition_by=("flight_date",),
    key=("flight_id",),
    description="Tomorrow's flights to score: written by run D for flight_date D+1, no label",
    appended=(*TIMETABLE_FEATURES.names, FLIGHT_NUMBER),
)

ENTITY_KEYS = gold_tables.ENTITY_KEYS

# What the trailing statistics add up, kept per day: a day's gold reads 28 days of these (a few
# rows per entity and day) instead of 28 days of flights, so its cost follows that day's flights.
GOLD_ENTITY_DAILY = TableSpec(
    name=gold_tables.ENTITY_DAILY,
    schema=struct(
        "entity string",
        "entity_key string",
        "flight_date date",
        "flights long",
        "disrupted long",
        "cancelled long",
        "delay_sum double",
        "delay_n long",
    ),
    partition_by=("flight_date",),
    key=("flight_date", "entity", "entity_key"),
    description="Per day and carrier, origin, route, plane or flight number: flights, "
    "disrupted, cancelled, and departure delay sum and count (what gold.<entity>_stats sums "
    "over its windows)",
)


def _stats_columns(windows: tuple[int, ...]) -> list[str]:
    cols = []
    for w in (1, *windows):
        cols += [
            f"flights_{w}d long",
            f"disrupted_rate_{w}d double",
            f"cancel_rate_{w}d double",
            f"avg_dep_delay_{w}d double",
        ]
    return cols


def gold_stats(entity: str, windows: tuple[int, ...]) -> TableSpec:
    key = ENTITY_KEYS[entity]
    return TableSpec(
        name=gold_tables.STATS[entity],
        schema=struct(
            f"{key} string", "as_of_date date", "event_ts timestamp", *_stats_columns(windows)
        ),
        partition_by=("as_of_date",),
        key=(key, "as_of_date"),
        description=f"As-of-day trailing disruption statistics per {entity}, from flights on "
        "or before as_of_date only; event_ts = end of as_of_date",
    )


# Where the day's weather was heading when it closed: what a forecaster reads first (a falling
# barometer, air near saturation). Morning = 06:00-11:59, evening = 18:00-23:59, last = the
# day's last observation.
_WEATHER_TREND_COLUMNS = [
    "pressure_trend double",  # evening mean - morning mean (hPa); falling: weather coming
    "pressure_last double",
    "temp_dewp_spread_last double",  # temperature - dew point at the last observation
    "humid_mean_last6h double",
    "wind_dir_last double",
    "wind_gust_max_last6h double",
    "temp_trend double",  # evening mean - morning mean
]
WEATHER_TREND_FEATURES = struct(*_WEATHER_TREND_COLUMNS)

GOLD_WEATHER = TableSpec(
    name=gold_tables.WEATHER,
    schema=struct(
        "origin string",
        "as_of_date date",
        "event_ts timestamp",
        "n_obs long",
        "temp_mean double",
        "temp_min double",
        "humid_mean double",
        "wind_speed_max double",
        "wind_gust_max double",
        "precip_total double",
        "precip_hours long",
        "visib_min double",
        "pressure_mean double",
        "precip_last6h double",
        "visib_min_last6h double",
        "wind_speed_max_last6h double",
        *_WEATHER_TREND_COLUMNS,
    ),
    partition_by=("as_of_date",),
    key=("origin", "as_of_date"),
    appended=tuple(WEATHER_TREND_FEATURES.names),
    description="Daily weather summary per origin airport for as_of_date; event_ts = end of day",
)


def gold_published(windows: tuple[int, ...]) -> dict[str, TableSpec]:
    """What gold publishes (``gold_tables.PUBLISHED``), by name: what Feast's views read."""
    stats = [gold_stats(entity, windows) for entity in ENTITY_KEYS]
    specs = {s.name: s for s in (GOLD_FLIGHTS, GOLD_SCHEDULED_FLIGHTS, *stats, GOLD_WEATHER)}
    assert set(specs) == set(gold_tables.PUBLISHED)
    return specs


# --- ops: what the platform did to its own tables ----------------------------------------------
MAINTENANCE = TableSpec(
    name="ops.maintenance",
    schema=struct(
        "run_date date",  # the UTC day the maintenance run started
        "run_id string",
        "table_name string",
        "status string",  # ok | conflict (lost to a concurrent writer: retried next run) | failed
        "detail string",  # what conflicted or failed
        "retention_hours long",
        "version_before long",
        "version_after long",
        "files_before long",  # active data files
        "files_after long",
        "bytes_before long",
        "bytes_after long",
        "partitions_compacted long",
        "partitions_deferred long",  # written within maintenance_quiet_hours: left for next time
        "files_removed long",  # small files compaction replaced ...
        "files_added long",  # ... by these
        "bytes_removed long",
        "bytes_added long",
        "vacuumed_files long",  # unreferenced files deleted: removed by a commit, or orphans
        "vacuumed_bytes long",
        "checkpoint_version long",
        "log_files_removed long",  # expired commit files (delta.logRetentionDuration)
        "started_at timestamp",  # when this table's maintenance began
        "duration_s double",
    ),
    partition_by=("run_date",),
    key=("run_id", "table_name"),
    description="Per maintenance run and table: compaction, vacuum and checkpoint "
    "(jobs/lakehouse/maintenance.py)",
)
