"""`make bench`: the lakehouse's speed figures, printed and saved to
.state/bench-lakehouse/lakehouse.json.

1. Per-task Spark overhead, task start to first Spark action done: (a) inside the Airflow tasks
   of the backfill below (forked from the scheduler, which preloads the job stack), read from
   their logs; (b) in a fresh Python process (no preloading: the worst case, e.g. spark-submit),
   as a Spark Connect thin client and, beside it, as a cold classic local session, the
   alternative the Connect server replaces.
2. The demo backfill (59 days, 2013-01-01..2013-02-28) through Airflow's scheduler: wall time.
3. One day-run under the scheduler, alone, early in the year (2013-03-01) and late in the year
   (2013-12-31), each with its full 28-day history in silver: a day's cost must not grow with
   the lakehouse's history.

Runs in its own state folder and ports, so it does not touch `make run`'s lakehouse.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time

from benchmarks.harness import ROOT, isolate, save

# Each Spark task logs how long after its start its first Spark action was done.
STATE = isolate("lakehouse", 25002, measure_task_overhead=1)

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jobs.common.settings import Settings  # noqa: E402
from tooling import demo, services  # noqa: E402
from tooling.airflow_api import AirflowAPI  # noqa: E402

console = Console()
FIRST_ACTION = """
import time, sys
from jobs.common.settings import Settings
from jobs.common.spark import get_spark
spark = get_spark(Settings({remote}))
spark.range(1000).selectExpr("sum(id)").collect()
print(time.time() - float(sys.argv[1]))
"""


def first_action_seconds(remote: bool) -> float:
    code = FIRST_ACTION.format(remote="" if remote else "spark_remote=None")
    env = dict(os.environ)
    if not remote:
        env.pop("NIGHTJAR_SPARK_REMOTE")
    out = subprocess.run(
        [sys.executable, "-c", code, str(time.time())],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def overheads_in_task_logs() -> list[float]:
    pattern = re.compile(r"first Spark action done ([0-9.]+)s after the task started")
    values = []
    for log_file in (STATE / "airflow" / "logs").rglob("attempt=*.log"):
        values += [float(m) for m in pattern.findall(log_file.read_text(errors="replace"))]
    return values


def day_run_seconds(api: AirflowAPI, day: dt.date) -> tuple[float, dict[str, float]]:
    run_id = f"bench__{day}"
    started = time.perf_counter()
    api.post(
        f"/dags/{demo.DAG_ID}/dagRuns",
        {"dag_run_id": run_id, "logical_date": f"{day}T00:00:00Z", "conf": {}},
    )
    while (state := api.get(f"/dags/{demo.DAG_ID}/dagRuns/{run_id}")["state"]) not in (
        "success",
        "failed",
    ):
        time.sleep(0.5)
    wall = time.perf_counter() - started
    if state != "success":
        raise RuntimeError(f"bench day-run {day} failed; see the task logs")
    tasks = {t["task_id"]: t["duration"] for t in api.task_instances(demo.DAG_ID, run_id)}
    return wall, tasks


def main() -> None:
    settings = Settings()
    services.down(settings)
    import shutil

    shutil.rmtree(STATE, ignore_errors=True)
    results: dict = {}
    try:
        services.up(settings, airflow=False)
        thin = [first_action_seconds(remote=True) for _ in range(5)]
        cold = first_action_seconds(remote=False)
        results["per_task_overhead_s"] = {
            "connect_client_median": statistics.median(thin),
            "connect_client_all": thin,
            "cold_local_session": cold,
        }
        console.print(
            f"per-task overhead (process start -> first Spark action): "
            f"Connect client median {statistics.median(thin):.2f}s, "
            f"cold local session {cold:.2f}s ({cold / statistics.median(thin):.1f}x)"
        )

        from jobs.lakehouse import source

        source.warm_cache(settings.state_dir / "source_cache")
        services.up(settings)
        api = AirflowAPI(settings)
        api.wait_for_dag(demo.DAG_ID)
        api.patch(f"/dags/{demo.DAG_ID}", {"is_paused": False})
        start, end = dt.date(2013, 1, 1), dt.date(2013, 2, 28)
        t0 = time.perf_counter()
        demo.backfill(api, start, end)
        results["backfill_59_days_s"] = time.perf_counter() - t0
        console.print(f"59-day backfill: {results['backfill_59_days_s']:.0f}s")
        in_airflow = sorted(overheads_in_task_logs())
        results["per_task_overhead_s"]["airflow_tasks"] = {
            "n": len(in_airflow),
            "median": statistics.median(in_airflow),
            "p90": in_airflow[int(0.9 * (len(in_airflow) - 1))],
            "max": in_airflow[-1],
        }

        # Give the late day its 28 days of history (in-process: the history is not what is
        # measured), then time both days alone under the scheduler.
        from jobs.pipeline import run_stage

        for i in range(28, 0, -1):
            day = dt.date(2013, 12, 31) - dt.timedelta(days=i)
            for stage in ("land", "bronze", "silver"):
                run_stage(stage, day, "bench-history", settings)
        for label, day in (("early", dt.date(2013, 3, 1)), ("late", dt.date(2013, 12, 31))):
            wall, tasks = day_run_seconds(api, day)
            results[f"day_run_{label}"] = {"date": str(day), "wall_s": wall, "tasks_s": tasks}
    finally:
        services.down(settings)

    table = Table(title="Lakehouse benchmark (2 cores)")
    for column in ("figure", "value", "target"):
        table.add_column(column)
    o = results["per_task_overhead_s"]
    a = o["airflow_tasks"]
    table.add_row(
        f"per-task overhead in Airflow tasks (median of {a['n']})",
        f"{a['median']:.2f} s",
        f"<= 2 s (p90 {a['p90']:.2f}, max {a['max']:.2f})",
    )
    table.add_row(
        "  fresh process, Connect client (median of 5)", f"{o['connect_client_median']:.2f} s", ""
    )
    table.add_row(
        "  fresh process, cold local session",
        f"{o['cold_local_session']:.2f} s",
        f"{o['cold_local_session'] / o['connect_client_median']:.1f}x the client",
    )
    table.add_row("59-day demo backfill", f"{results['backfill_59_days_s']:.0f} s", "<= 480 s")
    for label in ("early", "late"):
        r = results[f"day_run_{label}"]
        tasks = ", ".join(f"{k} {v:.1f}" for k, v in r["tasks_s"].items())
        table.add_row(
            f"day-run {r['date']} under the scheduler", f"{r['wall_s']:.1f} s", f"tasks: {tasks}"
        )
    ratio = results["day_run_late"]["wall_s"] / results["day_run_early"]["wall_s"]
    table.add_row("late / early day-run", f"{ratio:.2f}", "<= ~1")
    console.print(table)
    save(results, STATE / "lakehouse.json", console)


if __name__ == "__main__":
    main()
