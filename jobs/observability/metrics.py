"""The pipeline's metrics, declared once, and how a task pushes them.

Batch tasks are short-lived, so they push to a Pushgateway that Prometheus scrapes (the
Prometheus way for batch jobs; ``observability/prometheus.yml``). Each push is grouped by
``dag`` and ``task`` and replaces only the metrics it carries in that group, so a task's figures
are those of its last run: gauges, not counters. Names follow Prometheus' conventions: base
units (``_seconds``, ``_ratio``), ``_timestamp_seconds`` for points in time (Unix time), a
``nightjar_`` prefix. Days are ``_timestamp_seconds`` values (the day's start, UTC), never labels.

A push that fails (no Pushgateway here, a network error) is logged and never fails the task:
the data matters more than its telemetry.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from jobs.common.settings import Settings

log = logging.getLogger(__name__)
JOB = "nightjar"  # the Pushgateway's job label
PUSH_TIMEOUT_S = 3


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    labels: tuple[str, ...] = ()


TASK_DURATION = Metric(
    "nightjar_task_duration_seconds", "Wall time of the task's last successful run."
)
TASK_SUCCESS = Metric(
    "nightjar_task_success_timestamp_seconds", "When the task last finished without failing."
)
TASK_FAILURE = Metric(
    "nightjar_task_failure_timestamp_seconds",
    "When the task last failed for good (its retries spent): its run, day and log.",
    ("run_id", "logical_date", "log_url"),
)
DEADLINE_MISSED = Metric(
    "nightjar_deadline_missed_timestamp_seconds",
    "When a run last missed its Deadline Alert (not finished in time after being queued).",
    ("run_id", "logical_date"),
)
TASK_DAY = Metric(
    "nightjar_task_logical_date_timestamp_seconds",
    "The newest day the task's last successful run processed (the day's start, UTC).",
)
ROWS = Metric(
    "nightjar_rows",
    "Rows the task's last run handled, per table and outcome "
    "(landed, written, accepted, quarantined, duplicates).",
    ("table", "outcome"),
)
QUARANTINED = Metric(
    "nightjar_quarantined_rows",
    "Rows silver's last run quarantined, per source and reason.",
    ("table", "reason"),
)
QUARANTINE_RATIO = Metric(
    "nightjar_quarantine_ratio",
    "Share of the landed rows silver's last run quarantined, per source.",
    ("table",),
)
EXPECTATIONS = Metric(
    "nightjar_quality_expectations",
    "Expectations the quality gate's last run evaluated, per outcome (passed, failed).",
    ("outcome",),
)
TABLE_NEWEST_DAY = Metric(
    "nightjar_table_newest_partition_timestamp_seconds",
    "The newest day partition of each gold table.",
    ("table",),
)
ONLINE_NEWEST_DAY = Metric(
    "nightjar_online_store_newest_day_timestamp_seconds",
    "The day whose features the online store serves.",
)
PREDICTIONS = Metric(
    "nightjar_predictions", "Flights the last night scored, per model role.", ("role",)
)
MODEL_VERSION = Metric(
    "nightjar_model_version",
    "The registered version that scored the last night, per role (champion, shadow).",
    ("role",),
)
DRIFT_SHARE = Metric(
    "nightjar_drift_share_ratio",
    "Share of the features drifted from the model's training reference, last night.",
    ("role",),
)
PREDICTION_DRIFT = Metric(
    "nightjar_prediction_drift_score",
    "Drift score of the predicted probabilities against the training reference.",
    ("role",),
)
ROC_AUC = Metric(
    "nightjar_roc_auc",
    "ROC AUC of the predictions whose outcomes landed: the last day (1d), trailing 7 days (7d).",
    ("role", "window"),
)
RETRAIN_REQUEST = Metric(
    "nightjar_retrain_request_timestamp_seconds",
    "When the retraining policy last requested a training, per rule.",
    ("rule",),
)
POLICY_THRESHOLD = Metric(
    "nightjar_policy_threshold",
    "The settings the alerting rules compare with (the retraining policy's and the alerts').",
    ("name",),
)

Sample = tuple[Metric, dict[str, str], float]


def day_seconds(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()


def push(settings: Settings, dag: str, task: str, samples: list[Sample]) -> bool:
    """Push ``samples`` to the Pushgateway as the ``(dag, task)`` group; whether it worked."""
    if not settings.metrics_enabled or not samples:
        return False
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for metric, labels, value in samples:
        if metric.name not in gauges:
            gauges[metric.name] = Gauge(metric.name, metric.help, metric.labels, registry=registry)
        gauge = gauges[metric.name]
        (gauge.labels(**labels) if metric.labels else gauge).set(value)
    try:
        pushadd_to_gateway(
            settings.pushgateway,
            job=JOB,
            grouping_key={"dag": dag, "task": task},
            registry=registry,
            timeout=PUSH_TIMEOUT_S,
        )
    except OSError as exc:  # urllib's errors, refused connections included
        log.warning("metrics not pushed to %s (%s); the run goes on", settings.pushgateway, exc)
        return False
    return True
