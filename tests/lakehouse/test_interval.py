"""Stages over a data interval: one run over days D1..Dn gives the same tables as n daily runs.

The range crosses a month boundary and starts after days already built, so gold's trailing
windows reach back before the interval (stored counts) and across it (the interval's own days).
Small windows (2 and 5 days) so six days exercise every band.
"""

import datetime as dt

import pytest

from jobs.common.dates import days as day_range
from jobs.common.delta import open_tables
from jobs.common.errors import NightjarError
from jobs.lakehouse import tables as tb
from jobs.pipeline import INTERVAL_STAGES, run_stage
from jobs.quality.gates import QUALITY_RESULTS
from tooling.lakehouse_diff import assert_same_lakehouse, lakehouse_content

BEFORE = day_range(dt.date(2013, 1, 28), dt.date(2013, 1, 29))  # built day by day in both
INTERVAL = day_range(dt.date(2013, 1, 30), dt.date(2013, 2, 2))  # crosses into February
WINDOWS = (2, 5)


def lakehouse(settings, root):
    return settings.model_copy(
        update={
            "lakehouse_uri": str(root / "lakehouse"),
            "landing_uri": str(root / "landing"),
            "rolling_windows_days": WINDOWS,
        }
    )


@pytest.fixture(scope="module")
def built(spark, settings, tmp_path_factory):
    """(daily lakehouse, interval lakehouse, the interval run's results per stage)."""
    daily = lakehouse(settings, tmp_path_factory.mktemp("daily"))
    interval = lakehouse(settings, tmp_path_factory.mktemp("interval"))
    for day in BEFORE + INTERVAL:
        for stage in INTERVAL_STAGES[:-1]:  # the lakehouse's stages; Feast is tested apart
            run_stage(stage, day, f"daily-{day}", daily, spark=spark)
    for day in BEFORE:
        for stage in INTERVAL_STAGES[:-1]:
            run_stage(stage, day, f"daily-{day}", interval, spark=spark)
    end = INTERVAL[-1] + dt.timedelta(days=1)
    results = {
        stage: run_stage(stage, INTERVAL[0], "history", interval, spark=spark, end=end)
        for stage in INTERVAL_STAGES[:-1]
    }
    return daily, interval, results


def test_an_interval_run_builds_the_same_lakehouse_as_daily_runs(built):
    daily, interval, _ = built
    left, right = lakehouse_content(daily.lakehouse_uri), lakehouse_content(interval.lakehouse_uri)
    assert len(left["gold.flights"]) > 4_000  # six days of flights, not an empty comparison
    assert_same_lakehouse(left, right)


def test_every_day_keeps_its_own_partitions_and_reconciles(built, spark):
    _, interval, results = built
    tables = open_tables(spark, interval)
    recon = tables.read(tb.RECONCILIATION, partitions={"logical_date": INTERVAL}).toPandas()
    flights = recon[recon.source_table == "flights"].set_index("logical_date")
    assert sorted(flights.index) == INTERVAL  # one reconciliation row per day, not one for all
    assert (flights.landed == flights.accepted + flights.quarantined + flights.duplicates).all()
    assert results["silver"]["flights"]["landed"] == flights.landed.sum()
    gold_days = tables.read(tb.GOLD_FLIGHTS).select("flight_date").distinct().toPandas()
    assert sorted(gold_days.flight_date) == BEFORE + INTERVAL
    history = [h["run_id"] for h in tables.history(tb.GOLD_FLIGHTS)]
    assert history.count("history") == 1  # the interval's days in one commit


def test_the_gates_report_each_day_against_its_own_bands(built, spark):
    _, interval, results = built
    results_table = open_tables(spark, interval).read(QUALITY_RESULTS).toPandas()
    ours = results_table[results_table._run_id == "history"]
    per_day = ours.groupby(["layer", "logical_date"]).size()
    assert sorted({d for _, d in per_day.index}) == INTERVAL
    # each day's results as many as a daily run records for a day
    daily_run = results_table[results_table._run_id == f"daily-{BEFORE[-1]}"]
    for layer in ("bronze", "silver", "gold"):
        expected = (daily_run.layer == layer).sum()
        assert {per_day[(layer, day)] for day in INTERVAL} == {expected}
    assert results["check_silver"]["failed"] == 0
    # the cross-day row count band of each day is its own trailing mean
    bands = ours[(ours.expectation == "expect_table_row_count_to_be_between")]
    assert bands.kwargs.nunique() > 1


def test_an_interval_must_be_consecutive_days_inside_the_data():
    from jobs.common.dates import as_days, interval_days

    assert interval_days(dt.date(2013, 12, 30), dt.date(2014, 1, 1)) == [
        dt.date(2013, 12, 30),
        dt.date(2013, 12, 31),
    ]
    with pytest.raises(NightjarError, match="empty data interval"):
        interval_days(dt.date(2013, 3, 2), dt.date(2013, 3, 2))
    with pytest.raises(NightjarError, match="outside the source data's range"):
        interval_days(dt.date(2013, 12, 31), dt.date(2014, 1, 2))
    with pytest.raises(NightjarError, match="consecutive days"):
        as_days([dt.date(2013, 3, 1), dt.date(2013, 3, 3)])


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("2013-03-05", dt.date(2013, 3, 5)),
        (" 2013-03-05\n", dt.date(2013, 3, 5)),
        ("2013-03-05T00:00:00+00:00", dt.date(2013, 3, 5)),  # a logical date as Airflow gives it
        ("2013-03-05junk", None),
        ("2013-03-05 and more", None),
        ("2013-02-30", None),
        ("yesterday", None),
    ],
)
def test_a_date_parameter_is_read_whole(text, day):
    from jobs.common.dates import parse_date

    if day is not None:
        assert parse_date(text) == day
    else:
        with pytest.raises(NightjarError, match=f"not a date: {text!r}"):
            parse_date(text)


def test_a_night_by_night_stage_refuses_an_interval(lake):
    with pytest.raises(NightjarError, match="score runs one night at a time"):
        run_stage("score", INTERVAL[0], "r", lake, end=INTERVAL[-1])
