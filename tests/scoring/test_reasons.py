"""Reasons in ``ml.predictions``: a table written before they existed gets their column, and a
prediction's reasons read as one line. (That the stored reasons are the model's largest SHAP
contributions is tested on real scoring runs in test_scoring.py.)"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from jobs.common.delta import DeltaIOError, TableSpec, open_tables
from jobs.common.delta.snapshot import read_arrow
from jobs.common.delta.spark_native import spark_delta_available
from jobs.scoring.lineage import explain
from jobs.scoring.predictions import PREDICTIONS, migrate

BEFORE, AFTER = dt.date(2013, 3, 4), dt.date(2013, 3, 5)
# ml.predictions as it was declared before reasons were stored
UNEXPLAINED = TableSpec(
    name=PREDICTIONS.name,
    schema=T.StructType([f for f in PREDICTIONS.schema.fields if f.name != "reasons"]),
    partition_by=PREDICTIONS.partition_by,
    key=PREDICTIONS.key,
)


def rows(spec: TableSpec, day: dt.date, reasons=None) -> pa.Table:
    row = {
        "flight_id": f"{day:%Y%m%d}-UA-1545-EWR",
        "flight_date": day,
        "carrier": "UA",
        "origin": "EWR",
        "route": "EWR-IAH",
        "sched_dep_utc": dt.datetime(2013, 3, 4, 12, tzinfo=dt.UTC),
        "probability": 0.7,
        "flagged": True,
        "threshold": 0.5,
        "role": "champion",
        "model_name": "m",
        "model_version": "1",
        "mlflow_run_id": "run",
        "feature_service": "flight_disruption_v1",
        "logical_ts": dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC),
        "_run_id": "r",
        "reasons": reasons,
    }
    return pa.Table.from_pylist([{k: row[k] for k in spec.columns}], spec.arrow_schema)


@pytest.fixture(params=["delta-rs", "spark"])
def store(request, spark, lake):
    if request.param == "spark":
        available, why = spark_delta_available(spark, probe=True)
        assert available, f"Spark-native Delta backend not available: {why}"
    return open_tables(spark, lake, backend=request.param)


def test_a_table_from_before_reasons_gets_their_column_and_keeps_its_rows(store):
    store.overwrite_partitions(UNEXPLAINED, rows(UNEXPLAINED, BEFORE), {"flight_date": [BEFORE]})
    uri = store.uri(PREDICTIONS)
    files = set(DeltaTable(uri).file_uris())
    with pytest.raises(DeltaIOError, match="does not match the code's schema"):
        store.overwrite_partitions(PREDICTIONS, rows(PREDICTIONS, AFTER), {"flight_date": [AFTER]})

    assert migrate(store, "r2")
    assert not migrate(store, "r3")  # once
    assert set(DeltaTable(uri).file_uris()) == files  # no data file rewritten
    reasons = [{"feature": "origin_stats__cancel_rate_7d", "value": 0.31, "contribution": 0.42}]
    store.overwrite_partitions(
        PREDICTIONS, rows(PREDICTIONS, AFTER, reasons), {"flight_date": [AFTER]}
    )
    table = read_arrow(uri).sort_by("flight_date")
    assert table.schema.names == PREDICTIONS.columns
    assert table["flight_date"].to_pylist() == [BEFORE, AFTER]
    assert table["probability"].to_pylist() == [0.7, 0.7]
    assert table["reasons"].to_pylist() == [None, reasons]
    before, after = store.read(PREDICTIONS).orderBy("flight_date").collect()  # Spark too
    assert before["reasons"] is None
    assert [r.asDict() for r in after["reasons"]] == reasons


def test_a_table_of_another_shape_is_left_to_the_writes_check(store):
    other = TableSpec(
        PREDICTIONS.name, T.StructType(UNEXPLAINED.schema.fields[:-1]), ("flight_date",)
    )
    store.create(other)
    assert not migrate(store)
    with pytest.raises(DeltaIOError, match="does not match the code's schema"):
        store.create(PREDICTIONS)


def test_without_a_table_there_is_nothing_to_migrate(store):
    assert not migrate(store)
    assert not store.exists(PREDICTIONS)


def test_reasons_read_as_one_line_naming_the_features_and_their_direction():
    reasons = [
        {"feature": "origin_stats__cancel_rate_7d", "value": 0.3125, "contribution": 0.42},
        {"feature": "plane_stats__flights_28d", "value": 3.0, "contribution": -0.2},
        {"feature": "origin_weather__precip_total", "value": None, "contribution": 0.1},
    ]
    assert explain(reasons) == (
        "raised by origin_stats cancel_rate_7d 0.31, origin_weather precip_total missing; "
        "lowered by plane_stats flights_28d 3"
    )
    assert explain(reasons[1:2]) == "lowered by plane_stats flights_28d 3"
    distance = {"feature": "flight_schedule__distance", "value": 1416.0, "contribution": 0.1}
    assert explain([distance]) == "raised by flight_schedule distance 1,416"
    assert explain(None) == explain([]) == ""  # not flagged, or scored before reasons existed
    route = {"feature": "flight_route__route", "value": None, "contribution": 0.3}
    assert explain([route], {"flight_route__route": "EWR-ORD"}) == (
        "raised by flight_route route EWR-ORD"  # a category is named by the served features
    )
    assert explain([route]) == "raised by flight_route route missing"
