"""
### nightjar_training — train, register and promote the disruption model

Runs weekly, whenever the monitoring DAG emits the **retrain request** Asset
(`nightjar://models/flight_disruption/retrain-request`), or by hand from the UI (*Trigger*
with params):

- `end_date`: the last labeled flight date of the training window (default: the newest day
  in `gold.flights`);
- `window_days`: labeled days in the window (default 60): train, then 7 validation days
  (early stopping), then the 7 most recent days held out for the test and for the
  champion/challenger comparison.

The task builds the training set through the Feast service `flight_disruption_v1` (every gold
table at one recorded Delta version), trains XGBoost and a logistic baseline, logs everything to
MLflow, registers a new version of `flight_disruption` with the alias `challenger`, and moves
`champion` to it only if it passes the thresholds and is not worse than the champion on the same
held-out days. Every decision is in `ml.model_decisions`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Asset, Param, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

RETRAIN_REQUEST = Asset(
    name="retrain_request", uri="nightjar://models/flight_disruption/retrain-request"
)
CHAMPION = Asset(name="champion_model", uri="nightjar://models/flight_disruption/champion")


@task(outlets=[CHAMPION], retries=0)
def train(**context) -> dict:
    """Train, track, register; promote if the challenger wins. Bad input fails without retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.common.dates import parse_date
    from jobs.common.errors import NightjarError
    from jobs.common.settings import Settings
    from jobs.training import train as training

    params = context["params"]
    settings = Settings()
    try:
        end = parse_date(params["end_date"]) if params.get("end_date") else None
        result = training.run(
            settings, end or training.newest_labeled_day(settings), params.get("window_days")
        )
    except NightjarError as exc:
        raise AirflowFailException(str(exc)) from exc
    return {
        "run_id": result.run_id,
        "version": result.version,
        "promoted": result.promoted,
        "reason": result.reason,
        "test_roc_auc": result.test_metrics["roc_auc"],
        "baseline_test_roc_auc": result.baseline_test_metrics["roc_auc"],
    }


with DAG(
    dag_id="nightjar_training",
    description="Weekly or on request: XGBoost on Feast training sets, MLflow, champion/challenger",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"),  # Mondays 03:00
        assets=RETRAIN_REQUEST,
    ),
    start_date=dt.datetime(2013, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["nightjar", "training"],
    params={
        "end_date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last labeled flight date of the window (default: newest in gold)",
        ),
        "window_days": Param(
            60, type="integer", minimum=15, maximum=365, description="Labeled days per window"
        ),
    },
) as dag:
    train()
