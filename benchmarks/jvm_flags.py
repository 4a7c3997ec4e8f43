"""`make bench-jvm`: the Spark Connect JVM's CPU over a sequence of daily lakehouse stages, with
Nightjar's JVM flags (``jobs.common.spark.JVM_OPTIONS``) against the JVM's defaults.

Each run starts a fresh Connect server (JIT warm-up is most of what the flags change, so a warm
server would hide it), runs land -> check_gold for DAYS days from 2013-01-01 in this process, and
reads the server's CPU from /proc: all of it since boot, and its JIT compiler threads'. Variants
run interleaved, ROUNDS times each, so a slow spell of the machine hits all of them.

    make bench-jvm                  # 15 days, 2 rounds
    DAYS=30 ROUNDS=3 make bench-jvm
    CLUSTER=2 DAYS=3 make bench-jvm # on a 2-worker cluster, Spark-native Delta: the executors'
                                    # JVMs too (the JVM's defaults against Nightjar's flags)

Runs in its own state folder and port; results in .state/bench-jvm/results.json
(.state/bench-jvm-cluster/ with CLUSTER).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import time
from pathlib import Path

from benchmarks.harness import isolate, save

# CLUSTER=N: N standalone workers, whose executors run the tasks and write with Delta Lake's
# Spark writer (as on a real cluster: no output through the driver)
WORKERS = int(os.environ.get("CLUSTER", "0"))
ON_CLUSTER = {"spark_workers": WORKERS, "delta_backend": "spark", "spark_worker_memory": "1g"}
if WORKERS:
    STATE = isolate("jvm-cluster", 25012, platform="lakehouse", **ON_CLUSTER)
else:
    STATE = isolate("jvm", 25012, platform="lakehouse")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jobs.common.settings import Settings  # noqa: E402
from jobs.pipeline import LAKEHOUSE_STAGES, run_stage  # noqa: E402
from tooling import services  # noqa: E402

console = Console()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Options appended after JVM_OPTIONS (the last occurrence of a flag wins): the JVM's own
# defaults back, and each of Nightjar's two changes alone.
STOCK_JIT = (
    "-XX:Tier4InvocationThreshold=5000 -XX:Tier4MinInvocationThreshold=600 "
    "-XX:Tier4CompileThreshold=15000 -XX:Tier4BackEdgeThreshold=40000"
)
G1 = "-XX:-UseParallelGC -XX:+UseG1GC"
VARIANTS = {
    "JVM defaults (G1, stock JIT thresholds)": f"{G1} {STOCK_JIT}",
    "parallel GC, stock JIT thresholds": STOCK_JIT,
    "Nightjar (parallel GC, lazier C2)": "",
}
if WORKERS:  # the two ends only: a cluster run is slower
    VARIANTS.pop("parallel GC, stock JIT thresholds")


def cpu_seconds(stat_path: Path) -> float:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def jvm_cpu(pid: int) -> tuple[float, float]:
    """(the process's CPU seconds, its live JIT compiler threads')."""
    jit = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if "CompilerThre" in (task / "comm").read_text():
                jit += cpu_seconds(task / "stat")
        except OSError:  # the thread ended
            continue
    return cpu_seconds(Path(f"/proc/{pid}/stat")), jit


def executors_cpu(settings: Settings) -> float:
    """The CPU seconds of the executor JVMs the cluster's workers run now (0 without one)."""
    import psutil

    total = 0.0
    for n in range(1, settings.spark_workers + 1):
        worker = psutil.Process(services.pid_of(settings, f"spark-worker-{n}"))
        for executor in worker.children():
            times = executor.cpu_times()
            total += times.user + times.system
    return total


def one_run(extra_options: str, days: int) -> dict[str, float]:
    shutil.rmtree(STATE / "lakehouse", ignore_errors=True)
    os.environ["NIGHTJAR_SPARK_JAVA_OPTIONS"] = extra_options
    settings = Settings()
    services.up(settings, airflow=False)
    try:
        pid = services.pid_of(settings, "spark-connect")
        boot_cpu, boot_jit = jvm_cpu(pid)
        boot_executors = executors_cpu(settings)
        started = time.perf_counter()
        for i in range(days):
            day = dt.date(2013, 1, 1) + dt.timedelta(days=i)
            for stage in LAKEHOUSE_STAGES:
                run_stage(stage, day, f"bench-jvm-{i}", settings)
        wall = time.perf_counter() - started
        cpu, jit = jvm_cpu(pid)
        executors = executors_cpu(settings) - boot_executors
    finally:
        from tooling.demo import release_spark

        release_spark()
        services.down(settings)
    return {
        "jvm_cpu_s": cpu - boot_cpu,
        "jit_cpu_s": jit - boot_jit,
        "executors_cpu_s": executors,
        "wall_s": wall,
    }


def main() -> None:
    days = int(os.environ.get("DAYS", "15"))
    rounds = int(os.environ.get("ROUNDS", "2"))
    services.down(Settings())
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for r in range(rounds):
        for name, extra in VARIANTS.items():
            run = one_run(extra, days)
            results[name].append(run)
            console.print(
                f"round {r + 1}/{rounds} {name}: JVM {run['jvm_cpu_s']:.1f} CPU-s "
                f"(JIT {run['jit_cpu_s']:.1f}), executors {run['executors_cpu_s']:.1f}, "
                f"{run['wall_s']:.1f}s"
            )

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in results[name])

    base = next(iter(VARIANTS))
    where = f"a {WORKERS}-worker cluster" if WORKERS else "fresh server"
    table = Table(title=f"Spark Connect JVM, {days} days of lakehouse stages, {where}")
    columns = ["JVM flags", "JVM CPU-s", "JIT CPU-s", "wall s", "JVM CPU vs defaults"]
    if WORKERS:
        columns += ["executors CPU-s", "executors vs defaults"]
    for column in columns:
        table.add_column(column)
    for name in VARIANTS:
        cells = [
            name,
            f"{median(name, 'jvm_cpu_s'):.1f}",
            f"{median(name, 'jit_cpu_s'):.1f}",
            f"{median(name, 'wall_s'):.1f}",
            f"{median(name, 'jvm_cpu_s') / median(base, 'jvm_cpu_s'):.2f}x",
        ]
        if WORKERS:
            ratio = median(name, "executors_cpu_s") / median(base, "executors_cpu_s")
            cells += [f"{median(name, 'executors_cpu_s'):.1f}", f"{ratio:.2f}x"]
        table.add_row(*cells)
    console.print(table)
    console.print(f"medians of {rounds} interleaved rounds; each run's figures are in the file")
    saved = {"days": days, "rounds": rounds, "workers": WORKERS, "runs": results}
    save(saved, STATE / "results.json", console)


if __name__ == "__main__":
    main()
