"""The predictions table: one row per scheduled flight and scoring model."""

from jobs.common.delta import TableSpec
from jobs.common.schema import struct

PREDICTIONS = TableSpec(
    name="ml.predictions",
    schema=struct(
        "flight_id string",
        "flight_date date",
        "carrier string",
        "origin string",
        "route string",
        "sched_dep_utc timestamp",
        "probability double",
        "flagged boolean",  # probability >= the model's decision threshold
        "threshold double",
        "role string",  # champion | shadow (an unpromoted challenger)
        "model_name string",
        "model_version string",
        "mlflow_run_id string",
        "feature_service string",
        "logical_ts timestamp",  # the scoring run's logical date (end of D), never now()
        "_run_id string",
    ),
    partition_by=("flight_date",),
    key=("flight_id", "role"),
    description="Disruption risk of each flight scheduled for D+1, scored by run D",
    run_metadata=("_run_id",),
)
