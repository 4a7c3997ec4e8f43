"""`make bench-delta`: the Delta write paths side by side, in one run: delta-rs collecting the
rows to the task (the default), delta-rs committing files Spark's executors wrote
(``delta_rs_write_path=executors``), and Spark-native Delta.

1. Writes of 10k, 1M and 10M rows (ten daily partitions, flight-like columns) through
   ``DeltaTables.overwrite_partitions``, from a Spark DataFrame, after a 1,000-row warm-up
   write (a long-lived server is warm when a task writes).
2. One day's lakehouse stages (bronze, silver, gold for 2013-01-02, after 2013-01-01 built the
   same way), as the daily DAG's tasks run them.

Each case runs in a fresh client process (a Spark Connect thin client, as Airflow's tasks are)
against a fresh Spark Connect server. Printed per case and backend: wall time, the client's peak
RSS (where delta-rs receives the rows and commits them), the Spark driver JVM's peak RSS (in
local mode the executors live in it too) and the data files the commit added. Speeds are
relative to delta-rs collecting the rows.

    make bench-delta                   # 10k, 1M, 10M rows and the day's stages
    ROWS=10000,1000000 make bench-delta

Runs in its own state folder and port; results in .state/bench-delta/results.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import ROOT, descendants, isolate, peak_rss_mb  # noqa: E402

STATE = isolate("delta", 25022, platform="platform")

# delta-rs-executors: the delta-rs backend with Spark's executors writing the files
# (delta_rs_write_path=executors); ratios are to delta-rs collecting the rows.
BACKENDS = ("delta-rs", "delta-rs-executors", "spark")


def backend_settings(variant: str, **overrides):
    """(backend, settings) of a variant: the executors' path is the delta-rs backend's."""
    from jobs.common.settings import Settings

    if variant == "delta-rs-executors":
        return "delta-rs", Settings(delta_rs_write_path="executors", **overrides)
    return variant, Settings(**overrides)


DAY_STAGES = ("bronze", "silver", "gold")
DAY = dt.date(2013, 1, 2)


# --- the cases, each run by a fresh client process -------------------------------------------
def write_case(backend: str, rows: int) -> dict:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from jobs.common.delta import TableSpec, open_tables
    from jobs.common.spark import get_spark

    variant = backend
    backend, settings = backend_settings(
        variant, lakehouse_uri=str(STATE / "writes" / f"{variant}-{rows}")
    )
    spark = get_spark(settings)
    spec = TableSpec(
        "bench.flights",
        T.StructType(
            [
                T.StructField("flight_id", T.StringType()),
                T.StructField("flight_date", T.DateType()),
                T.StructField("carrier", T.StringType()),
                T.StructField("origin", T.StringType()),
                T.StructField("dep_delay", T.DoubleType()),
                T.StructField("distance", T.DoubleType()),
                T.StructField("sched_dep_utc", T.TimestampType()),
            ]
        ),
        partition_by=("flight_date",),
    )
    days = [dt.date(2013, 1, 1) + dt.timedelta(days=i) for i in range(10)]
    frame = spark.range(rows).select(
        F.concat(F.lit("f"), F.col("id").cast("string")).alias("flight_id"),
        F.date_add(F.lit(days[0]), (F.col("id") % 10).cast("int")).alias("flight_date"),
        F.element_at(
            F.array(*map(F.lit, ["UA", "B6", "EV", "DL", "AA"])), (F.col("id") % 5 + 1).cast("int")
        ).alias("carrier"),  # fmt: skip
        F.element_at(
            F.array(*map(F.lit, ["EWR", "JFK", "LGA"])), (F.col("id") % 3 + 1).cast("int")
        ).alias("origin"),  # fmt: skip
        (F.rand(1) * 120 - 10).alias("dep_delay"),
        (F.rand(2) * 4000 + 80).alias("distance"),
        F.timestamp_seconds(F.lit(1356998400) + F.col("id") % 864000).alias("sched_dep_utc"),
    )
    tables = open_tables(spark, settings, backend=backend)
    # A long-lived server has loaded and compiled Delta's code long before a task writes:
    # warm it with a small write elsewhere first (a cold JVM's first Delta write took 12 s).
    warm = settings.model_copy(update={"lakehouse_uri": f"{settings.lakehouse}-warm-up"})
    open_tables(spark, warm, backend=backend).overwrite_partitions(
        spec, frame.limit(1000), {"flight_date": days}
    )
    began = time.perf_counter()
    tables.overwrite_partitions(spec, frame, {"flight_date": days})
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "files": _files(settings.table_uri(spec.name))}


def day_case(backend: str) -> dict:
    from jobs.common.spark import get_spark
    from jobs.pipeline import run_stage

    backend, settings = backend_settings(backend, lakehouse_uri=str(STATE / "day" / backend))
    settings = settings.model_copy(update={"delta_backend": backend})
    spark = get_spark(settings)
    for day in (DAY - dt.timedelta(days=1), DAY):
        run_stage("land", day, "bench", settings, spark=spark)
        seconds = {}
        for stage in DAY_STAGES:
            began = time.perf_counter()
            run_stage(stage, day, "bench", settings, spark=spark)
            seconds[stage] = time.perf_counter() - began
    root = Path(settings.lakehouse)
    files = sum(_files(str(p.parent)) for p in root.glob("*/*/_delta_log"))
    return {"seconds": sum(seconds.values()), "stages": seconds, "files": files}


def _files(uri: str) -> int:
    from deltalake import DeltaTable

    return len(DeltaTable(uri).file_uris())


def worker(case: str, backend: str, rows: int) -> None:
    result = day_case(backend) if case == "day" else write_case(backend, rows)
    result["client_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# --- the driver: a fresh server per case --------------------------------------------------------
def run_case(case: str, backend: str, rows: int = 0) -> dict:
    from jobs.common.settings import Settings
    from tooling import services

    # The day runs as the platform does; Spark's generated code pays off at millions of rows
    # (Settings.spark_codegen), so the writes have it, as the scale benchmarks do.
    os.environ["NIGHTJAR_SPARK_CODEGEN"] = "false" if case == "day" else "true"
    settings = Settings()
    services.up(settings, airflow=False)
    try:
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.delta", "--worker", case, backend, str(rows)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{case} on {backend} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["process_seconds"] = time.perf_counter() - began
        # spark-submit's JVM is a child of its shell
        server = services.pid_of(settings, "spark-connect")
        result["jvm_peak_rss_mb"] = peak_rss_mb([server, *descendants(server)])
    finally:
        services.down(settings, ("spark-connect",))
    return result


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    sizes = [int(r) for r in os.environ.get("ROWS", "10000,1000000,10000000").split(",")]
    shutil.rmtree(STATE, ignore_errors=True)
    cases = [("day", 0, f"one day's stages ({', '.join(DAY_STAGES)})")]
    cases += [("write", n, f"write {n:,} rows") for n in sizes]
    results = {}
    for case, rows, label in cases:
        for backend in BACKENDS:
            console.print(f"{label} on {backend} …")
            results[f"{label} | {backend}"] = run_case(case, backend, rows)
    table = Table(title="Delta backends (speed = delta-rs collecting / this backend's time)")
    columns = ("case", "backend", "wall s", "speed", "client peak RSS MB", "JVM peak RSS MB")
    for column in (*columns, "files"):
        table.add_column(column, justify="left" if column in ("case", "backend") else "right")
    for _, _, label in cases:
        base = results[f"{label} | delta-rs"]
        for backend in BACKENDS:
            r = results[f"{label} | {backend}"]
            detail = ""
            if "stages" in r:
                detail = " (" + ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()) + ")"
            table.add_row(
                label,
                backend,
                f"{r['seconds']:.1f}{detail}",
                f"{base['seconds'] / r['seconds']:.2f}x",
                f"{r['client_peak_rss_mb']:.0f}",
                f"{r['jvm_peak_rss_mb']:.0f}",
                str(r["files"]),
                end_section=backend == BACKENDS[-1],
            )
    console.print(table)
    (STATE / "results.json").write_text(json.dumps(results, indent=2))
    console.print(f"saved to {STATE / 'results.json'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
