"""Data sources: the gold Delta tables, read at their current snapshot.

``DeltaFormat`` marks each source as a Delta table; Nightjar's offline store
(``jobs.adapters.feast_offline_store``) reads the files the Delta log lists as live, never the
folder's parquet files (the folder also holds files that corrections have removed).
Paths come from the platform's settings, so the repository follows ``NIGHTJAR_LAKEHOUSE_URI``.
"""

from feast import FileSource
from feast.data_format import DeltaFormat

from jobs.common.settings import Settings

_settings = Settings()


def _gold(table: str, timestamp_field: str, description: str) -> FileSource:
    return FileSource(
        name=f"gold_{table}",
        path=_settings.table_uri(f"gold.{table}"),
        file_format=DeltaFormat(),
        timestamp_field=timestamp_field,
        description=description,
    )


scheduled_flights = _gold(
    "scheduled_flights",
    "prediction_ts",
    "Tomorrow's timetable, stamped with its prediction time (the end of the day before)",
)
carrier_stats = _gold("carrier_stats", "event_ts", "Trailing disruption statistics per carrier")
origin_stats = _gold("origin_stats", "event_ts", "Trailing disruption statistics per origin")
route_stats = _gold("route_stats", "event_ts", "Trailing disruption statistics per route")
plane_stats = _gold("plane_stats", "event_ts", "Trailing disruption statistics per plane")
flight_number_stats = _gold(
    "flight_number_stats",
    "event_ts",
    "Trailing disruption statistics per flight number (carrier, number and origin)",
)
origin_weather = _gold("origin_weather_daily", "event_ts", "Daily weather per origin airport")
