"""The column-wise materialization engine (jobs/adapters/feast_arrow_engine.py) against Feast's
stock local engine: the same window written by each must give byte-identical online stores
(SQLite rows, Redis hashes) and the same ``get_online_features`` answers, for every feature
view."""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from jobs.adapters import feast_arrow_engine
from jobs.common.dates import end_of_day_utc
from jobs.common.delta.snapshot import read_arrow
from jobs.features import store
from jobs.lakehouse import tables as tb
from tests.feature_lake import DAYS

DAY = DAYS[3]
CARRIER_STATS = tb.gold_stats("carrier", (7, 28))


def window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The daily task's window for ``day`` (jobs/features/materialize.py)."""
    return end_of_day_utc(day - dt.timedelta(days=1)) + dt.timedelta(microseconds=1), (
        end_of_day_utc(day)
    )


def feature_store(settings, engine: str):
    fs = store.feature_store(settings)
    assert fs.config.batch_engine_config["type"] == feast_arrow_engine.ENGINE  # the configured one
    if engine == "stock":
        fs.config.batch_engine_config = "local"  # Feast's own writer, for the reference copy
    return fs


def materialize(settings, engine: str, *days: dt.date) -> None:
    fs = feature_store(settings, engine)
    for day in days:
        fs.materialize(*window(day))


def online(settings, day: dt.date) -> dict:
    """Every feature view's online answer for up to 40 of its entities in ``day``'s window (and
    one unknown key), with event timestamps and each value's Python type."""
    fs = store.feature_store(settings)
    start, end = window(day)
    answers = {}
    for view in fs.list_feature_views():
        source = read_arrow(view.batch_source.path).to_pandas()
        ts = source[view.batch_source.timestamp_field].dt.tz_localize(None)
        in_window = source[(ts >= start.replace(tzinfo=None)) & (ts <= end.replace(tzinfo=None))]
        key = view.entity_columns[0].name
        keys = sorted(in_window[key].dropna().unique())[:40] + ["NO-SUCH-KEY"]
        assert len(keys) > 1, view.name
        response = fs.get_online_features(
            features=[f"{view.name}:{f.name}" for f in view.features],
            entity_rows=[{key: k} for k in keys],
        ).to_dict(include_event_timestamps=True)
        answers[view.name] = {
            name: [(type(v).__name__, v) for v in values] for name, values in response.items()
        }
    return answers


def sqlite_rows(settings) -> dict[str, list[tuple]]:
    with sqlite3.connect(settings.state_dir / "feast" / "online.db") as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            name: conn.execute(
                f'SELECT * FROM "{name}" ORDER BY entity_key, feature_name'
            ).fetchall()
            for name in names
        }


def redis_hashes(client) -> dict[bytes, dict[bytes, bytes]]:
    return {key: client.hgetall(key) for key in client.scan_iter(count=1000)}


def stats_row(carrier: str, day: dt.date, rate: float, event_ts: dt.datetime) -> dict:
    row = {f.name: None for f in CARRIER_STATS.arrow_schema}
    row.update(
        carrier=carrier,
        as_of_date=day,
        event_ts=event_ts.replace(tzinfo=None),
        flights_1d=3,
        disrupted_rate_7d=rate,
    )
    return row


def write_carrier(
    tables, carrier: str, rate: float, day: dt.date = DAY, event_ts: dt.datetime | None = None
) -> None:
    event_ts = event_ts or end_of_day_utc(DAY)
    row = stats_row(carrier, day, rate, event_ts)
    tables.merge(CARRIER_STATS, pa.Table.from_pylist([row], schema=CARRIER_STATS.arrow_schema))


def rate_online(settings, carrier: str):
    fs = store.feature_store(settings)
    return fs.get_online_features(
        features=["carrier_stats:disrupted_rate_7d", "carrier_stats:flights_1d"],
        entity_rows=[{"carrier": carrier}],
    ).to_dict()


# --- the byte encoders against Feast's own converters (no lakehouse needed) -------------------
ENCODER_CASES = {
    "double": (ValueType.DOUBLE, pa.array([0.0, -0.0, 1.5, None, float("nan"), 1e300, 5e-324])),
    "float": (ValueType.FLOAT, pa.array([0.1, None, -3.5, 0.0])),
    "double from int": (ValueType.DOUBLE, pa.array([0, 3, None, -7])),
    "int64": (ValueType.INT64, pa.array([0, 1, 127, 128, 16384, -1, -(2**63), 2**63 - 1])),
    "int64 with nulls": (ValueType.INT64, pa.array([0, None, 300, -5])),
    "int32": (ValueType.INT32, pa.array([0, -1, 2**31 - 1, -(2**31), None], pa.int32())),
    "int32 from float with nulls": (ValueType.INT32, pa.array([1.0, None, 1999.0, float("nan")])),
    "bool": (ValueType.BOOL, pa.array([True, False, None])),
    "string": (ValueType.STRING, pa.array(["", "abc", None, "é" * 100, "x" * 300])),
    "bytes": (ValueType.BYTES, pa.array([b"", b"\x00\xff", None])),
    # a feature with no value in the window (every row null): nothing to encode but the null
    "double, all null": (ValueType.DOUBLE, pa.array([None, None], pa.float64())),
    "double, all NaN": (ValueType.DOUBLE, pa.array([float("nan")])),
    "float, all null": (ValueType.FLOAT, pa.array([None], pa.float64())),
    "int64, all null": (ValueType.INT64, pa.array([None, None], pa.int64())),
    "string, all null": (ValueType.STRING, pa.array([None], pa.string())),
}


@pytest.mark.parametrize("case", ENCODER_CASES)
def test_values_serialize_to_the_bytes_feast_writes(case):
    value_type, values = ENCODER_CASES[case]
    column = feast_arrow_engine.EncodedColumn("v", "c", pa.chunked_array([values]), value_type)
    ours = np.asarray(column.values.to_pylist(), dtype=object)[column.indices].tolist()
    feast = python_values_to_proto_values(values.to_numpy(zero_copy_only=False), value_type)
    assert ours == [v.SerializeToString() for v in feast]


def test_entity_keys_serialize_like_feast():
    table = pa.table({"tailnum": ["N1", "ABCDEFG", "é"], "n": pa.array([1, -2, 3])})
    ours = feast_arrow_engine.entity_keys(
        table, {"tailnum": ValueType.STRING, "n": ValueType.INT64}, "v"
    ).to_pylist()
    feast = [
        serialize_entity_key(
            EntityKey(
                join_keys=["tailnum", "n"],
                entity_values=[Value(string_val=t), Value(int64_val=n)],
            ),
            3,
        )
        for t, n in zip(table["tailnum"].to_pylist(), table["n"].to_pylist(), strict=True)
    ]
    assert ours == feast


@pytest.mark.parametrize(
    "value_type, values",
    [
        (ValueType.DOUBLE_LIST, pa.array([[1.0], None])),
        (ValueType.INT64, pa.array(["1", "2"])),
        (ValueType.UNIX_TIMESTAMP, pa.array([dt.datetime(2013, 1, 1)])),
        (ValueType.INT32, pa.array([2**31])),
        (ValueType.INT64, pa.array([2.5, None])),  # Feast would truncate it
    ],
)
def test_an_unsupported_column_fails_naming_the_view_and_column(value_type, values):
    with pytest.raises(feast_arrow_engine.UnsupportedForArrowWrite, match="'plane_stats'.*'seats'"):
        feast_arrow_engine.EncodedColumn(
            "plane_stats", "seats", pa.chunked_array([values]), value_type
        )


# --- SQLite ------------------------------------------------------------------------------------
@pytest.fixture()
def sqlite_pair(feast_lake, tmp_path):
    """Two online stores (and registries) over the same lakehouse: stock and column-wise."""
    lake, tables = feast_lake
    pair = []
    for name in ("stock", "ours"):
        settings = lake.model_copy(
            update={
                "state_dir": tmp_path / name,
                "feast_registry": str(tmp_path / name / "registry.db"),
            }
        )
        store.apply(settings)
        pair.append(settings)
    return (*pair, tables)


def test_sqlite_rows_and_online_reads_equal_the_stock_engines(sqlite_pair):
    stock, ours, _ = sqlite_pair
    materialize(stock, "stock", DAY)
    materialize(ours, "ours", DAY)
    expected = sqlite_rows(stock)
    assert sum(map(len, expected.values())) > 1000
    assert sqlite_rows(ours) == expected  # value bytes, value_text, event_ts, created_ts
    assert online(ours, DAY) == online(stock, DAY)


def test_a_window_of_many_batches_keeps_each_entitys_latest_row_as_stock_does(
    sqlite_pair, monkeypatch
):
    """Streamed in batches of 5 rows, with two rows of one entity in the window, in different
    files, written newest-first for one carrier and oldest-first for the other."""
    stock, ours, tables = sqlite_pair
    earlier = end_of_day_utc(DAY) - dt.timedelta(hours=1)  # in DAY's window, a day's partition
    write_carrier(tables, "ZW", 0.9, DAYS[2], earlier)  # the older row first
    write_carrier(tables, "ZW", 0.25)
    write_carrier(tables, "ZV", 0.5)  # the newer row first
    write_carrier(tables, "ZV", 0.1, DAYS[2], earlier)
    monkeypatch.setattr(feast_arrow_engine, "BATCH_ROWS", 5)
    batches = []
    streamed = feast_arrow_engine.latest_per_entity
    monkeypatch.setattr(
        feast_arrow_engine,
        "latest_per_entity",
        lambda *args: (batches.append(len(b)) or b for b in streamed(*args)),
    )
    materialize(stock, "stock", DAY)
    materialize(ours, "ours", DAY)
    assert len(batches) > 100 and max(batches) <= 5
    assert sqlite_rows(ours) == sqlite_rows(stock)
    assert rate_online(ours, "ZW")["disrupted_rate_7d"] == [0.25]
    assert rate_online(ours, "ZV")["disrupted_rate_7d"] == [0.5]


def test_sqlite_rewrite_is_idempotent_and_newer_or_corrected_values_replace(sqlite_pair):
    stock, ours, tables = sqlite_pair
    write_carrier(tables, "ZY", 0.25)
    materialize(ours, "ours", DAYS[2], DAY)  # the day before, then a newer day
    after = sqlite_rows(ours)
    materialize(ours, "ours", DAY)
    assert sqlite_rows(ours) == after  # writing the same window again changes nothing
    materialize(stock, "stock", DAYS[2], DAY)
    assert after == sqlite_rows(stock)  # the newer day replaced the older one, as stock does
    assert rate_online(ours, "ZY")["disrupted_rate_7d"] == [0.25]

    write_carrier(tables, "ZY", 0.75)  # a correction: same event timestamp, new value
    materialize(ours, "ours", DAY)
    assert rate_online(ours, "ZY") == {
        "carrier": ["ZY"],
        "disrupted_rate_7d": [0.75],
        "flights_1d": [3],
    }


# --- Redis -------------------------------------------------------------------------------------
@pytest.fixture()
def redis_lake(feast_lake, tmp_path, redis_server):
    """The lakehouse with its own registry and the run's Redis as online store (database 7)."""
    lake, tables = feast_lake
    client = redis_server.client(7)
    client.flushdb()
    on_redis = lake.model_copy(
        update={
            "feast_online_store": "redis",
            "feast_redis": redis_server.connection_string(7),
            "feast_registry": str(tmp_path / "registry.db"),
        }
    )
    store.apply(on_redis)
    yield on_redis, client, tables
    client.flushdb()


@pytest.mark.parametrize("batches", ["one batch per view", "batches of 50 rows"])
def test_redis_hashes_and_online_reads_equal_the_stock_engines(redis_lake, batches, monkeypatch):
    lake, client, _ = redis_lake
    if batches == "batches of 50 rows":  # and the TTL expiry reads every stamp back
        monkeypatch.setattr(feast_arrow_engine, "BATCH_ROWS", 50)
        monkeypatch.setattr(feast_arrow_engine, "REDIS_FRESH_MAX", 0)
    materialize(lake, "stock", DAY)
    expected, expected_online = redis_hashes(client), online(lake, DAY)
    assert len(expected) > 100
    client.flushdb()
    materialize(lake, "ours", DAY)
    assert redis_hashes(client) == expected  # keys, mmh3 fields, Value bytes, _ts fields
    assert online(lake, DAY) == expected_online


def test_redis_rewrite_is_idempotent_and_newer_or_corrected_values_replace(redis_lake):
    lake, client, tables = redis_lake
    write_carrier(tables, "ZX", 0.25)
    materialize(lake, "ours", DAYS[2], DAY)
    after = redis_hashes(client)
    materialize(lake, "ours", DAY)
    assert redis_hashes(client) == after
    client.flushdb()
    materialize(lake, "stock", DAYS[2], DAY)
    assert redis_hashes(client) == after
    client.flushdb()
    materialize(lake, "ours", DAYS[2], DAY)
    assert rate_online(lake, "ZX")["disrupted_rate_7d"] == [0.25]

    write_carrier(tables, "ZX", 0.75)  # same timestamp: replaced because of skip_dedup
    materialize(lake, "ours", DAY)
    assert rate_online(lake, "ZX") == {
        "carrier": ["ZX"],
        "disrupted_rate_7d": [0.75],
        "flights_1d": [3],
    }
