"""What every Nightjar DAG does when a task fails for good (this file defines no DAG; the DAG
files import it, as they do ``nightjar_assets``).

``TaskFailureAlert`` is an Airflow notifier, each DAG's ``on_failure_callback``: once a task's
retries are spent it pushes ``nightjar_task_failure_timestamp_seconds`` to the Pushgateway,
labelled with the run, the day and the task log's URL. Prometheus' rule ``NightjarTaskFailed``
(``observability/rules.yml``) fires on it until the task succeeds again, and Alertmanager
delivers that alert once to the webhook and the mail address in the settings.

``NIGHT_DEADLINE`` is the daily DAG's Deadline Alert: a run not finished within
``NIGHTJAR_ALERT_NIGHT_DEADLINE_HOURS`` of being queued (a scheduled night: by that hour of
D+1) calls ``jobs.observability.deadline.night_missed`` in the triggerer, which pushes the run to
the Pushgateway;
Prometheus' rule ``NightjarDeadlineMissed`` alerts until a night finishes scoring again.
Measured from the queueing, not the logical date, so a backfill of past nights does not miss
every deadline at once.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import BaseNotifier
from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference


class TaskFailureAlert(BaseNotifier):
    def notify(self, context) -> None:
        import time

        from jobs.common.settings import Settings
        from jobs.observability import metrics

        ti = context["ti"]
        labels = {"run_id": ti.run_id, "logical_date": day_of(context), "log_url": ti.log_url}
        sample = (metrics.TASK_FAILURE, labels, time.time())
        metrics.push(Settings(), ti.dag_id, ti.task_id, [sample])


def day_of(context) -> str:
    """The day the run processes (the `date` param of a run triggered without a logical date,
    else the logical date), as text: what `run_stage` parses, and what an alert shows (a bad
    param as given)."""
    params = context.get("params") or {}
    value = params.get("date") or context.get("logical_date") or context.get("data_interval_start")
    return value.date().isoformat() if isinstance(value, dt.datetime) else str(value)


# Retries for what may pass on a second try (a busy server); input errors fail at once
# (AirflowFailException). The alert only once the retries are spent.
DEFAULT_ARGS = {
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=15),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=5),
    "on_failure_callback": TaskFailureAlert(),
}


def night_deadline_hours() -> float:
    """The setting ``alert_night_deadline_hours`` (jobs/common/settings.py), read from the
    environment: the DAG processor does not import the job code."""
    return float(os.environ.get("NIGHTJAR_ALERT_NIGHT_DEADLINE_HOURS", "6"))


NIGHT_DEADLINE = DeadlineAlert(
    reference=DeadlineReference.DAGRUN_QUEUED_AT,
    interval=dt.timedelta(hours=night_deadline_hours()),
    # by its dotted path: the triggerer imports it from the installed package, not the DAG folder
    callback=AsyncCallback("jobs.observability.deadline.night_missed"),
)
