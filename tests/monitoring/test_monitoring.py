"""Monitoring on the shared feature lakehouse (2013-03-01..03-04): a champion trained on those
days scores 03-04's flights (run 03-03) and 03-05's (run 03-04); monitoring 03-04 measures the
drift of 03-05's scored features and the performance of the 03-04 predictions."""

from __future__ import annotations

import datetime as dt
import json
from functools import partial

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from jobs.adapters import evidently_column_drift
from jobs.common.delta.snapshot import read_arrow
from jobs.lakehouse import tables as tb
from jobs.monitoring import drift, monitor, performance, reference
from jobs.scoring import score
from jobs.scoring.predictions import PREDICTIONS
from jobs.training import models, tracking, train
from tests.feature_lake import DAYS, service_columns

DAY = DAYS[3]  # 03-04: its flights were scored by run 03-03, tonight's are 03-05's


@pytest.fixture(scope="module")
def monitored(spark, feast_lake, tmp_path_factory):
    lake, tables = feast_lake
    root = tmp_path_factory.mktemp("monitoring")
    settings = lake.model_copy(
        update={
            "validation_days": 1,
            "test_days": 1,
            "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "model_name": "flight_disruption_monitoring",
            "promote_min_roc_auc": 0.5,
            "reference_rows": 1500,
        }
    )
    champion = train.run(settings, DAY, window_days=4)
    assert champion.promoted
    # trained on 03-04 itself, it would score nights from 03-05 on (registry.night_models):
    # the nights 03-03 and 03-04, whose flights have outcomes, are scored with it explicitly
    night = [score.load(tracking.client(settings), settings, champion.version, "champion")]
    score.run(spark, tables, settings, DAYS[2], "scheduled__2013-03-03", night)
    score.run(spark, tables, settings, DAY, "scheduled__2013-03-04", night)
    result = monitor.run(spark, tables, settings, DAY, "scheduled__2013-03-04")
    return settings, tables, champion, result


def metrics_rows(settings, day=DAY) -> pd.DataFrame:
    frame = read_arrow(
        settings.table_uri(monitor.MONITORING_METRICS.name),
        {"model_name": [settings.model_name], "monitor_date": [day]},
    ).to_pandas()
    return frame


def test_performance_figures_match_a_hand_computation_on_crafted_labels():
    labeled = pd.DataFrame(
        {
            "label": [1, 0, 1, 0, 0, 1],
            "probability": [0.9, 0.8, 0.55, 0.3, 0.05, 0.2],
            "threshold": 0.5,
        }
    )
    got = performance.figures(labeled)
    # flagged (p >= 0.5): 0.9 (TP), 0.8 (FP), 0.55 (TP); missed: 0.2 (FN)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    # positive pairs ranked above negative ones: 0.9 > all 3; 0.55 > 0.3, 0.05; 0.2 > 0.05
    assert got["roc_auc"] == pytest.approx(6 / 9)
    assert got["brier"] == pytest.approx(
        np.mean([0.1**2, 0.8**2, 0.45**2, 0.3**2, 0.05**2, 0.8**2])
    )
    # bins of width 0.1: {0.9}, {0.8}, {0.55}, {0.3}, {0.05}, {0.2}, one row each
    assert got["ece"] == pytest.approx(np.mean([0.1, 0.8, 0.45, 0.3, 0.05, 0.8]))
    assert got["positive_rate"] == 0.5 and got["n_labeled"] == 6
    one_class = performance.figures(labeled.assign(label=0))
    assert one_class["roc_auc"] is None and one_class["recall"] == 0.0


def test_a_crafted_shift_in_some_features_is_exactly_what_drifts():
    rng = np.random.default_rng(3)
    features = [f"f{i}" for i in range(10)]
    ref = pd.DataFrame(rng.normal(size=(3000, 10)), columns=features).assign(
        probability=rng.random(3000)
    )
    current = pd.DataFrame(rng.normal(size=(800, 10)), columns=features).assign(
        probability=rng.random(800)
    )
    current[["f1", "f7"]] += 1.5  # 1.5 standard deviations
    result = drift.measure(ref, current, features, threshold=0.1)
    assert sorted(result.drifted) == ["f1", "f7"]
    assert result.share == pytest.approx(0.2)
    assert result.scores["f1"] > 1.0 > 0.1 > result.scores["f0"]
    assert not result.prediction_drifted


def test_calibrated_thresholds_are_the_largest_distance_of_a_training_day():
    """Five training days of 200 rows: ``x`` is per-flight noise, ``airport_1d`` a day-level
    aggregate (one value per day, as the origin stats are), which drifts every day against a
    multi-day reference unless calibrated."""
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(6)
    days = np.repeat(pd.date_range("2013-01-01", periods=5).to_numpy(), 200)
    level = np.array([0.0, 1.0, 3.0, 1.5, 2.0])
    rows = pd.DataFrame(
        {"x": rng.normal(size=1000), "airport_1d": np.repeat(level, 200), "few": np.nan}
    )
    rows.loc[:3, "few"] = 1.0  # compared on day 1 only, where the reference has no other value
    ref = reference.sample(rows, ["x", "airport_1d", "few"], pd.Series(np.zeros(1000)), 0.5, 600, 0)
    got = drift.calibrate(rows, pd.Series(days), ref, ["x", "airport_1d", "few"], floor=0.1)

    def by_hand(column: str, day: int) -> float:  # one day against the other days' reference
        others = ref[column][~ref.index.isin(range(200 * day, 200 * day + 200))]
        mine = rows[column][200 * day : 200 * day + 200]
        return wasserstein_distance(others, mine) / np.std(others)

    for column in ("x", "airport_1d"):
        largest = max(by_hand(column, d) for d in range(5))
        assert got[column] == pytest.approx(largest, rel=1e-12)
    assert got["airport_1d"] > 1.0 and 0.1 < got["x"] < 0.3  # 200 rows a day: sampling noise
    assert got["few"] == 0.1  # nothing to compare: the floor
    # a normal day is within the calibrated thresholds; a shift beyond any training day is not
    normal = pd.DataFrame({"x": rng.normal(size=1000), "airport_1d": 1.0, "few": np.nan})
    normal["probability"] = 0.5
    ref["probability"] = 0.5
    assert drift.measure(ref, normal, ["x", "airport_1d"], 0.1).drifted == ["airport_1d"]
    assert drift.measure(ref, normal, ["x", "airport_1d"], 0.1, got).drifted == []
    shifted = normal.assign(airport_1d=9.0, x=normal.x + 1.0)
    shifted_drift = drift.measure(ref, shifted, ["x", "airport_1d"], 0.1, got)
    assert shifted_drift.drifted == ["x", "airport_1d"] and shifted_drift.share == 1.0


def test_the_sort_based_wasserstein_distance_is_scipys():
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(5)
    samples = [
        (rng.normal(size=5000), rng.normal(size=20_000) + 0.3),
        (rng.integers(0, 5, 300).astype(float), rng.integers(0, 7, 1000).astype(float)),  # ties
        (rng.integers(0, 9, 4000).astype(float), rng.integers(2, 5, 70).astype(float)),  # u larger
        (np.array([1.0]), np.array([3.0])),
        (np.array([2.0, 2.0]), np.array([2.0])),
    ]
    for u, v in samples:
        assert evidently_column_drift.wasserstein_distance(u, v) == pytest.approx(
            wasserstein_distance(u, v), rel=1e-12
        )


def test_the_drift_dataset_defers_evidentlys_column_statistics_and_gives_the_same_ones():
    from evidently.core.datasets import PandasDataset

    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500)})
    frame.loc[::9, "x"] = np.nan
    spec = drift.definition(frame, ["x", "c"])
    deferred = evidently_column_drift.DriftDataset(frame, data_definition=spec)
    assert set(deferred._dataset_stats.column_stats.values()) == {None}  # nothing computed yet
    stock = PandasDataset(frame, data_definition=spec).stats()
    assert deferred.stats() == stock
    assert stock.column_stats["x"].numerical_stats.max == frame.x.max()
    assert stock.column_stats["c"].categorical_stats.unique_count == 2


def test_column_drift_scores_and_plots_what_stock_value_drift_does_less_the_index_line():
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift

    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(["a", "b"], 2000)})
    current = pd.DataFrame({"x": rng.normal(size=900) + 0.4, "c": rng.choice(["a", "b", "z"], 900)})
    current.loc[::7, "x"] = np.nan  # rows dropped for x only, as the stock metric does
    spec = drift.definition(ref, ["x", "c"])

    def run(metric, numeric_method):
        report = Report(
            [
                metric(column="x", method=numeric_method, threshold=0.1),
                metric(column="c", method="jensenshannon", threshold=0.1),
            ]
        )
        snapshot = report.run(
            Dataset.from_pandas(current, data_definition=spec),
            Dataset.from_pandas(ref, data_definition=spec),
        )
        return [m["value"] for m in snapshot.dict()["metrics"]], snapshot

    stock, stock_snapshot = run(ValueDrift, "wasserstein")
    ours, ours_snapshot = run(
        evidently_column_drift.ColumnDrift, evidently_column_drift.WASSERSTEIN
    )
    assert ours == pytest.approx(stock, rel=1e-12) and ours[0] > 0.3
    # the same widgets, one per column with its distribution plot, less the numeric column's
    # "DATA DRIFT" tab (the current rows' mean over their row index)
    stock_html, ours_html = stock_snapshot.get_html_str(True), ours_snapshot.get_html_str(True)
    assert ours_html.count("Wasserstein distance (normed)") == 1
    assert ours_html.count("DATA DISTRIBUTION") == stock_html.count("DATA DISTRIBUTION") == 2
    assert stock_html.count("current (mean)") > 0 and stock_html.count("DATA DRIFT") == 1
    assert ours_html.count("current (mean)") == ours_html.count("DATA DRIFT") == 0


def test_a_column_apart_only_by_float_error_is_measured_as_one_value():
    """0.3 and 0.1 + 0.2 leave numpy no room for ten bins: stock Evidently fails the column
    ("Too many bins for data range", a night of `make run`). It is measured as if both were
    0.3, the rest of the report as before."""
    from evidently import Dataset, Report

    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=300)})
    noisy = pd.DataFrame({"x": rng.choice([0.3, 0.1 + 0.2], 200)})
    assert noisy.x.nunique() == 2
    with pytest.raises(ValueError, match="finite-sized bins"):
        np.histogram(noisy.x, bins=10)
    spec = drift.definition(ref, ["x"])

    def measured(current):
        metric = evidently_column_drift.ColumnDrift(
            column="x", method=evidently_column_drift.WASSERSTEIN, threshold=0.1
        )
        snapshot = Report([metric]).run(
            Dataset.from_pandas(current, data_definition=spec),
            Dataset.from_pandas(ref, data_definition=spec),
        )
        return snapshot.dict()["metrics"][0]["value"]

    assert measured(noisy) == pytest.approx(measured(noisy.assign(x=0.3)), rel=1e-9)
    rounded = evidently_column_drift.significant(
        pd.Series([0.1 + 0.2, 0.0, np.nan, -123456.789012345, np.inf]), 12
    )
    assert rounded.iloc[0] == 0.3 and rounded.iloc[1] == 0.0 and np.isnan(rounded.iloc[2])
    assert rounded.iloc[3] == -123456.789012 and rounded.iloc[4] == np.inf


def test_the_training_run_logs_a_reference_sample_with_labels_and_predictions(monitored):
    settings, _, champion, _ = monitored
    ref = reference.load(settings, champion.run_id)
    model = mlflow.xgboost.load_model(f"models:/{settings.model_name}@champion")
    features = model.get_booster().feature_names
    assert len(ref) == 1500 and set(ref.label.unique()) == {0, 1}
    np.testing.assert_allclose(ref.probability, models.predict(model, ref, features), rtol=1e-5)
    # beside it, a calibrated threshold for every feature and the prediction, none below the floor
    thresholds = reference.thresholds(settings, champion.run_id)
    assert set(thresholds) == {*features, reference.PROBABILITY}
    assert min(thresholds.values()) == settings.drift_threshold
    assert max(thresholds.values()) > settings.drift_threshold  # the day-level aggregates


def test_a_monitoring_row_holds_drift_and_the_delayed_label_performance(monitored):
    settings, _, champion, result = monitored
    row = metrics_rows(settings).set_index("role").loc["champion"]
    tomorrow = read_arrow(
        settings.table_uri(tb.GOLD_SCHEDULED_FLIGHTS.name), {"flight_date": [DAY + dt.timedelta(1)]}
    )
    assert row.model_version == champion.version and row.status == "ok"
    assert row.n_scored == tomorrow.num_rows
    n = len(service_columns(settings))  # the champion's service's
    assert row.n_features == n and len(row.feature_drift) == n
    scores = dict(row.feature_drift)
    thresholds = reference.thresholds(settings, champion.run_id)
    assert row.drifted_features == sum(v >= thresholds[f] for f, v in scores.items())
    assert row.drift_share == pytest.approx(row.drifted_features / n)
    # performance of the predictions made for 03-04, computed here from the tables
    preds = read_arrow(settings.table_uri(PREDICTIONS.name), {"flight_date": [DAY]}).to_pandas()
    preds = preds[(preds.model_name == settings.model_name) & (preds.role == "champion")]
    labels = read_arrow(settings.table_uri(tb.GOLD_FLIGHTS.name), {"flight_date": [DAY]})
    joined = preds.merge(labels.to_pandas()[["flight_id", "is_disrupted"]], on="flight_id")
    assert row.n_labeled == len(joined) == len(preds)
    assert row.roc_auc == pytest.approx(roc_auc_score(joined.is_disrupted, joined.probability))
    assert row.perf_model_version == champion.version
    # the only labeled scored day in the trailing 7 days is 03-04 itself
    assert row.rolling_n == row.n_labeled and row.rolling_roc_auc == pytest.approx(row.roc_auc)
    assert result["report_url"] == f"/nightjar/reports/{DAY}/index.html"


def test_reports_are_written_readable_and_logged_to_mlflow(monitored):
    settings, _, champion, result = monitored
    folder = settings.reports_dir / DAY.isoformat()
    index = (folder / "index.html").read_text()
    assert f"Monitoring of {DAY}" in index and champion.version in index
    for page in ("champion-drift.html", "champion-performance.html"):
        assert f'href="{page}"' in index
        text = (folder / page).read_text()
        assert text.startswith("<html") or "<!DOCTYPE html>" in text[:200]
        assert len(text) > 10_000  # Evidently's page with its data, not an error stub
    row = metrics_rows(settings).iloc[0]
    client = mlflow.MlflowClient(settings.tracking_uri)
    run = client.get_run(row.mlflow_run_id)
    assert run.data.tags["monitoring_date"] == DAY.isoformat()
    assert run.data.tags["champion_version"] == champion.version
    assert run.data.metrics["champion_roc_auc"] == pytest.approx(row.roc_auc)
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "reports")}
    assert {"reports/index.html", "reports/champion-drift.html"} <= logged
    # the figures are linked to the champion's logged model too
    model_id = tracking.logged_model_id(client, settings.model_name, champion.version)
    assert "champion_drift_share" in {m.key for m in mlflow.get_logged_model(model_id).metrics}


def test_re_monitoring_a_day_replaces_its_rows_and_reuses_its_mlflow_run(monitored, spark):
    settings, tables, _, _ = monitored
    before = metrics_rows(settings)
    again = monitor.run(spark, tables, settings, DAY, "manual__again")
    after = metrics_rows(settings)
    assert len(after) == len(before) == 1
    assert after.mlflow_run_id.iloc[0] == before.mlflow_run_id.iloc[0]
    assert after._run_id.iloc[0] == "manual__again"
    assert again["models"]["champion"]["roc_auc"] == pytest.approx(before.roc_auc.iloc[0])


def test_a_day_without_a_model_is_recorded_as_such(spark, feast_lake, tmp_path):
    lake, tables = feast_lake
    empty = lake.model_copy(
        update={
            "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'm.db'}",
            "model_name": "flight_disruption_none",
        }
    )
    monitor.run(spark, tables, empty, DAYS[1], "r")
    row = metrics_rows(empty, DAYS[1]).iloc[0]
    assert (row.role, row.status, row.model_version) == ("none", "no_model", None)


def test_the_monitor_follows_the_models_that_scored_not_the_aliases(monitored, spark):
    """A promotion between tonight's score and monitor (here: the alias gone) still monitors
    the version that scored D+1."""
    settings, tables, champion, _ = monitored
    client = tracking.client(settings)
    client.delete_registered_model_alias(settings.model_name, "champion")
    try:
        monitor.run(spark, tables, settings, DAY, "manual__moved")
    finally:
        client.set_registered_model_alias(settings.model_name, "champion", champion.version)
    row = metrics_rows(settings).set_index("role").loc["champion"]
    assert row.model_version == champion.version and row._run_id == "manual__moved"
    assert row.n_scored > 0 and 0 <= row.drift_share <= 1


def test_a_model_trained_before_calibration_gets_the_global_threshold(tmp_path):
    """Its run has a reference but no thresholds file: no thresholds, so the monitor's global
    threshold applies; a run that cannot be read is an error, not a silent fallback."""
    from jobs.common.settings import Settings

    settings = Settings(
        state_dir=tmp_path, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    client = mlflow.MlflowClient(settings.tracking_uri)
    experiment = client.create_experiment("old-models", artifact_location=str(tmp_path / "art"))
    run = client.create_run(experiment)
    client.log_dict(run.info.run_id, {"rows": 0}, "monitoring/other.json")
    assert reference.thresholds(settings, run.info.run_id) == {}
    with pytest.raises(mlflow.exceptions.MlflowException):
        reference.thresholds(settings, "0" * 32)


def test_the_distribution_figure_is_the_one_evidently_draws():
    """``ColumnDrift`` writes the "DATA DISTRIBUTION" figure as JSON; it must be the figure
    Evidently's ``plot_distr_with_perc_button`` builds, trace for trace and button for button."""
    from evidently.legacy.metric_results import Distribution, HistogramData
    from evidently.legacy.options import ColorOptions
    from evidently.legacy.utils.visualizations import plot_distr_with_perc_button
    from plotly.utils import PlotlyJSONEncoder

    colors = ColorOptions(current_data_color="#123456")
    cases = [
        (np.array([0.5, 1.5, 2.5]), np.array([3, 5, 2]), np.array([0.5, 1.5, 3.0]), [4, 1, 2]),
        (np.array(["a", "b"], dtype=object), np.array([7, 1]), np.array(["a", "z"]), [2, 2]),
    ]
    for x_cur, y_cur, x_ref, y_ref in cases:
        current, reference = Distribution(x=x_cur, y=y_cur), Distribution(x=x_ref, y=y_ref)
        stock = plot_distr_with_perc_button(
            hist_curr=HistogramData.from_distribution(current),
            hist_ref=HistogramData.from_distribution(reference),
            xaxis_name="",
            yaxis_name="Count",
            yaxis_name_perc="Percent",
            same_color=False,
            color_options=colors,
            subplots=False,
            to_json=False,
        ).to_plotly_json()
        ours = evidently_column_drift.distribution_figure(current, reference, colors)
        as_json = partial(json.dumps, cls=PlotlyJSONEncoder, sort_keys=True)
        assert as_json(ours) == as_json(stock)
        assert ours["data"][1]["y"].tolist() == pytest.approx(list(y_cur / y_cur.sum() * 100))
