"""Metrics and plots of a model on a split."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to MLflow as files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import CalibrationDisplay  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    PrecisionRecallDisplay,
    RocCurveDisplay,
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)


def metrics(y: pd.Series, p: np.ndarray, threshold: float) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    flagged = (p >= threshold).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "precision": float(precision_score(y, flagged, zero_division=0)),
        "recall": float(recall_score(y, flagged, zero_division=0)),
        "positive_rate": float(y.mean()),
    }


def plots(y, p: np.ndarray, importance: dict[str, float]) -> dict[str, plt.Figure]:
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
