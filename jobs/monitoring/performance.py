"""Performance with delayed labels: the outcomes of day D's flights land with D's data, so the
predictions made for D the night before (``ml.predictions``, partition D) can be scored."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from jobs.common.delta.snapshot import read_arrow, read_arrow_if_exists
from jobs.common.settings import Settings
from jobs.lakehouse import tables as tb
from jobs.monitoring.reference import LABEL, PROBABILITY
from jobs.scoring.predictions import PREDICTIONS
from jobs.training.dataset import LABEL as GOLD_LABEL

CALIBRATION_BINS = 10


def labeled_predictions(settings: Settings, days: list[dt.date]) -> pd.DataFrame:
    """Predictions made for ``days`` with each flight's outcome; days not scored, or not yet
    labeled, contribute nothing."""
    columns = ["flight_id", "flight_date", "role", "model_version", PROBABILITY, "threshold"]
    scored = read_arrow_if_exists(
        settings.table_uri(PREDICTIONS.name), {"flight_date": days}, [*columns, "model_name"]
    )
    if scored is None:  # nothing scored yet
        return pd.DataFrame(columns=[*columns, LABEL])
    scored = scored.to_pandas()
    scored = scored[scored.model_name == settings.model_name].drop(columns="model_name")
    if scored.empty:
        return scored.assign(**{LABEL: pd.Series(dtype=int)})
    labels = read_arrow(
        settings.table_uri(tb.GOLD_FLIGHTS.name), {"flight_date": days}, ["flight_id", GOLD_LABEL]
    ).to_pandas()
    joined = scored.merge(labels, on="flight_id", how="inner")
    return joined.rename(columns={GOLD_LABEL: LABEL}).astype({LABEL: int})


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Mean |observed rate - mean probability| over equal-width probability bins, weighted by
    the bins' row counts."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in np.unique(which):
        mask = which == b
        error += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(error / len(y))


def figures(labeled: pd.DataFrame) -> dict[str, float | int | None]:
    """Figures of one model's labeled predictions; the rank metrics are None when the day has
    a single class (they are undefined, not zero)."""
    y = labeled[LABEL].to_numpy(dtype=int)
    p = labeled[PROBABILITY].to_numpy(dtype=float)
    if len(y) == 0:
        return {"n_labeled": 0}
    flagged = (p >= labeled["threshold"].to_numpy()).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "n_labeled": len(y),
        "positive_rate": float(y.mean()),
        "mean_probability": float(p.mean()),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "precision": float(precision_score(y, flagged, zero_division=0)),
        "recall": float(recall_score(y, flagged, zero_division=0)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
    }


def report(reference: pd.DataFrame, labeled: pd.DataFrame):
    """Evidently's classification report (quality, ROC/PR curves, calibration-style
    probability plots) of the labeled predictions against the training reference."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    spec = DataDefinition(
        numerical_columns=[PROBABILITY],
        categorical_columns=[LABEL],
        classification=[BinaryClassification(target=LABEL, prediction_probas=PROBABILITY)],
    )
    columns = [LABEL, PROBABILITY]
    return Report([ClassificationPreset()]).run(
        Dataset.from_pandas(labeled[columns], data_definition=spec),
        Dataset.from_pandas(reference[columns], data_definition=spec),
    )
