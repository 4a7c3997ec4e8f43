"""Train, track, register and decide: the training DAG's job, also `nightjar train`.

1. The training set for the window, through the feature service, every gold table read at
   one recorded Delta version; split by date into train / validation / test.
2. XGBoost (hist, early stopping on validation, class weights) and the baseline, on the split.
3. The champion (if any) is scored on the same test window before anything is registered: a
   broken champion stops the run with the registry unchanged.
4. One MLflow run: parameters, metrics per split, plots, the feature list, the window, the Delta
   versions, the code version, the seed, the test predictions; the model with its signature (an
   input example too, where no feature is a category), registered as a new version with the
   alias ``challenger``.
5. The champion/challenger decision (``registry.decide``), recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xgboost

from jobs.common.settings import Settings
from jobs.features.store import FEATURE_SERVICE
from jobs.features.training import training_set
from jobs.monitoring import drift, reference
from jobs.training import evaluate, labeled, model_card, models, registry, tracking
from jobs.training.dataset import LABEL, Window, split

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Result:
    run_id: str
    version: str | None
    promoted: bool
    reason: str
    test_metrics: dict[str, float]
    baseline_test_metrics: dict[str, float]
    champion_test_metrics: dict[str, float] | None
    test_predictions: pd.DataFrame


def fit(
    settings: Settings,
    window: Window,
    seed: int,
    feature_service: str = FEATURE_SERVICE,
    delta_versions: dict[str, int] | None = None,
    params: dict | None = None,
    search: bool = True,
):
    """(training set, split, trained XGBoost, baseline): steps 1 and 2, no side effects.
    ``search``: run the Optuna search (``settings.search_trials``) for the parameters."""
    data = training_set(settings, window.start, window.end, feature_service, delta_versions)
    parts = split(data, window)
    if params is None:
        trained = models.train_xgboost(
            parts,
            data.feature_columns,
            seed,
            settings.search_trials if search else 0,
            settings.search_timeout_seconds,
        )
    else:  # a re-run of recorded parameters: no search
        trained = models.Trained(models._fit(parts, data.feature_columns, params, seed), params)
    return data, parts, trained, models.train_baseline(parts, seed)


def defined(figures: dict, prefix: str) -> dict[str, float]:
    """Metrics for MLflow, which takes numbers only (an undefined AUC is left out)."""
    return {f"{prefix}{k}": v for k, v in figures.items() if v is not None}


def run(
    settings: Settings,
    end: dt.date,
    window_days: int | None = None,
    seed: int | None = None,
    feature_service: str = FEATURE_SERVICE,
    trigger: str = "manual",
    search: bool = True,
) -> Result:
    """``trigger`` says why this training runs (recorded on the MLflow run and the decision);
    ``search``: whether it searches hyperparameters (``requests.searches``)."""
    import mlflow
    from mlflow.models import infer_signature

    from jobs.training.search import log_search

    seed = settings.training_seed if seed is None else seed
    window = Window.ending(end, window_days or labeled.default_window(settings, end), settings)
    client = tracking.client(settings)
    tracking.end_dead_runs(settings, client)  # what a killed training left RUNNING
    data, parts, trained, baseline = fit(settings, window, seed, feature_service, search=search)
    features = data.feature_columns
    threshold = settings.decision_threshold

    scores = {
        name: models.predict(trained.model, getattr(parts, name), features) for name in SPLITS
    }
    metrics = {
        name: evaluate.metrics(getattr(parts, name)[LABEL], scores[name], threshold)
        for name in SPLITS
    }
    baseline_test = evaluate.metrics(
        parts.test[LABEL],
        baseline.predict_proba(models.baseline_inputs(parts.test))[:, 1],
        threshold,
    )
    registry.sync_aliases(settings, client)  # what a crash after a decision left behind
    champion = registry.load_champion(client, settings)  # before anything is registered
    champion_test = None
    if champion is not None:
        champion_version, champion_model = champion
        wanted = champion_model.get_booster().feature_names
        missing = sorted(set(wanted) - set(parts.test.columns))
        if missing:
            from jobs.common.errors import NightjarError

            raise NightjarError(
                f"champion v{champion_version} uses features this training set lacks: "
                f"{missing[:5]}; train with its feature service"
            )
        champion_test = evaluate.metrics(
            parts.test[LABEL], models.predict(champion_model, parts.test, wanted), threshold
        )
    decision = registry.decide(metrics["test"], champion_test, settings)
    predictions = pd.DataFrame({"flight_id": parts.test.flight_id, "p": scores["test"]})

    with mlflow.start_run(
        experiment_id=tracking.experiment_id(client, settings),
        run_name=f"train-{window.end}",
        tags={
            **tracking.code_version(),
            "feature_service": feature_service,
            "training_window": f"{window.start}..{window.end}",
            "nightjar.trigger": trigger,
            **tracking.owner_tags(),  # a run this process leaves RUNNING when killed
        },
    ) as active:
        mlflow.log_params(
            {
                **{f"xgb_{k}": v for k, v in trained.params.items()},
                **window.as_params(),
                "seed": seed,
                "feature_service": feature_service,
                "n_features": len(features),
                "decision_threshold": threshold,
                "search_trials": settings.search_trials if search else 0,
                "search_timeout_seconds": settings.search_timeout_seconds,
                "best_iteration": trained.model.best_iteration,
                **{f"rows_{k}": v for k, v in parts.sizes().items()},
                **{f"delta_version.{k}": v for k, v in data.delta_versions.items()},
            }
        )
        for name in SPLITS:
            mlflow.log_metrics(defined(metrics[name], f"{name}_"))
        mlflow.log_metrics(defined(baseline_test, "baseline_test_"))
        if champion_test:
            mlflow.log_metrics(defined(champion_test, "champion_test_"))
        importance = trained.model.get_booster().get_score(importance_type="gain")
        for name, figure in evaluate.plots(parts.test[LABEL], scores["test"], importance).items():
            mlflow.log_figure(figure, f"plots/{name}")
        mlflow.log_dict({"feature_service": feature_service, "features": features}, "features.json")
        mlflow.log_dict({"delta_versions": data.delta_versions}, "inputs.json")
        tracking.log_delta_inputs(settings, data.delta_versions)  # the run's Datasets
        mlflow.log_dict({"trials": trained.trials}, "search_trials.json")
        log_search(trained.trials, trained.study)  # a nested run per trial, the study's plots
        drift_reference = reference.sample(
            parts.train,
            features,
            parts.train[LABEL],
            scores["train"],
            settings.reference_rows,
            seed,
        )
        thresholds = drift.calibrate(
            parts.train.assign(**{reference.PROBABILITY: scores["train"]}),
            parts.train["flight_date"],
            drift_reference,
            [*features, reference.PROBABILITY],
            settings.drift_threshold,
        )
        mlflow.log_dict(thresholds, reference.THRESHOLDS)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "test_predictions.parquet"
            predictions.to_parquet(path, index=False)
            mlflow.log_artifact(str(path))
            path = Path(tmp) / Path(reference.ARTIFACT).name
            drift_reference.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), reference.ARTIFACT_DIR)
        example = parts.test[features].head(5)
        info = mlflow.xgboost.log_model(
            trained.model,
            name="model",
            signature=infer_signature(example, models.predict(trained.model, example, features)),
            # none with a category (the route): MLflow checks an example through its generic
            # XGBoost pyfunc, which passes the route on as a string that XGBoost refuses, and
            # says so in every training log; `models.predict` gives the model its categories
            input_example=None if models.model_categories(trained.model) else example,
            registered_model_name=settings.model_name,
            model_type="classifier",
            # stated, not inferred: inference shells out to uv/pip and takes seconds
            pip_requirements=[f"xgboost=={xgboost.__version__}", f"pandas=={pd.__version__}"],
        )
        version = str(info.registered_model_version)
        mlflow.set_tags({"registered_version": version, "decision": decision.reason})

    previous = registry.alias_version(client, settings, registry.CHAMPION)
    # recorded first, then the aliases: a crash in between leaves a log that sync_aliases
    # follows, never an alias the log does not explain
    registry.record(
        settings,
        client,
        {
            "version": version,
            "decision": "promoted" if decision.promote else "rejected",
            "reason": decision.reason,
            "previous_champion": previous,
            "champion_after": version if decision.promote else previous,
            "metrics": registry.as_json(metrics["test"]),
            "champion_metrics": registry.as_json(champion_test),
            "eval_window": f"{window.test_start}..{window.end}",
            "run_id": active.info.run_id,
            "trigger": trigger,
            "from_night": registry.from_night(window.end),
        },
    )
    model_card.publish(  # the version's description, and model_card.md on the run
        client,
        settings,
        version,
        active.info.run_id,
        window=window,
        data=data,
        parts=parts,
        scores=scores["test"],
        metrics=metrics,
        baseline=baseline_test,
        champion=champion_test,
        champion_version=previous,
        decision=decision,
    )
    client.set_registered_model_alias(settings.model_name, registry.CHALLENGER, version)
    if decision.promote:
        client.set_registered_model_alias(settings.model_name, registry.CHAMPION, version)
    log.info(
        "%s v%s: %s (%s); test ROC AUC %.4f, baseline %.4f",
        settings.model_name,
        version,
        "promoted" if decision.promote else "rejected",
        decision.reason,
        metrics["test"]["roc_auc"],
        baseline_test["roc_auc"],
    )
    return Result(
        run_id=active.info.run_id,
        version=version,
        promoted=decision.promote,
        reason=decision.reason,
        test_metrics=metrics["test"],
        baseline_test_metrics=baseline_test,
        champion_test_metrics=champion_test,
        test_predictions=predictions,
    )


def reproduce(settings: Settings, run_id: str) -> pd.DataFrame:
    """Re-train from a logged run's recorded inputs (window, Delta versions, seed, XGBoost
    parameters, feature service) without registering; returns the test predictions beside the
    logged ones (columns ``p_logged``, ``p_again``)."""
    import mlflow

    client = tracking.client(settings)
    run = client.get_run(run_id)
    params = run.data.params
    inputs = mlflow.artifacts.load_dict(f"runs:/{run_id}/inputs.json")
    window = Window(
        dt.date.fromisoformat(params["window_start"]),
        dt.date.fromisoformat(params["window_end"]),
        (
            dt.date.fromisoformat(params["test_start"])
            - dt.date.fromisoformat(params["validation_start"])
        ).days,
        (
            dt.date.fromisoformat(params["window_end"])
            - dt.date.fromisoformat(params["test_start"])
        ).days
        + 1,
    )
    xgb_params = {
        k.removeprefix("xgb_"): _typed(v) for k, v in params.items() if k.startswith("xgb_")
    }
    data, parts, trained, _ = fit(
        settings,
        window,
        int(params["seed"]),
        params["feature_service"],
        inputs["delta_versions"],
        xgb_params,
    )
    with tempfile.TemporaryDirectory() as tmp:
        logged = pd.read_parquet(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="test_predictions.parquet", dst_path=tmp
            )
        )
    again = models.predict(trained.model, parts.test, data.feature_columns)
    return logged.rename(columns={"p": "p_logged"}).assign(
        p_again=pd.Series(again, index=logged.index)
    )


def _typed(value: str):
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    return value


def describe(result: Result) -> str:
    return json.dumps(
        {
            "run_id": result.run_id,
            "version": result.version,
            "promoted": result.promoted,
            "reason": result.reason,
            "test_roc_auc": round(result.test_metrics["roc_auc"], 4),
            "baseline_test_roc_auc": round(result.baseline_test_metrics["roc_auc"], 4),
        }
    )
