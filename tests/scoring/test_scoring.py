"""Batch scoring on the shared feature lakehouse: a champion trained on 03-01..03-04, an
unpromoted challenger in shadow, predictions for the next day's flights.

Both models saw 03-04, so the decision log gives them no night before 03-05 (tested here); the
tests of how a night is scored pass them to the nights 03-03 and 03-04 explicitly, whose
flights have labels to compare with."""

from __future__ import annotations

import datetime as dt
import re

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xgboost as xgb
from deltalake import DeltaTable, write_deltalake

from jobs.common.delta.snapshot import read_arrow
from jobs.common.errors import NightjarError, StageSkipped
from jobs.features.store import FEATURE_SERVICE
from jobs.features.training import training_set
from jobs.lakehouse import tables as tb
from jobs.scoring import lineage, score
from jobs.scoring.predictions import PREDICTIONS, served_features
from jobs.training import dataset, registry, tracking, train
from jobs.training import models as disruption
from tests.feature_lake import DAYS


@pytest.fixture(scope="module")
def models(feast_lake, tmp_path_factory):
    lake, tables = feast_lake
    root = tmp_path_factory.mktemp("scoring-mlflow")
    settings = lake.model_copy(
        update={
            "validation_days": 1,
            "test_days": 1,
            "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "model_name": "flight_disruption_scoring",
            "promote_min_roc_auc": 0.5,
        }
    )
    champion = train.run(settings, DAYS[-1], window_days=4)
    # a challenger trained on inverted labels: registered, not promoted (it ranks the test
    # day's flights upside down; on shuffled labels, two training days and one test day, a
    # model may pass by chance, as one did when the flight numbers' statistics came)
    split = dataset.split

    def inverted(data, window):
        parts = split(data, window)
        parts.train["is_disrupted"] = ~parts.train["is_disrupted"].astype(bool)
        return parts

    train.split = inverted
    try:
        challenger = train.run(settings, DAYS[-1], window_days=4)
    finally:
        train.split = split
    assert champion.promoted and not challenger.promoted
    return settings, tables, champion, challenger


@pytest.fixture(scope="module")
def night(models) -> list[score.ScoringModel]:
    """The champion and its challenger in shadow, as resolved for a night they may score."""
    settings, _, champion, challenger = models
    client = tracking.client(settings)
    return [
        score.load(client, settings, champion.version, "champion"),
        score.load(client, settings, challenger.version, "shadow"),
    ]


def test_a_night_is_never_scored_by_a_model_that_saw_it(models):
    """Models trained on data up to 03-04 score the nights from 03-05 on, not 03-04's."""
    settings, _, champion, challenger = models
    with pytest.raises(StageSkipped, match=r"v1, was trained on data up to 2013-03-04 .* from "):
        score.resolve(settings, DAYS[3])
    resolved = score.resolve(settings, DAYS[3] + dt.timedelta(days=1))
    assert [(m.role, m.version) for m in resolved] == [
        ("champion", champion.version),
        ("shadow", challenger.version),
    ]


def partition(settings, day):
    return read_arrow(settings.table_uri(PREDICTIONS.name), {"flight_date": [day]}).to_pandas()


def test_without_a_champion_scoring_is_skipped_with_a_reason(spark, feast_lake, tmp_path):
    lake, tables = feast_lake
    empty = lake.model_copy(update={"mlflow_tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"})
    with pytest.raises(StageSkipped, match="no version of flight_disruption has been trained"):
        score.run(spark, tables, empty, DAYS[2], "r")


def test_predictions_equal_the_model_on_the_training_paths_features(spark, models, night):
    settings, tables, champion, challenger = models
    result = score.run(spark, tables, settings, DAYS[2], "scheduled__2013-03-03", night)
    flights_0304 = partition(settings, DAYS[3])
    assert result["models"] == {
        "champion": f"{settings.model_name} v{champion.version}",
        "shadow": f"{settings.model_name} v{challenger.version}",
    }
    assert flights_0304.groupby("role").size().to_dict() == {
        "champion": result["flights"],
        "shadow": result["flights"],
    }
    assert set(flights_0304.logical_ts.astype(str)) == {"2013-03-03 00:00:00+00:00"}
    # 03-04 flights have labels: their training-set rows carry the same features
    data = training_set(settings, DAYS[3], DAYS[3])
    model = mlflow.xgboost.load_model(f"models:/{settings.model_name}@champion")
    direct = dict(
        zip(
            data.frame.flight_id,
            disruption.predict(model, data.frame, data.feature_columns),
            strict=True,
        )
    )
    mine = flights_0304[flights_0304.role == "champion"].set_index("flight_id").probability
    assert len(mine) == len(direct)
    np.testing.assert_allclose(mine.to_numpy(), [direct[f] for f in mine.index], rtol=1e-6)
    assert (mine >= 0.5).sum() == flights_0304.query("role == 'champion'").flagged.sum()
    # the served features are kept: the training path's values, for every flight scored
    served = read_arrow(
        settings.table_uri(served_features(data.feature_service).name), {"flight_date": [DAYS[3]]}
    ).to_pandas()
    assert set(served.flight_id) == set(mine.index)
    assert set(served._run_id) == {"scheduled__2013-03-03"}
    served = served.set_index("flight_id").loc[data.frame.flight_id, data.feature_columns]
    categorical = list(disruption.model_categories(model))
    assert categorical == ["flight_route__route"]  # the route: a category, served as its name
    assert served[categorical].to_numpy().tolist() == data.frame[categorical].to_numpy().tolist()
    numeric = served.drop(columns=categorical)
    np.testing.assert_allclose(
        numeric.to_numpy(float), data.frame[numeric.columns].to_numpy(float), rtol=1e-12
    )


def test_feasts_own_retrieval_in_the_task_serves_and_scores_the_same(spark, models, night):
    """``feature_retrieval=feast``, the way back to stock, against the Spark join."""
    settings, tables, _, _ = models

    def night_of(retrieval: str):
        chosen = settings.model_copy(update={"feature_retrieval": retrieval})
        score.run(spark, tables, chosen, DAYS[2], f"by-{retrieval}", night)
        served = read_arrow(
            settings.table_uri(served_features(FEATURE_SERVICE).name), {"flight_date": [DAYS[3]]}
        ).to_pandas()
        predictions = partition(settings, DAYS[3]).drop(columns=["_run_id"])
        return (
            served.drop(columns=["_run_id"]).sort_values("flight_id", ignore_index=True),
            predictions.sort_values(["flight_id", "role"], ignore_index=True),
        )

    spark_served, spark_scored = night_of("spark")
    feast_served, feast_scored = night_of("feast")
    pd.testing.assert_frame_equal(spark_served, feast_served, check_exact=True)
    pd.testing.assert_frame_equal(
        spark_scored.drop(columns=["reasons"]), feast_scored.drop(columns=["reasons"])
    )
    assert spark_scored.reasons.notna().sum() == feast_scored.reasons.notna().sum() > 0


def test_a_flight_the_scorer_loses_fails_the_night_and_writes_nothing(
    spark, models, night, monkeypatch
):
    settings, tables, _, _ = models
    score.run(spark, tables, settings, DAYS[2], "r0", night)
    before = DeltaTable(settings.table_uri(PREDICTIONS.name)).version()
    lost = partition(settings, DAYS[3]).flight_id.min()
    scorer = score.score
    monkeypatch.setattr(
        score, "score", lambda *a, **k: scorer(*a, **k).where(f"flight_id != '{lost}'")
    )
    with pytest.raises(NightjarError, match=f"no probability for flight {lost} of 2013-03-04"):
        score.run(spark, tables, settings, DAYS[2], "r-lost", night)
    assert DeltaTable(settings.table_uri(PREDICTIONS.name)).version() == before


def test_the_predictions_are_joined_on_the_executors_never_gathered_in_the_driver(
    spark, models, night, capsys
):
    """Spark sizes the scorer's output by its input (a range of file numbers) and, unhinted,
    broadcast it: every prediction went through the driver (3.0 GB at 10M flights)."""
    settings, tables, _, _ = models
    score.run(spark, tables, settings, DAYS[2], "r-plan", night)
    files = score.served_files(settings, FEATURE_SERVICE, DAYS[3])
    flights = tables.read(tb.GOLD_SCHEDULED_FLIGHTS, partitions={"flight_date": [DAYS[3]]})
    keys = flights.select(*score.FLIGHT_KEYS)
    at = dt.datetime(2013, 3, 3, tzinfo=dt.UTC)
    capsys.readouterr()
    score.predictions(spark, keys, files, night[0], at, "r-plan").explain()
    plan = capsys.readouterr().out
    assert "ShuffledHashJoin" in plan and "Broadcast" not in plan


def test_the_scorer_reads_every_file_in_its_own_task(spark, models, tmp_path):
    """Features split over several files, a missing value and a route the model never trained on
    among them: every row is scored once, as the booster scores the frame directly (NaN is
    XGBoost's missing value; XGBoost codes the route's categories from pandas itself)."""
    settings, _, champion, _ = models
    model = score.load(tracking.client(settings), settings, champion.version, "champion")
    data = training_set(settings, DAYS[3], DAYS[3])
    frame = data.frame[["flight_id", *model.features]].reset_index(drop=True)
    frame.loc[0, model.features[0]] = None
    assert list(model.categories) == ["flight_route__route"]
    frame.loc[1, "flight_route__route"] = "EWR-XXX"  # a route first flown after training
    uri = str(tmp_path / "features")
    for part in np.array_split(frame, 3):
        write_deltalake(uri, pa.Table.from_pandas(part, preserve_index=False), mode="append")
    files = DeltaTable(uri).file_uris()
    assert len(files) == 3
    got = score.score(spark, files, model).toPandas().set_index("flight_id").probability
    booster = xgb.Booster()
    booster.load_model(bytearray(model.booster))
    direct = booster.inplace_predict(
        disruption.inputs(frame, model.features, model.categories),
        iteration_range=(0, model.iterations),
    )
    assert got.index.is_unique and len(got) == len(frame)
    np.testing.assert_allclose(got.loc[frame.flight_id].to_numpy(), direct, rtol=1e-6)
    # each task explains its own riskiest flagged flights, up to the limit (so the night's five
    # riskiest are explained too); ties go to the first flight id
    capped = score.score(spark, files, model, reasons=5).toPandas().set_index("flight_id")
    np.testing.assert_allclose(capped.probability.loc[got.index], got, rtol=0)
    explained = set(capped.index[capped.reasons.notna()])
    for rows in np.array_split(np.arange(len(frame)), 3):  # each file's rows, in their order
        risk = got.loc[frame.flight_id.iloc[rows]]
        flagged = risk[risk >= model.threshold]
        assert len(flagged) > 5
        ranked = flagged.rename("p").rename_axis("flight").reset_index()
        ranked = ranked.sort_values(["p", "flight"], ascending=[False, True])
        assert explained & set(risk.index) == set(ranked.flight[:5])
    assert len(explained) == 15


def test_rescoring_a_day_replaces_exactly_its_partition(spark, models, night):
    settings, tables, _, _ = models
    score.run(spark, tables, settings, DAYS[3], "r1", night)
    score.run(spark, tables, settings, DAYS[2], "r1", night)
    before = partition(settings, DAYS[3]).sort_values(["flight_id", "role"], ignore_index=True)
    other = partition(settings, DAYS[3] + dt.timedelta(days=1))
    score.run(spark, tables, settings, DAYS[2], "r2", night)
    after = partition(settings, DAYS[3]).sort_values(["flight_id", "role"], ignore_index=True)
    assert len(after) == len(before)
    served = read_arrow(
        settings.table_uri(served_features(FEATURE_SERVICE).name), {"flight_date": [DAYS[3]]}
    )
    assert served.num_rows == len(after) // 2 and set(served["_run_id"].to_pylist()) == {"r2"}
    assert (after.probability == before.probability).all()
    assert set(after._run_id) == {"r2"}
    assert partition(settings, DAYS[3] + dt.timedelta(days=1)).equals(other)


def test_an_unloadable_champion_fails_loudly_and_writes_nothing(spark, models, tmp_path):
    """A version whose artifacts are gone, champion of the nights from 03-20 on."""
    settings, tables, _, _ = models
    client = tracking.client(settings)
    broken = client.create_model_version(settings.model_name, source=str(tmp_path / "gone"))
    later = dt.date(2013, 3, 20)
    registry.record(
        settings,
        client,
        {
            "version": str(broken.version),
            "decision": "promoted",
            "reason": "a test",
            "champion_after": str(broken.version),
            "eval_window": f"{later - dt.timedelta(days=1)}..{later - dt.timedelta(days=1)}",
            "from_night": later,
        },
    )
    from deltalake import DeltaTable

    version = DeltaTable(settings.table_uri(PREDICTIONS.name)).version()
    with pytest.raises(NightjarError, match=f"champion model .* v{broken.version} cannot be"):
        score.run(spark, tables, settings, later, "r3")
    assert DeltaTable(settings.table_uri(PREDICTIONS.name)).version() == version


def test_the_lineage_chain_resolves_to_the_training_inputs(spark, models, night):
    settings, tables, champion, challenger = models
    score.run(spark, tables, settings, DAYS[2], "r4", night)
    flight = partition(settings, DAYS[3]).flight_id.iloc[0]
    chain = lineage.lineage(settings, flight, DAYS[3])
    assert {c["prediction"]["role"] for c in chain} == {"champion", "shadow"}
    entry = next(c for c in chain if c["prediction"]["role"] == "champion")
    assert entry["model"]["version"] == champion.version and "champion" in entry["model"]["aliases"]
    assert entry["mlflow_run"]["run_id"] == champion.run_id
    params = tracking.client(settings).get_run(champion.run_id).data.params
    assert entry["training_inputs"]["gold.flights"] == int(params["delta_version.gold.flights"])
    assert entry["mlflow_run"]["training_window"] == "2013-03-01..2013-03-04"
    # ... and forward to the exact features the model was given
    served = entry["served_features"]
    assert served["table"] == f"ml.served_features__{FEATURE_SERVICE}"
    data = training_set(settings, DAYS[3], DAYS[3]).frame.set_index("flight_id").loc[flight]
    model = score.load(tracking.client(settings), settings, champion.version, "champion")
    assert set(model.features) <= set(served["values"])
    numeric = [f for f in model.features if f not in model.categories]
    np.testing.assert_allclose(
        np.array([served["values"][f] for f in numeric], dtype=float),
        data[numeric].to_numpy(float),
    )
    assert served["values"]["flight_route__route"] == data["route"]  # a category, by name
    top = lineage.top_risk(settings, DAYS[3], n=5)
    assert len(top) == 5 and top.probability.is_monotonic_decreasing
    assert (
        registry.alias_version(tracking.client(settings), settings, "challenger")
        == challenger.version
    )


def test_an_unreachable_tracking_server_is_retried_not_mistaken_for_a_bad_model(
    settings, monkeypatch
):
    """A server that is down or restarting fails the try (Airflow retries it, with backoff);
    only a model that is missing or broken is an input error that fails without retry."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries: none
    down = settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:9"})
    uri = down.mlflow_tracking_uri
    client = MlflowClient(uri, registry_uri=uri)  # not an earlier test's global registry
    with pytest.raises(Exception) as caught:
        score.load(client, down, "1", "champion")
    assert not isinstance(caught.value, NightjarError)
    assert tracking.transient(caught.value)
    with pytest.raises(Exception) as caught:  # not "no champion", which would bootstrap one
        registry.alias_version(client, down, "champion")
    assert tracking.transient(caught.value)


def test_a_missing_model_version_is_an_input_error(settings, tmp_path):
    from mlflow import MlflowClient

    store = settings.model_copy(update={"mlflow_tracking_uri": f"sqlite:///{tmp_path}/m.db"})
    client = MlflowClient(store.mlflow_tracking_uri, registry_uri=store.mlflow_tracking_uri)
    client.create_registered_model(store.model_name)
    with pytest.raises(NightjarError, match=f"{store.model_name} v7 cannot be loaded") as caught:
        score.load(client, store, "7", "champion")
    assert not tracking.transient(caught.value.__cause__)


def logit(p):
    return np.log(p / (1 - p))


def test_the_riskiest_flagged_flights_store_their_three_largest_shap_contributions(
    spark, models, night
):
    """The night's riskiest flagged flights (one file: REASONS_PER_TASK of them) have reasons:
    the three features with the largest absolute SHAP contributions, as recomputed here from the
    registered model over the training path's features; with all the other features'
    contributions and the bias they add up to the model's margin, the logit of the stored
    probability. The other flights have none."""
    settings, tables, champion, _ = models
    score.run(spark, tables, settings, DAYS[2], "r5", night)
    assert len(score.served_files(settings, FEATURE_SERVICE, DAYS[3])) == 1
    scored = partition(settings, DAYS[3])
    for role in ("champion", "shadow"):
        rows = scored[scored.role == role]
        explained = rows.reasons.notna()
        assert explained.sum() == min(score.REASONS_PER_TASK, rows.flagged.sum())
        assert rows.flagged[explained].all()
        unexplained = rows.probability[~explained & rows.flagged]
        assert rows.probability[explained].min() >= max(unexplained, default=0)
    stored = scored[scored.role == "champion"].set_index("flight_id")
    assert stored.flagged.sum() > score.REASONS_PER_TASK  # so the choice is tested
    model = mlflow.xgboost.load_model(f"models:/{settings.model_name}/{champion.version}")
    booster = model.get_booster()
    trees = model.best_iteration + 1  # what predict_proba uses; the booster holds more
    assert booster.num_boosted_rounds() > trees
    names = booster.feature_names
    features = training_set(settings, DAYS[3], DAYS[3]).frame.set_index("flight_id")
    features = features.loc[stored.index, names]
    categories = disruption.model_categories(model)
    contribs = booster.predict(
        xgb.DMatrix(
            disruption.inputs(features, names, categories), missing=np.nan, enable_categorical=True
        ),
        pred_contribs=True,
        iteration_range=(0, trees),
    )
    checked = 0
    for i, (flight, row) in enumerate(stored.iterrows()):
        if row.reasons is None:
            continue
        shap, bias = contribs[i, :-1], contribs[i, -1]
        top = np.argsort(-np.abs(shap), kind="stable")[:3]
        assert [r["feature"] for r in row.reasons] == [names[j] for j in top], flight
        np.testing.assert_allclose(
            [r["contribution"] for r in row.reasons], shap[top], rtol=1e-5, atol=1e-6
        )
        served = np.array(  # a category's value is null: its name is in the served features
            [np.nan if names[j] in categories else features.loc[flight, names[j]] for j in top],
            float,
        )
        values = np.array([np.nan if r["value"] is None else r["value"] for r in row.reasons])
        np.testing.assert_allclose(values, served, rtol=1e-12)
        stored_sum = sum(r["contribution"] for r in row.reasons)
        others = np.delete(shap, top).sum()
        assert stored_sum + others + bias == pytest.approx(logit(row.probability), abs=1e-4)
        checked += 1
    assert checked == score.REASONS_PER_TASK


def test_top_risk_names_each_flights_reasons(spark, models, night, monkeypatch):
    """`make top-risk` (nightjar predictions top): a line per flight that names the features
    behind its risk, with their values, as raising or lowering it."""
    from typer.testing import CliRunner

    from jobs import cli

    settings, tables, _, _ = models
    score.run(spark, tables, settings, DAYS[2], "r6", night)
    monkeypatch.setattr(cli, "Settings", lambda: settings)
    result = CliRunner().invoke(cli.app, ["predictions", "top", "--date", str(DAYS[3]), "--n", "5"])
    assert result.exit_code == 0, result.output
    stored = partition(settings, DAYS[3]).query("role == 'champion'")
    top = stored.nlargest(5, "probability")
    assert top.flagged.all()
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    assert list(lines) == top.flight_id.tolist()
    for flight, reasons in zip(top.flight_id, top.reasons, strict=True):
        line = lines[flight]
        up = re.search(r"raised by (.*?)(; lowered by |$)", line)
        down = re.search(r"lowered by (.*)$", line)
        up, down = up.group(1) if up else "", down.group(1) if down else ""
        assert len(reasons) == 3
        route = top.route[top.flight_id == flight].item()
        for reason in reasons:
            value = lineage.number(reason["value"])
            if reason["feature"] == "flight_route__route":  # a category, named
                value = route
            named = f"{lineage.feature_label(reason['feature'])} {value}"
            assert named in (up if reason["contribution"] > 0 else down), line
