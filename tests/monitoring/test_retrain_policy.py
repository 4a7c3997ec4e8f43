"""The retraining policy day by day, on drift measured by Evidently on crafted frames, and the
request log as an outbox (no Spark, no Airflow: the e2e lifecycle test runs it through both)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from jobs.common.errors import StageSkipped
from jobs.common.settings import Settings
from jobs.monitoring import drift, retrain

START = dt.date(2013, 2, 1)
FEATURES = [f"f{i}" for i in range(6)]


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(
        state_dir=tmp_path,
        retrain_drift_share=0.5,
        retrain_drift_days=3,
        retrain_cooldown_days=7,
        retrain_min_rolling_auc=0.6,
        initial_training_days=20,
    )


def measured_history(days: int, shift_from: int | None) -> pd.DataFrame:
    """The champion's monitoring rows for ``days`` days; from day ``shift_from`` on, four of
    the six features of the scored flights are shifted by two standard deviations."""
    rng = np.random.default_rng(7)
    ref = pd.DataFrame(rng.normal(size=(2000, 6)), columns=FEATURES).assign(
        probability=rng.random(2000)
    )
    rows = []
    for i in range(days):
        current = pd.DataFrame(rng.normal(size=(600, 6)), columns=FEATURES).assign(
            probability=rng.random(600)
        )
        if shift_from is not None and i >= shift_from:
            current[FEATURES[:4]] += 2.0
        measured = drift.measure(ref, current, FEATURES, threshold=0.1)
        rows.append(
            {
                "monitor_date": START + dt.timedelta(days=i),
                "drift_share": measured.share,
                "rolling_roc_auc": 0.7,
                "rolling_n": 5000,
            }
        )
    return pd.DataFrame(rows)


def replay(history: pd.DataFrame, settings: Settings, has_champion=True, labeled0=30) -> list:
    """Run the policy for each day as the daily DAG would, appending what it requests."""
    log = pd.DataFrame(columns=retrain.SCHEMA.names)
    made = []
    for i, day in enumerate(history.monitor_date):
        wanted = retrain.decide(
            day, history[history.monitor_date <= day], log, has_champion, labeled0 + i, settings
        )
        if wanted:
            made.append(wanted)
            log = pd.concat([log, pd.DataFrame([wanted])], ignore_index=True)
    return made


def test_a_drift_episode_fires_exactly_one_request_within_the_cooldown(settings):
    history = measured_history(days=10, shift_from=2)  # drifting from day 3 (02-03) on
    assert (history.drift_share[:2] == 0).all() and (history.drift_share[2:] >= 0.5).all()
    made = replay(history, settings)
    assert [(r["request_date"], r["rule"]) for r in made] == [(dt.date(2013, 2, 5), "drift")]
    assert "3 consecutive days" in made[0]["reason"]


def test_drift_that_outlasts_the_cooldown_requests_again_once(settings):
    made = replay(measured_history(days=14, shift_from=2), settings)
    assert [r["request_date"] for r in made] == [dt.date(2013, 2, 5), dt.date(2013, 2, 12)]


def test_no_drift_no_request(settings):
    history = measured_history(days=10, shift_from=None)
    assert (history.drift_share < 0.5).all()
    assert replay(history, settings) == []


def test_a_falling_rolling_auc_requests_a_retraining(settings):
    history = measured_history(days=4, shift_from=None)
    history.loc[3, "rolling_roc_auc"] = 0.55
    made = replay(history, settings)
    assert [(r["request_date"], r["rule"]) for r in made] == [(dt.date(2013, 2, 4), "performance")]
    history.loc[3, "rolling_n"] = 100  # too few labeled predictions to act on
    assert replay(history, settings) == []


def test_the_first_model_is_requested_once_enough_days_are_labeled(settings):
    history = pd.DataFrame(
        {"monitor_date": [START + dt.timedelta(days=i) for i in range(12)], "drift_share": None}
    )
    made = replay(history, settings, has_champion=False, labeled0=15)
    # labeled days reach initial_training_days (20) on the sixth day
    assert [(r["request_date"], r["rule"], r["window_days"]) for r in made] == [
        (dt.date(2013, 2, 6), "bootstrap", 20)
    ]


def test_an_unserved_request_waits_for_the_next_training_run(settings):
    """The outbox: a training run serves every pending request, including one whose Asset
    event never started a run of its own (apache/airflow#56050)."""
    first = retrain.request(START, "drift", "drift share 0.9", {})
    second = retrain.request(START + dt.timedelta(days=9), "performance", "AUC 0.55", {})
    retrain.append(settings, [first])
    retrain.append(settings, [second])  # say its event was left unconsumed
    pending = retrain.pending(settings)
    assert [r["request_id"] for r in pending] == ["2013-02-01-drift", "2013-02-10-performance"]
    end, window, trigger = retrain.plan(pending, "scheduled run")
    assert end == dt.date(2013, 2, 10) and window is None
    assert trigger.startswith("drift on 2013-02-01: drift share 0.9; performance on 2013-02-10")
    served = SimpleNamespace(run_id="abc", version="3", promoted=True)
    retrain.mark_served(settings, pending, "asset_triggered__x", served)
    assert retrain.pending(settings) == []
    rows = retrain.log_rows(settings)
    assert rows[rows.event == "served"].model_version.tolist() == ["3", "3"]
    assert retrain.plan([], "scheduled run") == (None, None, "scheduled run")


def test_a_night_waits_for_the_retrainings_earlier_nights_requested(settings):
    """A request's model governs the nights after the request's own, so those nights wait
    until it is served; the requesting night itself and the nights before it do not."""
    day = START + dt.timedelta(days=19)
    assert retrain.training_wait(settings, day) is None  # nothing requested
    asked = retrain.request(day, "drift", "drift share >= 0.5 on 3 consecutive days", {})
    retrain.append(settings, [asked])
    assert retrain.training_wait(settings, day) is None  # its own night ran before it
    waiting = retrain.training_wait(settings, day + dt.timedelta(days=3))
    assert "requested on 2013-02-20 (2013-02-20-drift: drift share >= 0.5" in waiting

    rejected = SimpleNamespace(run_id="abc", version="1", promoted=False)
    retrain.mark_served(settings, [asked], "asset_triggered__x", rejected)
    assert retrain.training_wait(settings, day + dt.timedelta(days=3)) is None


def test_a_request_whose_event_was_lost_in_a_crash_is_emitted_again_until_served(settings):
    """The request is recorded before its Asset event goes out with the task's success: a try
    that dies in between leaves the request, and the retry emits it instead of skipping."""
    day = START + dt.timedelta(days=3)
    wanted = retrain.request(day, "drift", "drift share 0.9", {"2013-02-04": 0.9})
    retrain.append(settings, [{**wanted, "airflow_run_id": "scheduled__first-try"}])
    again = retrain.run(settings, day, "scheduled__first-try")
    assert again == {**wanted, "request_date": day.isoformat()}
    retrain.mark_served(
        settings,
        retrain.pending(settings),
        "training",
        SimpleNamespace(run_id="r", version="2", promoted=True),
    )
    with pytest.raises(StageSkipped, match="already requested and served"):
        retrain.run(settings, day, "scheduled__first-try")
