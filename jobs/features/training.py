"""Training sets: one row per labeled flight, features joined point-in-time through Feast.

The entity rows are gold.flights for a date range (read at the current Delta snapshot); each
is joined, through the feature service, to the newest feature values stamped at or before the
flight's prediction time (the end of the day before it departs). A flight whose entity has no
feature value in time keeps its row with nulls: nothing is dropped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from jobs.adapters.feast_offline_store import pinned_versions
from jobs.common.dates import check_in_range
from jobs.common.delta.snapshot import read_arrow
from jobs.common.errors import NightjarError
from jobs.common.settings import Settings
from jobs.features.store import FEATURE_SERVICE, feature_store
from jobs.lakehouse import gold_tables
from jobs.lakehouse import tables as tb

# A flight's id and the key of every entity gold keeps statistics for: the Feast join keys.
ENTITY_COLUMNS = ["flight_id", *gold_tables.ENTITY_KEYS.values()]
LABEL_COLUMNS = ["is_disrupted", "is_cancelled", "dep_delay"]


# Every gold table a training set reads: the entity rows and the feature views' sources.
GOLD_INPUTS = gold_tables.PUBLISHED


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame
    delta_versions: dict[str, int]  # table name -> the Delta version read
    feature_service: str
    feature_columns: list[str]


def feature_columns(service) -> list[str]:
    """A Feast feature service's columns in a training set: ``<view>__<feature>``."""
    return [f"{p.name}__{f.name}" for p in service.feature_view_projections for f in p.features]


def current_versions(settings: Settings) -> dict[str, int]:
    from deltalake import DeltaTable

    return {name: DeltaTable(settings.table_uri(name)).version() for name in GOLD_INPUTS}


def labeled_flights(
    settings: Settings, start: dt.date, end: dt.date, version: int | None = None
) -> pd.DataFrame:
    """Gold flights of ``[start, end]`` as Feast entity rows with their labels."""
    if end < start:
        raise NightjarError(f"training window ends ({end}) before it starts ({start})")
    check_in_range(start), check_in_range(end)
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    flights = read_arrow(
        settings.table_uri(tb.GOLD_FLIGHTS.name),
        partitions={"flight_date": days},
        columns=[*ENTITY_COLUMNS, "flight_date", "prediction_ts", *LABEL_COLUMNS],
        version=version,
    ).to_pandas()
    if flights.empty:
        raise NightjarError(
            f"no labeled flights in gold.flights for {start}..{end}: run the daily DAG for "
            "those dates first"
        )
    flights["event_timestamp"] = pd.to_datetime(flights.pop("prediction_ts"), utc=True)
    return flights


def training_set(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    feature_service: str = FEATURE_SERVICE,
    delta_versions: dict[str, int] | None = None,
) -> TrainingSet:
    """The labeled training frame for flights departing in ``[start, end]``, ordered by
    flight; feature columns are named ``<view>__<feature>``. Every gold table is read at one
    Delta version (``delta_versions``, default: the current ones), recorded in the result, so
    the same call with the recorded versions returns the same frame."""
    store = feature_store(settings)
    try:
        service = store.get_feature_service(feature_service)
    except Exception as exc:  # Feast raises its own FeatureServiceNotFoundException
        raise NightjarError(
            f"feature service {feature_service!r} is not in the Feast registry "
            "(run `nightjar feast apply`)"
        ) from exc
    versions = delta_versions or current_versions(settings)
    entities = labeled_flights(settings, start, end, version=versions.get(tb.GOLD_FLIGHTS.name))
    pinned = {settings.table_uri(name): version for name, version in versions.items()}
    with pinned_versions(pinned):
        frame = store.get_historical_features(
            entity_df=entities, features=service, full_feature_names=True
        ).to_df()
    if len(frame) != len(entities) or set(frame.flight_id) != set(entities.flight_id):
        raise NightjarError(
            f"point-in-time join returned {len(frame)} rows for {len(entities)} flights"
        )
    return TrainingSet(
        frame=frame.sort_values(["flight_date", "flight_id"], ignore_index=True),
        delta_versions=versions,
        feature_service=feature_service,
        feature_columns=feature_columns(service),
    )


def training_frame(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    feature_service: str = FEATURE_SERVICE,
) -> pd.DataFrame:
    """:func:`training_set`'s frame, at the current Delta snapshots."""
    return training_set(settings, start, end, feature_service).frame
