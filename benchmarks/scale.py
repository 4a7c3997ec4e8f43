"""`make bench-scale`: a day of 1M and of 10M synthetic flights through the nightly stages, on a
local Spark standalone cluster (two worker JVMs), each day with 27 days of 1M-flight history.

Days come from the seeded generator (``jobs/lakehouse/synthetic.py``). History (2013-06-01 ..
2013-06-27) is built once through land, bronze, silver and gold and kept in the bench's state
folder; the measured day (2013-06-28) is landed again at each size. Stages run as the DAG's tasks
do, through ``run_stage`` in a Spark Connect client, with the scale settings: Spark's executors
write the Delta files (``delta_rs_write_path=executors``), the quality gates run GX's Spark
engine, and Spark's generated code is on.

Printed per stage and size: wall time, flights/s, and peak RSS of the client (the task), of the
driver (the Connect server's JVM) and of the largest executor, each reset before the stage
(``/proc/<pid>/clear_refs``). ``score`` runs when the bench's MLflow holds a champion: the first
run trains one on the last three days of history. Up to 1M flights, ``score (Feast)`` scores
the day again with Feast's retrieval in the task, the path the Spark join replaced.

    make bench-scale                                   # 1M and 10M, 27 history days (long)
    FLIGHTS=100000 HISTORY_DAYS=3 HISTORY_FLIGHTS=100000 make bench-scale   # a quick look
    FLIGHTS=10000000 FROM_STAGE=gold make bench-scale  # go on from gold (land..check_silver done)
    FLIGHTS=10000000 SKIP_STAGES=materialize make bench-scale  # score reads no online store

Results in .state/bench-scale/results.json.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.harness import descendants, isolate, peak_rss_mb

STATE = isolate(
    "scale",
    25042,
    platform="platform",
    spark_workers=2,
    spark_worker_cores=1,
    spark_worker_memory=os.environ.get("WORKER_MEMORY", "5g"),
    spark_driver_memory=os.environ.get("DRIVER_MEMORY", "4g"),  # the Connect server's heap
    spark_shuffle_partitions=8,
    spark_codegen="true",
    delta_rs_write_path="executors",
    quality_engine="spark",
    s3_endpoint="",
    spark_connect_idle_timeout_minutes=120,
)

SCALE_DAY = dt.date(2013, 6, 28)
STAGES = (
    "land",
    "bronze",
    "silver",
    "check_silver",
    "gold",
    "check_gold",
    "materialize",
    "score",
)


# `score` once more with Feast's retrieval in the task (``feature_retrieval=feast``), the path
# the Spark join replaced, up to this size: it held 5.8 GB in the task at 1M flights.
STOCK_SCORE_MAX = 1_000_000


def sizes() -> list[int]:
    return [int(n) for n in os.environ.get("FLIGHTS", "1000000,10000000").split(",")]


# --- peak memory per stage --------------------------------------------------------------------
def _jvms(pid: int | None) -> list[int]:
    return [] if pid is None else [pid, *descendants(pid)]


class Peaks:
    """Peak RSS (MB) of the client, the driver and the largest executor over a block."""

    def __init__(self, settings):
        from tooling import services

        self.driver = _jvms(services.pid_of(settings, "spark-connect"))
        workers = [
            services.pid_of(settings, f"spark-worker-{n}")
            for n in range(1, settings.spark_workers + 1)
        ]
        self.worker_pids = [w for w in workers if w]

    def executors(self) -> list[int]:
        # executor JVMs are the workers' children, started with the application
        return [p for w in self.worker_pids for p in descendants(w)]

    @staticmethod
    def _reset(pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(OSError):  # an executor that has already exited
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM

    @staticmethod
    def _cpu_s(pids: list[int]) -> dict[int, float]:
        """User + system CPU seconds each process has used so far."""
        used = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return used

    def _cpu_used(self, side: str, pids: list[int]) -> float:
        """CPU seconds of ``side`` during the block (an executor started in it counts whole;
        one that exited in it is not counted)."""
        before, after = self._cpu[side], self._cpu_s(pids)
        return round(sum(t - before.get(pid, 0.0) for pid, t in after.items()), 1)

    def __enter__(self):
        self._reset([os.getpid(), *self.driver, *self.executors()])
        self._cpu = {
            "client": self._cpu_s([os.getpid()]),
            "driver": self._cpu_s(self.driver),
            "executors": self._cpu_s(self.executors()),
        }
        return self

    def __exit__(self, *exc):
        self.result = {
            "client_peak_rss_mb": round(peak_rss_mb([os.getpid()])),
            "driver_peak_rss_mb": round(peak_rss_mb(self.driver)),
            "executor_peak_rss_mb": round(peak_rss_mb(self.executors())),
            # where the time went: CPU seconds each side used during the stage
            "client_cpu_s": self._cpu_used("client", [os.getpid()]),
            "driver_cpu_s": self._cpu_used("driver", self.driver),
            "executors_cpu_s": self._cpu_used("executors", self.executors()),
        }


# --- the run ----------------------------------------------------------------------------------
def build_history(settings, spark, days: list[dt.date], flights: int) -> None:
    from jobs.lakehouse import synthetic
    from jobs.pipeline import run_stage

    done_file = STATE / "history.json"
    done = json.loads(done_file.read_text()) if done_file.exists() else {}
    for day in days:
        if done.get(day.isoformat()) == flights:
            continue
        started = time.perf_counter()
        synthetic.land(settings, day, flights)
        for stage in ("bronze", "silver", "gold"):
            run_stage(stage, day, "bench-scale-history", settings, spark=spark)
        done[day.isoformat()] = flights
        done_file.write_text(json.dumps(done, indent=2))
        print(f"history {day}: {flights:,} flights in {time.perf_counter() - started:.0f} s")


def ensure_champion(settings, last_history: dt.date) -> bool:
    from jobs.training import registry, tracking, train

    client = tracking.client(settings)
    if registry.alias_version(client, settings, "champion"):
        return True
    try:
        train.run(settings, last_history, window_days=3)
    except Exception as exc:  # the bench still measures the other stages
        print(f"no champion ({type(exc).__name__}: {exc}); score is skipped")
        return False
    if not registry.alias_version(client, settings, "champion"):
        print("the trained model was not promoted; score is skipped")
        return False
    return True


def measure(settings, spark, flights: int, has_model: bool) -> list[dict]:
    from jobs.lakehouse import synthetic
    from jobs.pipeline import run_stage
    from jobs.quality.gx_runner import QualityGateError

    rows = []
    # FROM_STAGE=gold: measure from that stage on, the day's earlier output being in place
    # (a run that stopped there goes on)
    start = STAGES.index(os.environ.get("FROM_STAGE", STAGES[0]))
    # SKIP_STAGES=materialize: leave stages out (a 10M-entity SQLite online store is ~45 GB)
    skipped = set(filter(None, os.environ.get("SKIP_STAGES", "").split(",")))
    steps = [(stage, stage, settings) for stage in STAGES[start:] if stage not in skipped]
    if flights <= STOCK_SCORE_MAX and "score" not in skipped:  # side by side: Feast in the task
        stock = settings.model_copy(update={"feature_retrieval": "feast"})
        steps.append(("score (Feast)", "score", stock))
    for label, stage, chosen in steps:
        if stage == "score" and not has_model:
            continue
        gate = ""
        with Peaks(settings) as peaks:
            started = time.perf_counter()
            try:
                if stage == "land":
                    synthetic.land(settings, SCALE_DAY, flights)
                else:
                    run_stage(stage, SCALE_DAY, f"bench-scale-{flights}", chosen, spark=spark)
            except QualityGateError as exc:
                # a day many times its history's size fails the row-count trend band, as it
                # should; the validation itself has run, and the bench goes on
                gate = str(exc).splitlines()[1].strip()
            wall = time.perf_counter() - started
        row = {
            "flights": flights,
            "stage": label,
            "wall_s": round(wall, 1),
            "flights_per_s": round(flights / wall),
            **peaks.result,
            **({"gate_failed": gate} if gate else {}),
        }
        print(
            f"{flights:>11,} {label:13s} {wall:8.1f} s {row['flights_per_s']:>11,}/s "
            f"client {row['client_peak_rss_mb']:>6,} MB  driver {row['driver_peak_rss_mb']:>6,} "
            f"MB  executor {row['executor_peak_rss_mb']:>6,} MB   CPU s: client "
            f"{row['client_cpu_s']:6.1f} driver {row['driver_cpu_s']:6.1f} executors "
            f"{row['executors_cpu_s']:6.1f}" + (f"   gate failed: {gate}" if gate else ""),
            flush=True,
        )
        rows.append(row)
    return rows


def main() -> None:
    from jobs.common.settings import Settings
    from jobs.common.spark import get_spark
    from tooling import services

    history_days = int(os.environ.get("HISTORY_DAYS", "27"))
    history_flights = int(os.environ.get("HISTORY_FLIGHTS", "1000000"))
    settings = Settings(
        feast_registry=str(STATE / "platform" / "feast" / "registry.db"),
        validation_days=1,
        test_days=1,
        promote_min_roc_auc=0.0,  # any model will do: the bench measures scoring, not quality
    )
    services.up(settings, airflow=False)
    spark = None
    try:
        from jobs.features import store

        spark = get_spark(settings)
        days = [SCALE_DAY - dt.timedelta(days=i) for i in range(history_days, 0, -1)]
        build_history(settings, spark, days, history_flights)
        store.apply(settings)
        has_model = ensure_champion(settings, days[-1])
        print(
            f"{'flights':>11s} {'stage':13s} {'wall':>10s} {'flights/s':>13s}  peak RSS "
            f"(2 workers x 1 core, {settings.spark_worker_memory} each)"
        )
        results = [row for n in sizes() for row in measure(settings, spark, n, has_model)]
        (STATE / "results.json").write_text(json.dumps(results, indent=2))
    finally:
        if spark is not None:  # its Connect client's threads would keep the process alive
            spark.stop()
        services.down(settings)


if __name__ == "__main__":
    sys.exit(main())
