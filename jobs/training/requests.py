"""Training that serves the retraining outbox: what the ``nightjar_training`` DAG and
``nightjar model train`` both run.

A training run serves every pending request in ``ml.retrain_requests``, not only the Asset events
that triggered it, so a request whose event Airflow left unconsumed is still served: its window
ends on the newest requested day and is as long as the largest requested window, unless the
caller names them. The requests' reasons are the run's trigger.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

import pandas as pd

from jobs.common.errors import NightjarError, StageSkipped
from jobs.common.settings import Settings
from jobs.monitoring import retrain
from jobs.training import labeled, registry, tracking, train

log = logging.getLogger(__name__)


def searches(requests: list[dict]) -> bool:
    """Whether a training run serving ``requests`` searches hyperparameters (the setting
    ``search_trials``): a weekly or manual run, which serves no request, does; a run for drift,
    a performance drop or the bootstrap trains the current parameters at once."""
    return not requests


@dataclass(frozen=True)
class Served:
    result: train.Result
    trigger: str
    request_ids: list[str]


def train_pending(
    settings: Settings,
    run_id: str,
    default_trigger: str,
    end: dt.date | None = None,
    window_days: int | None = None,
    requested: bool = False,
) -> Served:
    """Train for the pending requests (or ``default_trigger`` when there are none) and mark them
    served. ``requested``: the run was started by request events, so with nothing pending there
    is nothing to do (StageSkipped); so is a run before any labeled data without an ``end``.
    Whatever it then does, it first ends the runs a killed training left RUNNING
    (``tracking.end_dead_runs``)."""
    tracking.end_dead_runs(settings, tracking.client(settings))
    requests = retrain.pending(settings)
    if requested and not requests:
        raise StageSkipped(f"every retrain request in {retrain.REQUESTS_TABLE} is already served")
    planned_end, planned_window, trigger = retrain.plan(requests, default_trigger)
    end = end or planned_end
    if end is None:
        try:
            end = labeled.newest(settings)
        except NightjarError as exc:  # e.g. a weekly run before any data: nothing to train on
            raise StageSkipped(str(exc)) from exc
    result = already_decided(settings, requests, trigger)
    if result is not None:  # the aliases may not have moved before the crash
        registry.sync_aliases(settings, tracking.client(settings))
    else:
        result = train.run(
            settings, end, window_days or planned_window, trigger=trigger, search=searches(requests)
        )
    retrain.mark_served(settings, requests, run_id, result)
    return Served(result, trigger, [r["request_id"] for r in requests])


def already_decided(settings: Settings, requests: list[dict], trigger: str) -> train.Result | None:
    """The decision a run serving these very ``requests`` recorded before it was stopped short
    of marking them served (a crash between the two; the crash harness found it): its trigger
    names each of them and it came after them. Training again would decide a second version;
    the requests are served by that decision instead."""
    if not requests:
        return None
    decisions = registry.decisions(settings)
    if decisions.empty:  # the bootstrap: nothing decided yet
        return None
    newest = pd.to_datetime([r["recorded_at"] for r in requests], utc=True).max()
    done = decisions[
        decisions.decision.isin(registry.TRAINED)
        & (decisions.trigger == trigger)
        & (pd.to_datetime(decisions.decided_at, utc=True) >= newest)
    ]
    if done.empty:
        return None
    row = done.iloc[-1]
    baseline = {
        k.removeprefix("baseline_test_"): v
        for k, v in tracking.client(settings).get_run(row.run_id).data.metrics.items()
        if k.startswith("baseline_test_")
    }
    log.warning(
        "v%s was already decided (%s) for these requests by run %s: serving them with it",
        row.version,
        row.decision,
        row.run_id,
    )
    return train.Result(
        run_id=row.run_id,
        version=row.version,
        promoted=row.decision == "promoted",
        reason=row.reason,
        test_metrics=json.loads(row.metrics),
        baseline_test_metrics=baseline,
        champion_test_metrics=json.loads(row.champion_metrics) if row.champion_metrics else None,
        test_predictions=pd.DataFrame(),
    )
