"""Feast's point-in-time join on Spark (jobs/adapters/feast_spark_retrieval.py) answers what
Feast's own retrieval answers, for every feature of every service, at the instants where the
answer changes: a value's own timestamp, the TTL's edge, just before and just after them."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from jobs.adapters import feast_spark_retrieval
from jobs.common.dates import end_of_day_utc
from jobs.common.delta.snapshot import read_arrow
from jobs.features import store
from jobs.features.training import ENTITY_COLUMNS
from jobs.lakehouse import tables as tb
from jobs.scoring import score
from tests.feature_lake import DAYS

# v4 holds every view of v3 (and its route, a string feature)
SERVICES = ["flight_disruption_v1", "flight_disruption_v2", "flight_disruption_v4"]
TICK = dt.timedelta(microseconds=1)


def entity_rows(settings) -> pd.DataFrame:
    """Every flight of the lake at its prediction time, and some of them again at the instants
    around a statistic's stamp (the end of a day) and its TTL's edge (two days after); rows
    with a null plane and with keys nothing knows."""
    flights = read_arrow(
        settings.table_uri(tb.GOLD_FLIGHTS.name), columns=[*ENTITY_COLUMNS, "prediction_ts"]
    ).to_pandas()
    flights = flights.rename(columns={"prediction_ts": "event_timestamp"})
    flights["event_timestamp"] = pd.to_datetime(flights["event_timestamp"], utc=True)
    sample = flights.groupby("carrier").head(3)
    edges = []
    for offset in (-TICK, dt.timedelta(0), TICK):
        for day in DAYS:
            stamp = end_of_day_utc(day)
            for at in (stamp + offset, stamp + dt.timedelta(days=2) + offset):
                edges.append(sample.assign(event_timestamp=pd.Timestamp(at)))
    strangers = sample.head(2).assign(carrier="QQ", origin="XXX", route="XXX-YYY", tailnum=None)
    rows = pd.concat([flights, *edges, strangers], ignore_index=True)
    return rows.assign(row=range(len(rows)))


@pytest.mark.parametrize("service", SERVICES)
def test_the_spark_join_gives_feasts_answer_for_every_row_and_feature(spark, feast_lake, service):
    lake, tables = feast_lake
    rows = entity_rows(lake)
    fs = store.feature_store(lake)
    feast = (
        fs.get_historical_features(
            entity_df=rows, features=fs.get_feature_service(service), full_feature_names=True
        )
        .to_df()
        .sort_values("row", ignore_index=True)
    )
    views = score.lakehouse_views(
        lake.model_copy(update={"feature_retrieval": "spark"}), service, 1
    )
    assert views is not None  # every view of every service is a plain lakehouse view
    mine = (
        feast_spark_retrieval.historical_features(
            tables, views, spark.createDataFrame(rows), "event_timestamp"
        )
        .toPandas()
        .sort_values("row", ignore_index=True)
    )
    features = [c for c in feast.columns if c not in rows.columns]
    assert features and list(mine.columns) == [*rows.columns, *features]
    assert len(mine) == len(rows) and mine.row.tolist() == feast.row.tolist()
    # the edges decide something: some rows find a value, some (too late, too early) do not
    plane = "plane_stats__flights_1d"
    assert 0 < feast[plane].isna().sum() < len(feast)
    for column in features:
        expected, got = feast[column], mine[column]
        assert got.isna().tolist() == expected.isna().tolist(), column
        known = expected.notna()
        assert got[known].astype(object).tolist() == expected[known].astype(object).tolist(), column


def test_scoring_joins_on_spark_where_the_stages_keep_their_outputs_on_the_cluster(feast_lake):
    lake, _ = feast_lake
    service = store.FEATURE_SERVICE
    on_cluster = lake.model_copy(update={"delta_rs_write_path": "executors"})
    many = on_cluster.collect_max_rows + 1
    assert score.lakehouse_views(on_cluster, service, many) is not None
    assert score.lakehouse_views(on_cluster, service, many - 1) is None  # a day: Feast, faster
    assert score.lakehouse_views(lake, service, many) is None  # the task collects anyway
    forced = lake.model_copy(update={"feature_retrieval": "spark"})
    assert score.lakehouse_views(forced, service, 1) is not None
    stock = on_cluster.model_copy(update={"feature_retrieval": "feast"})
    assert score.lakehouse_views(stock, service, many) is None


def test_a_service_the_spark_join_cannot_read_is_left_to_feast(feast_lake):
    lake, _ = feast_lake
    # a source Nightjar does not know (here: the registry's paths, read under another lakehouse)
    moved = lake.model_copy(update={"lakehouse_uri": lake.lakehouse + "-elsewhere"})
    fs = store.feature_store(lake)
    elsewhere = score.lakehouse_tables(moved)
    assert feast_spark_retrieval.views(fs, elsewhere, store.FEATURE_SERVICE) is None
    here = score.lakehouse_tables(lake)
    assert feast_spark_retrieval.views(fs, here, store.FEATURE_SERVICE) is not None
