"""The bounded hyperparameter search: Optuna (a seeded TPE sampler, median pruning on the
validation ROC AUC), within a trial count and a time budget.

Trial 0 is always the default parameters, so the search never keeps anything worse on the
validation days than training without it. Each trial trains XGBoost with early stopping on the
validation days and reports its best validation ROC AUC so far after every boosting round; a
trial below the median of the earlier trials at the same round is pruned. The same seed, trial
count and data give the same best parameters (the time budget, when it cuts a search short, does
not).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field

import optuna
import xgboost as xgb

from jobs.training import tracking

log = logging.getLogger(__name__)

# Median pruning: no trial is pruned before this many have completed, nor before this many
# boosting rounds; then only every PRUNE_INTERVAL rounds.
PRUNE_STARTUP_TRIALS = 5
PRUNE_WARMUP_ROUNDS = 50
PRUNE_INTERVAL = 10


def suggest(trial: optuna.Trial) -> dict:
    """The search space (the rest of the parameters are the defaults)."""
    return {
        "max_depth": trial.suggest_int("max_depth", 3, 10),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 100.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


class Pruning(xgb.callback.TrainingCallback):
    """Reports the best validation ROC AUC so far after each boosting round; prunes the trial
    when Optuna's pruner says so."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.best = trial, float("-inf")

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        self.best = max(self.best, evals_log["validation_0"]["auc"][-1])
        self.trial.report(self.best, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation ROC AUC {self.best:.4f} at round {epoch}")
        return False


@dataclass
class Searched:
    params: dict  # the best trial's full XGBoost parameters
    model: xgb.XGBClassifier  # trained with them
    study: optuna.Study
    trials: list[dict] = field(default_factory=list)


def search(
    fit, defaults: dict, seed: int, trials: int, timeout_seconds: float | None = None
) -> Searched:
    """Up to ``trials`` trials (the first: ``defaults``) within ``timeout_seconds``.
    ``fit(params, callbacks)`` trains one XGBClassifier with early stopping on the validation
    days (``eval_metric`` auc)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNE_STARTUP_TRIALS,
            n_warmup_steps=PRUNE_WARMUP_ROUNDS,
            interval_steps=PRUNE_INTERVAL,
        ),
    )
    study.enqueue_trial({k: defaults[k] for k in suggest(optuna.trial.FixedTrial(defaults))})
    best: dict = {}

    def objective(trial: optuna.Trial) -> float:
        params = {**defaults, **suggest(trial)}
        started = time.perf_counter()
        model = fit(params, [Pruning(trial)])
        trial.set_user_attr("seconds", time.perf_counter() - started)
        trial.set_user_attr("best_iteration", int(model.best_iteration))
        if not best or model.best_score > best["model"].best_score:
            best.update(model=model, params=params)
        return float(model.best_score)

    study.optimize(objective, n_trials=trials, timeout=timeout_seconds)
    if not best:  # the budget ran out inside the first trial
        best.update(params=dict(defaults), model=fit(dict(defaults), []))
    return Searched(best["params"], best["model"], study, [describe(t) for t in study.trials])


def describe(trial: optuna.trial.FrozenTrial) -> dict:
    """One trial as logged: number, state, parameters, validation ROC AUC (the last one
    reported, for a pruned trial), rounds and seconds."""
    pruned = trial.state == optuna.trial.TrialState.PRUNED
    value = trial.value if trial.value is not None else None
    if pruned and trial.intermediate_values:
        value = trial.intermediate_values[trial.last_step]
    seconds = trial.user_attrs.get("seconds")
    if seconds is None and trial.datetime_complete and trial.datetime_start:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": dict(trial.params),
        "validation_auc": value,
        "rounds": trial.last_step + 1 if trial.last_step is not None else None,
        "seconds": seconds,
    }


def plots(study: optuna.Study) -> dict:
    """Optuna's study plots as matplotlib figures: optimization history and (with two completed
    trials or more) parameter importances."""
    from optuna.visualization import matplotlib as vis

    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is "experimental"
        figures["optimization_history"] = vis.plot_optimization_history(study).figure
        complete = study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
        if len(complete) >= 2:
            try:
                figures["param_importances"] = vis.plot_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
                ).figure
            except (ValueError, RuntimeError) as exc:  # e.g. every value equal
                log.warning("no parameter importances: %s", exc)
    for figure in figures.values():
        figure.tight_layout()
    return figures


def log_search(trials: list[dict], study: optuna.Study | None) -> None:
    """Under the active MLflow run: a nested run per trial (its parameters, validation ROC AUC,
    state, rounds and seconds), the best trial's number and the study's plots."""
    import mlflow

    if study is None:
        return
    parent = mlflow.active_run().info
    for trial in trials:
        with mlflow.start_run(
            experiment_id=parent.experiment_id,  # else the active experiment's, not the parent's
            run_name=f"{parent.run_name}-trial-{trial['number']}",
            nested=True,
            tags={"nightjar.trial_state": trial["state"], **tracking.owner_tags()},
        ):
            mlflow.log_params({"trial": trial["number"], **trial["params"]})
            metrics = {
                "validation_roc_auc": trial["validation_auc"],
                "rounds": trial["rounds"],
                "seconds": trial["seconds"],
            }
            mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
    states = [t["state"] for t in trials]
    mlflow.log_metrics(
        {
            "search_best_validation_roc_auc": study.best_value,
            "search_completed_trials": states.count("complete"),
            "search_pruned_trials": states.count("pruned"),
        }
    )
    mlflow.set_tag("search_best_trial", str(study.best_trial.number))
    import matplotlib.pyplot as plt

    for name, figure in plots(study).items():
        mlflow.log_figure(figure, f"search/{name}.png")
        plt.close(figure)
