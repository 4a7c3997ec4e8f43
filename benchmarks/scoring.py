"""`make bench-scoring`: batch scoring throughput, end to end against raw XGBoost, in one run,
with and without the riskiest flagged flights' reasons.

The model is an XGBoost classifier trained with the job's parameters on synthetic data shaped
like the flight_disruption_v1 features (67 columns). For N flights (default 1 day ~ 1,000 and
10M; ``--flights 1000 1000000`` for others):

- end to end: the daily `score` task's scorer (jobs.scoring.score.score) reads a Delta table of
  N flights x 67 features (a Spark task per data file, like the task's served-features
  partition), predicts, and the probabilities are collected and written to a Delta table; once
  without reasons (``reasons=0``) and once with them (the task's default: each task's
  ``REASONS_PER_TASK`` riskiest flagged flights get their three largest SHAP contributions),
  interleaved, ``--repeats`` times each, the best of each kept;
- raw: `Booster.inplace_predict` on the same features already in memory as one numpy matrix.

Prints rows/s for each, the ratios (targets: end to end >= 50% of raw at 10M rows; with reasons
>= 80% of without), and what one row costs on one thread: a prediction, XGBoost's exact SHAP
(``pred_contribs``) and its approximation (``approx_contribs``), which is why only the riskiest
flagged flights are explained; saves .state/bench-scoring/scoring.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

from benchmarks.harness import isolate, start_afresh

STATE = isolate("scoring", 25042)

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import xgboost as xgb  # noqa: E402
from deltalake import DeltaTable, write_deltalake  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jobs.common.spark import get_spark  # noqa: E402
from jobs.scoring.score import REASONS_PER_TASK, ScoringModel, score  # noqa: E402
from jobs.training import models  # noqa: E402
from tooling import services  # noqa: E402

console = Console(width=132)  # the tables read whole, whatever the terminal
N_FEATURES = 67
SIZES = [1_000, 10_000_000]
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


def label(n: int) -> str:
    return "one day (1,000)" if n == 1_000 else f"{n:,}"


def end_to_end(spark, uri: str, n: int, model: ScoringModel, reasons: int) -> tuple[float, int]:
    """Seconds to score the table's live files into a Delta table, and the rows explained."""
    started = time.perf_counter()
    data = score(spark, DeltaTable(uri).file_uris(), model, reasons=reasons).toArrow()
    write_deltalake(str(STATE / "scores"), data, mode="overwrite")
    seconds = time.perf_counter() - started
    assert data.num_rows == n
    return seconds, data.num_rows - data["reasons"].null_count


def per_row_costs(booster: xgb.Booster, iterations: int, rows: int = 2_000) -> dict[str, float]:
    """Seconds per row on one thread: predict, exact SHAP, approximate contributions; and how
    often the approximation names the same top three features (any order) as SHAP."""
    X = matrix(rows, 7)
    booster = booster.copy()
    booster.set_param({"nthread": 1})
    data = xgb.DMatrix(X, missing=np.nan, feature_names=FEATURES, nthread=1)
    span = (0, iterations)
    runs = {
        "predict": lambda: booster.inplace_predict(X, iteration_range=span),
        "pred_contribs": lambda: booster.predict(data, pred_contribs=True, iteration_range=span),
        "approx_contribs": lambda: booster.predict(
            data, pred_contribs=True, approx_contribs=True, iteration_range=span
        ),
    }
    costs, out = {}, {}
    for name, run in runs.items():
        started = time.perf_counter()
        out[name] = run()
        costs[name] = (time.perf_counter() - started) / rows
    exact, approx = (
        np.sort(np.argsort(-np.abs(out[name][:, :-1]), axis=1)[:, :3], axis=1)
        for name in ("pred_contribs", "approx_contribs")
    )
    costs["same_top_three"] = float((exact == approx).all(axis=1).mean())
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flights", type=int, nargs="+", default=SIZES, help="sizes to score")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant (best kept)")
    parser.add_argument(
        "--reasons",
        type=int,
        default=REASONS_PER_TASK,
        help="flagged flights each task explains (default: the score task's)",
    )
    args = parser.parse_args()
    settings = start_afresh(STATE)
    model = trained_model()
    booster = xgb.Booster()
    booster.load_model(bytearray(model.booster))
    results: dict[str, float] = {}
    spark = None
    try:
        spark = get_spark(settings)
        for n in args.flights:
            uri = str(STATE / "features")
            write_features(uri, n)
            runs: dict[str, list[float]] = {"without": [], "with": []}
            for _ in range(args.repeats):  # interleaved: a busy spell hits both alike
                runs["without"].append(end_to_end(spark, uri, n, model, reasons=0)[0])
                seconds, explained = end_to_end(spark, uri, n, model, args.reasons)
                runs["with"].append(seconds)
            # raw: the same features, in memory, one inplace_predict
            X = np.concatenate(
                [matrix(min(CHUNK, n - s), 100 + s // CHUNK) for s in range(0, n, CHUNK)]
            )
            started = time.perf_counter()
            raw = booster.inplace_predict(X, iteration_range=(0, model.iterations))
            raw_s = time.perf_counter() - started
            assert len(raw) == n
            key = label(n)
            results[f"{key}_end_to_end_rows_per_s"] = n / min(runs["without"])
            results[f"{key}_with_reasons_rows_per_s"] = n / min(runs["with"])
            results[f"{key}_raw_rows_per_s"] = n / raw_s
            results[f"{key}_end_to_end_s"] = min(runs["without"])
            results[f"{key}_with_reasons_s"] = min(runs["with"])
            results[f"{key}_raw_s"] = raw_s
            results[f"{key}_flagged"] = int((raw >= model.threshold).sum())
            results[f"{key}_explained"] = explained
            results["reasons_per_task"] = args.reasons
            del X
    finally:
        if spark is not None:  # a Connect client left open hangs the exit once its server is gone
            spark.stop()
        services.down(settings)
    costs = per_row_costs(booster, model.iterations)
    results.update(
        {f"per_row_s_{name}": cost for name, cost in costs.items() if name != "same_top_three"}
    )
    results["approx_same_top_three"] = costs["same_top_three"]
    table = Table(
        title="Batch scoring: end to end (Delta -> Spark scorer -> Delta), without and with "
        f"reasons (<= {args.reasons} riskiest flagged flights per task), vs raw predict"
    )
    for column in (
        "flights",
        "without reasons, rows/s",
        "with reasons, rows/s",
        "with / without",
        "explained / flagged",
        "raw predict, rows/s",
        "without / raw",
    ):
        table.add_column(column, justify="right")
    for n in args.flights:
        key = label(n)
        e, w = results[f"{key}_end_to_end_rows_per_s"], results[f"{key}_with_reasons_rows_per_s"]
        r = results[f"{key}_raw_rows_per_s"]
        table.add_row(
            key,
            f"{e:,.0f} ({results[f'{key}_end_to_end_s']:.2f} s)",
            f"{w:,.0f} ({results[f'{key}_with_reasons_s']:.2f} s)",
            f"{w / e:.0%}",
            f"{results[f'{key}_explained']:,} / {results[f'{key}_flagged']:,}",
            f"{r:,.0f}",
            f"{e / r:.0%}",
        )
    console.print(table)
    per_row = Table(title="One row, one thread (2,000 rows)")
    for column in ("", "per row", "x predict"):
        per_row.add_column(column, justify="right")
    for name in ("predict", "pred_contribs", "approx_contribs"):
        cost = costs[name]
        per_row.add_row(name, f"{cost * 1e6:,.1f} µs", f"{cost / costs['predict']:,.0f}x")
    console.print(per_row)
    console.print(
        f"approx_contribs names SHAP's top three features for {costs['same_top_three']:.0%} "
        "of the rows"
    )
    (STATE / "scoring.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
