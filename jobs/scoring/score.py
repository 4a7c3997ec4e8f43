"""The daily DAG's ``score`` task: score every flight scheduled for D+1.

The night of D is scored by the model that was champion for it in the decision log (resolved
once, its version recorded on every row; for the newest night, the one the ``champion`` alias
names), never by one trained on data after D: a re-run or a backfill scores a past night as it
was scored. An unpromoted challenger of that night scores the same flights in shadow.
Features come from Feast's point-in-time join through the feature service the model was
trained with, at the flights' prediction time (the end of D): the training path's answer, so
there is no training/serving skew. At scale it is computed on Spark
(``jobs/adapters/feast_spark_retrieval.py``), so that the flights never come to the task.
The served features are kept in ``ml.served_features__<service>`` (partition D+1), and scoring
is a Spark ``mapInArrow`` over that partition's files, so the same code scales out on a
cluster; D+1's partition of ``ml.predictions`` is replaced in one commit. The riskiest flagged
flights (``REASONS_PER_TASK`` per file) also get their reasons, computed in the same pass: the
three features that contribute most to their risk (XGBoost's SHAP values).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from jobs.adapters import feast_spark_retrieval
from jobs.common.delta import DeltaTables
from jobs.common.errors import NightjarError, StageSkipped
from jobs.common.settings import Settings
from jobs.features.store import feature_store
from jobs.features.training import ENTITY_COLUMNS
from jobs.lakehouse import frames
from jobs.lakehouse import tables as tb
from jobs.scoring.predictions import PREDICTIONS, migrate, served_features
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
    # each categorical feature's categories, in the order of the codes the trees split on
    categories: dict[str, list[str]] = field(default_factory=dict)


def load(tracking_client, settings: Settings, version: str, role: str) -> ScoringModel:
    import mlflow

    from jobs.training.models import model_categories

    name = settings.model_name
    try:
        meta = tracking_client.get_model_version(name, version)
        model = mlflow.xgboost.load_model(f"models:/{name}/{version}")
        params = tracking_client.get_run(meta.run_id).data.params  # its training run
    except Exception as exc:
        if tracking.transient(exc):
            raise  # the server is down or restarting: the task is retried, with backoff
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
        categories=model_categories(booster),
    )


def resolve(settings: Settings, day: dt.date) -> list[ScoringModel]:
    """The champion of the night of ``day`` and, if an unpromoted challenger of that night
    exists, the challenger in shadow (``registry.night_models``). With no champion the night is
    skipped, saying why."""
    night = registry.night_models(settings, day)
    if night.champion is None:
        raise StageSkipped(
            f"{night.reason}: nothing to score. Train one (nightjar model train, or the "
            "nightjar_training DAG)."
        )
    client = tracking.client(settings)
    models = [load(client, settings, night.champion, "champion")]
    if night.shadow is not None:
        models.append(load(client, settings, night.shadow, "shadow"))
    return models


def features_for(settings: Settings, flights: pd.DataFrame, feature_service: str) -> pa.Table:
    """The service's features of ``flights`` as of their prediction time, by Feast's own
    retrieval in this process (what the Spark join stands in for; see :func:`serve`)."""
    fs = feature_store(settings)
    entities = flights[ENTITY_COLUMNS].assign(
        event_timestamp=pd.to_datetime(flights["prediction_ts"], utc=True)
    )
    return fs.get_historical_features(
        entity_df=entities,
        features=fs.get_feature_service(feature_service),
        full_feature_names=True,
    ).to_arrow()


def lakehouse_views(settings: Settings, feature_service: str, flights: int):
    """How Spark reads ``feature_service``'s views for a night of ``flights`` flights
    (``feast_spark_retrieval.views``), or None where Feast answers in the task: with
    ``feature_retrieval=feast``, with ``auto`` where the stages would collect a night this size
    (``frames.run_once``), or for a view the Spark join cannot read."""
    retrieval = settings.feature_retrieval
    if retrieval == "auto":
        big = frames.on_cluster(settings) and flights > settings.collect_max_rows
        retrieval = "spark" if big else "feast"
    if retrieval != "spark":
        return None
    lakehouse = lakehouse_tables(settings)
    return feast_spark_retrieval.views(feature_store(settings), lakehouse, feature_service)


def lakehouse_tables(settings: Settings) -> dict[str, tb.TableSpec]:
    """The tables Feast's views read (what gold publishes), by their URI under ``settings``."""
    published = tb.gold_published(settings.rolling_windows_days)
    return {settings.table_uri(name): spec for name, spec in published.items()}


def serve(
    tables: DeltaTables,
    settings: Settings,
    flights: DataFrame,
    count: int,
    feature_service: str,
    flight_date: dt.date,
    run_id: str,
) -> list[str]:
    """Retrieve the service's features for ``flights`` and replace ``flight_date``'s partition of
    ``ml.served_features__<service>`` with them (``count`` flights); returns the partition's
    data files, which :func:`score` reads.

    At scale Feast's point-in-time join runs on Spark (``feast_spark_retrieval``), so the
    flights never come to this process; otherwise Feast answers here (:func:`lakehouse_views`)."""
    entities = flights.select(*ENTITY_COLUMNS, "flight_date", "prediction_ts")
    views = lakehouse_views(settings, feature_service, count)
    if views is not None:
        fetched = feast_spark_retrieval.historical_features(
            tables, views, entities, "prediction_ts"
        )
        features = [f for f in fetched.schema.fields if f.name not in entities.columns]
        data = fetched.select(
            "flight_id", "flight_date", "prediction_ts", *[f.name for f in features]
        ).withColumn("_run_id", F.lit(run_id))
        spec = served_features(feature_service, T.StructType(features))
    else:
        rows = frames.to_pandas(entities)
        fetched = features_for(settings, rows, feature_service)
        keys = {*ENTITY_COLUMNS, "event_timestamp"}
        names = [name for name in fetched.column_names if name not in keys]
        dates = pa.Table.from_pandas(rows[["flight_id", "flight_date"]], preserve_index=False)
        data = (
            fetched.select(["flight_id", "event_timestamp", *names])
            .rename_columns(["flight_id", "prediction_ts", *names])
            .join(dates, "flight_id")
            .append_column("_run_id", pa.array([run_id] * fetched.num_rows, pa.string()))
        )
        spec = served_features(feature_service, from_arrow_schema(fetched.select(names).schema))
    tables.overwrite_partitions(spec, data, {"flight_date": [flight_date]}, run_id=run_id)
    return served_files(settings, feature_service, flight_date)


def served_files(settings: Settings, feature_service: str, flight_date: dt.date) -> list[str]:
    """The live data files of ``flight_date``'s served features, from the Delta log."""
    from deltalake import DeltaTable

    table = DeltaTable(settings.table_uri(served_features(feature_service).name))
    return table.file_uris(file_pruning_predicate=[("flight_date", "=", flight_date)])


# The flagged flights each scoring task explains, its riskiest first (the top of `make top-risk`).
# Reasons are exact SHAP values (``pred_contribs``), ~300 predictions' worth of work per row at
# depth 6, ~2 ms with 300 trees (`make bench-scoring`): a warm scorer takes ~0.15 s for a day's
# ~1,000 flights, so ten of them are what keeps scoring with reasons at 80% of its speed without;
# a night's 200-350 flagged flights would take longer than scoring all of them. XGBoost's
# approximation (``approx_contribs``, Saabas' method, 4 predictions' worth) names other top three
# features for most flights, so it is not used. Each task keeps its own riskiest, so the night's
# REASONS_PER_TASK riskiest flagged flights are always among those explained.
REASONS_PER_TASK = 10

# What a flight without a probability fails the predictions' write with (see run)
MISSING_SCORE = "nightjar: no probability for flight"
# The columns of a scheduled flight that its predictions carry
FLIGHT_KEYS = ("flight_id", "flight_date", "carrier", "origin", "route", "sched_dep_utc")


def score(
    spark: SparkSession, files: list[str], model: ScoringModel, reasons: int = REASONS_PER_TASK
) -> DataFrame:
    """(flight_id, probability, reasons) for every row of the feature ``files``, predicted on
    Spark's workers, one task per file.

    Each task reads its file itself (Arrow, from wherever the lakehouse lives) and predicts with
    one XGBoost thread, as Spark already runs a task per core. The features never pass through
    the JVM: moving 67 columns of every row from Spark's rows into Arrow for a Python worker cost
    more than the prediction (`make bench-scoring`). Values are float32, as XGBoost compares
    them; nulls become NaN, its missing value.

    In the same pass, the task explains its ``reasons`` riskiest flagged flights (probability at
    or above the model's threshold): the three features with the largest absolute SHAP
    contributions to the margin, from the same booster and trees as the probability (see
    ``predictions.REASON``); the other rows' reasons are null. ``reasons=0`` explains none."""
    from pyspark.sql.pandas.types import to_arrow_type

    from jobs.scoring.predictions import REASONS, TOP_REASONS

    raw, features, iterations = model.booster, model.features, model.iterations
    categories = model.categories
    threshold, top = model.threshold, TOP_REASONS
    reason_type = to_arrow_type(REASONS.dataType)

    def predict(batches):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(raw))
        booster.set_param({"nthread": 1})
        names = np.array(features, dtype=object)
        value_sets = {name: pa.array(values) for name, values in categories.items()}

        def riskiest(p, ids):
            """Which ``reasons`` rows are the riskiest (ties: by flight id, so a re-run that
            reads the rows in another order explains the same flights)."""
            return np.lexsort((ids, -p))[:reasons]

        def explain(n, positions, matrix, values):
            """The reasons column of a file's ``n`` rows: lists for the rows at ``positions``
            (their features: float32 ``matrix``, as served ``values``), null elsewhere."""
            if len(positions) == 0:
                return pa.nulls(n, reason_type)
            ordered = np.argsort(positions)  # the list array's elements go in row order
            positions, matrix, values = positions[ordered], matrix[ordered], values[ordered]
            data = xgb.DMatrix(
                matrix,
                missing=np.nan,
                feature_names=features,
                feature_types=booster.feature_types,
                nthread=1,
            )
            contribs = booster.predict(data, pred_contribs=True, iteration_range=(0, iterations))
            contribs = contribs[:, :-1]  # the last column is the bias
            order = np.argsort(-np.abs(contribs), axis=1, kind="stable")[:, :top]
            picked = np.take_along_axis(contribs, order, axis=1)
            shown = picked != 0  # a feature the trees never used here is no reason
            counts = np.zeros(n, np.int32)
            counts[positions] = shown.sum(axis=1)
            row = np.broadcast_to(np.arange(len(positions))[:, None], order.shape)[shown]
            which = order[shown]
            value = values[row, which]
            element = pa.StructArray.from_arrays(
                [
                    pa.array(names[which], pa.string()),
                    pa.array(value, pa.float64(), mask=np.isnan(value)),
                    pa.array(picked[shown], pa.float64()),
                ],
                fields=list(reason_type.value_type),
            )
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            explained = np.zeros(n, bool)
            explained[positions] = True
            return pa.ListArray.from_arrays(
                pa.array(offsets), element, type=reason_type, mask=pa.array(~explained)
            )

        def score_file(uri):
            """The file's rows with their probabilities (and reasons)."""
            filesystem, path = pafs.FileSystem.from_uri(uri)
            held = []  # with reasons, the file's rows wait for its riskiest to be explained
            n = 0
            positions = np.empty(0, np.int64)
            risk = np.empty(0, np.float64)
            flights = np.empty(0, str)
            kept = np.empty((0, len(features)), np.float32)
            kept_values = np.empty((0, len(features)), np.float64)
            with filesystem.open_input_file(path) as file:
                reader = pq.ParquetFile(file)
                for rows in reader.iter_batches(
                    batch_size=100_000, columns=["flight_id", *features], use_threads=False
                ):
                    matrix = np.empty((rows.num_rows, len(features)), np.float32)
                    for i, name in enumerate(features):
                        values = rows.column(name)
                        if name in value_sets:  # its code; a category never trained on: missing
                            values = pc.index_in(values, value_set=value_sets[name])
                        if values.type != pa.float32():
                            values = pc.cast(values, pa.float32())
                        if values.null_count:
                            values = pc.fill_null(values, np.nan)
                        matrix[:, i] = values.to_numpy()
                    p = booster.inplace_predict(matrix, iteration_range=(0, iterations))
                    p = p.astype(np.float64)
                    if not reasons:
                        yield pa.RecordBatch.from_arrays(
                            [
                                rows.column("flight_id"),
                                pa.array(p),
                                pa.nulls(len(p), reason_type),
                            ],
                            names=["flight_id", "probability", "reasons"],
                        )
                        continue
                    start, n = n, n + len(p)
                    held.append((rows.column("flight_id"), p))
                    risky = np.flatnonzero(p >= threshold)  # flagged, as run() flags it
                    if len(risky) > reasons:  # those that can be among the riskiest, ties too
                        cut = np.partition(p[risky], len(risky) - reasons)[len(risky) - reasons]
                        risky = risky[p[risky] >= cut]
                    if len(risky) == 0:
                        continue
                    ids = np.array(rows.column("flight_id").take(risky).to_pylist(), str)
                    first = riskiest(p[risky], ids)
                    risky, ids = risky[first], ids[first]
                    served = np.column_stack(  # a category's value is its name, in the table
                        [
                            np.full(len(risky), np.nan)
                            if name in categories
                            else pc.cast(rows.column(name).take(risky), pa.float64()).to_numpy(
                                zero_copy_only=False
                            )
                            for name in features
                        ]
                    )
                    positions = np.concatenate([positions, risky + start])
                    risk = np.concatenate([risk, p[risky]])
                    flights = np.concatenate([flights, ids])
                    kept = np.concatenate([kept, matrix[risky]])
                    kept_values = np.concatenate([kept_values, served])
                    if len(positions) > reasons:
                        keep = riskiest(risk, flights)
                        positions, risk, flights = positions[keep], risk[keep], flights[keep]
                        kept, kept_values = kept[keep], kept_values[keep]
            if not held:
                return
            why = explain(n, positions, kept, kept_values)
            start = 0
            for ids, p in held:
                yield pa.RecordBatch.from_arrays(
                    [ids, pa.array(p), why.slice(start, len(p))],
                    names=["flight_id", "probability", "reasons"],
                )
                start += len(p)

        for batch in batches:
            for index in batch.column("id").to_pylist():
                yield from score_file(files[index])

    # one partition per file: a range, so no shuffle is needed to spread the files
    return spark.range(0, len(files), 1, max(len(files), 1)).mapInArrow(
        predict,
        f"flight_id string, probability double, reasons {REASONS.dataType.simpleString()}",
    )


def predictions(
    spark: SparkSession,
    flights: DataFrame,
    files: list[str],
    model: ScoringModel,
    logical_ts: dt.datetime,
    run_id: str,
) -> DataFrame:
    """``ml.predictions``' rows for ``flights`` (their keys), scored by ``model`` from the
    served feature ``files``. A flight the scorer returns nothing for fails the plan's run, so
    a write of it commits nothing."""
    # Spark sizes the scorer's output by its input, a range of file numbers, and would
    # broadcast it, gathering every prediction in the driver first (3.0 GB at 10M flights):
    # hash-joined after a shuffle, it stays on the executors.
    probabilities = score(spark, files, model).hint("shuffle_hash")
    missing = F.raise_error(F.concat(F.lit(f"{MISSING_SCORE} "), F.col("flight_id")))
    return (
        flights.join(probabilities, "flight_id", "left")
        .withColumn("probability", F.coalesce("probability", missing))
        .withColumn("flagged", F.col("probability") >= F.lit(model.threshold))
        .withColumn("threshold", F.lit(model.threshold))
        .withColumn("role", F.lit(model.role))
        .withColumn("model_name", F.lit(model.name))
        .withColumn("model_version", F.lit(model.version))
        .withColumn("mlflow_run_id", F.lit(model.run_id))
        .withColumn("feature_service", F.lit(model.feature_service))
        .withColumn("logical_ts", F.lit(logical_ts))
        .withColumn("_run_id", F.lit(run_id))
        .select(*PREDICTIONS.arrow_schema.names)
    )


def run(
    spark: SparkSession,
    tables: DeltaTables,
    settings: Settings,
    day: dt.date,
    run_id: str,
    models: list[ScoringModel] | None = None,
) -> dict:
    """Score D+1's flights with the night's models (default: :func:`resolve`). At scale the
    flights, their features and their predictions stay on Spark (:func:`serve`)."""
    models = models or resolve(settings, day)
    tomorrow = day + dt.timedelta(days=1)
    scheduled = {"flight_date": [tomorrow]}
    count = tables.count_rows(tb.GOLD_SCHEDULED_FLIGHTS, scheduled)
    if not count:
        raise StageSkipped(f"no flights are scheduled for {tomorrow}: nothing to score")
    flights = tables.read(tb.GOLD_SCHEDULED_FLIGHTS, partitions=scheduled)
    logical_ts = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    keys = flights.select(*FLIGHT_KEYS)
    scored, served = None, {}
    for model in models:
        if model.feature_service not in served:  # champion and shadow usually share one
            served[model.feature_service] = serve(
                tables, settings, flights, count, model.feature_service, tomorrow, run_id
            )
        rows = predictions(spark, keys, served[model.feature_service], model, logical_ts, run_id)
        scored = rows if scored is None else scored.unionByName(rows)
    migrate(tables, run_id)  # a table from before reasons were stored gets their column
    try:
        tables.overwrite_partitions(PREDICTIONS, scored, scheduled, run_id=run_id)
    except Exception as exc:
        if MISSING_SCORE not in str(exc):
            raise
        lost = re.search(re.escape(MISSING_SCORE) + r" (\S+)", str(exc))
        raise NightjarError(
            f"the scorer returned no probability for flight {lost[1] if lost else '?'} of "
            f"{tomorrow} (and maybe others); no prediction written"
        ) from None
    summary = {m.role: f"{m.name} v{m.version}" for m in models}
    log.info("scored %d flights of %s with %s", count, tomorrow, summary)
    return {"flights": count, "models": summary}
