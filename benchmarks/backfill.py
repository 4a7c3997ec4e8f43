"""`make bench-backfill`: history through the scheduler, a month per run against a day per run.

From an empty state each, through Airflow's scheduler as a user would start them:

(a) daily runs: a backfill of ``nightjar_daily`` over the first ``DAILY_DAYS`` days of 2013
    (default 14), extrapolated to the year (x 365 / DAILY_DAYS; the fixed cost per run is what
    dominates, so a sample measures it). The daily DAG's runs also hold the three nightly ML
    tasks (``score`` is skipped without a model, ``monitor`` records ``no_model``): their time
    is reported apart from the lakehouse's and the features' tasks.
(b) the history rebuild: a backfill of ``nightjar_history`` over all of 2013 (12 monthly runs).

Both backfills run ``MAX_ACTIVE_RUNS`` runs at a time (default 4).

Prints the wall time, the machine's busy CPU-seconds (every process: the scheduler, its task
processes, the Spark Connect server), and the ratios; then checks that every table of (a)
equals the same partitions of (b). Saved to ``.state/bench-backfill/backfill.json``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time

import psutil
from rich.console import Console
from rich.table import Table

from benchmarks.harness import ROOT, isolate, save

STATE = ROOT / ".state" / "bench-backfill"
YEAR = (dt.date(2013, 1, 1), dt.date(2013, 12, 31))
DAILY_DAYS = int(os.environ.get("DAILY_DAYS", "14"))
# runs at a time in each backfill (the UI's form offers 1; docs/backfill.md advises 2)
MAX_ACTIVE_RUNS = int(os.environ.get("MAX_ACTIVE_RUNS", "4"))
LAKEHOUSE_TASKS = ("land", "bronze", "silver", "check_silver", "gold", "check_gold", "materialize")
LAKEHOUSE_LAYERS = ("bronze", "silver", "gold", "quality")
console = Console()


def platform_env(name: str) -> None:
    """This variant's own state folder (Airflow's too) and the benchmark's ports; the
    lakehouse and the features only: no first model is requested."""
    isolate("backfill", 25012, platform=name, initial_training_days=1000)


def busy_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def run_backfill(name: str, dag_id: str, start: dt.date, end: dt.date) -> dict:
    from jobs.common.settings import Settings
    from jobs.lakehouse import source
    from tooling import demo, services
    from tooling.airflow_api import AirflowAPI

    platform_env(name)
    settings = Settings()
    services.down(settings)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    source.warm_cache(settings.state_dir / "source_cache")  # the upstream's files, not timed
    try:
        services.up(settings)
        api = AirflowAPI(settings)
        api.wait_for_dag(dag_id)
        api.patch(f"/dags/{dag_id}", {"is_paused": False})
        cpu0, t0 = busy_cpu_seconds(), time.perf_counter()
        runs = demo.backfill(api, start, end, max_active_runs=MAX_ACTIVE_RUNS, dag_id=dag_id)
        wall, cpu = time.perf_counter() - t0, busy_cpu_seconds() - cpu0
        per_task: dict[str, float] = {}
        for run in runs:
            for ti in api.task_instances(dag_id, run["dag_run_id"]):
                per_task[ti["task_id"]] = per_task.get(ti["task_id"], 0.0) + (ti["duration"] or 0)
    finally:
        services.down(settings)
    console.print(f"{dag_id} {start}..{end}: {len(runs)} runs, {wall:.0f} s, {cpu:.0f} CPU-s")
    return {
        "runs": len(runs),
        "wall_s": wall,
        "cpu_s": cpu,
        "task_s": per_task,
        "lakehouse": settings.lakehouse,
    }


def same_tables(daily_root: str, history_root: str) -> list[str]:
    """Every table of the daily lakehouse against the same partitions of the history's; returns
    the tables compared (raises on the first difference)."""
    from tooling.lakehouse_diff import assert_same_lakehouse, lakehouse_content, restrict_to

    daily = {
        name: frame
        for name, frame in lakehouse_content(daily_root).items()
        if name.split(".")[0] in LAKEHOUSE_LAYERS  # not the nightly ML tables
    }
    history = restrict_to(lakehouse_content(history_root), daily)
    assert_same_lakehouse(daily, history)
    return sorted(daily)


def main() -> None:
    shutil.rmtree(STATE, ignore_errors=True)
    history = run_backfill("history", "nightjar_history", *YEAR)
    sample_end = YEAR[0] + dt.timedelta(days=DAILY_DAYS - 1)
    daily = run_backfill("daily", "nightjar_daily", YEAR[0], sample_end)
    scale = 365 / DAILY_DAYS
    compared = same_tables(daily["lakehouse"], history["lakehouse"])

    def share(result: dict) -> float:
        tasks = result["task_s"]
        return sum(tasks.get(t, 0) for t in LAKEHOUSE_TASKS) / sum(tasks.values())

    table = Table(title="2013 through the lakehouse and the features, through the scheduler")
    for column in ("", "wall", "busy CPU", "lakehouse+features share of task time"):
        table.add_column(column)
    table.add_row(
        f"(a) daily runs, {DAILY_DAYS} days measured",
        f"{daily['wall_s']:.0f} s",
        f"{daily['cpu_s']:.0f} s",
        f"{share(daily):.0%}",
    )
    table.add_row(
        "    extrapolated to 365 days",
        f"{daily['wall_s'] * scale:.0f} s",
        f"{daily['cpu_s'] * scale:.0f} s",
        "",
    )
    table.add_row(
        f"(b) history rebuild, {history['runs']} monthly runs",
        f"{history['wall_s']:.0f} s",
        f"{history['cpu_s']:.0f} s",
        f"{share(history):.0%}",
    )
    table.add_row(
        "(a) / (b)",
        f"{daily['wall_s'] * scale / history['wall_s']:.1f}x",
        f"{daily['cpu_s'] * scale / history['cpu_s']:.1f}x",
        "",
    )
    console.print(table)
    console.print(
        "history task time (s, all runs): "
        + ", ".join(f"{t} {s:.0f}" for t, s in history["task_s"].items())
    )
    console.print(f"identical tables: {len(compared)} compared, the daily days' partitions")
    results = {"daily": daily, "history": history, "daily_days": DAILY_DAYS, "tables": compared}
    save(results, STATE / "backfill.json", console)


if __name__ == "__main__":
    main()
