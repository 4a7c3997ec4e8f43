"""What a stage's run tells Prometheus: its figures, read off the result it returns (and, for
gold, off the Delta logs: no data file is read), as ``metrics.Sample`` values."""

from __future__ import annotations

import datetime as dt
import time

from jobs.common.settings import Settings
from jobs.observability import metrics as m

OUTCOMES = ("landed", "accepted", "quarantined", "duplicates")


def task_samples(days: list[dt.date], duration_s: float) -> list[m.Sample]:
    """Every successful task: when, how long, which day."""
    return [
        (m.TASK_SUCCESS, {}, time.time()),
        (m.TASK_DURATION, {}, duration_s),
        (m.TASK_DAY, {}, m.day_seconds(days[-1])),
    ]


def stage_samples(stage: str, result: dict, settings: Settings) -> list[m.Sample]:
    """The figures of one stage's result (the shapes ``jobs.pipeline.run_stage`` returns)."""
    samples: list[m.Sample] = []
    if stage in ("land", "bronze", "gold"):
        outcome = "landed" if stage == "land" else "written"
        for table, rows in result.items():
            if isinstance(rows, int):
                samples.append((m.ROWS, {"table": table, "outcome": outcome}, rows))
    if stage == "bronze":
        samples += expectations(result["quality"])
    elif stage == "silver":
        for table, counts in result.items():
            if table == "quarantine_reasons":
                continue
            samples += [(m.ROWS, {"table": table, "outcome": o}, counts[o]) for o in OUTCOMES]
            ratio = counts["quarantined"] / counts["landed"] if counts["landed"] else 0.0
            samples.append((m.QUARANTINE_RATIO, {"table": table}, ratio))
        for table, reasons in result["quarantine_reasons"].items():
            for reason, rows in reasons.items():
                samples.append((m.QUARANTINED, {"table": table, "reason": reason}, rows))
    elif stage in ("check_silver", "check_gold"):
        samples += expectations(result)
    elif stage == "gold":
        samples += newest_partitions(settings, [t for t in result if t.startswith("gold.")])
    elif stage == "materialize":
        day = dt.date.fromisoformat(result["materialized_day"])
        samples.append((m.ONLINE_NEWEST_DAY, {}, m.day_seconds(day)))
    elif stage == "score":
        for role, model in result["models"].items():  # "flight_disruption v3"
            samples.append((m.PREDICTIONS, {"role": role}, result["flights"]))
            samples.append((m.MODEL_VERSION, {"role": role}, int(model.rsplit("v", 1)[1])))
    elif stage == "monitor":
        for role, figures in result["models"].items():
            samples += monitored(role, figures)
        samples += policy_thresholds(settings)
    elif stage == "request_retrain":
        samples.append((m.RETRAIN_REQUEST, {"rule": result["rule"]}, time.time()))
    return samples


def expectations(result: dict) -> list[m.Sample]:
    failed = result["failed"]
    return [
        (m.EXPECTATIONS, {"outcome": "passed"}, result["expectations"] - failed),
        (m.EXPECTATIONS, {"outcome": "failed"}, failed),
    ]


def newest_partitions(settings: Settings, tables: list[str]) -> list[m.Sample]:
    from jobs.common.delta.snapshot import partition_values

    samples = []
    for name in tables:
        if days := partition_values(settings.table_uri(name)):
            samples.append((m.TABLE_NEWEST_DAY, {"table": name}, m.day_seconds(days[-1])))
    return samples


def monitored(role: str, figures: dict) -> list[m.Sample]:
    values = [
        (m.DRIFT_SHARE, {"role": role}, figures.get("drift_share")),
        (m.PREDICTION_DRIFT, {"role": role}, figures.get("prediction_drift")),
        (m.ROC_AUC, {"role": role, "window": "1d"}, figures.get("roc_auc")),
        (m.ROC_AUC, {"role": role, "window": "7d"}, figures.get("rolling_roc_auc")),
    ]
    return [(metric, labels, v) for metric, labels, v in values if v is not None and v == v]


def policy_thresholds(settings: Settings) -> list[m.Sample]:
    """The thresholds the alerting rules compare with, from the one place they are set."""
    values = {
        "retrain_drift_share": settings.retrain_drift_share,
        "retrain_min_rolling_auc": settings.retrain_min_rolling_auc,
        "quarantine_rate": settings.alert_quarantine_rate,
        "features_max_lag_days": settings.alert_features_max_lag_days,
        "night_deadline_hours": settings.alert_night_deadline_hours,
    }
    return [(m.POLICY_THRESHOLD, {"name": name}, v) for name, v in values.items()]
