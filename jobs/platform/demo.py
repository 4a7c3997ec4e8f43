"""``make run``: backfill the daily DAG over a window through Airflow's scheduler, with progress,
then print the summary."""

from __future__ import annotations

import datetime as dt
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobs.common.dates import check_in_range
from jobs.common.settings import Settings
from jobs.lakehouse import source
from jobs.platform import airflow_login, report, services
from jobs.platform.airflow_api import AirflowAPI

DAG_ID = "nightjar_daily"
console = Console()


def backfill(api: AirflowAPI, start: dt.date, end: dt.date, max_active_runs: int = 4) -> list[dict]:
    """Create a backfill and follow it to the end; returns the final state of its runs.

    On the embedded SQLite metadata DB the backfill is created while the scheduler is stopped:
    creating ~60 runs in one request while the scheduler writes can end in "database is
    locked" half-way, leaving the scheduler holding task instances that were rolled back. A
    component that dies meanwhile is restarted, with a warning, so a long backfill finishes.
    """
    sqlite = services.metadata_db_is_sqlite(api.settings)
    if sqlite:
        services.stop(api.settings, "scheduler")
    try:
        api.create_backfill(DAG_ID, start.isoformat(), end.isoformat(), max_active_runs)
    finally:
        if sqlite:
            services.start(api.settings, services.airflow_service(api.settings, "scheduler"))
    n_days = (end - start).days + 1
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    last = None
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        bar = progress.add_task(f"backfill {start}..{end}", total=n_days)
        while True:
            runs = [
                r
                for r in api.dag_runs(DAG_ID, run_type="backfill")
                if start.isoformat() <= r["logical_date"][:10] <= end.isoformat()
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
                    f"  {last}/{n_days} days done, "
                    f"{sum(r['state'] == 'running' for r in runs)} running"
                )
                console.file.flush()
            failed = [r for r in runs if r["state"] == "failed"]
            if failed:
                raise RuntimeError(
                    f"backfill run(s) failed: {[r['dag_run_id'] for r in failed]}; "
                    "see the task logs in the Airflow UI"
                )
            if len(done) == n_days:
                return runs
            for name in services.restart_dead(api.settings):
                console.print(
                    f"[yellow]warning: {name} had died and was restarted; see "
                    f"{api.settings.run_dir / (name + '.log')}[/yellow]"
                )
            time.sleep(2)


def run(settings: Settings, start: dt.date, end: dt.date, keep_running: bool = False) -> None:
    check_in_range(start), check_in_range(end)
    # This process reads the summary through the same Spark Connect server the tasks use.
    if not settings.spark_remote:
        settings = settings.model_copy(
            update={"spark_remote": f"sc://127.0.0.1:{settings.spark_connect_port}"}
        )
    began = time.perf_counter()
    console.print("[bold]Starting Spark Connect and Airflow[/bold] …")
    try:
        source.warm_cache(settings.state_dir / "source_cache")
        services.up(settings)
        api = AirflowAPI(settings)
        api.wait_for_dag(DAG_ID)
        # Backfill runs only execute while the DAG is unpaused. With catchup off and an end date
        # in the past, unpausing schedules nothing else.
        api.patch(f"/dags/{DAG_ID}", {"is_paused": False})
        console.file.flush()
        console.print(
            f"services up after {time.perf_counter() - began:.0f}s; "
            f"backfilling {DAG_ID} from {start} to {end}"
        )
        t0 = time.perf_counter()
        backfill(api, start, end)
        backfill_s = time.perf_counter() - t0
        report.print_summary(settings, start, end, console)
        console.print(
            f"backfill of {(end - start).days + 1} days: {backfill_s:.0f}s; "
            f"total elapsed {time.perf_counter() - began:.0f}s"
        )
        console.print(f"Lakehouse: {settings.lakehouse}")
        if keep_running:
            console.print(airflow_login.instructions(settings))
    finally:
        if not keep_running:
            services.down(settings)
