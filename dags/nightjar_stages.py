"""The stages the Nightjar DAGs run and the task that runs one (this file defines no DAG; the
DAG files import it, as they do ``nightjar_assets``).

``nightjar_daily`` runs every stage for one logical day; ``nightjar_history`` runs the
lakehouse's stages and ``materialize`` for a whole data interval (a month) at once. Both call
the same jobs (``jobs.pipeline.run_stage``): a daily run is the one-day case of an interval.
"""

from __future__ import annotations

import datetime as dt
import logging

from nightjar_alerts import day_of
from nightjar_assets import RETRAIN_REQUEST

from jobs import stages

# The stages as jobs/stages.py declares them (a light import: no job code is loaded).
STAGES = stages.NAMES
INTERVAL_STAGES = stages.INTERVAL
STAGE_DOCS = {stage.name: stage.doc for stage in stages.STAGES}
# A task waiting for another run's work is rescheduled this often (see `wait_for`). Not
# shorter: a task's supervisor can report its exit ~5 s late (it sleeps between heartbeats),
# and a late report that finds the task queued again fails it (apache/airflow#71172).
POKE = dt.timedelta(seconds=15)
HOLD = dt.timedelta(seconds=30)  # how long `score` waits in its slot before it is rescheduled
FINISHED = {"success", "skipped", "failed", "upstream_failed", "removed"}


def run_stage(stage: str, interval: bool = False, **context) -> dict:
    """Run one job for the run's logical day, or (``interval``) for its whole data interval,
    clipped to the source data's range. Bad input fails the task without retries."""
    import time

    started = time.perf_counter()
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from jobs.common.dates import parse_date
    from jobs.common.errors import NightjarError, StageSkipped
    from jobs.common.settings import DATA_END
    from jobs.pipeline import run_stage as run_job

    end = None
    if interval:
        day = parse_date(context["data_interval_start"])
        end = min(parse_date(context["data_interval_end"]), DATA_END + dt.timedelta(days=1))
    else:
        day = parse_date(day_of(context))
    use_spark_connection()
    if stage == "score":
        await_earlier_nights(day, context)
    try:
        result = run_job(stage, day, run_id=context["run_id"], task_started=started, end=end)
    except StageSkipped as exc:
        push_metrics(stage, day, end, None, started, context)
        raise AirflowSkipException(str(exc)) from exc
    except NightjarError as exc:
        raise AirflowFailException(str(exc)) from exc
    push_metrics(stage, day, end, result, started, context)
    if stage == "monitor":  # read by the task's "Monitoring report" link (plugins/)
        context["ti"].xcom_push(key="report_url", value=result["report_url"])
    if stage == "request_retrain":  # the request travels with the Asset event
        context["outlet_events"][RETRAIN_REQUEST].extra = result
    return result


SPARK_CONNECTION = "nightjar_spark"


def use_spark_connection() -> None:
    """Point the task's jobs at the Spark Connect server of the Airflow connection
    `nightjar_spark` when one is configured (the compose stack defines it; a secrets backend
    may), else leave the settings' `NIGHTJAR_SPARK_REMOTE`. The jobs read only their settings:
    they never import Airflow."""
    import os

    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = Connection.get(SPARK_CONNECTION)
    except AirflowNotFoundException:
        return
    os.environ["NIGHTJAR_SPARK_REMOTE"] = connection.get_uri()


def push_metrics(stage, day, end, result, started: float, context) -> None:
    """The task's figures to Prometheus (``jobs/observability``): when it finished, how long it
    took, the day it processed and what its result says (nothing more for a skip)."""
    import time

    from jobs.common.dates import interval_days
    from jobs.common.settings import Settings
    from jobs.observability import metrics, stage_metrics

    settings, ti = Settings(), context["ti"]
    days = interval_days(day, end or day + dt.timedelta(days=1))
    samples = stage_metrics.task_samples(days, time.perf_counter() - started)
    if result is not None:
        samples += stage_metrics.stage_samples(stage, result, settings)
    metrics.push(settings, ti.dag_id, ti.task_id, samples)


def await_earlier_nights(day: dt.date, context) -> None:
    """Hold `score` of night D until the nights before it have decided its model: night D-1's
    retraining policy (`request_retrain`) has run, and every retraining an earlier night asked
    for is served (`retrain.training_wait`). Then the night gets the champion the decision log
    gives it, as in a replay.

    In a backfill night D-1's policy usually finishes seconds later: the task checks every
    second for up to HOLD first, keeping its slot, then is rescheduled every POKE (a training
    takes minutes), freeing it. After `training_wait_minutes` it scores with the champion there
    is, with a warning."""
    import time

    from airflow.sdk.exceptions import AirflowRescheduleException

    from jobs.common.settings import Settings
    from jobs.monitoring import retrain

    ti, settings = context["ti"], Settings()
    previous = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

    def waiting_for() -> str | None:
        runs = ti.get_task_states(
            dag_id=ti.dag_id, task_ids=["request_retrain"], logical_dates=[previous]
        )
        if any(s.get("request_retrain") not in FINISHED for s in runs.values()):
            return f"the retraining policy of the night of {previous.date()} has not run yet"
        return retrain.training_wait(settings, day)

    held = time.monotonic() + HOLD.total_seconds()
    while (waiting := waiting_for()) is not None and time.monotonic() < held:
        time.sleep(1)
    if waiting is None:
        return
    log = logging.getLogger(__name__)
    now = dt.datetime.now(dt.UTC)
    since = ti.get_first_reschedule_date(context) or now
    limit = dt.timedelta(minutes=settings.training_wait_minutes)
    if now - since >= limit:
        log.warning("%s; scoring with the champion there is after waiting %s", waiting, limit)
        return
    log.info("waiting: %s; checking again in %ds", waiting, POKE.seconds)
    raise AirflowRescheduleException(now + POKE)
