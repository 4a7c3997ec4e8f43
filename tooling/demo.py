"""``make run``: the platform's whole lifecycle over a window, through Airflow's scheduler.

One backfill of the daily DAG covers the window, as a user would create it in the UI. Once the
window holds ``initial_training_days`` labeled days, the retraining policy requests the first
model through the ``retrain_request`` Asset; the nights after that request run beside its
training, their scoring waiting for the champion (rescheduled, see ``dags/nightjar_daily.py``),
so every night after the first model is scored. Then each night is scored by the champion,
monitored, and retrained when the policy fires. The summary prints the layers, the champion's
history with its reasons, daily performance and drift, and the retrain requests.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobs.common.dates import check_in_range
from jobs.common.settings import Settings
from jobs.lakehouse import source
from tooling import airflow_login, report, services
from tooling.airflow_api import AirflowAPI

DAG_ID = "nightjar_daily"
TRAINING_DAG_ID = "nightjar_training"
# Written to a log or CI (no terminal), rich would wrap the summary's tables at 80 columns and
# cut their dates to "2013…"; there the summary gets the width it needs.
console = Console(width=None if sys.stdout.isatty() else 140)


def backfill(
    api: AirflowAPI,
    start: dt.date,
    end: dt.date,
    max_active_runs: int = 6,
    dag_id: str = DAG_ID,
) -> list[dict]:
    """Create a backfill of ``dag_id`` (the daily DAG: a run per day; the history DAG: a run
    per month whose first day is in the range) and follow it until its runs have finished (the
    scheduler closes it later, see ``close_earlier_backfill``); returns the final state of its
    runs.

    On the embedded SQLite metadata DB the backfill is created while the scheduler is stopped:
    creating ~60 runs in one request while the scheduler writes can end in "database is
    locked" half-way, leaving the scheduler holding task instances that were rolled back. A
    component that dies meanwhile is restarted, with a warning, so a long backfill finishes.
    A night that failed in an earlier run is run again, and said so (``rerun_failed``).
    """
    close_earlier_backfill(api, dag_id)
    expected = api.backfill_logical_dates(dag_id, start.isoformat(), end.isoformat())
    # The dry run leaves out the window's runs in flight (a backfill leaves them be), such as
    # those an earlier backfill left waiting for a failed night: followed all the same.
    expected |= {
        r["logical_date"][:10]
        for r in api.dag_runs(dag_id, run_type="backfill", state=["queued", "running"])
        if start.isoformat() <= r["logical_date"][:10] <= end.isoformat()
    }
    sqlite = services.metadata_db_is_sqlite(api.settings)
    if sqlite:
        services.stop(api.settings, "scheduler")
    try:
        # first: the new backfill then finds those runs in flight, and leaves them be
        rerun_failed(api, expected, dag_id)
        api.create_backfill(dag_id, start.isoformat(), end.isoformat(), max_active_runs)
    finally:
        if sqlite:
            services.start(api.settings, services.airflow_service(api.settings, "scheduler"))
    n_runs = len(expected)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    last = None
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        bar = progress.add_task(f"backfill {start}..{end}", total=n_runs)
        while True:
            runs = [
                r
                for r in api.dag_runs(dag_id, run_type="backfill")
                if r["logical_date"][:10] in expected
            ]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            progress.update(
                bar,
                completed=len(done),
                description=f"backfill {start}..{end} "
                f"({sum(r['state'] == 'running' for r in runs)} running)",
            )
            if not console.is_terminal and len(done) != last:  # a line per change in logs/CI
                last = len(done)
                console.print(
                    f"  {last}/{n_runs} runs done, "
                    f"{sum(r['state'] == 'running' for r in runs)} running"
                )
                console.file.flush()
            failed = [r for r in runs if r["state"] == "failed"]
            if failed:
                raise RuntimeError(
                    f"backfill run(s) failed: {[r['dag_run_id'] for r in failed]}; "
                    "see the task logs in the Airflow UI"
                )
            if len(done) == n_runs:
                return runs
            for name in services.restart_dead(api.settings):
                console.print(
                    f"[yellow]warning: {name} had died and was restarted; see "
                    f"{api.settings.run_dir / (name + '.log')}[/yellow]"
                )
            time.sleep(2)


def rerun_failed(api: AirflowAPI, dates: set[str], dag_id: str = DAG_ID) -> list[dict]:
    """Queue the failed backfill runs of ``dag_id`` on ``dates`` (YYYY-MM-DD) again, every
    task cleared, saying so; returns them. A backfill an earlier `make run` left open (its
    later nights waiting for the failed one, ``depends_on_past``) is taken over as it is and
    would report the old failure at once; a new one would clear them the way Airflow 3.3 fails
    at (below)."""
    runs = api.dag_runs(dag_id, run_type="backfill", state="failed")
    runs = [r for r in runs if (r["logical_date"] or "")[:10] in dates]
    for run in sorted(runs, key=lambda r: r["logical_date"]):
        run_id = run["dag_run_id"]
        tasks = api.task_instances(dag_id, run_id)
        why = ", ".join(t["task_id"] for t in tasks if t["state"] == "failed") or "none"
        console.print(
            f"[yellow]{run['logical_date'][:10]}: its earlier run {run_id} failed (failed "
            f"tasks: {why}); running that night again[/yellow]"
        )
        # Clearing with reset_dag_runs fails in Airflow 3.3 while the run's deadline is ahead
        # (apache/airflow#70368): the tasks are cleared, then the run is queued.
        api.post(
            f"/dags/{dag_id}/clearTaskInstances",
            {"dag_run_id": run_id, "only_failed": False, "reset_dag_runs": False, "dry_run": False},
        )
        api.patch(f"/dags/{dag_id}/dagRuns/{run_id}", {"state": "queued"})
    return runs


def open_backfills(api: AirflowAPI, dag_id: str = DAG_ID) -> list[dict]:
    return [b for b in api.get("/backfills", dag_id=dag_id)["backfills"] if not b["completed_at"]]


def wait_closed(api: AirflowAPI, timeout: float = 120, dag_id: str = DAG_ID) -> None:
    """Wait until the scheduler has closed the DAG's backfills. It does so in a sweep every
    30 s, not at a backfill's last run, and another backfill of the DAG can only be created
    then. (Airflow's cancel would close one at once, but leaves it paused for good: a day
    cleared in the UI would then never run.)"""
    deadline = time.monotonic() + timeout
    while open_backfills(api, dag_id):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the scheduler has not closed the backfill after {timeout:.0f}s")
        time.sleep(1)


def close_earlier_backfill(api: AirflowAPI, dag_id: str = DAG_ID) -> None:
    """Let the scheduler close a finished backfill an earlier ``make run`` left open, before
    this one creates its own (Airflow allows one open backfill per DAG).

    A run does not wait for that sweep itself (0-30 s, idle) before it ends: it is only needed
    here, by the next run on the same state. A backfill with runs still to do (an interrupted
    run) is left as it is: ``create_backfill`` resumes it when the window is the same and reports
    the conflict otherwise."""
    if not open_backfills(api, dag_id):
        return
    if any(r["state"] in ("queued", "running") for r in api.dag_runs(dag_id, run_type="backfill")):
        return
    services.start(api.settings, services.airflow_service(api.settings, "scheduler"))
    wait_closed(api, dag_id=dag_id)


def wait_for_training(
    api: AirflowAPI, settings: Settings, timeout: float = 900, ignore: frozenset[str] = frozenset()
) -> list[dict]:
    """Wait until every retrain request is served and no training run is active; returns the
    training runs. A request left pending with no run to serve it (its Asset event unconsumed)
    gets a manual run, with a warning: the request log, not the event, is what must be served."""
    from jobs.monitoring import retrain

    deadline = time.monotonic() + timeout
    idle_since = None
    while time.monotonic() < deadline:
        runs = api.dag_runs(TRAINING_DAG_ID)
        failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
        failed = [run_id for run_id in failed if run_id not in ignore]  # earlier sessions
        if failed:
            raise RuntimeError(f"training run(s) failed: {failed}; see their logs in the UI")
        active = [r for r in runs if r["state"] in ("queued", "running")]
        pending = retrain.pending(settings)
        if not active and not pending:
            return runs
        if active or idle_since is None:
            idle_since = None if active else time.monotonic()
        elif time.monotonic() - idle_since > 60:
            console.print(
                f"[yellow]warning: {[r['request_id'] for r in pending]} pending with no "
                "training run after 60s; triggering one[/yellow]"
            )
            api.post(f"/dags/{TRAINING_DAG_ID}/dagRuns", {"logical_date": None})
            idle_since = None
        services.restart_dead(api.settings)
        time.sleep(2)
    raise TimeoutError(f"training still busy after {timeout:.0f}s")


def lifecycle(api: AirflowAPI, settings: Settings, start: dt.date, end: dt.date) -> None:
    """Backfill the window, then wait for the training its last nights requested. The scheduler
    closes the backfill later (see ``close_earlier_backfill``)."""
    earlier = frozenset(
        r["dag_run_id"] for r in api.dag_runs(TRAINING_DAG_ID) if r["state"] == "failed"
    )
    backfill(api, start, end)
    began = time.perf_counter()
    runs = wait_for_training(api, settings, ignore=earlier)
    console.print(
        f"  training: {len(runs)} run(s); waited {time.perf_counter() - began:.0f}s after the "
        "last night"
    )


def run(settings: Settings, start: dt.date, end: dt.date, keep_running: bool = False) -> None:
    check_in_range(start), check_in_range(end)
    # This process reads the summary through the same Spark Connect server the tasks use.
    if not settings.spark_remote:
        settings = settings.model_copy(
            update={"spark_remote": f"sc://127.0.0.1:{settings.spark_connect_port}"}
        )
    began = time.perf_counter()
    console.print("[bold]Starting Spark Connect and Airflow[/bold] …")
    pool = ThreadPoolExecutor(1, thread_name_prefix="stop-airflow")
    try:
        source.warm_cache(settings.state_dir / "source_cache")
        # On SQLite the first backfill is created with the scheduler stopped (see `backfill`),
        # so it starts the scheduler then instead of stopping one that has just booted.
        sqlite = services.metadata_db_is_sqlite(settings)
        services.up(
            settings,
            defer=frozenset({"scheduler"} if sqlite else ()),
            observability=settings.metrics_enabled,
        )
        api = AirflowAPI(settings)
        # Backfill runs only execute while the DAG is unpaused. With catchup off and an end date
        # in the past, unpausing schedules nothing else; the training DAG runs on the Asset
        # (its weekly schedule's next run is next Monday, in real time).
        for dag_id in (DAG_ID, TRAINING_DAG_ID):
            api.wait_for_dag(dag_id)
            api.patch(f"/dags/{dag_id}", {"is_paused": False})
        console.file.flush()
        console.print(
            f"services up after {time.perf_counter() - began:.0f}s; "
            f"backfilling {DAG_ID} from {start} to {end}"
        )
        t0 = time.perf_counter()
        lifecycle(api, settings, start, end)
        lifecycle_s = time.perf_counter() - t0
        if not keep_running:  # Airflow's part is done: it stops while the tables are read
            pool.submit(services.down, settings, services.AIRFLOW_COMPONENTS)
        report.print_summary(settings, start, end, console)
        report.print_lifecycle(settings, start, end, console)
        console.print(
            f"lifecycle of {(end - start).days + 1} days: {lifecycle_s:.0f}s; "
            f"total elapsed {time.perf_counter() - began:.0f}s"
        )
        console.print(report.where_to_look(settings))
        if keep_running:
            console.print(airflow_login.instructions(settings))
    finally:
        release_spark()
        if not keep_running:
            pool.shutdown()  # the stop above, if it was started
            services.down(settings)


def release_spark() -> None:
    """End this process's Spark Connect session while its server is still up: left open, the
    client's exit hook retries the vanished server for about ten minutes before giving up."""
    from pyspark.sql import SparkSession

    from jobs.pipeline import release

    if (spark := SparkSession.getActiveSession()) is not None:
        release(spark)
