"""Run one stage of the pipeline for a logical date or a data interval: what the DAGs' tasks
and the CLI call. The stages are declared in ``jobs.stages``; here each has its job, with one
call signature: ``job(run: StageRun) -> dict`` (the stage's row counts and results)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from jobs import stages
from jobs.common import day_claims
from jobs.common.dates import interval_days, span
from jobs.common.errors import NightjarError
from jobs.common.settings import Settings

log = logging.getLogger(__name__)

# Names as jobs.stages declares them (kept here for the callers that import them from here).
STAGES, LAKEHOUSE_STAGES, INTERVAL_STAGES = stages.NAMES, stages.LAKEHOUSE, stages.INTERVAL


@dataclass(frozen=True)
class StageRun:
    """What a stage's job gets: its days (one night, or a data interval's), the run, the
    settings, and a Spark session with its Delta tables when the stage needs Spark."""

    stage: str
    days: list[dt.date]
    run_id: str
    settings: Settings
    spark: Any = None
    tables: Any = None

    @property
    def day(self) -> dt.date:
        return self.days[0]

    @property
    def when(self) -> list[dt.date] | dt.date:
        """The days for a stage over an interval; the night for the others."""
        return self.days if stages.get(self.stage).interval else self.day

    def spark_args(self) -> tuple:
        """The arguments of the Spark jobs' ``run``: (spark, tables, settings, days, run id)."""
        return self.spark, self.tables, self.settings, self.when, self.run_id


# --- the jobs, one per stage in jobs.stages ---------------------------------------------------
def land(run: StageRun) -> dict:
    from jobs.lakehouse import landing

    return landing.run(run.days, run.settings)


def bronze(run: StageRun) -> dict:
    from jobs.lakehouse import bronze
    from jobs.quality import gates

    # The bronze suite checks the structure of what landed before silver may read it.
    return {**bronze.run(*run.spark_args()), "quality": gates.check_bronze(*run.spark_args())}


def silver(run: StageRun) -> dict:
    from jobs.lakehouse import silver

    return silver.run(*run.spark_args())


def check_silver(run: StageRun) -> dict:
    from jobs.quality import gates

    return gates.check_silver(*run.spark_args())


def gold(run: StageRun) -> dict:
    from jobs.lakehouse import gold

    return gold.run(*run.spark_args())


def check_gold(run: StageRun) -> dict:
    from jobs.quality import gates

    return gates.check_gold(*run.spark_args())


def materialize(run: StageRun) -> dict:
    from jobs.features import materialize

    return materialize.run(run.settings, run.days)


def score(run: StageRun) -> dict:
    from jobs.scoring import score

    return score.run(*run.spark_args())


def monitor(run: StageRun) -> dict:
    from jobs.monitoring import monitor

    return monitor.run(*run.spark_args())


def request_retrain(run: StageRun) -> dict:
    from jobs.monitoring import retrain

    return retrain.run(run.settings, run.day, run.run_id)


JOBS = {name: globals()[name] for name in stages.NAMES}  # a stage without its job fails here


def release(spark) -> None:
    """End a Spark Connect client's server-side session (its cached plans and checkpoints)
    instead of leaving it to the server's idle timeout. A classic session is kept."""
    from jobs.common.spark import is_connect

    if is_connect(spark):
        spark.stop()


def run_stage(
    stage: str,
    day: dt.date,
    run_id: str | None = None,
    settings: Settings | None = None,
    spark=None,
    task_started: float | None = None,
    end: dt.date | None = None,
) -> dict:
    """Run ``stage`` for ``day``, or for the data interval ``[day, end)``; returns the stage's
    row counts.

    Pass ``spark`` to reuse a session (tests); otherwise one is opened and released.
    ``task_started`` (a ``time.perf_counter()`` value) is when the calling task began, for the
    overhead measurement ``make bench`` switches on.
    """
    settings = settings or Settings()
    declared = stages.get(stage)
    days = interval_days(day, end or day + dt.timedelta(days=1))
    if len(days) > 1 and not declared.interval:
        raise NightjarError(
            f"{stage} runs one night at a time; [{day}, {end}) is {len(days)} days "
            f"(stages over an interval: {', '.join(stages.INTERVAL)})"
        )
    run = StageRun(stage, days, run_id or f"manual__{day.isoformat()}", settings)
    started = time.perf_counter()
    with day_claims.claimed(settings, days, run.run_id, stage):  # one writer per day
        job = JOBS[stage]
        if not declared.spark:
            result = job(run)
        else:
            result = with_spark(job, run, spark, task_started or started)
    log.info("%s %s done in %.1fs", stage, span(days), time.perf_counter() - started)
    return result


def with_spark(job, run: StageRun, spark, task_started: float) -> dict:
    """Run a Spark stage's job with ``spark`` (a test's), or a session opened for it and
    released after it."""
    from dataclasses import replace

    from jobs.common.delta import open_tables
    from jobs.common.spark import generated_code, get_spark

    own_session = spark is None
    # scoring's Python workers stay warm in a session its tasks share (jobs.common.spark)
    spark = spark or get_spark(run.settings, shared="score" if run.stage == "score" else None)
    if os.environ.get("NIGHTJAR_MEASURE_TASK_OVERHEAD"):
        # `make bench`: how long from entering the task to a first Spark action done.
        spark.range(1).collect()
        log.info(
            "task overhead: first Spark action done %.2fs after the task started",
            time.perf_counter() - task_started,
        )
    codegen = stages.get(run.stage).codegen and not run.settings.spark_codegen
    try:
        with generated_code(spark) if codegen else contextlib.nullcontext():
            return job(replace(run, spark=spark, tables=open_tables(spark, run.settings)))
    finally:
        if own_session:
            release(spark)
