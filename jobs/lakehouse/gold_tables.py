"""The gold tables' names, declared once for the table catalog (``jobs/lakehouse/tables.py``)
and the Assets the DAGs emit (``dags/nightjar_assets.py``).

It imports nothing, so a DAG file may read it while Airflow parses it; the catalog itself
imports Spark's and Arrow's types, which a DAG file must not."""

# The entities gold keeps trailing statistics for, each with its key column. A flight number's
# key is carrier, number and origin, as a flight id reads without its date: "UA-1545-EWR" (the
# same number flies from more than one airport, and from each on its own schedule).
ENTITY_KEYS = {
    "carrier": "carrier",
    "origin": "origin",
    "route": "route",
    "plane": "tailnum",
    "flight_number": "flight_number",
}

FLIGHTS = "gold.flights"
SCHEDULED_FLIGHTS = "gold.scheduled_flights"
ENTITY_DAILY = "gold.entity_daily"
STATS = {entity: f"gold.{entity}_stats" for entity in ENTITY_KEYS}
WEATHER = "gold.origin_weather_daily"

# What gold publishes to the rest of the platform (the feature store, training): one Asset each.
# gold.entity_daily is the stage's own running sums, read by nothing else.
PUBLISHED = (FLIGHTS, SCHEDULED_FLIGHTS, *STATS.values(), WEATHER)
