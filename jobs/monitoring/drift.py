"""Data and prediction drift with Evidently: the features scored for a day against the model's
training reference.

One method per column type for every day, so a feature's score is comparable across days (and
across row counts: Evidently's default switches from a K-S p-value to a distance at 1,000 rows):
normed Wasserstein distance for numbers, Jensen-Shannon distance for categories. A column drifts
when its distance reaches ``Settings.drift_threshold``. The metric and the numeric test are
Evidently's, computed without its columns² x rows copying (``column_drift``)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from jobs.monitoring.reference import PROBABILITY

CAT_METHOD = "jensenshannon"


@dataclass(frozen=True)
class Drift:
    share: float  # drifted features / features compared
    scores: dict[str, float]  # per feature distance
    drifted: list[str]
    prediction_score: float
    prediction_drifted: bool
    snapshot: object  # Evidently's result, for the HTML report

    @property
    def n_features(self) -> int:
        return len(self.scores)


def definition(frame: pd.DataFrame, columns: list[str]):
    from evidently import DataDefinition

    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in numeric if not pd.api.types.is_bool_dtype(frame[c])]
    return DataDefinition(
        numerical_columns=numeric, categorical_columns=[c for c in columns if c not in numeric]
    )


def measure(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], threshold: float
) -> Drift:
    """Drift of ``features`` and of the ``probability`` column, ``current`` vs ``reference``.

    Columns that are entirely null on either side cannot be compared: Evidently would fail, so
    they are left out of the share and reported with a NaN score."""
    from evidently import Dataset, Report

    from jobs.monitoring.column_drift import WASSERSTEIN, ColumnDrift

    comparable = [c for c in features if reference[c].notna().any() and current[c].notna().any()]
    columns = [*comparable, PROBABILITY]
    spec = definition(reference, columns)
    # One drift metric per column, the share counted here: DataDriftPreset computes every
    # column's test three times (its table, its count, each ValueDrift), 3x the time at 1M rows.
    report = Report(
        [
            ColumnDrift(
                column=column,
                method=WASSERSTEIN if column in spec.numerical_columns else CAT_METHOD,
                threshold=threshold,
            )
            for column in columns
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(current[columns], data_definition=spec),
        Dataset.from_pandas(reference[columns], data_definition=spec),
    )
    values = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ColumnDrift"):
            values[config["column"]] = float(metric["value"])
    scores = {c: values.get(c, float("nan")) for c in features}
    drifted = [c for c in comparable if values[c] >= threshold]
    return Drift(
        share=len(drifted) / len(comparable) if comparable else 0.0,
        scores=scores,
        drifted=drifted,
        prediction_score=values[PROBABILITY],
        prediction_drifted=values[PROBABILITY] >= threshold,
        snapshot=snapshot,
    )
