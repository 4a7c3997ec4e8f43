"""Data and prediction drift with Evidently: the features scored for a day against the model's
training reference.

One method per column type for every day, so a feature's score is comparable across days (and
across row counts: Evidently's default switches from a K-S p-value to a distance at 1,000 rows):
normed Wasserstein distance for numbers, Jensen-Shannon distance for categories. The metric and
the numeric test are Evidently's, computed without its columns² x rows copying
(``jobs.adapters.evidently_column_drift``).

A column drifts when its distance reaches its threshold: ``Settings.drift_threshold``, or, for a
calibrated model, the largest distance any single training day had from the rest of the training
reference (``calibrate``), whichever is higher. A day-level aggregate over three airports moves
far from a weeks-long reference every day; calibrated, it drifts only beyond what normal days
show."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jobs.monitoring.reference import PROBABILITY

CAT_METHOD = "jensenshannon"
MIN_CALIBRATION_ROWS = 100  # a training day with fewer flights says little about a normal day


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

    numeric = [c for c in columns if is_numeric(frame[c])]
    return DataDefinition(
        numerical_columns=numeric, categorical_columns=[c for c in columns if c not in numeric]
    )


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def distance(reference: pd.Series, current: pd.Series) -> float:
    """One column's drift score as ``ColumnDrift`` computes it: Evidently's cleaning (infinities
    and nulls dropped), then the same stat test. NaN when either side has no value."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    from jobs.adapters.evidently_column_drift import normed_wasserstein

    if is_numeric(reference):  # the registered test's own function, without the pandas overhead
        ref, cur = reference.to_numpy(float), current.to_numpy(float)
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        return normed_wasserstein(ref, cur) if ref.size and cur.size else float("nan")
    reference, current = reference.dropna(), current.dropna()
    if reference.empty or current.empty:
        return float("nan")
    kind = ColumnType.Categorical
    return float(
        get_stattest(reference, current, kind, CAT_METHOD)(
            reference, current, kind, 0.1
        ).drift_score
    )


def calibrate(
    rows: pd.DataFrame, days: pd.Series, reference: pd.DataFrame, columns: list[str], floor: float
) -> dict[str, float]:
    """Per-column thresholds from the training data itself: for every training day, each
    column's distance between that day's rows and the reference rows drawn from other days; a
    column's threshold is the largest such distance, never below ``floor``.

    ``reference`` is a sample of ``rows`` that keeps their index (to leave a day's own rows out of
    what it is compared with); ``days`` gives each row's day."""
    days = pd.Series(pd.to_datetime(days).to_numpy(), index=rows.index)
    largest = dict.fromkeys(columns, floor)
    for _, index in days.groupby(days).groups.items():
        if len(index) < MIN_CALIBRATION_ROWS:
            continue
        others = reference[~reference.index.isin(index)]
        day = rows.loc[index]
        for column in columns:
            score = distance(others[column], day[column])
            if score > largest[column]:  # NaN (nothing to compare) never raises a threshold
                largest[column] = score
    return largest


def measure(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    threshold: float,
    calibrated: Mapping[str, float] | None = None,
) -> Drift:
    """Drift of ``features`` and of the ``probability`` column, ``current`` vs ``reference``.
    A column's threshold is ``calibrated[column]`` where given, else ``threshold``.

    Columns that are entirely null on either side cannot be compared: Evidently would fail, so
    they are left out of the share and reported with a NaN score."""
    from evidently import Report

    from jobs.adapters.evidently_column_drift import WASSERSTEIN, ColumnDrift, DriftDataset

    comparable = [c for c in features if reference[c].notna().any() and current[c].notna().any()]
    columns = [*comparable, PROBABILITY]
    spec = definition(reference, columns)
    limits = {c: (calibrated or {}).get(c, threshold) for c in columns}
    # One drift metric per column, the share counted here: DataDriftPreset computes every
    # column's test three times (its table, its count, each ValueDrift), 3x the time at 1M rows.
    report = Report(
        [
            ColumnDrift(
                column=column,
                method=WASSERSTEIN if column in spec.numerical_columns else CAT_METHOD,
                threshold=limits[column],
            )
            for column in columns
        ]
    )
    snapshot = report.run(
        DriftDataset(current[columns], data_definition=spec),
        DriftDataset(reference[columns], data_definition=spec),
    )
    values = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ColumnDrift"):
            values[config["column"]] = float(metric["value"])
    scores = {c: values.get(c, float("nan")) for c in features}
    drifted = [c for c in comparable if values[c] >= limits[c]]
    return Drift(
        share=len(drifted) / len(comparable) if comparable else 0.0,
        scores=scores,
        drifted=drifted,
        prediction_score=values[PROBABILITY],
        prediction_drifted=values[PROBABILITY] >= limits[PROBABILITY],
        snapshot=snapshot,
    )
