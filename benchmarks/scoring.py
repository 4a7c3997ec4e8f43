"""`make bench-scoring`: batch scoring throughput, end to end against raw XGBoost, in one run.

The model is an XGBoost classifier trained with the job's parameters on synthetic data shaped
like the flight_disruption_v1 features (67 columns). For N flights (1 day ~ 1,000 and 10M):

- end to end: the daily `score` task's scorer (jobs.scoring.score.score) reads a Delta table of
  N flights x 67 features (a Spark task per data file, like the task's served-features
  partition), predicts, and the probabilities are collected and written to a Delta table;
- raw: `Booster.inplace_predict` on the same features already in memory as one numpy matrix.

Prints rows/s for both and the ratio (target: end to end >= 50% of raw at 10M rows); saves
.state/bench-scoring/scoring.json.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".state" / "bench-scoring"
os.environ.update(
    {
        "NIGHTJAR_STATE_DIR": str(STATE),
        "NIGHTJAR_SPARK_CONNECT_PORT": "25042",
        "NIGHTJAR_SPARK_REMOTE": "sc://127.0.0.1:25042",
    }
)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import xgboost as xgb  # noqa: E402
from deltalake import DeltaTable, write_deltalake  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jobs.common.settings import Settings  # noqa: E402
from jobs.common.spark import get_spark  # noqa: E402
from jobs.platform import services  # noqa: E402
from jobs.scoring.score import ScoringModel, score  # noqa: E402
from jobs.training import models  # noqa: E402

console = Console()
N_FEATURES = 67
SIZES = {"one day": 1_000, "10M flights": 10_000_000}
CHUNK = 1_000_000
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]


def matrix(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, N_FEATURES), dtype=np.float32)


def trained_model() -> ScoringModel:
    X = matrix(200_000, 0)
    logit = 1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] * X[:, 3] - 1.6
    y = (np.random.default_rng(1).random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {**models.DEFAULT_PARAMS, "n_estimators": 300, "early_stopping_rounds": None}
    model = xgb.XGBClassifier(**params, n_jobs=2, random_state=0).fit(X, y)
    booster = model.get_booster()
    booster.feature_names = FEATURES
    return ScoringModel("champion", "bench", "1", "-", "-", 0.5, FEATURES,
                        bytes(booster.save_raw("ubj")), 300)  # fmt: skip


def write_features(uri: str, n: int) -> None:
    shutil.rmtree(uri, ignore_errors=True)
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        X = matrix(rows, 100 + start // CHUNK)
        data = pa.table(
            {
                "flight_id": pa.array([f"F{i:08d}" for i in range(start, start + rows)]),
                **{name: X[:, i] for i, name in enumerate(FEATURES)},
            }
        )
        write_deltalake(uri, data, mode="append")


def main() -> None:
    settings = Settings()
    services.down(settings)
    shutil.rmtree(STATE, ignore_errors=True)
    services.up(settings, airflow=False)
    model = trained_model()
    booster = xgb.Booster()
    booster.load_model(bytearray(model.booster))
    results: dict[str, float] = {}
    spark = None
    try:
        spark = get_spark(settings)
        for label, n in SIZES.items():
            uri = str(STATE / "features")
            write_features(uri, n)
            started = time.perf_counter()
            data = score(spark, DeltaTable(uri).file_uris(), model).toArrow()  # live files only
            write_deltalake(str(STATE / "scores"), data, mode="overwrite")
            end_to_end = time.perf_counter() - started
            assert data.num_rows == n
            # raw: the same features, in memory, one inplace_predict
            X = np.concatenate(
                [matrix(min(CHUNK, n - s), 100 + s // CHUNK) for s in range(0, n, CHUNK)]
            )
            started = time.perf_counter()
            raw = booster.inplace_predict(X, iteration_range=(0, model.iterations))
            raw_s = time.perf_counter() - started
            assert len(raw) == n
            results[f"{label}_end_to_end_rows_per_s"] = n / end_to_end
            results[f"{label}_raw_rows_per_s"] = n / raw_s
            results[f"{label}_end_to_end_s"] = end_to_end
            results[f"{label}_raw_s"] = raw_s
            del X
    finally:
        if spark is not None:  # a Connect client left open hangs the exit once its server is gone
            spark.stop()
        services.down(settings)
    table = Table(title="Batch scoring: end to end (Delta -> Spark scorer -> Delta) vs raw predict")
    for column in ("flights", "end to end", "raw inplace_predict", "end to end / raw"):
        table.add_column(column, justify="right")
    for label in SIZES:
        e, r = results[f"{label}_end_to_end_rows_per_s"], results[f"{label}_raw_rows_per_s"]
        table.add_row(label, f"{e:,.0f} rows/s", f"{r:,.0f} rows/s", f"{e / r:.0%}")
    console.print(table)
    (STATE / "scoring.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
