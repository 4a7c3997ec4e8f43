"""
### nightjar_history — rebuild the lakehouse and the features a month at a time

The same stages as `nightjar_daily` from `land` to `materialize`, each run over a whole **data
interval** (a calendar month): one Spark job per table for the month instead of one per day,
every day still in its own partitions, its quality gates checking each day against that day's
own bands, and `gold`'s trailing statistics computed per day from flights on or before it. The
tables come out the same as the daily runs of those days would have left them.

Use it to load or rebuild history fast: **Trigger → Backfill** in the UI, with *Max Active
Runs* 2 (or `airflow backfill create --dag-id nightjar_history --from-date 2013-01-01
--to-date 2013-12-31 --max-active-runs 2`), makes one run for each month whose first day lies
in the range, and each run rebuilds its whole month. Two at a time keep a 2-core machine
busy; the form's 1 takes a quarter longer. Use `nightjar_daily` backfills for a few days, and
for anything that scores or monitors nights (`score`, `monitor` and `request_retrain` replay
night by night there).

`gold` waits for the previous month's `gold` (`depends_on_past`): its trailing windows read the
days before the interval. Do not run both DAGs over the same days at once; either leaves the
same tables.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable
from nightjar_alerts import DEFAULT_ARGS
from nightjar_stages import run_stage

from jobs import stages

with DAG(
    dag_id="nightjar_history",
    description="Monthly data intervals: land -> bronze -> silver -> gold (quality gates, per "
    "day) -> features, one Spark job per table per month",
    doc_md=__doc__,
    # interval [first of the month, first of the next)
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone="UTC"),
    start_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    end_date=dt.datetime(2013, 12, 31, tzinfo=dt.UTC),
    catchup=False,  # run by backfills (UI or `airflow backfill create`)
    max_active_runs=2,
    tags=["nightjar", "lakehouse", "history"],
    default_args=DEFAULT_ARGS,
) as dag:
    previous = None
    for stage in stages.STAGES:
        if not stage.interval:  # scoring, monitoring and the policy replay night by night
            continue
        current = task(
            task_id=stage.name,
            doc_md=stage.doc,
            depends_on_past=stage.depends_on_past,  # gold: its windows read the month before
            max_active_tis_per_dag=1 if stage.one_at_a_time else None,
        )(run_stage)(stage.name, interval=True)
        if previous is not None:
            previous >> current
        previous = current
