"""The cross-day correlation the silver trends gate records (jobs/quality/trends.py)."""

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from jobs.quality.trends import exact_corr


def frame(seed: int = 7, rows: int = 2_000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dep = rng.integers(-20, 400, rows).astype(float)
    arr = dep + rng.normal(0, 25, rows).round()
    arr[rng.choice(rows, 50, replace=False)] = np.nan  # cancelled: no arrival
    return pd.DataFrame({"dep_delay": dep, "arr_delay": arr, "part": rng.integers(0, 7, rows)})


def test_the_correlation_is_pearsons_over_the_rows_with_both(spark):
    rows = frame()
    got = spark.createDataFrame(rows).agg(exact_corr("dep_delay", "arr_delay")).first()[0]
    assert abs(got - rows["dep_delay"].corr(rows["arr_delay"])) < 1e-12


def test_the_correlation_does_not_depend_on_the_order_rows_are_read_in(spark):
    """Spark's own corr differs in its last digits between these orders; the recorded one may
    not (a history rebuild must record what the daily runs did)."""
    df = spark.createDataFrame(frame())
    orders = [
        df.orderBy("dep_delay", "arr_delay"),
        df.orderBy(F.col("arr_delay").desc_nulls_first(), "dep_delay"),
        df.repartition(7, "part"),
    ]
    values = {o.agg(exact_corr("dep_delay", "arr_delay")).first()[0] for o in orders}
    assert len(values) == 1


def test_no_spread_gives_no_correlation(spark):
    rows = pd.DataFrame({"a": [1.0, 1.0, 1.0], "b": [2.0, 3.0, 4.0]})
    assert spark.createDataFrame(rows).agg(exact_corr("a", "b")).first()[0] is None


def test_large_sums_give_the_correlation_instead_of_overflowing_a_decimal(spark):
    """The spreads' product has ~36 digits here (values ~1e6 over 2,000 rows): more than a
    decimal holds. A day of 10M flights failed check_silver this way."""
    rows = frame()
    rows["dep_delay"] = rows["dep_delay"] * 5_000 + 1_000_000
    rows["arr_delay"] = rows["arr_delay"] * 5_000 - 1_000_000
    got = spark.createDataFrame(rows).agg(exact_corr("dep_delay", "arr_delay")).first()[0]
    assert abs(got - rows["dep_delay"].corr(rows["arr_delay"])) < 1e-12
