"""`make bench-training`: the disruption model on a held-out October-December 2013.

1. Builds the whole of 2013 through gold in its own lakehouse (.state/bench-training; days
   already built are kept, so a second run only trains), in-process with one Spark session. A
   day gold built before it kept an entity it keeps now (no row in that entity's statistics) is
   built again from its silver: gold alone, a month per run, in order.
2. Trains through the real job (`jobs.training.train.run`) on January-August, early stopping on
   September, held-out test October 1 - December 31: XGBoost on the default feature service
   beside the logistic baseline (scheduled hour, weekday, carrier). Prints both ROC AUCs, the
   training time and the process's peak memory.
3. The default 60-day window ending 2013-12-31: training time and peak memory.
4. 10M synthetic rows x the service's 67 features (float32, a logistic signal on a few of them):
   XGBoost with the job's parameters for a fixed 50 rounds (no early stopping), in a child
   process so its peak memory is its own: fit time and peak memory.

Results go to .state/bench-training/training.json.

`--search [TRIALS [SECONDS]]` (default 25 trials, 900 s) measures the Optuna search instead, on
the same holdout split, without building or registering anything: the defaults under seeds 42, 1
and 2 (the seed-to-seed noise), then the search at seed 42; test ROC AUC and seconds of each, in
search.json. ``NIGHTJAR_BENCH_STATE`` may name another state folder that holds 2013 through gold
(its Feast registry is re-applied there).

`--features` compares the default feature service with the one before it on the same split
(``feature_gain``; validation and test ROC AUC under seeds 42, 1 and 2, and the default service
at the other learning rates of ``LEARNING_RATES``) and prints the table, in features.json;
`--features-summary` prints that table again from the file. `--september` judges the learning
rates on September alone, half against half (``september_crossfit``), in september.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import sys
import time

from benchmarks.harness import ROOT, isolate  # noqa: E402

# --search: a lakehouse of 2013 through gold may be named instead (NIGHTJAR_BENCH_STATE)
STATE = isolate("training", 25032, folder=os.environ.get("NIGHTJAR_BENCH_STATE"))

from deltalake import DeltaTable  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from jobs.common.dates import days  # noqa: E402
from jobs.common.settings import Settings  # noqa: E402
from jobs.common.spark import get_spark  # noqa: E402
from jobs.features import store  # noqa: E402
from jobs.lakehouse import gold_tables  # noqa: E402
from jobs.pipeline import run_stage  # noqa: E402
from jobs.training import train  # noqa: E402
from tooling import services  # noqa: E402

console = Console()
YEAR = days(dt.date(2013, 1, 1), dt.date(2013, 12, 31))


def partition_days(settings: Settings, table: str, column: str) -> set[dt.date]:
    try:
        delta = DeltaTable(settings.table_uri(table))
    except Exception:
        return set()
    return set(delta.get_add_actions(flatten=True).column(f"partition.{column}").to_pylist())


def built_days(settings: Settings) -> set[dt.date]:
    """The days gold has flights and every entity's statistics for (a day it built before it
    kept an entity has none of that entity's; the weather has no day 2013-12-31)."""
    built = partition_days(settings, gold_tables.FLIGHTS, "flight_date")
    for table in gold_tables.STATS.values():
        built &= partition_days(settings, table, "as_of_date")
    return built


def build_year(settings: Settings) -> float:
    """2013 through gold, a month per run (the history DAG's intervals); months already built
    are kept, and a month silver holds whole runs gold alone (in order: each month's statistics
    start from the counts the month before kept)."""
    built = built_days(settings)
    months = sorted({(d.year, d.month) for d in YEAR if d not in built})
    if not months:
        return 0.0
    in_silver = partition_days(settings, "silver.flights", "flight_date")
    services.up(settings, airflow=False)
    spark = get_spark(settings)
    started = time.perf_counter()
    with Progress(console=console) as progress:
        bar = progress.add_task("building 2013 through gold", total=len(months))
        for year, month in months:
            first = dt.date(year, month, 1)
            end = dt.date(year + month // 12, month % 12 + 1, 1)
            whole = all(d in in_silver for d in days(first, end - dt.timedelta(days=1)))
            for stage in ("gold",) if whole else ("land", "bronze", "silver", "gold"):
                run_stage(stage, first, "bench", settings, spark=spark, end=end)
            progress.advance(bar)
    # end the client session too: MLflow's start_run asks an active Spark session whether it
    # runs on Databricks, and would retry forever against the stopped server
    spark.stop()
    services.down(settings)
    return time.perf_counter() - started


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


SYNTHETIC = """
import resource, sys, time
import numpy as np
from jobs.training import models
n, k = 10_000_000, 67
rng = np.random.default_rng(0)
X = rng.standard_normal((n, k), dtype=np.float32)
logit = 1.5 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] * X[:, 3] - 1.6
y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
params = {**models.DEFAULT_PARAMS, "n_estimators": 50, "early_stopping_rounds": None}
import xgboost as xgb
started = time.perf_counter()
model = xgb.XGBClassifier(**params, n_jobs=2, random_state=0).fit(X, y)
fit_s = time.perf_counter() - started
print(fit_s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2)
"""


def synthetic_10m() -> tuple[float, float]:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", SYNTHETIC], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[-2]), float(out[-1])


def search_gain(settings: Settings, trials: int, timeout_s: float) -> dict[str, float]:
    """The Optuna search against the defaults on the holdout split (January-August, early
    stopping on September, test October-December): test ROC AUC and seconds of each; the
    defaults under three seeds give the seed-to-seed noise."""
    from sklearn.metrics import roc_auc_score

    from jobs.features.training import training_set
    from jobs.training import models
    from jobs.training.dataset import LABEL, Window, split

    holdout = settings.model_copy(update={"validation_days": 30, "test_days": 92})
    window = Window.ending(dt.date(2013, 12, 31), 365, holdout)
    started = time.perf_counter()
    data = training_set(holdout, window.start, window.end)
    parts, features = split(data, window), data.feature_columns
    out: dict[str, float] = {"search_training_set_s": time.perf_counter() - started}
    labels = parts.test[LABEL].astype(int)
    for seed in (42, 1, 2):
        started = time.perf_counter()
        trained = models.train_xgboost(parts, features, seed)
        out[f"defaults_seed{seed}_s"] = time.perf_counter() - started
        out[f"defaults_seed{seed}_validation_roc_auc"] = float(trained.model.best_score)
        out[f"defaults_seed{seed}_test_roc_auc"] = float(
            roc_auc_score(labels, models.predict(trained.model, parts.test, features))
        )
        console.print(out)
    started = time.perf_counter()
    trained = models.train_xgboost(parts, features, 42, trials, timeout_s)
    out["search_s"] = time.perf_counter() - started
    out["search_trials_run"] = len(trained.trials)
    out["search_trials_pruned"] = sum(t["state"] == "pruned" for t in trained.trials)
    out["search_validation_roc_auc"] = float(trained.model.best_score)
    out["search_test_roc_auc"] = float(
        roc_auc_score(labels, models.predict(trained.model, parts.test, features))
    )
    out["search_best_params"] = json.dumps(
        {k: trained.params[k] for k in trained.trials[0]["params"]}
    )
    (STATE / "search_trials.json").write_text(json.dumps(trained.trials, indent=2, default=str))
    return out


# --features: the default service against the one before it, and the learning rates tried
_DEFAULT_NAME, _DEFAULT_VERSION = store.FEATURE_SERVICE.rsplit("_v", 1)
SERVICES = (f"{_DEFAULT_NAME}_v{int(_DEFAULT_VERSION) - 1}", store.FEATURE_SERVICE)
LEARNING_RATES = (0.02,)  # besides the default's; early stopping picks the rounds
MAX_ROUNDS = 4000  # enough for the smallest rate to stop early


def at_learning_rate(rate: float) -> dict:
    """The job's parameters at learning rate ``rate``, with room for the rounds it needs and
    the default's patience in progress, not in rounds: 50 at 0.05 is 125 at 0.02 (with 50, a
    fit at 0.02 stopping on half of September stopped after 8 rounds)."""
    from jobs.training import models

    defaults = models.DEFAULT_PARAMS
    return {
        **defaults,
        "learning_rate": rate,
        "n_estimators": max(defaults["n_estimators"], MAX_ROUNDS),
        "early_stopping_rounds": round(
            defaults["early_stopping_rounds"] * defaults["learning_rate"] / rate
        ),
    }


def feature_gain(settings: Settings, seeds=(42, 1, 2)) -> dict[str, float | str]:
    """The features' worth on the holdout split (January-August, early stopping on September,
    test October-December): validation (September) and test ROC AUC of XGBoost on each of
    ``SERVICES`` under three seeds, with the default parameters; the same on the flights with a
    known tail number (a cancelled flight often has none in the data: a tell that is not in the
    timetable a planner holds); on the default service, the same at each of
    ``LEARNING_RATES``, and every feature's cost when shuffled in the test days, and the cost of
    removing (retraining without) each one whose shuffle costs over 0.01."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from jobs.features.training import training_set
    from jobs.training import models
    from jobs.training.dataset import LABEL, Window, split

    holdout = settings.model_copy(update={"validation_days": 30, "test_days": 92})
    window = Window.ending(dt.date(2013, 12, 31), 365, holdout)
    out: dict[str, float | str] = {}

    def test_auc(model, test, features) -> float:
        return float(roc_auc_score(test[LABEL].astype(int), models.predict(model, test, features)))

    def measure(label: str, parts, features: list[str], params: dict) -> None:
        known_tail = parts.test[parts.test.tailnum.notna()]
        for seed in seeds:
            model = models.train_xgboost(parts, features, seed, params=params).model
            run = f"{label}_seed{seed}"
            out[f"{run}_validation_roc_auc"] = float(model.best_score)
            out[f"{run}_test_roc_auc"] = test_auc(model, parts.test, features)
            out[f"{run}_known_tail_test_roc_auc"] = test_auc(model, known_tail, features)
            out[f"{run}_rounds"] = model.best_iteration + 1
            console.print({k: v for k, v in out.items() if k.startswith(run)})
        for part in ("validation", "test"):
            out[f"{label}_mean_{part}_roc_auc"] = float(
                np.mean([out[f"{label}_seed{seed}_{part}_roc_auc"] for seed in seeds])
            )

    for service in SERVICES:
        data = training_set(holdout, window.start, window.end, service)
        parts, features = split(data, window), data.feature_columns
        out[f"{service}_features"] = len(features)
        measure(service, parts, features, models.DEFAULT_PARAMS)
        if service == store.FEATURE_SERVICE:
            on_default = (parts, features)
            for rate in LEARNING_RATES:
                measure(f"{service}_lr{rate}", parts, features, at_learning_rate(rate))
    summary(out, seeds)
    parts, features = on_default
    model = models.train_xgboost(parts, features, seeds[0]).model
    full = test_auc(model, parts.test, features)
    rng = np.random.default_rng(0)
    shuffled_cost = {}
    for feature in features:
        test = parts.test.copy()
        test[feature] = rng.permutation(test[feature].to_numpy())
        shuffled_cost[feature] = full - test_auc(model, test, features)
    ranked = sorted(shuffled_cost.items(), key=lambda kv: -kv[1])
    out["shuffled_cost_top10"] = json.dumps({f: round(c, 4) for f, c in ranked[:10]})
    for feature in (f for f, cost in ranked if cost > 0.01):
        kept = [f for f in features if f != feature]
        without = models.train_xgboost(parts, kept, seeds[0]).model
        out[f"removal_cost__{feature}"] = full - test_auc(without, parts.test, kept)
        console.print({feature: out[f"removal_cost__{feature}"]})
    return out


def september_crossfit(settings: Settings, seeds=(42, 1, 2)) -> dict[str, float]:
    """The learning rates, and the last search's best parameters (``--search``'s
    ``search.json``, if there is one), judged on September alone, without scoring the days early
    stopping chose its round on (the early-stopping score is the best of the rounds it saw): on
    the default service, stop on September 1-15 and score September 16-30, and the reverse,
    under each seed, at the default learning rate, at each of ``LEARNING_RATES`` (patience
    scaled as in :func:`at_learning_rate`) and with the search's parameters; for the search's,
    also early stopping's score on the whole of September under each seed. The test days are
    not scored."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from jobs.features.training import training_set
    from jobs.training import models
    from jobs.training.dataset import LABEL, Split, Window, split

    holdout = settings.model_copy(update={"validation_days": 30, "test_days": 92})
    window = Window.ending(dt.date(2013, 12, 31), 365, holdout)
    data = training_set(holdout, window.start, window.end)
    parts, features = split(data, window), data.feature_columns
    september = parts.validation
    first_half = pd.to_datetime(september["flight_date"]).dt.date <= dt.date(2013, 9, 15)
    halves = {"1-15": september[first_half], "16-30": september[~first_half]}
    out: dict[str, float] = {}
    candidates = {
        f"lr{rate}": at_learning_rate(rate)
        for rate in (models.DEFAULT_PARAMS["learning_rate"], *LEARNING_RATES)
    }
    searched = STATE / "search.json"
    if searched.exists():
        best = json.loads(json.loads(searched.read_text())["search_best_params"])
        candidates["search_best"] = {**models.DEFAULT_PARAMS, **best}
        for seed in seeds:
            model = models.train_xgboost(parts, features, seed, params=candidates["search_best"])
            out[f"search_best_seed{seed}_validation_roc_auc"] = float(model.model.best_score)
        out["search_best_mean_validation_roc_auc"] = float(
            np.mean([out[f"search_best_seed{seed}_validation_roc_auc"] for seed in seeds])
        )
        console.print({k: round(v, 4) for k, v in out.items()})
    for label, params in candidates.items():
        scores = []
        for seed in seeds:
            for stop, scored in (("1-15", "16-30"), ("16-30", "1-15")):
                fit = Split(parts.train, halves[stop], parts.test.iloc[:0])
                model = models.train_xgboost(fit, features, seed, params=params).model
                days = halves[scored]
                auc = float(
                    roc_auc_score(days[LABEL].astype(int), models.predict(model, days, features))
                )
                out[f"{label}_seed{seed}_stop_sep{stop}_score_sep{scored}_roc_auc"] = auc
                scores.append(auc)
                console.print({f"{label} seed{seed} stop {stop}": round(auc, 4)})
        out[f"{label}_mean_roc_auc"] = float(np.mean(scores))
    return out


def summary(out: dict, seeds=(42, 1, 2)) -> None:
    """The ROC AUCs of ``--features`` as a table: per service (and learning rate), validation
    and test under each seed, and their means."""
    from rich.table import Table

    table = Table(
        "run",
        *(f"{m} {s}" for m in ("validation", "test") for s in seeds),
        "mean validation",
        "mean test",
    )
    for label in [k[: -len("_mean_test_roc_auc")] for k in out if k.endswith("_mean_test_roc_auc")]:
        table.add_row(
            label,
            *(
                f"{out[f'{label}_seed{s}_{m}_roc_auc']:.4f}"
                for m in ("validation", "test")
                for s in seeds
            ),
            f"{out[f'{label}_mean_validation_roc_auc']:.4f}",
            f"{out[f'{label}_mean_test_roc_auc']:.4f}",
        )
    Console(width=200).print(table)  # whole, in a log too


def main() -> None:
    settings = Settings().model_copy(update={"model_name": "flight_disruption_bench"})
    if "--search" in sys.argv:  # python benchmarks/training.py --search [TRIALS [SECONDS]]
        store.apply(settings)
        args = [a for a in sys.argv[sys.argv.index("--search") + 1 :] if a.isdigit()]
        results = search_gain(settings, *(int(a) for a in (args + ["25", "900"])[:2]))
        console.print_json(json.dumps(results))
        (STATE / "search.json").write_text(json.dumps(results, indent=2))
        return
    if "--september" in sys.argv:  # python -m benchmarks.training --september
        store.apply(settings)
        results = september_crossfit(settings)
        console.print_json(json.dumps(results))
        (STATE / "september.json").write_text(json.dumps(results, indent=2))
        return
    if "--features-summary" in sys.argv:  # the last --features run's table, again
        summary(json.loads((STATE / "features.json").read_text()))
        return
    if "--features" in sys.argv:  # python -m benchmarks.training --features
        results = {"build_s": build_year(settings)}
        store.apply(settings)
        results |= feature_gain(settings)
        console.print_json(json.dumps(results))
        (STATE / "features.json").write_text(json.dumps(results, indent=2))
        summary(results)
        return
    results: dict[str, float | str] = {"build_s": build_year(settings)}
    if "--build-only" in sys.argv:
        console.print(results)
        return
    store.apply(settings)

    started = time.perf_counter()
    default = train.run(settings, dt.date(2013, 12, 31))
    results["window60_train_s"] = time.perf_counter() - started
    results["window60_test_roc_auc"] = default.test_metrics["roc_auc"]
    results["window60_peak_rss_gib"] = peak_rss_gib()

    holdout = settings.model_copy(update={"validation_days": 30, "test_days": 92})
    started = time.perf_counter()
    year = train.run(holdout, dt.date(2013, 12, 31), window_days=365)
    results["holdout_train_s"] = time.perf_counter() - started
    results["holdout_peak_rss_gib"] = peak_rss_gib()
    results["holdout_xgboost_roc_auc"] = year.test_metrics["roc_auc"]
    results["holdout_baseline_roc_auc"] = year.baseline_test_metrics["roc_auc"]
    results["holdout_xgboost_pr_auc"] = year.test_metrics["pr_auc"]
    results["holdout_test_rows"] = len(year.test_predictions)
    if "--skip-synthetic" not in sys.argv:
        results["synthetic_10m_fit_50_rounds_s"], results["synthetic_10m_peak_rss_gib"] = (
            synthetic_10m()
        )
    console.print_json(json.dumps(results))
    (STATE / "training.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
