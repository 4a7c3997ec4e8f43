"""The one set of classification metrics (training's splits, the champion comparison, the
nightly monitoring of labeled predictions), and training's plots."""

from __future__ import annotations

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

CALIBRATION_BINS = 10


def metrics(y: pd.Series, p: np.ndarray, threshold: float | np.ndarray) -> dict:
    """Metrics of probabilities ``p`` for labels ``y``, flagging ``p >= threshold`` (one
    threshold, or one per row). The rank metrics are None when ``y`` has a single class: they
    are undefined, not zero."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    flagged = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "precision": float(precision_score(y, flagged, zero_division=0)),
        "recall": float(recall_score(y, flagged, zero_division=0)),
        "positive_rate": float(y.mean()),
        "mean_probability": float(p.mean()),
    }


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Mean |observed rate - mean probability| over equal-count probability bins (as training's
    calibration plot and the model card's table bin them), weighted by the bins' row counts."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    groups = np.array_split(np.argsort(p, kind="stable"), min(bins, len(p)))
    return float(sum(len(g) * abs(y[g].mean() - p[g].mean()) for g in groups) / len(p))


def plots(y, p: np.ndarray, importance: dict[str, float]) -> dict:
    import matplotlib

    matplotlib.use("Agg")  # headless: figures go to MLflow as files
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    figures = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    RocCurveDisplay.from_predictions(y, p, ax=ax)
    figures["roc.png"] = fig
    fig, ax = plt.subplots(figsize=(5, 5))
    PrecisionRecallDisplay.from_predictions(y, p, ax=ax)
    figures["precision_recall.png"] = fig
    fig, ax = plt.subplots(figsize=(5, 5))
    CalibrationDisplay.from_predictions(y, p, n_bins=10, strategy="quantile", ax=ax)
    figures["calibration.png"] = fig
    top = sorted(importance.items(), key=lambda kv: kv[1])[-20:]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh([k for k, _ in top], [v for _, v in top])
    ax.set_xlabel("gain")
    ax.set_title("Feature importance (top 20)")
    fig.tight_layout()
    figures["feature_importance.png"] = fig
    return figures
