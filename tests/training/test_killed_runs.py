"""A training SIGKILLed inside its MLflow run leaves the run RUNNING (the crash harness's
leftover); the next training marks it KILLED (``tracking.end_dead_runs``, keyed on the run's
``nightjar.owner`` tag) and decides what a clean training decides. A run whose training still
runs, or whose owner cannot be checked, is left alone.

Runs on the feature tests' lakehouse (2013-03-01..03-04), as tests/training/test_training.py,
with a model name and MLflow store of its own."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys

import pytest

from jobs.common.owner import Owner
from jobs.monitoring import retrain
from jobs.training import registry, requests, tracking
from tests.conftest import ROOT
from tests.feature_lake import DAYS

END = DAYS[-1]

# The training DAG's task, stopped inside its MLflow run (after its metrics, before the model is
# logged): where a SIGKILL leaves the run RUNNING.
STOPPED_TRAINING = """
import pickle, sys, time
import mlflow.xgboost
from jobs.training import requests

def stop(*args, **kwargs):
    print("inside the run", flush=True)
    time.sleep(600)

mlflow.xgboost.log_model = stop
settings = pickle.loads(open(sys.argv[1], "rb").read())
requests.train_pending(settings, "asset_triggered__killed", "asset", requested=True)
"""

# A process that starts a training run as a training does (its owner tag) and goes on running.
RUNNING = """
import pickle, sys, time
import mlflow
from jobs.training import tracking

settings = pickle.loads(open(sys.argv[1], "rb").read())
client = tracking.client(settings)
with mlflow.start_run(experiment_id=tracking.experiment_id(client, settings),
                      run_name="train-live", tags=tracking.owner_tags()) as run:
    print(run.info.run_id, flush=True)
    time.sleep(600)
"""


def mlflow_settings(settings, root, name: str):
    return settings.model_copy(
        update={
            "validation_days": 1,
            "test_days": 1,
            "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "model_name": name,
            "promote_min_roc_auc": 0.55,
        }
    )


def start(script: str, settings, folder) -> tuple[subprocess.Popen, str]:
    """``script`` in a process of its own; returns it and the first line it printed."""
    path = folder / f"settings-{settings.model_name}.pkl"
    path.write_bytes(pickle.dumps(settings))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline().strip()
    assert line, f"the process ended first (exit {proc.wait()})"
    return proc, line


def runs(settings) -> dict[str, object]:
    """The training experiment's runs by id."""
    client = tracking.client(settings)
    found = client.search_runs([tracking.experiment_id(client, settings)])
    return {r.info.run_id: r for r in found}


def request(settings, run_id: str) -> dict:
    wanted = retrain.request(END, "performance", "ROC AUC 0.51 over 2 days", {}, window_days=4)
    retrain.append(settings, [{**wanted, "airflow_run_id": run_id}])
    return wanted


def decided(settings) -> list[dict]:
    """The decision log less what says which run or when."""
    log = registry.decisions(settings)
    return log.drop(columns=["decided_at", "run_id", "model_name"]).to_dict("records")


def aliases(settings) -> dict[str, str | None]:
    client = tracking.client(settings)
    return {
        alias: registry.alias_version(client, settings, alias)
        for alias in (registry.CHAMPION, registry.CHALLENGER)
    }


def test_a_killed_trainings_run_is_marked_killed_by_the_next_training(
    feast_lake, tmp_path_factory, caplog
):
    lake, _ = feast_lake
    ml = mlflow_settings(lake, tmp_path_factory.mktemp("mlflow-killed"), "flight_disruption_k")
    wanted = request(ml, "scheduled__killed")
    proc, said = start(STOPPED_TRAINING, ml, tmp_path_factory.mktemp("killed"))
    assert said == "inside the run"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    [left] = runs(ml).values()
    assert left.info.status == "RUNNING" and left.info.run_name == f"train-{END}"
    assert Owner.parse(left.data.tags[tracking.OWNER_TAG]).pid == proc.pid

    with caplog.at_level(logging.INFO, logger=tracking.__name__):
        served = requests.train_pending(ml, "asset_triggered__again", "asset", requested=True)
    after = runs(ml)
    killed = after.pop(left.info.run_id)
    assert killed.info.status == "KILLED" and killed.info.end_time
    assert f"MLflow run {left.info.run_id} (train-{END}) marked KILLED" in caplog.text
    [rerun] = after.values()
    assert rerun.info.status == "FINISHED" and rerun.info.run_id == served.result.run_id
    assert served.request_ids == [wanted["request_id"]] and retrain.pending(ml) == []

    # the decision and the aliases a clean training of the same request makes
    clean = mlflow_settings(lake, tmp_path_factory.mktemp("mlflow-clean"), "flight_disruption_c")
    request(clean, "scheduled__clean")
    reference = requests.train_pending(clean, "asset_triggered__clean", "asset", requested=True)
    assert decided(ml) == decided(clean)
    assert served.result.test_metrics == reference.result.test_metrics
    assert aliases(ml) == aliases(clean) == {"champion": "1", "challenger": "1"}


def test_a_run_whose_training_runs_or_cannot_be_checked_is_left_running(settings, tmp_path):
    import mlflow

    ml = mlflow_settings(settings, tmp_path, "flight_disruption_live").model_copy(
        update={"state_dir": tmp_path}
    )
    client = tracking.client(ml)
    experiment = tracking.experiment_id(client, ml)
    elsewhere = client.create_run(
        experiment, run_name="train-elsewhere", tags={tracking.OWNER_TAG: "4242-17@another-host"}
    ).info.run_id
    unrecorded = client.create_run(experiment, run_name="train-older-code").info.run_id
    proc, live = start(RUNNING, ml, tmp_path)
    try:
        assert tracking.end_dead_runs(ml, client) == []
        statuses = {r: client.get_run(r).info.status for r in (live, elsewhere, unrecorded)}
        assert set(statuses.values()) == {"RUNNING"}
    finally:
        proc.kill()
        proc.wait()
    assert tracking.end_dead_runs(ml, client) == [live]
    assert client.get_run(live).info.status == "KILLED"
    assert {client.get_run(r).info.status for r in (elsewhere, unrecorded)} == {"RUNNING"}
    assert mlflow.active_run() is None


@pytest.fixture(autouse=True)
def _no_active_run():
    """MLflow keeps an active run per process: none must leak from one test to the next."""
    yield
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()
