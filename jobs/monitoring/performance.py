"""Performance with delayed labels: the outcomes of day D's flights land with D's data, so the
predictions made for D the night before (``ml.predictions``, partition D) can be scored."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from jobs.common.delta.snapshot import read_arrow, read_arrow_if_exists
from jobs.common.settings import Settings
from jobs.lakehouse import tables as tb
from jobs.monitoring.reference import LABEL, PROBABILITY
from jobs.scoring.predictions import PREDICTIONS
from jobs.training import evaluate
from jobs.training.dataset import LABEL as GOLD_LABEL


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


def figures(labeled: pd.DataFrame) -> dict[str, float | int | None]:
    """Figures of one model's labeled predictions (``evaluate.metrics``, as in training)."""
    if labeled.empty:
        return {"n_labeled": 0}
    y = labeled[LABEL].to_numpy(dtype=int)
    p = labeled[PROBABILITY].to_numpy(dtype=float)
    return {"n_labeled": len(y), **evaluate.metrics(y, p, labeled["threshold"].to_numpy())}


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
