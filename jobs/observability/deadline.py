"""The nightly run's Deadline Alert callback (``dags/nightjar_alerts.py``). Airflow's triggerer
imports it by its dotted path, and the DAG processor imports it to check it when it parses the
DAG: so this module imports nothing at load time."""

from __future__ import annotations


async def night_missed(context: dict, **_) -> None:
    """A run of the daily DAG had not finished by its deadline: push it to the Pushgateway,
    where Prometheus' rule ``NightjarDeadlineMissed`` alerts until a night finishes scoring."""
    import time

    from jobs.common.settings import Settings
    from jobs.observability import metrics

    run = context["dag_run"]
    day = str(run.get("logical_date") or run.get("run_after") or "")[:10]
    labels = {"run_id": run["dag_run_id"], "logical_date": day}
    sample = (metrics.DEADLINE_MISSED, labels, time.time())
    metrics.push(Settings(), run["dag_id"], "deadline", [sample])
