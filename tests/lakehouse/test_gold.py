"""Gold: labels, prediction times and as-of aggregates checked against the raw source."""

import datetime as dt

import pandas as pd
import pytest

from jobs.lakehouse import gold, source
from jobs.lakehouse import tables as tb
from jobs.pipeline import run_stage

DAYS = [dt.date(2013, 7, 1), dt.date(2013, 7, 2), dt.date(2013, 7, 3)]
WINDOWS = (2, 3)  # small windows so three days exercise every trailing computation


@pytest.fixture(scope="module")
def built(spark, settings, tmp_path_factory):
    from jobs.common.delta import open_tables

    root = tmp_path_factory.mktemp("gold")
    lake = settings.model_copy(
        update={
            "lakehouse_uri": str(root / "lakehouse"),
            "landing_uri": str(root / "landing"),
            "rolling_windows_days": WINDOWS,
        }
    )
    for day in DAYS:
        for stage in ("land", "bronze", "silver", "gold"):
            run_stage(stage, day, "r", lake, spark=spark)
    return lake, open_tables(spark, lake)


def source_flights(days):
    f = source.table("flights")
    f = f[(f.year == "2013") & (f.month == "7") & f.day.isin([str(d.day) for d in days])].copy()
    f["cancelled"] = f.dep_time == "NA"
    delay = pd.to_numeric(f.dep_delay, errors="coerce")
    f["disrupted"] = f.cancelled | (delay >= 15)
    f["delay"] = delay
    return f


def test_gold_flights_carry_the_label_and_prediction_time(built):
    lake, tables = built
    day = DAYS[-1]
    got = tables.read(tb.GOLD_FLIGHTS, partitions={"flight_date": [day]}).toPandas()
    src = source_flights([day])
    assert len(got) == len(src)
    assert int(got.is_disrupted.sum()) == int(src.disrupted.sum())
    assert int(got.is_cancelled.sum()) == int(src.cancelled.sum())
    # Midnight New York time (EDT in July) before the flight's day.
    assert set(got.prediction_ts) == {pd.Timestamp("2013-07-03 04:00:00")}
    # Run D also wrote D+1's timetable, to be scored that night; it has no label.
    scheduled = tables.read(tb.GOLD_SCHEDULED_FLIGHTS).toPandas()
    assert sorted(set(scheduled.flight_date)) == [d + dt.timedelta(days=1) for d in DAYS]
    assert (scheduled.flight_date == dt.date(2013, 7, 4)).sum() == len(
        source_flights([dt.date(2013, 7, 4)])
    )
    assert "is_disrupted" not in scheduled.columns


@pytest.mark.parametrize(
    "entity, key, src_key",
    [
        ("carrier", "carrier", ["carrier"]),
        ("origin", "origin", ["origin"]),
        ("plane", "tailnum", ["tailnum"]),
        ("route", "route", ["origin", "dest"]),
    ],
)
def test_trailing_stats_match_the_source(built, entity, key, src_key):
    lake, tables = built
    day = DAYS[-1]
    got = tables.read(gold_spec(entity), partitions={"as_of_date": [day]}).toPandas()
    got = got.set_index(key)
    for window in (1, *WINDOWS):
        src = source_flights(DAYS[len(DAYS) - window :])
        src = src[src[src_key[0]] != "NA"]
        src[key] = src[src_key].agg("-".join, axis=1) if len(src_key) > 1 else src[src_key[0]]
        expected = src.groupby(key).agg(
            n=("flight", "size"),
            rate=("disrupted", "mean"),
            cancel=("cancelled", "mean"),
            delay=("delay", "mean"),
        )
        for entity_key, row in expected.iterrows():
            assert got.loc[entity_key, f"flights_{window}d"] == row.n
            assert got.loc[entity_key, f"disrupted_rate_{window}d"] == pytest.approx(row.rate)
            assert got.loc[entity_key, f"cancel_rate_{window}d"] == pytest.approx(row.cancel)
            if not pd.isna(row.delay):
                assert got.loc[entity_key, f"avg_dep_delay_{window}d"] == pytest.approx(row.delay)
    assert set(got.event_ts) == {pd.Timestamp("2013-07-04 04:00:00")}


def gold_spec(entity):
    return tb.gold_stats(entity, WINDOWS)


def test_an_entity_that_stops_flying_keeps_a_row_with_zero_counts_for_the_longest_window(built):
    """Every plane with a flight in the longest window has a row as of the day, and only those;
    a plane whose flights are all older than a window counts 0 in it (its rates are undefined:
    null), not its last day's figures. After the longest window it has no row, and the views'
    TTL expires its last one in both Feast paths (tests/features/test_online_ttl.py)."""
    lake, tables = built
    day = DAYS[-1]
    got = tables.read(gold_spec("plane"), partitions={"as_of_date": [day]}).toPandas()
    got = got.set_index("tailnum")
    src = source_flights(DAYS)
    src = src[src.tailnum != "NA"]
    assert set(got.index) == set(src.tailnum)
    last = src.assign(date=src.day.astype(int)).groupby("tailnum").date.max()
    only_first = last[last == DAYS[0].day].index  # flew on 07-01, not on 07-02 or 07-03
    assert len(only_first) > 10
    rows, flown = got.loc[only_first], src[src.tailnum.isin(only_first)].groupby("tailnum")
    assert (rows.flights_1d == 0).all() and (rows.flights_2d == 0).all()
    assert rows.disrupted_rate_1d.isna().all() and rows.avg_dep_delay_2d.isna().all()
    assert rows.flights_3d.to_dict() == flown.size().to_dict()
    assert rows.disrupted_rate_3d.to_dict() == pytest.approx(flown.disrupted.mean().to_dict())


def test_aggregates_never_use_a_later_day(spark, built):
    """Day 2's stored aggregates were computed before day 3 landed; recomputing them with day 3
    in silver must give the same values (it would not if any aggregate used a later day)."""
    lake, tables = built
    day = DAYS[1]
    stored = tables.read(gold_spec("carrier"), partitions={"as_of_date": [day]}).toPandas()
    flights = gold.flight_rows(
        tables.read(tb.SILVER_FLIGHTS), lake, with_label=True
    )  # all three days
    recomputed = gold.entity_stats(gold.entity_daily(flights), "carrier", day, WINDOWS).toPandas()
    pd.testing.assert_frame_equal(
        stored.sort_values("carrier", ignore_index=True),
        recomputed.sort_values("carrier", ignore_index=True),
        check_dtype=False,
    )
    assert len(stored) > 0


def test_each_day_keeps_its_counts_and_the_stats_sum_them(built):
    """gold.entity_daily holds each day's counts per entity (what the next days' windows sum
    instead of re-reading their flights); the last day's stats, summed from the stored counts of
    the earlier days, equal the stats computed from every flight of its window."""
    lake, tables = built
    daily = tables.read(tb.GOLD_ENTITY_DAILY).toPandas()
    assert sorted(set(daily.flight_date)) == DAYS
    assert set(daily.entity) == set(tb.ENTITY_KEYS)
    src = source_flights([DAYS[0]])
    first = daily[(daily.flight_date == DAYS[0]) & (daily.entity == "carrier")]
    assert (
        first.set_index("entity_key").flights.to_dict() == src.groupby("carrier").size().to_dict()
    )
    assert first.disrupted.sum() == src.disrupted.sum()

    flights = gold.flight_rows(tables.read(tb.SILVER_FLIGHTS), lake, with_label=True)
    for entity, key in tb.ENTITY_KEYS.items():
        stored = tables.read(gold_spec(entity), partitions={"as_of_date": [DAYS[-1]]}).toPandas()
        recomputed = gold.entity_stats(gold.entity_daily(flights), entity, DAYS[-1], WINDOWS)
        pd.testing.assert_frame_equal(
            stored.sort_values(key, ignore_index=True),
            recomputed.toPandas().sort_values(key, ignore_index=True),
            check_dtype=False,
        )


def test_weather_summary_matches_the_source(built):
    lake, tables = built
    day = DAYS[0]
    got = tables.read(tb.GOLD_WEATHER, partitions={"as_of_date": [day]}).toPandas()
    w = source.table("weather", day=day)
    for col in ("temp", "precip", "visib"):
        w[col] = pd.to_numeric(w[col], errors="coerce")
    expected = w.groupby("origin").agg(
        temp=("temp", "mean"), precip=("precip", "sum"), visib=("visib", "min"), n=("temp", "size")
    )
    got = got.set_index("origin")
    for origin, row in expected.iterrows():
        assert got.loc[origin, "temp_mean"] == pytest.approx(row.temp)
        assert got.loc[origin, "precip_total"] == pytest.approx(row.precip)
        assert got.loc[origin, "visib_min"] == pytest.approx(row.visib)
        assert got.loc[origin, "n_obs"] == row.n
