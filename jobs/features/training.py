"""Training sets: one row per labeled flight, features joined point-in-time through Feast.

The entity rows are gold.flights for a date range (read at the current Delta snapshot); each
is joined, through the feature service, to the newest feature values stamped at or before the
flight's prediction time (the end of the day before it departs). A flight whose entity has no
feature value in time keeps its row with nulls: nothing is dropped.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from jobs.common.dates import check_in_range
from jobs.common.delta.snapshot import read_arrow
from jobs.common.errors import NightjarError
from jobs.common.settings import Settings
from jobs.features.store import FEATURE_SERVICE, feature_store
from jobs.lakehouse import tables as tb

ENTITY_COLUMNS = ["flight_id", "carrier", "origin", "route", "tailnum"]
LABEL_COLUMNS = ["is_disrupted", "is_cancelled", "dep_delay"]


def labeled_flights(settings: Settings, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Gold flights of ``[start, end]`` as Feast entity rows with their labels."""
    if end < start:
        raise NightjarError(f"training window ends ({end}) before it starts ({start})")
    check_in_range(start), check_in_range(end)
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    flights = read_arrow(
        settings.table_uri(tb.GOLD_FLIGHTS.name),
        partitions={"flight_date": days},
        columns=[*ENTITY_COLUMNS, "flight_date", "prediction_ts", *LABEL_COLUMNS],
    ).to_pandas()
    if flights.empty:
        raise NightjarError(
            f"no labeled flights in gold.flights for {start}..{end}: run the daily DAG for "
            "those dates first"
        )
    flights["event_timestamp"] = pd.to_datetime(flights.pop("prediction_ts"), utc=True)
    return flights


def training_frame(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    feature_service: str = FEATURE_SERVICE,
) -> pd.DataFrame:
    """The labeled training frame for flights departing in ``[start, end]``, ordered by
    flight; feature columns are named ``<view>__<feature>``."""
    entities = labeled_flights(settings, start, end)
    store = feature_store(settings)
    frame = store.get_historical_features(
        entity_df=entities,
        features=store.get_feature_service(feature_service),
        full_feature_names=True,
    ).to_df()
    if len(frame) != len(entities) or set(frame.flight_id) != set(entities.flight_id):
        raise NightjarError(
            f"point-in-time join returned {len(frame)} rows for {len(entities)} flights"
        )
    return frame.sort_values(["flight_date", "flight_id"], ignore_index=True)
