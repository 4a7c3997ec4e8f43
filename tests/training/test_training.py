"""Training on Feast training sets, tracked in MLflow, champion/challenger and rollback.

Runs on the feature tests' lakehouse (2013-03-01..03-04) with a 4-day window: 2 training days,
1 validation day, 1 held-out test day.
"""

from __future__ import annotations

import datetime as dt
import json

import mlflow
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jobs.common.errors import NightjarError
from jobs.features import store
from jobs.features.training import current_versions
from jobs.training import dataset, labeled, registry, tracking, train
from tests.conftest import PORT_OFFSET
from tests.feature_lake import DAYS, service_columns

END = DAYS[-1]


@pytest.fixture(scope="module")
def ml(feast_lake, tmp_path_factory):
    lake, _ = feast_lake
    root = tmp_path_factory.mktemp("mlflow")
    return lake.model_copy(
        update={
            "validation_days": 1,
            "test_days": 1,
            "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "model_name": "flight_disruption_test",
            "promote_min_roc_auc": 0.55,
        }
    )


def versions(settings) -> list[str]:
    client = tracking.client(settings)
    return sorted(v.version for v in client.search_model_versions(f"name='{settings.model_name}'"))


@pytest.fixture(scope="module")
def first(ml):
    """Trained with the default window: 60 days, shrunk to the 4 labeled days there are."""
    return train.run(ml, END)


def test_default_windows_start_at_the_first_labeled_day(ml):
    assert labeled.days(ml) == DAYS and labeled.newest(ml) == END
    assert labeled.default_window(ml, DAYS[2]) == 3  # 03-01..03-03, not 60 days into 2013-01
    assert labeled.default_window(ml.model_copy(update={"training_window_days": 2}), END) == 2


def test_a_training_run_logs_everything_and_registers_the_first_champion(ml, first):
    client = tracking.client(ml)
    run = client.get_run(first.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["window_start"] == "2013-03-01" and params["window_end"] == "2013-03-04"
    assert params["test_start"] == "2013-03-04" and params["validation_start"] == "2013-03-03"
    assert params["seed"] == "42" and params["feature_service"] == store.FEATURE_SERVICE
    assert params["xgb_tree_method"] == "hist"
    assert {k: int(v) for k, v in params.items() if k.startswith("delta_version.")} == {
        f"delta_version.{k}": v for k, v in current_versions(ml).items()
    }
    assert len(tags["mlflow.source.git.commit"]) == 40
    # the same inputs as MLflow datasets: each table, at the version read
    datasets = {d.dataset.name: json.loads(d.dataset.source) for d in run.inputs.dataset_inputs}
    assert {name: source["delta_table_version"] for name, source in datasets.items()} == (
        current_versions(ml)
    )
    assert datasets["gold.flights"]["path"] == ml.table_uri("gold.flights")
    # the logged test metrics are those of the logged test predictions
    predictions = first.test_predictions
    frame = train.training_set(ml, DAYS[-1], DAYS[-1]).frame.set_index("flight_id")
    labels = frame.loc[predictions.flight_id, "is_disrupted"].astype(int)
    assert metrics["test_roc_auc"] == pytest.approx(roc_auc_score(labels, predictions.p))
    for split in ("train", "validation", "test"):
        for name in ("roc_auc", "pr_auc", "log_loss", "brier", "precision", "recall"):
            assert np.isfinite(metrics[f"{split}_{name}"])
    assert 0.5 < metrics["baseline_test_roc_auc"] < 1
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert artifacts == {
        f"plots/{n}.png" for n in ("roc", "precision_recall", "calibration", "feature_importance")
    }
    features = mlflow.artifacts.load_dict(f"runs:/{first.run_id}/features.json")["features"]
    assert features == service_columns(ml)
    assert int(params["n_features"]) == len(features) == 93
    model = mlflow.models.get_model_info(f"models:/{ml.model_name}/{first.version}")
    assert model.signature.inputs.input_names() == features
    assert model.saved_input_example_info is None  # the route: see train.run
    assert first.promoted and registry.alias_version(client, ml, "champion") == first.version
    assert registry.alias_version(client, ml, "challenger") == first.version


def test_the_gate_promotes_a_better_model_rejects_a_worse_one_and_rollback_restores(
    ml, first, monkeypatch
):
    client = tracking.client(ml)
    shuffle = dataset.split

    def shuffled_labels(data, window):
        parts = shuffle(data, window)
        rng = np.random.default_rng(0)
        for part in (parts.train, parts.validation):
            part["is_disrupted"] = rng.permutation(part["is_disrupted"].to_numpy())
        return parts

    monkeypatch.setattr(train, "split", shuffled_labels)
    worse = train.run(ml.model_copy(update={"promote_min_roc_auc": 0.0}), END, window_days=4)
    assert not worse.promoted and "worse than the champion" in worse.reason
    assert registry.alias_version(client, ml, "champion") == first.version
    assert registry.alias_version(client, ml, "challenger") == worse.version
    assert worse.champion_test_metrics["roc_auc"] == pytest.approx(first.test_metrics["roc_auc"])

    monkeypatch.setattr(train, "split", shuffle)
    better = train.run(ml.model_copy(update={"promote_max_auc_drop": 1.0}), END, window_days=4)
    assert better.promoted
    assert registry.alias_version(client, ml, "champion") == better.version

    assert registry.rollback(ml, client, from_night=dt.date(2013, 3, 10)) == first.version
    assert registry.alias_version(client, ml, "champion") == first.version
    log = registry.decisions(ml)
    assert log.decision.tolist()[-4:] == ["promoted", "rejected", "promoted", "rolled_back"]
    # trained on data up to 03-04: from the night of 03-05; the rollback from the night given
    assert log.from_night.tolist()[-4:] == [dt.date(2013, 3, 5)] * 3 + [dt.date(2013, 3, 10)]
    assert registry.night_models(ml, dt.date(2013, 3, 9)).champion == better.version
    assert registry.night_models(ml, dt.date(2013, 3, 10)).champion == first.version
    rejected = log[log.version == worse.version].iloc[0]
    assert json.loads(rejected.champion_metrics)["roc_auc"] == pytest.approx(
        first.test_metrics["roc_auc"]
    )
    tags = client.get_model_version(ml.model_name, worse.version).tags
    assert tags["nightjar.decision"] == "rejected"
    with pytest.raises(NightjarError, match="first champion"):
        registry.rollback(ml, client)


class Crash(BaseException):
    """The process dying at that line (no handler catches it)."""


def test_a_crash_between_a_decision_and_its_alias_move_is_completed_by_the_next_run(
    ml, first, monkeypatch
):
    client = tracking.client(ml)
    champion_before = registry.alias_version(client, ml, "champion")

    def crash(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", crash)
    with pytest.raises(Crash):
        train.run(ml.model_copy(update={"promote_max_auc_drop": 1.0}), END, window_days=4)
    monkeypatch.undo()
    crashed = registry.decisions(ml).iloc[-1]
    assert crashed.decision == "promoted"  # recorded before the aliases move
    assert registry.alias_version(client, ml, "champion") == champion_before != crashed.version
    # the nights follow the log already; the aliases follow at the next training or rollback
    assert registry.night_models(ml, dt.date(2013, 3, 20)).champion == crashed.version
    registry.sync_aliases(ml, client)
    assert registry.alias_version(client, ml, "champion") == crashed.version
    assert registry.alias_version(client, ml, "challenger") == crashed.version
    assert registry.rollback(ml, client, from_night=dt.date(2013, 3, 30)) == champion_before


def test_retraining_from_a_runs_recorded_inputs_gives_identical_predictions(ml, first):
    again = train.reproduce(ml, first.run_id)
    assert len(again) == len(first.test_predictions)
    assert (again.p_logged == again.p_again).all()


@pytest.mark.parametrize(
    ("end", "window", "service", "message"),
    [
        (dt.date(2013, 6, 1), 4, "flight_disruption_v1", "no labeled flights"),
        (dt.date(2014, 1, 3), 4, "flight_disruption_v1", "outside the source data's range"),
        (END, 4, "no_such_service", "feature service 'no_such_service' is not in the Feast"),
        (END, 2, "flight_disruption_v1", "leaves no training days"),
    ],
)
def test_bad_training_input_fails_clearly_and_leaves_the_registry_alone(
    ml, first, end, window, service, message
):
    before = versions(ml)
    with pytest.raises(NightjarError, match=message):
        train.run(ml, end, window_days=window, feature_service=service)
    assert versions(ml) == before


def test_a_champion_that_cannot_be_loaded_stops_training_before_registration(ml, first):
    import shutil
    from pathlib import Path
    from urllib.parse import urlparse

    client = tracking.client(ml)
    champion = registry.alias_version(client, ml, "champion")
    artifacts = Path(urlparse(client.get_model_version_download_uri(ml.model_name, champion)).path)
    aside = artifacts.with_name(artifacts.name + ".aside")
    artifacts.rename(aside)  # the champion's files lost
    before = versions(ml)
    try:
        with pytest.raises(NightjarError, match=f"champion {ml.model_name} v{champion} cannot"):
            train.run(ml, END, window_days=4)
        assert versions(ml) == before
        assert registry.alias_version(client, ml, "champion") == champion
    finally:
        shutil.rmtree(artifacts, ignore_errors=True)
        aside.rename(artifacts)


def test_an_alias_moved_by_hand_is_moved_back_to_what_the_decision_log_says(ml, first):
    client = tracking.client(ml)
    champion = registry.alias_version(client, ml, "champion")
    other = registry.alias_version(client, ml, "challenger")
    assert other != champion  # the versions the earlier tests trained
    client.set_registered_model_alias(ml.model_name, "champion", other)
    registry.sync_aliases(ml, client)
    assert registry.alias_version(client, ml, "champion") == champion


@pytest.fixture()
def postgres_tracking(ml, tmp_path, postgres):
    """An MLflow tracking server backed by the run's PostgreSQL."""
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    database = "nightjar_mlflow_test"
    postgres.create_database(database)
    port = 15500 + PORT_OFFSET  # apart from another test run's
    mlflow_bin = os.path.join(os.path.dirname(os.sys.executable), "mlflow")
    server = subprocess.Popen(
        [mlflow_bin, "server",
         "--backend-store-uri", postgres.url(database),
         "--artifacts-destination", str(tmp_path / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health").read()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(1)
    try:
        tracking_uri = f"http://127.0.0.1:{port}"
        # a model of its own: the shared decision log names the other registry's versions
        own = {"mlflow_tracking_uri": tracking_uri, "model_name": "flight_disruption_pg"}
        yield ml.model_copy(update=own), postgres, database
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_postgres_backed_tracking_server_end_to_end(postgres_tracking):
    settings, postgres, database = postgres_tracking
    result = train.run(settings, END, window_days=4)
    assert result.promoted and result.version == "1"
    client = tracking.client(settings)
    assert registry.alias_version(client, settings, "champion") == "1"
    assert mlflow.xgboost.load_model(f"models:/{settings.model_name}@champion") is not None
    connection = postgres.connect(database)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT name FROM registered_models")
        assert cursor.fetchall() == [(settings.model_name,)]
        cursor.execute("SELECT count(*) FROM metrics WHERE key = 'test_roc_auc'")
        assert cursor.fetchone() == (1,)
    connection.close()
    registry_page_shows_the_version(settings)


def registry_page_shows_the_version(settings) -> None:
    """The server's registry page in headless Chromium lists the version with its aliases (a
    screenshot for the docs: `make screenshots`)."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import TEST_STATE

    shots = TEST_STATE / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{settings.mlflow_tracking_uri}/#/models/{settings.model_name}")
        page.get_by_text("Version 1").first.wait_for(timeout=60_000)
        assert page.get_by_text("champion").count() > 0
        page.screenshot(path=str(shots / "10-mlflow-registry.png"))
        browser.close()


def test_tasks_opening_a_new_tracking_store_at_once_all_succeed(tmp_path):
    """The first clients of an embedded MLflow store run its migrations; concurrent tasks
    (a backfill's first nights) must not race in them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from jobs.common.settings import Settings\n"
        "from jobs.training import tracking\n"
        "tracking.client(Settings(state_dir=sys.argv[1]))\n"
    )
    clients = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    failures = [p.stderr.read().decode()[-500:] for p in clients if p.wait() != 0]
    assert failures == []


def test_the_cli_and_the_dag_serve_pending_requests_the_same_way(ml, first):
    from jobs.common.errors import StageSkipped
    from jobs.monitoring import retrain
    from jobs.training import requests

    wanted = retrain.request(END, "drift", "drift share 0.8 on 3 days", {}, window_days=4)
    retrain.append(ml, [{**wanted, "airflow_run_id": "scheduled__x"}])
    served = requests.train_pending(ml, "cli", default_trigger="manual")
    assert served.request_ids == [wanted["request_id"]]
    assert served.trigger == f"drift on {END}: drift share 0.8 on 3 days"
    run = mlflow.get_run(served.result.run_id)
    assert run.data.params["window_start"] == str(END - dt.timedelta(days=3))  # its 4 days
    assert run.data.tags["nightjar.trigger"] == served.trigger
    assert retrain.pending(ml) == []
    with pytest.raises(StageSkipped, match="already served"):
        requests.train_pending(ml, "dag", default_trigger="asset", requested=True)


def test_the_first_request_finds_no_earlier_decision(lake):
    """The bootstrap request comes before any decision: an empty log is no decision (it once
    failed comparing the empty log's timestamps with the request's)."""
    from jobs.monitoring import retrain
    from jobs.training import requests

    wanted = {**retrain.request(END, "bootstrap", "no champion yet", {}), "recorded_at": END}
    assert registry.decisions(lake).empty  # a lakehouse of its own: no decision log
    assert requests.already_decided(lake, [wanted], "bootstrap on ...") is None


def test_a_crash_between_a_decision_and_serving_its_requests_trains_no_second_version(
    ml, first, monkeypatch
):
    """The crash harness's finding: a training killed after recording its decision, before
    marking its requests served. The next run serves them with that decision."""
    from jobs.monitoring import retrain
    from jobs.training import requests

    wanted = retrain.request(END, "performance", "ROC AUC 0.51 over 2 days", {}, window_days=4)
    retrain.append(ml, [{**wanted, "airflow_run_id": "scheduled__crash"}])
    mark_served = retrain.mark_served

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(retrain, "mark_served", crash)
    with pytest.raises(KeyboardInterrupt):
        requests.train_pending(ml, "killed", default_trigger="asset", requested=True)
    decided = registry.decisions(ml)
    assert [r["request_id"] for r in retrain.pending(ml)] == [wanted["request_id"]]

    monkeypatch.setattr(retrain, "mark_served", mark_served)
    served = requests.train_pending(ml, "again", default_trigger="asset", requested=True)
    assert len(registry.decisions(ml)) == len(decided)  # no second decision
    assert served.result.version == decided.version.iloc[-1]
    assert served.result.run_id == decided.run_id.iloc[-1]
    assert retrain.pending(ml) == []
    rows = retrain.log_rows(ml)
    row = rows[(rows.request_id == wanted["request_id"]) & (rows.event == "served")].iloc[0]
    assert row.model_version == decided.version.iloc[-1] and row.airflow_run_id == "again"
