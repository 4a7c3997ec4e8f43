"""The scoring tables: the predictions, one row per scheduled flight and scoring model, and the
features each feature service served for them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyspark.sql import types as T

from jobs.common.delta import TableSpec
from jobs.common.schema import struct

if TYPE_CHECKING:
    from jobs.common.delta import DeltaTables

log = logging.getLogger(__name__)

# Why a flight is risky: its features with the largest contributions to the model's margin (the
# log-odds), XGBoost's own SHAP values (``pred_contribs``), largest absolute contribution first;
# at most three. ``value`` is the feature as served (null: missing); a positive ``contribution``
# pushes the risk up. Null for a flight without reasons: only the riskiest flagged flights have
# them (``jobs.scoring.score.REASONS_PER_TASK``).
REASON = T.StructType(
    [
        T.StructField("feature", T.StringType()),
        T.StructField("value", T.DoubleType()),
        T.StructField("contribution", T.DoubleType()),
    ]
)
REASONS = T.StructField("reasons", T.ArrayType(REASON), nullable=True)
TOP_REASONS = 3

_COLUMNS = struct(
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
)
PREDICTIONS = TableSpec(
    name="ml.predictions",
    # reasons last: a table written before they existed gets the column appended (migrate)
    schema=T.StructType([*_COLUMNS.fields, REASONS]),
    partition_by=("flight_date",),
    key=("flight_id", "role"),
    description="Disruption risk of each flight scheduled for D+1, scored by run D",
    run_metadata=("_run_id",),
    appended=(REASONS.name,),
)


def served_features(feature_service: str, features: T.StructType | None = None) -> TableSpec:
    """``ml.served_features__<service>``: the features ``feature_service`` served for each
    flight scored (what the scorer read, and what the monitor compares with the training
    reference). One table per service, as each service has its own feature columns; a service
    whose definition changes gets a new name (``flight_disruption_v3``), so a table's schema
    never changes. ``features`` is only needed to create or write it."""
    fields = [] if features is None else list(features.fields)
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


def migrate(tables: DeltaTables, run_id: str | None = None) -> bool:
    """Bring an ``ml.predictions`` written before reasons were stored to this schema: the
    ``reasons`` column is appended (the rows already there read null). Returns whether it
    did."""
    if added := tables.add_new_columns(PREDICTIONS, run_id):
        log.info("%s: added %s (older rows read null)", PREDICTIONS.name, added)
    return bool(added)
