"""The monitoring tables' specs, apart from the code that fills them: the summary of
``make run`` and the retraining policy read ``ml.monitoring_metrics`` without importing the
monitor's stack (Evidently, Feast, MLflow: ~4 s)."""

from __future__ import annotations

from jobs.common.delta import TableSpec
from jobs.common.schema import struct

FIGURES = ("roc_auc", "pr_auc", "precision", "recall", "brier", "log_loss", "ece")

MONITORING_METRICS = TableSpec(
    name="ml.monitoring_metrics",
    schema=struct(
        "monitor_date date",  # D: drift of D+1's scored features, performance of D's flights
        "role string",  # champion | shadow | none (no model yet)
        "model_name string",
        "model_version string",  # the model scoring D+1 (drift)
        "status string",  # ok | no_model | no_reference (a model without a drift reference)
        "n_scored long",
        "n_features long",
        "drift_share double",
        "drifted_features long",
        "feature_drift map<string,double>",
        "prediction_drift double",
        "prediction_drifted boolean",
        "perf_model_version string",  # the model that scored D (performance)
        "n_labeled long",
        "positive_rate double",
        "mean_probability double",
        *(f"{name} double" for name in FIGURES),
        "rolling_n long",
        *(f"rolling_{name} double" for name in FIGURES),
        "report string",  # the day's index page
        "mlflow_run_id string",  # the monitoring run in MLflow
        "_run_id string",
    ),
    partition_by=("model_name", "monitor_date"),
    key=("model_name", "monitor_date", "role"),
    description="Daily drift and delayed-label performance of the scoring models",
    run_metadata=("_run_id", "mlflow_run_id"),
)
