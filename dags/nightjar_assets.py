"""The Assets the Nightjar DAGs share (this file defines no DAG; Airflow puts the DAG folder on
the import path, so the DAG files import it). The gold tables' names come from
``jobs/lakehouse/gold_tables.py``, which the table catalog reads too and which imports nothing."""

from airflow.sdk import Asset

from jobs.lakehouse import gold_tables

GOLD_ASSETS = [
    Asset(name=table, uri=f"nightjar://lakehouse/{table.replace('.', '/')}")
    for table in gold_tables.PUBLISHED
]

# Emitted by the daily DAG's retraining policy; schedules nightjar_training.
RETRAIN_REQUEST = Asset(
    name="retrain_request", uri="nightjar://models/flight_disruption/retrain-request"
)
# Emitted by nightjar_training when it has registered (and maybe promoted) a version.
CHAMPION = Asset(name="champion_model", uri="nightjar://models/flight_disruption/champion")

# The Asset groups a stage emits (jobs/stages.py names them in its `outlets`).
OUTLETS = {"gold": GOLD_ASSETS, "retrain_request": [RETRAIN_REQUEST]}
