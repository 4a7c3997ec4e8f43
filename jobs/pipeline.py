"""Run one stage of the pipeline for a logical date or a data interval: what the DAGs' tasks
and the CLI call. Stages: land -> bronze (+ its quality gate) -> silver -> check_silver -> gold ->
check_gold -> materialize (features into Feast's online store) -> score (D+1's flights) ->
monitor (drift, delayed-label performance) -> request_retrain (the retraining policy)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable

from jobs.common import day_claims
from jobs.common.dates import interval_days, span
from jobs.common.errors import NightjarError
from jobs.common.settings import Settings

log = logging.getLogger(__name__)

# The lakehouse's own stages, then what serves the ML side from it.
LAKEHOUSE_STAGES = ("land", "bronze", "silver", "check_silver", "gold", "check_gold")
STAGES = (*LAKEHOUSE_STAGES, "materialize", "score", "monitor", "request_retrain")
# Stages that take a data interval of any number of days (each day keeps its own partitions);
# the nightly ML stages replay one night at a time.
INTERVAL_STAGES = (*LAKEHOUSE_STAGES, "materialize")


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
    days = interval_days(day, end or day + dt.timedelta(days=1))
    if len(days) > 1 and stage not in INTERVAL_STAGES:
        raise NightjarError(
            f"{stage} runs one night at a time; [{day}, {end}) is {len(days)} days "
            f"(stages over an interval: {', '.join(INTERVAL_STAGES)})"
        )
    when = days if stage in INTERVAL_STAGES else day
    run_id = run_id or f"manual__{day.isoformat()}"
    started = time.perf_counter()
    with day_claims.claimed(settings, days, run_id, stage):  # one writer per day
        result = _run(stage, day, when, run_id, settings, spark, task_started or started)
    log.info("%s %s done in %.1fs", stage, span(days), time.perf_counter() - started)
    return result


def _run(stage, day, when, run_id, settings, spark, task_started: float) -> dict:
    if stage == "land":
        from jobs.lakehouse import landing

        result = landing.run(when, settings)
    elif stage == "materialize":  # Feast reads the gold snapshot itself: no Spark
        from jobs.features import materialize

        result = materialize.run(settings, when)
    elif stage == "request_retrain":  # reads the monitoring and request logs: no Spark
        from jobs.monitoring import retrain

        result = retrain.run(settings, day, run_id)
    else:
        from jobs.common.delta import open_tables
        from jobs.common.spark import get_spark
        from jobs.lakehouse import bronze, gold, silver
        from jobs.monitoring import monitor
        from jobs.quality import gates
        from jobs.scoring import score

        def bronze_then_gate(*args) -> dict:
            # The bronze suite checks the structure of what landed before silver may read it.
            return {**bronze.run(*args), "quality": gates.check_bronze(*args)}

        job: dict[str, Callable] = {
            "bronze": bronze_then_gate,
            "silver": silver.run,
            "check_silver": gates.check_silver,
            "gold": gold.run,
            "check_gold": gates.check_gold,
            "score": score.run,
            "monitor": monitor.run,
        }
        if stage not in job:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        own_session = spark is None
        # scoring's Python workers stay warm in a session its tasks share (jobs.common.spark)
        spark = spark or get_spark(settings, shared="score" if stage == "score" else None)
        if os.environ.get("NIGHTJAR_MEASURE_TASK_OVERHEAD"):
            # `make bench`: how long from entering the task to a first Spark action done.
            spark.range(1).collect()
            log.info(
                "task overhead: first Spark action done %.2fs after the task started",
                time.perf_counter() - task_started,
            )
        try:
            result = job[stage](spark, open_tables(spark, settings), settings, when, run_id)
        finally:
            if own_session:
                release(spark)
    return result
