"""The daily DAG's ``score`` task: score every flight scheduled for D+1.

The model is whatever holds the ``champion`` alias when the run starts (resolved once, its
version recorded on every row); an unpromoted ``challenger`` scores the same flights in shadow.
Features come from Feast's historical retrieval through the feature service the model was
trained with, at the flights' prediction time (the end of D): the training path, so there is
no training/serving skew. Scoring runs as a Spark ``mapInArrow`` over the booster, so the same
code scales out on a cluster; D+1's partition of ``ml.predictions`` is replaced in one commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common.delta import DeltaTables
from jobs.common.delta.snapshot import read_arrow
from jobs.common.errors import NightjarError, StageSkipped
from jobs.common.settings import Settings
from jobs.features.store import feature_store
from jobs.features.training import ENTITY_COLUMNS
from jobs.lakehouse import tables as tb
from jobs.scoring.predictions import PREDICTIONS
from jobs.training import registry, tracking

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringModel:
    role: str  # champion | shadow
    name: str
    version: str
    run_id: str
    feature_service: str
    threshold: float
    features: list[str]
    booster: bytes  # the trained booster (UBJSON), shipped to the Spark workers
    iterations: int  # trees used by predict_proba (early stopping's best iteration + 1)


def load(tracking_client, settings: Settings, version: str, role: str) -> ScoringModel:
    import mlflow

    name = settings.model_name
    meta = tracking_client.get_model_version(name, version)
    try:
        model = mlflow.xgboost.load_model(f"models:/{name}/{version}")
        params = tracking_client.get_run(meta.run_id).data.params  # its training run
    except Exception as exc:
        raise NightjarError(
            f"the {role} model {name} v{version} cannot be loaded ({exc}); nothing was scored"
        ) from exc
    booster = model.get_booster()
    return ScoringModel(
        role=role,
        name=name,
        version=str(version),
        run_id=meta.run_id,
        feature_service=params["feature_service"],
        threshold=float(params["decision_threshold"]),
        features=list(booster.feature_names),
        booster=bytes(booster.save_raw("ubj")),
        iterations=int(model.best_iteration) + 1,
    )


def resolve(settings: Settings) -> list[ScoringModel]:
    """The champion and, if an unpromoted challenger exists, the challenger in shadow."""
    client = tracking.client(settings)
    champion = registry.alias_version(client, settings, registry.CHAMPION)
    if champion is None:
        raise StageSkipped(
            f"no model holds the alias {settings.model_name}@champion yet: nothing to score. "
            "Train one (nightjar model train, or the nightjar_training DAG)."
        )
    models = [load(client, settings, champion, "champion")]
    challenger = registry.alias_version(client, settings, registry.CHALLENGER)
    if challenger is not None and challenger != champion:
        models.append(load(client, settings, challenger, "shadow"))
    return models


def features_for(settings: Settings, flights: pd.DataFrame, feature_service: str) -> pd.DataFrame:
    """The service's features of ``flights`` as of their prediction time (Feast, offline)."""
    fs = feature_store(settings)
    entities = flights[ENTITY_COLUMNS].assign(
        event_timestamp=pd.to_datetime(flights["prediction_ts"], utc=True)
    )
    return fs.get_historical_features(
        entity_df=entities,
        features=fs.get_feature_service(feature_service),
        full_feature_names=True,
    ).to_df()


def score(frame: DataFrame, model: ScoringModel) -> DataFrame:
    """(flight_id, probability) for every row of ``frame``, computed on the Spark workers.

    The JVM packs each row's features into one float32 array (XGBoost compares float32 values
    anyway, so predictions are unchanged), which reaches Python as a single Arrow list column:
    its values buffer reshapes to the model's matrix without a copy per feature. Moving rows
    into Arrow is the expensive part on the JVM side, and one list column costs less than 67
    scalar ones (see `make bench-scoring`). Nulls become NaN, XGBoost's missing value. Each
    worker predicts with one thread: Spark already runs a task per core."""
    raw, features, iterations = model.booster, model.features, model.iterations

    def predict(batches):
        import pyarrow as pa
        import pyarrow.compute as pc
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        booster.set_param({"nthread": 1})
        for batch in batches:
            packed = batch.column("features")
            values = pc.fill_null(packed.flatten(), float("nan")).to_numpy(zero_copy_only=False)
            matrix = values.reshape(len(packed), len(features))
            p = booster.inplace_predict(matrix, iteration_range=(0, iterations))
            yield pa.RecordBatch.from_arrays(
                [batch.column("flight_id"), pa.array(p, pa.float64())],
                names=["flight_id", "probability"],
            )

    packed = F.array(*(F.col(f).cast("float") for f in features)).alias("features")
    return frame.select("flight_id", packed).mapInArrow(
        predict, "flight_id string, probability double"
    )


def run(
    spark: SparkSession, tables: DeltaTables, settings: Settings, day: dt.date, run_id: str
) -> dict:
    models = resolve(settings)
    tomorrow = day + dt.timedelta(days=1)
    flights = read_arrow(
        settings.table_uri(tb.GOLD_SCHEDULED_FLIGHTS.name), {"flight_date": [tomorrow]}
    ).to_pandas()
    if flights.empty:
        raise StageSkipped(f"no flights are scheduled for {tomorrow}: nothing to score")
    logical_ts = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    keys = spark.createDataFrame(
        flights[["flight_id", "flight_date", "carrier", "origin", "route", "sched_dep_utc"]]
    )
    scored, served = None, {}
    for model in models:
        if model.feature_service not in served:  # champion and shadow usually share one
            fetched = features_for(settings, flights, model.feature_service)
            served[model.feature_service] = spark.createDataFrame(fetched)
        features = served[model.feature_service]
        rows = (
            keys.join(score(features, model), "flight_id")
            .withColumn("flagged", F.col("probability") >= F.lit(model.threshold))
            .withColumn("threshold", F.lit(model.threshold))
            .withColumn("role", F.lit(model.role))
            .withColumn("model_name", F.lit(model.name))
            .withColumn("model_version", F.lit(model.version))
            .withColumn("mlflow_run_id", F.lit(model.run_id))
            .withColumn("feature_service", F.lit(model.feature_service))
            .withColumn("logical_ts", F.lit(logical_ts))
            .withColumn("_run_id", F.lit(run_id))
        )
        scored = rows if scored is None else scored.unionByName(rows)
    data = scored.select(*PREDICTIONS.arrow_schema.names).toArrow()
    if data.num_rows != len(flights) * len(models):
        raise NightjarError(
            f"scored {data.num_rows} rows for {len(flights)} flights x {len(models)} models; "
            "nothing written"
        )
    tables.overwrite_partitions(PREDICTIONS, data, {"flight_date": [tomorrow]}, run_id=run_id)
    summary = {m.role: f"{m.name} v{m.version}" for m in models}
    log.info("scored %d flights of %s with %s", len(flights), tomorrow, summary)
    return {"flights": len(flights), "models": summary}
