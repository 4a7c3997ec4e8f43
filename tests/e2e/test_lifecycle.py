"""The full lifecycle through real Airflow, as `make run` drives it, over 2013-01-01..01-10.

A platform of its own (state folder, Airflow DB, lakehouse, MLflow) shares the test session's
Spark Connect server. Settings sized for ten days: the first model is requested once 5 days are
labeled (1 validation, 1 test day); a drift day is one with >= 30% of the features drifted, one
such day requests a retraining, and the cooldown is 4 days. Thresholds are left uncalibrated: a
model trained on three days has no "normal day" to calibrate on, and against so short a
reference the day-level aggregates drift every day, which is this test's drift episode. So the
policy requests the first model on 01-05, is held by the cooldown on 01-06..01-08, requests a
drift retraining on 01-09, and is held again on 01-10, whatever the drift on that day.
Finally the same window runs again, as a second `make run` would, and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest

from jobs.common.delta.snapshot import read_arrow
from jobs.lakehouse import tables as tb
from jobs.monitoring import retrain
from jobs.monitoring.monitor import MONITORING_METRICS
from jobs.scoring.predictions import PREDICTIONS
from jobs.training import registry
from tests.conftest import TEST_STATE
from tooling import demo, observability, services
from tooling.airflow_api import AirflowAPI

pytestmark = pytest.mark.airflow
START, END = dt.date(2013, 1, 1), dt.date(2013, 1, 10)
DAYS = [START + dt.timedelta(days=i) for i in range(10)]
ENV = {
    "NIGHTJAR_STATE_DIR": str(TEST_STATE / "lifecycle"),
    "AIRFLOW_HOME": str(TEST_STATE / "lifecycle" / "airflow"),
    "NIGHTJAR_INITIAL_TRAINING_DAYS": "5",
    "NIGHTJAR_TRAINING_WINDOW_DAYS": "8",
    "NIGHTJAR_VALIDATION_DAYS": "1",
    "NIGHTJAR_TEST_DAYS": "1",
    "NIGHTJAR_PROMOTE_MIN_ROC_AUC": "0.5",
    "NIGHTJAR_RETRAIN_DRIFT_SHARE": "0.3",
    "NIGHTJAR_RETRAIN_DRIFT_DAYS": "1",
    "NIGHTJAR_RETRAIN_COOLDOWN_DAYS": "4",
    "NIGHTJAR_DRIFT_CALIBRATE": "false",
}


@pytest.fixture(scope="module")
def platform(spark):
    from jobs.common.settings import Settings

    with pytest.MonkeyPatch.context() as env:
        for key, value in ENV.items():
            env.setenv(key, value)
        settings = Settings()
        # the session's Spark Connect server serves it; Prometheus gets the tasks' metrics
        services.up(settings, spark=False, observability=observability.available())
        api = AirflowAPI(settings)
        try:
            for dag_id in (demo.DAG_ID, demo.TRAINING_DAG_ID):
                api.wait_for_dag(dag_id)
                api.patch(f"/dags/{dag_id}", {"is_paused": False})
            demo.lifecycle(api, settings, START, END)
            yield settings, api
        finally:
            services.down(settings, (*services.AIRFLOW_COMPONENTS, *observability.NAMES))


def test_the_policy_requests_the_first_model_then_one_drift_retraining(platform):
    settings, _ = platform
    rows = retrain.log_rows(settings)
    requested = rows[rows.event == "requested"].sort_values("request_date")
    assert list(zip(requested.request_date, requested.rule, strict=True)) == [
        (dt.date(2013, 1, 5), "bootstrap"),
        (dt.date(2013, 1, 9), "drift"),
    ]
    assert retrain.pending(settings) == []  # both served


def test_the_next_run_finds_the_backfill_closed_and_not_paused(platform):
    """The next `make run` on this state can create its own backfill (one open per DAG), and
    none is paused (a day cleared in the UI must run again): closed by the scheduler's sweep,
    not cancelled."""
    _, api = platform
    demo.close_earlier_backfill(api)
    backfills = api.get("/backfills", dag_id=demo.DAG_ID)["backfills"]
    backfills.sort(key=lambda b: b["id"])
    assert [(b["from_date"][:10], b["to_date"][:10]) for b in backfills] == [
        ("2013-01-01", "2013-01-10")
    ]
    assert all(b["completed_at"] and not b["is_paused"] for b in backfills)


def test_each_request_started_a_training_run_through_the_asset(platform):
    settings, api = platform
    runs = sorted(api.dag_runs(demo.TRAINING_DAG_ID), key=lambda r: r["run_after"])
    assert [(r["run_type"], r["state"]) for r in runs] == [("asset_triggered", "success")] * 2
    served = []
    for run in runs:
        events = api.get(
            f"/dags/{demo.TRAINING_DAG_ID}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
        )
        served.append([e["extra"]["request_id"] for e in events["asset_events"]])
    assert served == [["2013-01-05-bootstrap"], ["2013-01-09-drift"]]


def test_the_versions_record_why_they_were_trained(platform):
    settings, _ = platform
    decisions = registry.decisions(settings)
    assert decisions.version.tolist() == ["1", "2"]
    first, second = decisions.itertuples()
    assert first.decision == "promoted" and first.trigger.startswith("bootstrap on 2013-01-05")
    assert second.trigger.startswith("drift on 2013-01-09: drift share >= 0.3")
    assert second.eval_window == "2013-01-09..2013-01-09"
    client = mlflow.MlflowClient(settings.tracking_uri)
    assert client.get_run(second.run_id).data.tags["nightjar.trigger"] == second.trigger


def test_every_night_after_the_first_model_is_scored_by_the_model_of_its_time(platform):
    """v1 (trained up to 01-05) scores the nights 01-06..01-09; night 01-10 waited for the
    retraining 01-09 asked for, and is scored by the champion after that decision."""
    settings, _ = platform
    scored_days = DAYS[6:] + [END + dt.timedelta(days=1)]  # run 01-06 scores 01-07, ...
    predictions = read_arrow(settings.table_uri(PREDICTIONS.name)).to_pandas()
    champion = predictions[predictions.role == "champion"]
    assert sorted(champion.flight_date.unique()) == scored_days
    versions = champion.groupby("flight_date").model_version.unique().map(list).to_dict()
    second = registry.decisions(settings).iloc[1]
    assert versions == {
        **{night + dt.timedelta(days=1): ["1"] for night in DAYS[5:9]},
        END + dt.timedelta(days=1): [second.champion_after],
    }
    shadow = predictions[predictions.role == "shadow"]
    expected_shadow = set() if second.decision == "promoted" else {END + dt.timedelta(days=1)}
    assert set(shadow.flight_date) == expected_shadow
    scheduled = read_arrow(
        settings.table_uri(tb.GOLD_SCHEDULED_FLIGHTS.name), {"flight_date": scored_days}
    ).to_pandas()
    assert champion.groupby("flight_date").size().to_dict() == (
        scheduled.groupby("flight_date").size().to_dict()
    )


def test_every_day_has_monitoring_rows_and_a_report_linked_from_the_task(platform):
    settings, api = platform
    metrics = read_arrow(settings.table_uri(MONITORING_METRICS.name)).to_pandas()
    by_day = metrics.groupby("monitor_date").role.apply(set).to_dict()
    assert sorted(by_day) == DAYS
    assert all(by_day[d] == {"none"} for d in DAYS[:5])  # no model before 01-06's run
    assert all("champion" in by_day[d] for d in DAYS[5:])
    champion = metrics[metrics.role == "champion"].set_index("monitor_date").sort_index()
    # performance needs last night's predictions: from 01-07 on
    assert champion.loc[DAYS[5], "n_labeled"] is None or pd.isna(champion.loc[DAYS[5], "n_labeled"])
    assert (champion.loc[DAYS[6] :, "n_labeled"] > 0).all()
    assert champion.loc[DAYS[6] :, "roc_auc"].between(0, 1).all()

    run = next(
        r for r in api.dag_runs(demo.DAG_ID) if r["logical_date"].startswith(DAYS[8].isoformat())
    )
    links = api.get(f"/dags/{demo.DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/monitor/links")
    url = links["extra_links"]["Monitoring report"]
    assert url == f"/nightjar/reports/{DAYS[8]}/index.html"
    base = f"http://{settings.airflow_host}:{settings.airflow_port}"
    login = {"Authorization": api.client.headers["Authorization"]}
    page = httpx.get(f"{base}{url}", headers=login)
    assert page.status_code == 200 and f"Monitoring of {DAYS[8]}" in page.text
    assert httpx.get(f"{base}{url}").status_code == 401  # only for logged-in users
    listing = httpx.get(f"{base}/nightjar/reports/", headers=login).text
    assert f'<a href="{DAYS[8]}/index.html">{DAYS[8]}</a>' in listing


@pytest.mark.skipif(not observability.available(), reason=observability.missing_hint())
def test_every_dashboard_panel_shows_data_from_prometheus(platform):
    """Grafana cannot run here: each query of the provisioned dashboard
    (observability/grafana/nightjar.json) runs against the real Prometheus instead, after the
    lifecycle's nights, and must return data."""
    settings, _ = platform
    dashboard = json.loads((observability.CONFIG_DIR / "grafana" / "nightjar.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(queries) >= 12
    deadline = time.monotonic() + 30  # the last pushes: scraped within a second or two
    empty = queries
    while empty and time.monotonic() < deadline:
        empty = [q for q in queries if not observability.query(settings, q)]
        time.sleep(1)
    assert not empty, empty
    # what the panels show is what the tables hold: the last night's champion and its AUC
    metrics = read_arrow(settings.table_uri(MONITORING_METRICS.name)).to_pandas()
    last = metrics[(metrics.monitor_date == END) & (metrics.role == "champion")].iloc[0]
    (version,) = observability.query(settings, 'nightjar_model_version{role="champion"}')
    assert version["value"][1] == last.model_version
    (auc,) = observability.query(settings, 'nightjar_roc_auc{role="champion",window="1d"}')
    assert float(auc["value"][1]) == pytest.approx(last.roc_auc)
    (requests,) = observability.query(settings, "nightjar_retrain_request_timestamp_seconds")
    assert requests["metric"]["rule"] == "drift"  # the last request: 01-09's


def test_evidently_ui_charts_the_monitored_days(platform):
    """`make monitoring-ui` (nightjar monitoring-ui) over the workspace the monitor filled, in
    headless Chromium: the champion's project, its three panels over the monitored days, and
    a run per day."""
    from playwright.sync_api import sync_playwright

    settings, _ = platform
    port = settings.airflow_port + 20
    ui = subprocess.Popen(
        [str(Path(sys.executable).with_name("nightjar")), "monitoring-ui", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    monitored = [d.isoformat() for d in DAYS[5:]]  # the champion's nights
    try:
        deadline = time.monotonic() + 60
        while not services.port_open(port):
            assert ui.poll() is None and time.monotonic() < deadline, "the UI did not start"
            time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium",  # Debian's: Playwright downloads none
                args=["--headless", "--no-sandbox", "--disable-gpu"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text(f"{settings.model_name} champion").first.click()
            for title in ("Drift share of the features", "ROC AUC of the labeled predictions"):
                page.get_by_text(title).first.wait_for()
            page.wait_for_timeout(2000)  # the plots draw their axes
            dashboard = page.locator("body").inner_text()
            assert monitored[0] in dashboard and monitored[-1] in dashboard  # the time axis
            shots = TEST_STATE / "screenshots"  # for the docs (`make screenshots`)
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "11-monitoring-dashboard.png"))
            page.get_by_text("Reports", exact=True).first.click()
            page.get_by_text(monitored[-1]).first.wait_for()
            reports = page.locator("body").inner_text()
            assert all(day in reports for day in monitored), reports
            browser.close()
    finally:
        ui.terminate()
        ui.wait()


def test_a_manual_training_run_validates_its_params_and_reports_a_bad_window(platform):
    """Airflow refuses params outside their schema; a window reaching before the data fails
    the run without retries, says why in the task log, and registers nothing."""
    settings, api = platform
    with pytest.raises(RuntimeError, match="window_days"):
        api.post(
            f"/dags/{demo.TRAINING_DAG_ID}/dagRuns",
            {"logical_date": None, "conf": {"window_days": 5}},  # below the minimum of 15
        )
    run = api.post(
        f"/dags/{demo.TRAINING_DAG_ID}/dagRuns",
        {"logical_date": None, "conf": {"end_date": "2013-01-08", "window_days": 15}},
    )
    path = f"/dags/{demo.TRAINING_DAG_ID}/dagRuns/{run['dag_run_id']}"
    deadline = time.monotonic() + 600
    while api.get(path)["state"] not in ("success", "failed"):
        assert time.monotonic() < deadline, "the manual training run did not finish"
        time.sleep(3)
    assert api.get(path)["state"] == "failed"
    (task,) = api.task_instances(demo.TRAINING_DAG_ID, run["dag_run_id"])
    assert task["try_number"] == 1  # bad input: no retry
    log = str(api.get(f"{path}/taskInstances/train/logs/1", full_content=True))
    assert "2012-12-25 is outside the source data's range 2013-01-01..2013-12-31" in log
    assert registry.decisions(settings).version.tolist() == ["1", "2"]


def test_a_second_run_of_the_window_changes_no_prediction_monitoring_row_or_decision(platform):
    """`make run` again without `make clean`: every night re-runs (the backfill reprocesses
    completed runs), each scored and monitored by the models of its time, and the policy
    requests nothing new; only the run metadata differs."""
    settings, api = platform
    tables = {spec: frozen(settings, spec) for spec in (PREDICTIONS, MONITORING_METRICS)}
    requests, decisions = retrain.log_rows(settings), registry.decisions(settings)
    demo.wait_closed(api)
    demo.lifecycle(api, settings, START, END)
    reruns = [r for r in api.dag_runs(demo.DAG_ID) if r["run_type"] == "backfill"]
    assert len(reruns) == len(DAYS) and all(r["state"] == "success" for r in reruns)
    for spec, before in tables.items():
        pd.testing.assert_frame_equal(frozen(settings, spec), before, check_exact=False, rtol=1e-9)
    assert retrain.log_rows(settings).request_id.tolist() == requests.request_id.tolist()
    assert registry.decisions(settings).equals(decisions)


def frozen(settings, spec) -> pd.DataFrame:
    """A table's rows without its run metadata, sorted; map columns as rounded dicts."""
    frame = read_arrow(settings.table_uri(spec.name)).to_pandas()
    frame = frame.drop(columns=list(spec.run_metadata))
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, list)).any():  # a map column
            frame[column] = frame[column].map(
                lambda pairs: pairs if pairs is None else {k: round(v, 9) for k, v in pairs}
            )
    return frame.sort_values(list(spec.key), ignore_index=True)
