"""
### nightjar_training — train, register and promote the disruption model

Runs weekly (Mondays 03:00 UTC), whenever the daily DAG's retraining policy emits the
**retrain request** Asset (`nightjar://models/flight_disruption/retrain-request`), or by hand
from the UI (*Trigger* with params):

- `end_date`: the last labeled flight date of the window (default: the newest requested day,
  else the newest day in `gold.flights`);
- `window_days`: labeled days in the window (default: what the request asks, else 60, or all
  the labeled days there are if fewer; an explicit window must fit the data): train,
  then 7 validation days (early stopping), then the 7 most recent days held out for the test
  and for the champion/challenger comparison.

A run serves every pending request in `ml.retrain_requests`, not only the Asset events that
triggered it, so a request whose event Airflow left unconsumed is still served; a
request-triggered run that finds nothing pending is skipped (`jobs/training/requests.py`, which
`nightjar model train` runs too). The trigger (weekly, manual, or
the requests' reasons) is recorded on the MLflow run and in `ml.model_decisions`.

The task builds the training set through the Feast service `flight_disruption_v4` (every gold
table at one recorded Delta version), trains XGBoost and a logistic baseline, logs everything to
MLflow, registers a new version of `flight_disruption` with the alias `challenger`, and moves
`champion` to it only if it passes the thresholds and is not worse than the champion on the same
held-out days. Every decision is in `ml.model_decisions`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable
from nightjar_alerts import TaskFailureAlert
from nightjar_assets import CHAMPION, RETRAIN_REQUEST


@task(outlets=[CHAMPION], retries=0)
def train(**context) -> dict:
    """Serve the pending retrain requests: train, track, register; promote if the challenger
    wins. Bad input fails without retry."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from jobs.common.dates import parse_date
    from jobs.common.errors import NightjarError, StageSkipped
    from jobs.common.settings import Settings
    from jobs.training import requests

    params = context["params"]
    events = [e for evs in context["triggering_asset_events"].values() for e in evs]
    try:
        served = requests.train_pending(
            Settings(),
            context["run_id"],
            default_trigger=f"{context['dag_run'].run_type} run",
            end=parse_date(params["end_date"]) if params.get("end_date") else None,
            window_days=params.get("window_days"),
            requested=bool(events),
        )
    except StageSkipped as exc:
        raise AirflowSkipException(str(exc)) from exc
    except NightjarError as exc:
        raise AirflowFailException(str(exc)) from exc
    result, trigger = served.result, served.trigger
    return {
        "run_id": result.run_id,
        "version": result.version,
        "promoted": result.promoted,
        "reason": result.reason,
        "trigger": trigger,
        "served_requests": served.request_ids,
        "test_roc_auc": result.test_metrics["roc_auc"],
        "baseline_test_roc_auc": result.baseline_test_metrics["roc_auc"],
    }


with DAG(
    dag_id="nightjar_training",
    description="Weekly or on request: XGBoost on Feast training sets, MLflow, champion/challenger",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        # Mondays 03:00, from the next one on: never a catch-up run of the last Monday when the
        # DAG is first unpaused (no start_date, run_immediately zero).
        timetable=CronTriggerTimetable(
            "0 3 * * 1", timezone="UTC", run_immediately=dt.timedelta(0)
        ),
        assets=RETRAIN_REQUEST,
    ),
    catchup=False,
    max_active_runs=1,
    tags=["nightjar", "training"],
    default_args={"on_failure_callback": TaskFailureAlert()},
    params={
        "end_date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last labeled flight date of the window (default: newest in gold)",
        ),
        "window_days": Param(
            None,
            type=["null", "integer"],
            minimum=15,
            maximum=365,
            description="Labeled days per window (default: the request's, else 60)",
        ),
    },
) as dag:
    train()
