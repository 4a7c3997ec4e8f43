"""Every critical expectation, failed on a crafted bad Delta partition.

One clean day (2013-04-02) is built through land -> bronze -> silver -> gold, with a week of
silver history before it so the cross-day bands are active. Each case rewrites one partition
with one defect, runs the gate that owns the expectation, checks the gate stops naming that
expectation and records it as failed in ``quality.results``, then puts the partition back.
A coverage test ties the cases to the suite files: a new critical expectation needs a case.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pytest

from jobs.common.delta import open_tables
from jobs.lakehouse import tables as tb
from jobs.pipeline import run_stage
from jobs.quality import gates
from jobs.quality.gx_runner import QualityGateError, load_suite

DAY = dt.date(2013, 4, 2)
HISTORY_DAYS = 7
CARRIER_STATS = tb.gold_stats("carrier", (7, 28))


@dataclass(frozen=True)
class Case:
    suite: str
    expectation: str
    column: str | None
    table: object  # TableSpec
    partition: str
    defect: Callable[[pd.DataFrame], pd.DataFrame]

    @property
    def id(self) -> str:
        return f"{self.suite}:{self.expectation}({self.column or ''})"


def first_row(column, value):
    def defect(df):
        df = df.copy()
        df[column] = df[column].astype(object)
        df.loc[df.index[0], column] = value
        return df.infer_objects()

    return defect


def shift_first(column, delta):
    def defect(df):
        df = df.copy()
        df.loc[df.index[0], column] = df[column].iloc[0] + delta
        return df

    return defect


def duplicate_first_id(df):
    df = df.copy()
    df.loc[df.index[1], "flight_id"] = df["flight_id"].iloc[0]
    return df


def corrupt_lines(df):
    df = df.copy()
    df.loc[df.index[: len(df) // 20], "_corrupt_record"] = "garbage,line"
    return df


def PARTITION(table, column):
    return {"table": table, "partition": column}


SILVER = PARTITION(tb.SILVER_FLIGHTS, "flight_date")
GOLD = PARTITION(tb.GOLD_FLIGHTS, "flight_date")
STATS = PARTITION(CARRIER_STATS, "as_of_date")
BRONZE = PARTITION(tb.BRONZE["flights"], "_logical_date")
HOUR = pd.Timedelta(hours=1)

CASES = [
    Case("bronze_flights", "expect_table_row_count_to_be_between", None, **BRONZE,
         defect=lambda df: df.iloc[0:0]),
    Case("bronze_flights", "expect_column_values_to_be_null", "_corrupt_record", **BRONZE,
         defect=corrupt_lines),
    Case("silver_flights", "expect_table_row_count_to_be_between", None, **SILVER,
         defect=lambda df: df.iloc[0:0]),
    *[
        Case("silver_flights", "expect_column_values_to_not_be_null", column, **SILVER,
             defect=first_row(column, None))
        for column in ("flight_id", "carrier", "origin", "dest", "sched_dep_utc")
    ],
    Case("silver_flights", "expect_column_values_to_be_unique", "flight_id", **SILVER,
         defect=duplicate_first_id),
    Case("silver_flights", "expect_column_values_to_be_between", "distance", **SILVER,
         defect=first_row("distance", 0.0)),
    Case("silver_flights", "expect_column_values_to_be_in_set", "carrier", **SILVER,
         defect=first_row("carrier", "ZZ")),
    Case("silver_flights", "expect_column_values_to_be_in_set", "origin", **SILVER,
         defect=first_row("origin", "XXX")),
    Case("silver_flights", "expect_column_values_to_be_in_set", "sched_dep_local_date", **SILVER,
         defect=shift_first("sched_dep_utc", 24 * HOUR)),
    Case("silver_flights_trends", "expect_table_row_count_to_be_between", None, **SILVER,
         defect=lambda df: df.iloc[: len(df) // 10]),
    Case("gold_flights", "expect_table_row_count_to_equal", None, **GOLD,
         defect=lambda df: df.iloc[1:]),
    *[
        Case("gold_flights", "expect_column_values_to_not_be_null", column, **GOLD,
             defect=first_row(column, None))
        for column in ("flight_id", "prediction_ts", "sched_dep_utc", "is_disrupted")
    ],
    Case("gold_flights", "expect_column_values_to_be_unique", "flight_id", **GOLD,
         defect=duplicate_first_id),
    Case("gold_flights", "expect_column_pair_values_a_to_be_greater_than_b", None, **GOLD,
         defect=shift_first("prediction_ts", 48 * HOUR)),
    Case("gold_flights", "expect_column_values_to_be_between", "sched_dep_hour", **GOLD,
         defect=first_row("sched_dep_hour", 24)),
    Case("gold_entity_stats", "expect_column_values_to_not_be_null", "entity_key", **STATS,
         defect=first_row("carrier", None)),
    Case("gold_entity_stats", "expect_column_values_to_be_in_set", "event_ts", **STATS,
         defect=shift_first("event_ts", HOUR)),
    Case("gold_entity_stats", "expect_column_values_to_be_between", "disrupted_rate_window",
         **STATS, defect=first_row("disrupted_rate_28d", 1.5)),
    Case("gold_entity_stats", "expect_column_values_to_be_between", "cancel_rate_window",
         **STATS, defect=first_row("cancel_rate_28d", -0.1)),
    Case("gold_entity_stats", "expect_column_values_to_be_between", "flights_window", **STATS,
         defect=first_row("flights_28d", 0)),
]  # fmt: skip

GATE = {
    "bronze_flights": gates.check_bronze,
    "silver_flights": gates.check_silver,
    "silver_flights_trends": gates.check_silver,
    "gold_flights": gates.check_gold,
    "gold_entity_stats": gates.check_gold,
}


@pytest.fixture(scope="module")
def built(spark, settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("critical")
    lake = settings.model_copy(
        update={"lakehouse_uri": str(root / "lakehouse"), "landing_uri": str(root / "landing")}
    )
    tables = open_tables(spark, lake)
    for stage in ("land", "bronze", "silver", "gold"):
        run_stage(stage, DAY, "r", lake, spark=spark)
    # A week of history for the cross-day bands: D's flights copied to the days before it.
    silver = tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": [DAY]}).toPandas()
    for n in range(1, HISTORY_DAYS + 1):
        day = DAY - dt.timedelta(days=n)
        copy = silver.assign(flight_date=day, flight_id=silver.flight_id + f"-h{n}")
        tables.overwrite_partitions(tb.SILVER_FLIGHTS, to_arrow(copy, tb.SILVER_FLIGHTS),
                                    {"flight_date": [day]})  # fmt: skip
    return lake, tables


def to_arrow(df: pd.DataFrame, spec) -> pa.Table:
    df = df.copy()
    df.attrs = {}  # Spark Connect's plan metrics, which Arrow cannot store
    return pa.Table.from_pandas(df, schema=spec.arrow_schema, preserve_index=False)


def failed_rows(tables, suite: str) -> pd.DataFrame:
    layer = suite.split("_")[0]
    results = tables.read(
        gates.QUALITY_RESULTS, partitions={"layer": [layer], "logical_date": [DAY]}
    ).toPandas()
    return results[(results.suite == suite) & ~results.success]


def test_the_clean_day_passes_every_gate_with_the_bands_active(spark, built):
    lake, tables = built
    for gate in (gates.check_bronze, gates.check_silver, gates.check_gold):
        assert gate(spark, tables, lake, DAY, "r")["failed"] == 0
    trends = (
        tables.read(gates.QUALITY_RESULTS, partitions={"layer": ["silver"], "logical_date": [DAY]})
        .where("suite = 'silver_flights_trends'")
        .toPandas()
    )
    suite = load_suite("silver_flights_trends")
    assert len(trends) == len(suite["expectations"]) + len(suite["meta"]["correlations"])
    # with a week of identical history every band is closed around D's own statistics
    bounds = [json.loads(k) for k in trends.kwargs if "max_value" in json.loads(k)]
    assert len(bounds) == 10 and all(b["min_value"] < b["max_value"] for b in bounds)
    assert trends.success.all()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_crafted_bad_partition_fails_its_critical_expectation(spark, built, case):
    lake, tables = built
    where = {case.partition: [DAY]}
    clean = tables.read(case.table, partitions=where).toPandas()
    tables.overwrite_partitions(case.table, to_arrow(case.defect(clean), case.table), where)
    try:
        with pytest.raises(QualityGateError) as error:
            GATE[case.suite](spark, tables, lake, DAY, "r")
        assert f"{case.expectation}({case.column or ''})" in str(error.value)
        failed = failed_rows(tables, case.suite)
        hit = failed[(failed.expectation == case.expectation) & (failed.severity == "critical")]
        assert len(hit) >= 1
        if case.column:
            assert case.column in set(hit.column)
    finally:
        tables.overwrite_partitions(case.table, to_arrow(clean, case.table), where)


def test_every_critical_expectation_in_the_suites_has_a_crafted_case():
    critical = {
        (suite, e["type"], e["kwargs"].get("column"))
        for suite in GATE
        for e in load_suite(suite)["expectations"]
        if e["meta"]["severity"] == "critical"
    }
    covered = {(c.suite, c.expectation, c.column) for c in CASES}
    # the bronze column set cannot be broken in a Delta partition (its schema is enforced):
    # see test_bronze_columns_missing_from_the_landing_contract_are_critical
    assert critical - covered == {
        ("bronze_flights", "expect_table_columns_to_match_set", None),
    }


def test_bronze_columns_missing_from_the_landing_contract_are_critical(spark, built):
    lake, tables = built
    from jobs.quality.gx_runner import validate

    frame = tables.read(tb.BRONZE["flights"], partitions={"_logical_date": [DAY]}).toPandas()
    columns = list(frame.columns)
    outcome = validate(
        frame.drop(columns=["dep_delay"]), "bronze_flights", "bronze", DAY,
        {"columns": columns}, lake, "r",
    )  # fmt: skip
    [failed] = outcome.failed_with("critical")
    assert failed["expectation"] == "expect_table_columns_to_match_set"
    assert json.loads(failed["observed_value"]) == {"missing": ["dep_delay"]}


def test_a_volume_dip_within_the_critical_band_is_only_a_warning(spark, built):
    lake, tables = built
    where = {"flight_date": [DAY]}
    clean = tables.read(tb.SILVER_FLIGHTS, partitions=where).toPandas()
    half = clean.iloc[: len(clean) // 2]
    tables.overwrite_partitions(tb.SILVER_FLIGHTS, to_arrow(half, tb.SILVER_FLIGHTS), where)
    try:
        result = gates.check_silver(spark, tables, lake, DAY, "r")  # does not raise
        failed = failed_rows(tables, "silver_flights_trends")
        assert result["failed"] == 1 and list(failed.severity) == ["warning"]
        assert json.loads(failed.iloc[0].observed_value) == len(half)
    finally:
        tables.overwrite_partitions(tb.SILVER_FLIGHTS, to_arrow(clean, tb.SILVER_FLIGHTS), where)


@pytest.mark.parametrize("case", [c for c in CASES if c.column == "flight_id"], ids=lambda c: c.id)
def test_gx_spark_engine_reaches_the_same_verdicts(spark, built, case):
    lake, tables = built
    on_spark = lake.model_copy(update={"quality_engine": "spark"})
    gate = GATE[case.suite]
    assert gate(spark, tables, on_spark, DAY, "r")["failed"] == 0
    where = {case.partition: [DAY]}
    clean = tables.read(case.table, partitions=where).toPandas()
    tables.overwrite_partitions(case.table, to_arrow(case.defect(clean), case.table), where)
    try:
        with pytest.raises(QualityGateError, match=rf"{case.expectation}\(flight_id\)"):
            gate(spark, tables, on_spark, DAY, "r")
    finally:
        tables.overwrite_partitions(case.table, to_arrow(clean, case.table), where)


def test_a_broken_feature_correlation_is_recorded_as_a_warning(spark, built):
    lake, tables = built
    where = {"flight_date": [DAY]}
    clean = tables.read(tb.SILVER_FLIGHTS, partitions=where).toPandas()
    shuffled = clean.assign(arr_delay=clean.arr_delay.sample(frac=1, random_state=0).to_numpy())
    tables.overwrite_partitions(tb.SILVER_FLIGHTS, to_arrow(shuffled, tb.SILVER_FLIGHTS), where)
    try:
        gates.check_silver(spark, tables, lake, DAY, "r")  # a warning: does not raise
        failed = failed_rows(tables, "silver_flights_trends")
        broken = failed[failed.column == "dep_delay,arr_delay"]
        assert list(broken.severity) == ["warning"]
        assert abs(json.loads(broken.iloc[0].observed_value)) < 0.3  # was ~0.9
    finally:
        tables.overwrite_partitions(tb.SILVER_FLIGHTS, to_arrow(clean, tb.SILVER_FLIGHTS), where)
