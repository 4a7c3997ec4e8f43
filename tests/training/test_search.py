"""The Optuna hyperparameter search: seeded, pruned, logged as nested MLflow runs, never repeated
by a reproduction, and only for weekly or manual trainings.

Runs on the feature tests' lakehouse (2013-03-01..03-04) with a 4-day window: 2 training days,
1 validation day, 1 held-out test day; a few trials, pruning from the second trial on.
"""

from __future__ import annotations

import datetime as dt

import pytest

from jobs.features.training import training_set
from jobs.training import models, requests, search, tracking, train
from jobs.training.dataset import Window, split
from tests.feature_lake import DAYS

END = DAYS[-1]
TRIALS = 6


@pytest.fixture(scope="module")
def ml(feast_lake, tmp_path_factory):
    lake, _ = feast_lake
    root = tmp_path_factory.mktemp("mlflow-search")
    return lake.model_copy(
        update={
            "validation_days": 1,
            "test_days": 1,
            "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "model_name": "flight_disruption_search_test",
            "promote_min_roc_auc": 0.0,
            "search_trials": TRIALS,
            "search_timeout_seconds": None,  # a count, not a clock: the same trials every time
        }
    )


@pytest.fixture(autouse=True)
def eager_pruning(monkeypatch):
    """Prune from the second trial on, at any round: a few trials on a small window prune."""
    monkeypatch.setattr(search, "PRUNE_STARTUP_TRIALS", 1)
    monkeypatch.setattr(search, "PRUNE_WARMUP_ROUNDS", 0)
    monkeypatch.setattr(search, "PRUNE_INTERVAL", 1)


@pytest.fixture(scope="module")
def parts(ml):
    window = Window.ending(END, 4, ml)
    data = training_set(ml, window.start, window.end)
    return split(data, window), data.feature_columns


def test_the_same_seed_gives_the_same_best_parameters_and_trials(parts):
    part, features = parts
    one = models.train_xgboost(part, features, 7, TRIALS)
    two = models.train_xgboost(part, features, 7, TRIALS)
    assert one.params == two.params
    assert [(t["params"], t["state"], t["validation_auc"]) for t in one.trials] == [
        (t["params"], t["state"], t["validation_auc"]) for t in two.trials
    ]
    assert len(one.trials) == TRIALS
    # trial 0 is the defaults, so the search keeps nothing worse on the validation day
    first = one.trials[0]
    assert first["params"] == {k: models.DEFAULT_PARAMS[k] for k in first["params"]}
    assert one.model.best_score >= first["validation_auc"]
    assert one.model.best_score == max(
        t["validation_auc"] for t in one.trials if t["state"] == "complete"
    )
    # pruning happens: a pruned trial is recorded as such, with the AUC it was stopped at
    pruned = [t for t in one.trials if t["state"] == "pruned"]
    assert pruned and all(t["validation_auc"] is not None for t in pruned)
    assert all(t["rounds"] < 1000 for t in pruned)
    other = models.train_xgboost(part, features, 8, TRIALS)
    assert [t["params"] for t in other.trials[1:]] != [t["params"] for t in one.trials[1:]]


def test_a_time_budget_stops_the_search(parts):
    part, features = parts
    trained = models.train_xgboost(part, features, 7, 1000, search_timeout_seconds=1)
    assert 1 <= len(trained.trials) < 1000


def test_trials_are_nested_runs_with_the_plots_and_a_reproduction_does_not_search(ml, monkeypatch):
    # v1's features on these four days give both completed and pruned trials under this seed
    result = train.run(ml, END, window_days=4, feature_service="flight_disruption_v1")
    client = tracking.client(ml)
    run = client.get_run(result.run_id)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert len(children) == TRIALS == int(run.data.params["search_trials"])
    states = sorted(c.data.tags["nightjar.trial_state"] for c in children)
    assert "complete" in states and "pruned" in states
    assert run.data.metrics["search_pruned_trials"] == states.count("pruned")
    best = next(c for c in children if c.data.params["trial"] == run.data.tags["search_best_trial"])
    assert best.data.metrics["validation_roc_auc"] == pytest.approx(
        run.data.metrics["search_best_validation_roc_auc"]
    )
    # the parent's parameters are the best trial's
    for name, value in best.data.params.items():
        if name != "trial":
            assert float(run.data.params[f"xgb_{name}"]) == pytest.approx(float(value))
    plots = {a.path for a in client.list_artifacts(result.run_id, "search")}
    assert plots == {"search/optimization_history.png", "search/param_importances.png"}

    def no_search(*args, **kwargs):
        raise AssertionError("a reproduction searched")

    monkeypatch.setattr(search, "search", no_search)
    again = train.reproduce(ml, result.run_id)
    assert (again.p_logged == again.p_again).all()


def test_weekly_and_manual_runs_search_request_triggered_ones_do_not(ml, monkeypatch):
    assert requests.searches([])
    assert not requests.searches([{"rule": "drift"}])
    assert not requests.searches([{"rule": "performance"}])
    seen = {}

    def run(settings, end, window_days=None, trigger="manual", search=True):
        seen[trigger] = search
        return None

    monkeypatch.setattr(train, "run", run)
    monkeypatch.setattr(requests.retrain, "mark_served", lambda *a: None)
    for pending, trigger in (([], "scheduled run"), ([drift_request()], None)):
        monkeypatch.setattr(requests.retrain, "pending", lambda s, p=pending: p)
        requests.train_pending(ml, "r", trigger or "manual", end=END)
    assert seen["scheduled run"] is True
    assert [v for k, v in seen.items() if k.startswith("drift")] == [False]


def drift_request() -> dict:
    return {
        "request_id": f"{END}-drift",
        "request_date": END,
        "rule": "drift",
        "reason": "drift share 0.4",
        "window_days": None,
        "recorded_at": dt.datetime.now(dt.UTC),
    }
