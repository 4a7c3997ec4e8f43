"""The disruption model (XGBoost, hist) and the baseline it must beat."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from jobs.training.dataset import LABEL, Split

DEFAULT_PARAMS = {
    "tree_method": "hist",
    "max_depth": 6,
    "learning_rate": 0.05,
    "min_child_weight": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "n_estimators": 1000,
    "early_stopping_rounds": 50,
    # early stopping on ranking quality: with the classes re-weighted, the validation log loss
    # (unweighted) rises from the first tree on small windows and would stop training at once
    "eval_metric": "auc",
}
# The baseline: what a planner knows from the timetable alone.
BASELINE_FEATURES = ["flight_schedule__sched_dep_hour", "flight_schedule__day_of_week", "carrier"]


def categories(frame: pd.DataFrame, features: list[str]) -> dict[str, list[str]]:
    """The categories of ``features``' string columns (a route, ``EWR-ORD``): the values in
    ``frame``, sorted, which the model learns splits on."""
    return {
        name: sorted(frame[name].dropna().unique())
        for name in features
        if not pd.api.types.is_numeric_dtype(frame[name])
    }


def model_categories(model: xgb.XGBClassifier | xgb.Booster) -> dict[str, list[str]]:
    """The categories a trained model stores for each categorical feature."""
    booster = model.get_booster() if isinstance(model, xgb.XGBClassifier) else model
    if "c" not in (booster.feature_types or ()):
        return {}
    stored = booster.get_categories(export_to_arrow=True).to_arrow()
    return {name: values.to_pylist() for name, values in stored if values is not None}


def inputs(frame: pd.DataFrame, features: list[str], known: dict[str, list[str]]) -> pd.DataFrame:
    """The model's input columns: each categorical one over the ``known`` categories. A value
    the model never saw (a route first flown after its training days) is missing, as XGBoost
    refuses categories it did not train on."""
    columns = frame[features]
    if not known:
        return columns
    return columns.assign(
        **{name: pd.Categorical(columns[name], categories=values) for name, values in known.items()}
    )


@dataclass
class Trained:
    model: xgb.XGBClassifier
    params: dict
    trials: list[dict] = field(default_factory=list)
    study: object | None = None  # the Optuna study, when there was a search


def _fit(
    split: Split, features: list[str], params: dict, seed: int, callbacks: list | None = None
) -> xgb.XGBClassifier:
    y = split.train[LABEL].astype(int)
    # class imbalance: weight the disrupted minority up to balance the classes
    scale = float((y == 0).sum()) / max(int((y == 1).sum()), 1)
    known = categories(split.train, features)
    model = xgb.XGBClassifier(
        **params,
        scale_pos_weight=scale,
        random_state=seed,
        n_jobs=2,
        verbosity=0,
        callbacks=callbacks,
        enable_categorical=bool(known),
    )
    model.fit(
        inputs(split.train, features, known),
        y,
        eval_set=[(inputs(split.validation, features, known), split.validation[LABEL].astype(int))],
        verbose=False,
    )
    return model


def train_xgboost(
    split: Split,
    features: list[str],
    seed: int,
    search_trials: int = 0,
    search_timeout_seconds: float | None = None,
    params: dict | None = None,
) -> Trained:
    """XGBoost with early stopping on the validation days' ROC AUC, with ``params`` (default
    ``DEFAULT_PARAMS``); with ``search_trials``, an Optuna search (``jobs.training.search``) of
    at most that many trials, the first of them ``params``, within ``search_timeout_seconds``,
    keeps the parameters with the best validation ROC AUC."""
    params = dict(params or DEFAULT_PARAMS)
    if search_trials <= 0:
        return Trained(_fit(split, features, params, seed), params)
    from jobs.training import search

    found = search.search(
        lambda params, callbacks: _fit(split, features, params, seed, callbacks),
        params,
        seed,
        search_trials,
        search_timeout_seconds,
    )
    return Trained(found.model, found.params, found.trials, found.study)


def train_baseline(split: Split, seed: int):
    """Logistic regression on scheduled hour, weekday and carrier (one-hot)."""
    model = make_pipeline(
        OneHotEncoder(handle_unknown="ignore"),
        LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed),
    )
    model.fit(baseline_inputs(split.train), split.train[LABEL].astype(int))
    return model


def baseline_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[BASELINE_FEATURES].astype(str)


def predict(model: xgb.XGBClassifier, frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    return model.predict_proba(inputs(frame, features, model_categories(model)))[:, 1]
