"""The scoring tables: the predictions, one row per scheduled flight and scoring model, and the
features each feature service served for them."""

import pyarrow as pa
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

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


def served_features(feature_service: str, features: pa.Schema | None = None) -> TableSpec:
    """``ml.served_features__<service>``: the features ``feature_service`` served for each
    flight scored (what the scorer read, and what the monitor compares with the training
    reference). One table per service, as each service has its own feature columns; a service
    whose definition changes gets a new name (``flight_disruption_v2``), so a table's schema
    never changes. ``features`` is only needed to create or write it."""
    fields = [] if features is None else list(from_arrow_schema(features).fields)
    return TableSpec(
        name=f"ml.served_features__{feature_service}",
        schema=T.StructType(
            [
                *struct("flight_id string", "flight_date date", "prediction_ts timestamp").fields,
                *fields,
                *struct("_run_id string").fields,
            ]
        ),
        partition_by=("flight_date",),
        key=("flight_id",),
        description=f"Features served by {feature_service} to the flights scored for a date",
        run_metadata=("_run_id",),
    )
