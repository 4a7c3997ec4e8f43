"""
### nightjar_maintenance — compact, vacuum and checkpoint every Delta table

One task, `maintain` (`jobs/lakehouse/maintenance.py`, also `make maintain` and `nightjar
maintenance`), for every Delta table under the lakehouse:

1. **compacts** each partition holding two files or more into one (rows unchanged); a partition
   written within `NIGHTJAR_MAINTENANCE_QUIET_HOURS` (1) is left for the next run;
2. **vacuums** the files no version of the last `NIGHTJAR_MAINTENANCE_RETENTION_HOURS` (168)
   references: those replaced or compacted away before the window, and the files no commit ever
   referenced (a killed write's orphans) once older than it. Time travel to any version of the
   window keeps working;
3. **checkpoints** the table and deletes commit files past the log retention;
4. **records** a row per table in `ops.maintenance` (files and bytes before and after, files
   compacted and vacuumed, versions, duration, status).

**Schedule**: weekly, Sundays 08:00 UTC (`NIGHTJAR_MAINTENANCE_SCHEDULE`). Weekly, because a
night adds a few small files per table, so a week's nights give compaction a few dozen files
per table, and vacuum can only delete a file a week (the retention) after it was replaced: a
daily run would make seven times the commits for the same files. 08:00 UTC, because the night
of D has finished by then (its deadline is 06:00) and the weekly training starts Mondays 03:00.

A compaction that loses to a writer (a stage re-running a partition at the same moment) changes
nothing, is recorded as `conflict` and is redone next week; the writer's own commit is retried.
A table that fails is recorded with its error, the others are still maintained, and then the
task fails (retried, then alerted like every Nightjar task).
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, task
from airflow.timetables.trigger import CronTriggerTimetable
from nightjar_alerts import DEFAULT_ARGS


def maintenance_schedule() -> str:
    """The setting ``maintenance_schedule`` (jobs/common/settings.py), read from the
    environment: the DAG processor does not import the job code."""
    return os.environ.get("NIGHTJAR_MAINTENANCE_SCHEDULE", "0 8 * * 0")


@task(task_id="maintain")
def maintain(**context) -> dict:
    """Compact, vacuum, checkpoint and record every Delta table."""
    from jobs.common.settings import Settings
    from jobs.lakehouse import maintenance

    result = maintenance.run(Settings(), run_id=context["run_id"])
    return {key: value for key, value in result.items() if key != "per_table"}


with DAG(
    dag_id="nightjar_maintenance",
    description="Weekly: compact small files, vacuum unreferenced ones after the retention "
    "window, checkpoint; recorded in ops.maintenance",
    doc_md=__doc__,
    # from the next Sunday on: no catch-up run of the last one when first unpaused
    schedule=CronTriggerTimetable(maintenance_schedule(), timezone="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["nightjar", "maintenance"],
    default_args=DEFAULT_ARGS,
) as dag:
    maintain()
