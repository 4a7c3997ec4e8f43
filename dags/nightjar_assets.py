"""The Assets the Nightjar DAGs share (this file defines no DAG; Airflow puts the DAG folder on
the import path, so the DAG files import it)."""

from airflow.sdk import Asset

GOLD_TABLES = [
    "flights",
    "scheduled_flights",
    "carrier_stats",
    "origin_stats",
    "route_stats",
    "plane_stats",
    "origin_weather_daily",
]
GOLD_ASSETS = [Asset(name=f"gold.{t}", uri=f"nightjar://lakehouse/gold/{t}") for t in GOLD_TABLES]

# Emitted by the daily DAG's retraining policy; schedules nightjar_training.
RETRAIN_REQUEST = Asset(
    name="retrain_request", uri="nightjar://models/flight_disruption/retrain-request"
)
# Emitted by nightjar_training when it has registered (and maybe promoted) a version.
CHAMPION = Asset(name="champion_model", uri="nightjar://models/flight_disruption/champion")

# The Asset groups a stage emits (jobs/stages.py names them in its `outlets`).
OUTLETS = {"gold": GOLD_ASSETS, "retrain_request": [RETRAIN_REQUEST]}
