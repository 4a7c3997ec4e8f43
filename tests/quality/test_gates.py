"""The silver and gold gates on real Delta partitions: results recorded, critical stops."""

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from jobs.lakehouse import tables as tb
from jobs.pipeline import run_stage
from jobs.quality import gates
from jobs.quality.gx_runner import QualityGateError

DAY = dt.date(2013, 4, 2)


@pytest.fixture()
def built_day(spark, lake, tables):
    for stage in ("land", "bronze", "silver", "gold"):
        run_stage(stage, DAY, "r", lake, spark=spark)
    return lake, tables


def results(tables, layer):
    return tables.read(
        gates.QUALITY_RESULTS, partitions={"layer": [layer], "logical_date": [DAY]}
    ).toPandas()


def test_a_clean_day_passes_both_gates_and_every_result_is_stored(spark, built_day):
    lake, tables = built_day
    assert gates.check_silver(spark, tables, lake, DAY, "r")["failed"] == 0
    assert gates.check_gold(spark, tables, lake, DAY, "r")["failed"] == 0
    silver = results(tables, "silver")
    assert silver.success.all()
    assert silver.suite.value_counts().to_dict() == {
        "silver_flights": 15,  # 14 from the suite + the quarantine rate
        "silver_flights_trends": 11,  # 9 + 2 correlations; no history: open bands, recorded
    }
    assert set(results(tables, "gold").suite) == {"gold_flights", "gold_entity_stats"}
    pages = list((lake.state_dir / "quality" / "data_docs" / "validations").rglob("*.html"))
    assert {p.parts[-4] for p in pages} >= {"silver_flights", "gold_flights"}


def test_a_bad_silver_partition_stops_with_a_clear_message(spark, built_day):
    lake, tables = built_day
    flights = tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": [DAY]})
    bad = flights.withColumn(  # every UA flight now claims the same id, and distance 0
        "flight_id", F.when(F.col("carrier") == "UA", F.lit("dup")).otherwise(F.col("flight_id"))
    ).withColumn("distance", F.when(F.col("carrier") == "UA", 0.0).otherwise(F.col("distance")))
    tables.overwrite_partitions(tb.SILVER_FLIGHTS, bad.toArrow(), {"flight_date": [DAY]})
    with pytest.raises(QualityGateError) as error:
        gates.check_silver(spark, tables, lake, DAY, "r")
    message = str(error.value)
    assert "expect_column_values_to_be_unique(flight_id)" in message
    assert "expect_column_values_to_be_between(distance)" in message
    failed = results(tables, "silver").query("not success")
    assert set(failed.column) == {"flight_id", "distance"}
    assert (
        json.loads(failed.set_index("column").loc["distance", "observed_value"])["unexpected_count"]
        == bad.where("carrier = 'UA'").count()
    )


def test_a_quarantine_rate_above_the_threshold_is_critical(spark, built_day):
    lake, tables = built_day
    row = gates.quarantine_rate_rows(tables, lake, [DAY], "r")[DAY]
    assert row["success"] is True and row["observed_value"] == "0.0000"  # a clean day
    recon = tables.read(tb.RECONCILIATION).where("source_table = 'flights'")
    tables.overwrite_partitions(
        tb.RECONCILIATION,
        recon.withColumn("quarantined", F.lit(50).cast("long")).toArrow(),
        {"source_table": ["flights"], "logical_date": [DAY]},
    )
    row = gates.quarantine_rate_rows(tables, lake, [DAY], "r")[DAY]
    assert row["success"] is False and float(row["observed_value"]) > lake.max_quarantine_rate


def test_each_day_gx_validates_is_that_days_rows_without_sparks_query_metrics(spark, settings):
    """Spark Connect's toPandas attaches the query's metrics to the frame, and pandas
    deep-copies attrs into every frame derived from it: the gates drop them."""
    days = [DAY, DAY + dt.timedelta(days=1)]
    frame = spark.createDataFrame([(DAY, 1), (days[1], 2), (days[1], 3)], "d date, x int")
    parts = gates.per_day(frame, "d", days, settings, drop=True)
    assert {day: part.x.tolist() for day, part in parts.items()} == {DAY: [1], days[1]: [2, 3]}
    assert [part.attrs for part in parts.values()] == [{}, {}]
