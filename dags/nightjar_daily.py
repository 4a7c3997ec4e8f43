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
8. **score** — every flight scheduled for D+1, scored with the night's champion (an
   unpromoted challenger scores in shadow) on features as of the end of D, into
   `ml.predictions` (partition D+1); the features served are kept in
   `ml.served_features__<service>`. The night's models come from the decision log
   (`ml.model_decisions`): for the newest night those the `champion` and `challenger` aliases
   name, for a past night those that held them then, never one trained on data after D. It
   waits (up to 30 s in its slot, then rescheduled every 15 s, its slot freed) until night
   D-1's `request_retrain` has run and any training an earlier night requested is done, so a
   backfill scores each night as the nightly runs would have. With no champion for the night
   it is skipped, with the reason in the log.
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

from airflow.sdk import DAG, Param, task
from airflow.timetables.interval import CronDataIntervalTimetable
from nightjar_alerts import DEFAULT_ARGS, NIGHT_DEADLINE
from nightjar_assets import OUTLETS
from nightjar_stages import run_stage

from jobs import stages

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
    default_args=DEFAULT_ARGS,
    deadline=NIGHT_DEADLINE,
) as dag:
    previous = None
    for stage in stages.STAGES:  # how each is wired is declared there (jobs/stages.py)
        current = task(
            task_id=stage.name,
            doc_md=stage.doc,
            outlets=[asset for group in stage.outlets for asset in OUTLETS[group]],
            depends_on_past=stage.depends_on_past,
            trigger_rule=stage.trigger_rule,
            max_active_tis_per_dag=1 if stage.one_at_a_time else None,
        )(run_stage)(stage.name)
        if previous is not None:
            previous >> current
        previous = current
