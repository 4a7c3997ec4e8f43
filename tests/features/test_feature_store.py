"""Feast on the gold Delta tables: point-in-time joins, snapshot reads after corrections,
materialization, training sets, SDK retrieval."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.common.dates import end_of_day_utc
from jobs.common.delta.snapshot import read_arrow
from jobs.features import materialize, store, training
from jobs.lakehouse import tables as tb
from tests.feature_lake import DAYS

CARRIER_STATS = tb.gold_stats("carrier", (7, 28))


def stats_row(carrier: str, day: dt.date, rate: float) -> dict:
    row = {f.name: None for f in CARRIER_STATS.arrow_schema}
    row.update(
        carrier=carrier,
        as_of_date=day,
        event_ts=end_of_day_utc(day).replace(tzinfo=None),
        flights_1d=10,
        disrupted_rate_7d=rate,
    )
    return row


def historical(fs, rows: list[dict], features: list[str]) -> pd.DataFrame:
    entities = pd.DataFrame(rows)
    entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True)
    return (
        fs.get_historical_features(entity_df=entities, features=features)
        .to_df()
        .sort_values("row")
        .reset_index(drop=True)
    )


def test_point_in_time_takes_the_latest_value_at_or_before_and_never_a_later_one(feast_lake):
    lake, tables = feast_lake
    # crafted carrier "ZZ": 0.1 known at the end of 03-01, 0.9 known at the end of 03-03
    crafted = [stats_row("ZZ", DAYS[0], 0.1), stats_row("ZZ", DAYS[2], 0.9)]
    tables.merge(CARRIER_STATS, pa.Table.from_pylist(crafted, schema=CARRIER_STATS.arrow_schema))
    end_0302, end_0303 = end_of_day_utc(DAYS[1]), end_of_day_utc(DAYS[2])
    rows = [
        {"row": 0, "carrier": "ZZ", "event_timestamp": end_0302},  # 0.9 is stamped later
        {"row": 1, "carrier": "ZZ", "event_timestamp": end_0303 - dt.timedelta(seconds=1)},
        {"row": 2, "carrier": "ZZ", "event_timestamp": end_0303},  # at the instant: known
        {"row": 3, "carrier": "QQ", "event_timestamp": end_0303},  # no value at all
        {"row": 4, "carrier": "ZZ", "event_timestamp": end_of_day_utc(DAYS[0])},
        {"row": 5, "carrier": "ZZ", "event_timestamp": end_of_day_utc(DAYS[0]) - dt.timedelta(1)},
    ]
    frame = historical(store.feature_store(lake), rows, ["carrier_stats:disrupted_rate_7d"])
    assert len(frame) == len(rows)  # nothing dropped, not even QQ or a too-early row
    rates = frame["disrupted_rate_7d"].tolist()
    assert rates[:3] == [0.1, 0.1, 0.9] and rates[4] == 0.1
    assert pd.isna(rates[3]) and pd.isna(rates[5])


def test_the_training_frame_has_one_row_per_labeled_flight_with_point_in_time_features(
    feast_lake,
):
    lake, _ = feast_lake
    frame = training.training_frame(lake, DAYS[1], DAYS[3])
    gold = read_arrow(lake.table_uri("gold.flights"), {"flight_date": DAYS[1:]}).to_pandas()
    assert len(frame) == len(gold) and frame.flight_id.is_unique
    assert set(frame.flight_id) == set(gold.flight_id)
    service = store.feature_store(lake).get_feature_service(store.FEATURE_SERVICE)
    features = [f"{p.name}__{f.name}" for p in service.feature_view_projections for f in p.features]
    assert set(features) <= set(frame.columns)
    # a flight on 03-04 sees its carrier's statistics as of the end of 03-03, not of 03-04
    stats = read_arrow(lake.table_uri("gold.carrier_stats")).to_pandas()
    as_of = stats.set_index(["carrier", "as_of_date"])["flights_1d"]
    sample = frame[frame.flight_date == DAYS[3]].head(50)
    assert sample["carrier_stats__flights_1d"].tolist() == [
        as_of[(c, DAYS[2])] for c in sample.carrier
    ]
    # flights without a tail number keep their row; their plane features are null
    no_plane = frame[frame.tailnum.isna()]
    assert len(no_plane) == gold.tailnum.isna().sum()
    assert no_plane["plane_stats__flights_7d"].isna().all()


def test_a_flights_route_is_served_from_its_timetable_at_its_prediction_time_never_before(
    feast_lake,
):
    """``flight_route`` (a category for the model) is the route of D+1's timetable, landed with
    D and stamped at the end of D: the flight's own route at its prediction time, and unknown a
    second before it."""
    lake, _ = feast_lake
    day = DAYS[2]
    timetable = read_arrow(
        lake.table_uri("gold.scheduled_flights"), {"flight_date": [day]}
    ).to_pandas()
    sample = timetable.sort_values("flight_id").head(40)
    known = pd.to_datetime(sample.prediction_ts, utc=True)
    assert set(known) == {end_of_day_utc(DAYS[1])}
    rows = [
        {"row": i, "flight_id": f, "event_timestamp": t + offset}
        for i, (f, t, offset) in enumerate(
            (f, t, offset)
            for offset in (dt.timedelta(0), -dt.timedelta(seconds=1))
            for f, t in zip(sample.flight_id, known, strict=True)
        )
    ]
    frame = historical(store.feature_store(lake), rows, ["flight_route:route"])
    at_time, before = frame.route[: len(sample)], frame.route[len(sample) :]
    assert at_time.tolist() == sample.route.tolist()
    assert sample.route.str.fullmatch(r"(EWR|JFK|LGA)-[A-Z]{3}").all()
    assert before.isna().all()


def online_and_offline(lake, day: dt.date, n: int = 25) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of ``n`` of day+1's scheduled flights, online and as of their prediction time."""
    fs = store.feature_store(lake)
    service = fs.get_feature_service(store.FEATURE_SERVICE)
    flights = read_arrow(
        lake.table_uri("gold.scheduled_flights"), {"flight_date": [day + dt.timedelta(1)]}
    ).to_pandas()
    rows = flights.dropna(subset=["tailnum"]).head(n)[training.ENTITY_COLUMNS]
    online = fs.get_online_features(
        features=service, entity_rows=rows.to_dict("records"), full_feature_names=True
    ).to_df()
    offline = fs.get_historical_features(
        entity_df=rows.assign(event_timestamp=end_of_day_utc(day)),
        features=service,
        full_feature_names=True,
    ).to_df()
    key = ["flight_id"]
    columns = sorted(c for c in online.columns if "__" in c)
    return (
        online.sort_values(key)[key + columns].reset_index(drop=True),
        offline.sort_values(key)[key + columns].reset_index(drop=True),
    )


def test_online_equals_offline_as_of_features_after_materializing_a_day(feast_lake):
    lake, _ = feast_lake
    assert materialize.run(lake, DAYS[2])["materialized_day"] == "2013-03-03"
    online, offline = online_and_offline(lake, DAYS[2])
    assert online["carrier_stats__flights_28d"].notna().all()
    pd.testing.assert_frame_equal(online, offline, check_dtype=False)


def test_a_retrieval_reads_its_event_time_window_only_and_serves_the_same(feast_lake, monkeypatch):
    """The offline store reads a feature table's rows in the query's window ([earliest entity
    time - TTL, latest]), not its whole history, and serves what a whole read serves."""
    from jobs.adapters import feast_offline_store

    lake, _ = feast_lake
    uri = lake.table_uri(CARRIER_STATS.name)
    low, high = end_of_day_utc(DAYS[1]), end_of_day_utc(DAYS[2])
    whole = read_arrow(uri).to_pandas()
    window = read_arrow(uri, between=("event_ts", low, high)).to_pandas()
    stamps = pd.to_datetime(whole.event_ts, utc=True)
    assert 0 < len(window) < len(whole)
    assert len(window) == stamps.between(low, high).sum()

    read = []
    monkeypatch.setattr(
        feast_offline_store, "read_arrow", lambda *a, **k: read.append(k) or read_arrow(*a, **k)
    )
    _, windowed = online_and_offline(lake, DAYS[2])
    ttl = store.feature_store(lake).get_feature_view("carrier_stats").ttl
    assert read and all(k["between"][1:] == (high - ttl, high) for k in read)
    monkeypatch.setattr(feast_offline_store, "_entity_window", lambda *_: (None, None))
    _, whole_read = online_and_offline(lake, DAYS[2])
    assert windowed["carrier_stats__flights_28d"].notna().all()
    pd.testing.assert_frame_equal(windowed, whole_read)


def test_materialization_is_idempotent_and_never_puts_an_older_day_online(feast_lake):
    lake, _ = feast_lake
    materialize.run(lake, DAYS[2])
    before, _ = online_and_offline(lake, DAYS[2])
    assert materialize.run(lake, DAYS[2])["materialized_day"] == "2013-03-03"
    assert materialize.run(lake, DAYS[1])["materialized_day"] == "2013-03-03"  # older: no
    after, _ = online_and_offline(lake, DAYS[2])
    pd.testing.assert_frame_equal(before, after)


def test_a_corrected_gold_value_is_served_offline_and_online(feast_lake):
    """A merge rewrites the file holding UA's row; the old file stays in the folder (a plain
    parquet read sees both values) but the Delta snapshot, and so Feast, sees only the new."""
    lake, tables = feast_lake
    day = DAYS[2]
    where = {"as_of_date": [day]}
    ua = tables.read(CARRIER_STATS, partitions=where).where("carrier = 'UA'").toPandas()
    old = float(ua.disrupted_rate_7d.iloc[0])
    corrected = ua.assign(disrupted_rate_7d=0.987)
    corrected.attrs = {}
    tables.merge(CARRIER_STATS, pa.Table.from_pandas(corrected, schema=CARRIER_STATS.arrow_schema))

    folder = pq.read_table(lake.table_uri("gold.carrier_stats")).to_pandas()
    stale = folder[(folder.carrier == "UA") & (folder.as_of_date.astype(str) == str(day))]
    assert {old, 0.987} <= set(stale.disrupted_rate_7d)  # the trap is real

    fs = store.feature_store(lake)
    offline = historical(
        fs,
        [{"row": 0, "carrier": "UA", "event_timestamp": end_of_day_utc(day)}],
        ["carrier_stats:disrupted_rate_7d"],
    )
    assert offline["disrupted_rate_7d"].tolist() == [0.987]
    materialize.run(lake, day)
    online = fs.get_online_features(
        features=["carrier_stats:disrupted_rate_7d"], entity_rows=[{"carrier": "UA"}]
    ).to_dict()
    assert online["disrupted_rate_7d"] == [0.987]


@pytest.fixture()
def redis_lake(feast_lake, tmp_path, redis_server):
    """The same lakehouse with its own registry and the run's Redis as online store (db 8)."""
    lake, tables = feast_lake
    client = redis_server.client(8)
    client.flushdb()
    on_redis = lake.model_copy(
        update={
            "feast_online_store": "redis",
            "feast_redis": redis_server.connection_string(8),
            "feast_registry": str(tmp_path / "registry.db"),
        }
    )
    yield on_redis, client
    client.flushdb()


def test_redis_online_store_end_to_end(redis_lake):
    lake, client = redis_lake
    store.apply(lake)  # `feast apply` sets up the Redis online store
    materialize.run(lake, DAYS[3])
    assert client.dbsize() > 0  # the features really are in Redis
    online, offline = online_and_offline(lake, DAYS[3])
    assert online["route_stats__flights_7d"].notna().all()
    pd.testing.assert_frame_equal(online, offline, check_dtype=False)


def test_a_registry_read_during_a_write_sees_a_whole_registry(settings, tmp_path):
    """Readers (scoring, training) parse the file registry while `materialize` rewrites it;
    Feast's own file store truncates it first, so a reader could find no feature services."""
    import threading

    from feast.infra.registry.registry import get_registry_store_class_from_type
    from feast.protos.feast.core.FeatureService_pb2 import FeatureService
    from feast.protos.feast.core.Registry_pb2 import Registry
    from feast.repo_config import RegistryConfig

    config = store.repo_config_dict(settings)["registry"]
    store_class = get_registry_store_class_from_type(config["registry_store_type"])
    registry_store = store_class(
        RegistryConfig(registry_type="file", path=str(tmp_path / "registry.db")), tmp_path
    )
    proto = Registry()
    for i in range(2000):
        service = FeatureService()
        service.spec.name, service.spec.project = f"service_{i}", "nightjar"
        service.spec.description = "x" * 200
        proto.feature_services.append(service)
    registry_store.update_registry_proto(proto)

    done = threading.Event()

    def rewrite() -> None:
        for _ in range(200):
            registry_store.update_registry_proto(proto)
        done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    seen = set()
    while not done.is_set():
        seen.add(len(registry_store.get_registry_proto().feature_services))
    writer.join()
    assert seen == {2000}
    assert not [p for p in tmp_path.iterdir() if p.name != "registry.db"]  # no temporary left


def test_after_the_lakehouse_moves_feast_reads_the_new_tables_not_the_old(
    feast_lake, spark, tmp_path, caplog
):
    """The registry stores each source's absolute path. A lakehouse moved elsewhere (another
    state folder, object storage) is re-applied on the next open, not read at the old place."""
    import shutil

    from jobs.common.delta import open_tables

    lake, _ = feast_lake
    shutil.copytree(lake.lakehouse, tmp_path / "lakehouse")
    shutil.copy(lake.feast_registry, tmp_path / "registry.db")  # the shared one stays as is
    moved = lake.model_copy(
        update={
            "lakehouse_uri": str(tmp_path / "lakehouse"),
            "feast_registry": str(tmp_path / "registry.db"),
        }
    )
    stale = store.unchecked_feature_store(moved)
    assert stale.get_data_source("gold_carrier_stats").path == lake.table_uri("gold.carrier_stats")
    assert "reads gold_" in store.registry_problems(stale, moved)
    # the moved copy now differs from the original: only a read of the new place sees 0.321
    day = DAYS[2]
    moved_tables = open_tables(spark, moved)
    ua = moved_tables.read(CARRIER_STATS, partitions={"as_of_date": [day]})
    ua = ua.where("carrier = 'UA'").toPandas().assign(disrupted_rate_7d=0.321)
    ua.attrs = {}
    moved_tables.merge(CARRIER_STATS, pa.Table.from_pandas(ua, schema=CARRIER_STATS.arrow_schema))

    fs = store.feature_store(moved)
    assert "Feast's registry is out of date" in caplog.text
    paths = {source.name: source.path for source in fs.list_data_sources()}
    assert paths["gold_carrier_stats"] == moved.table_uri("gold.carrier_stats")
    assert all(path.startswith(str(tmp_path / "lakehouse")) for path in paths.values())
    assert store.registry_problems(fs, moved) is None
    row = {"row": 0, "carrier": "UA", "event_timestamp": end_of_day_utc(day)}
    assert historical(fs, [row], ["carrier_stats:disrupted_rate_7d"])[
        "disrupted_rate_7d"
    ].tolist() == [0.321]
