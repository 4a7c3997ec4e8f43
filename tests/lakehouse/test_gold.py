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
    # a flight's number is its id without the date, in both tables
    for frame in (got, scheduled):
        assert (frame.flight_number == frame.flight_id.str[len("20130703-") :]).all()
    assert got.flight_number.str.fullmatch(r"[0-9A-Z]{2}-\d+-(EWR|JFK|LGA)").all()


@pytest.mark.parametrize(
    "entity, key, src_key",
    [
        ("carrier", "carrier", ["carrier"]),
        ("origin", "origin", ["origin"]),
        ("plane", "tailnum", ["tailnum"]),
        ("route", "route", ["origin", "dest"]),
        ("flight_number", "flight_number", ["carrier", "flight", "origin"]),
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


@pytest.mark.parametrize("entity", list(tb.ENTITY_KEYS))
def test_aggregates_never_use_a_later_day(spark, built, entity):
    """Day 2's stored aggregates were computed before day 3 landed; recomputing them with day 3
    in silver must give the same values (it would not if any aggregate used a later day)."""
    lake, tables = built
    day, key = DAYS[1], tb.ENTITY_KEYS[entity]
    stored = tables.read(gold_spec(entity), partitions={"as_of_date": [day]}).toPandas()
    flights = gold.flight_rows(
        tables.read(tb.SILVER_FLIGHTS), lake, with_label=True
    )  # all three days
    recomputed = gold.entity_stats(gold.entity_daily(flights), entity, day, WINDOWS).toPandas()
    pd.testing.assert_frame_equal(
        stored.sort_values(key, ignore_index=True),
        recomputed.sort_values(key, ignore_index=True),
        check_dtype=False,
    )
    assert len(stored) > 0


def test_a_flight_numbers_stats_as_of_a_day_count_only_its_flights_up_to_that_day(built):
    """Leak test, from the source: a flight number's statistics as of D count its flights of
    the window ending D (carrier, number and origin alike) and none of D+1's, which had
    already landed when the table was read; a number that flies only after D has no row."""
    lake, tables = built
    day = DAYS[1]
    got = tables.read(gold_spec("flight_number"), partitions={"as_of_date": [day]}).toPandas()
    got = got.set_index("flight_number")
    src = source_flights(DAYS)
    src["flight_number"] = src.carrier + "-" + src.flight + "-" + src.origin
    src["date"] = src.day.astype(int)
    upto = src[src.date <= day.day]
    assert got.flights_3d.to_dict() == upto.groupby("flight_number").size().to_dict()
    first_flown_later = set(src[src.date > day.day].flight_number) - set(upto.flight_number)
    assert first_flown_later and not set(got.index) & first_flown_later
    on_day = upto[upto.date == day.day].groupby("flight_number").disrupted.mean()
    assert got.loc[on_day.index, "disrupted_rate_1d"].to_dict() == pytest.approx(on_day.to_dict())


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


def test_days_counted_before_an_entity_was_kept_are_counted_again(spark, built):
    """A lakehouse an older gold wrote has per-day counts without the flight numbers: the next
    day's gold counts those days again from silver, so the flight numbers' first statistics
    already cover the whole window (no backfill needed for them to be right)."""
    import pyarrow.compute as pc

    lake, tables = built
    spec, day = gold_spec("flight_number"), DAYS[-1]
    expected = tables.read(spec, partitions={"as_of_date": [day]}).toPandas()
    stored = {
        d: tables.read(tb.GOLD_ENTITY_DAILY, partitions={"flight_date": [d]}).toArrow()
        for d in DAYS[:-1]
    }
    try:
        for d, counts in stored.items():  # as the older gold kept them
            older = counts.filter(pc.not_equal(counts["entity"], "flight_number"))
            tables.overwrite_partitions(tb.GOLD_ENTITY_DAILY, older, {"flight_date": [d]})
        run_stage("gold", day, "upgraded", lake, spark=spark)
        got = tables.read(spec, partitions={"as_of_date": [day]}).toPandas()
    finally:
        for d, counts in stored.items():
            tables.overwrite_partitions(tb.GOLD_ENTITY_DAILY, counts, {"flight_date": [d]})
    assert got.flights_3d.sum() == expected.flights_3d.sum() == len(source_flights(DAYS))
    pd.testing.assert_frame_equal(
        got.sort_values("flight_number", ignore_index=True),
        expected.sort_values("flight_number", ignore_index=True),
    )


def test_weather_summary_matches_the_source(built):
    lake, tables = built
    day = DAYS[0]
    got = tables.read(tb.GOLD_WEATHER, partitions={"as_of_date": [day]}).toPandas()
    w = source.table("weather", day=day)
    for col in ("temp", "dewp", "precip", "visib", "pressure", "hour"):
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
    # where the weather was heading as the day closed
    for origin, obs in w.groupby("origin"):
        evening, morning = obs[obs.hour >= 18], obs[obs.hour.between(6, 11)]
        last = obs.sort_values("hour").iloc[-1]
        assert got.loc[origin, "pressure_trend"] == pytest.approx(
            evening.pressure.mean() - morning.pressure.mean()
        )
        assert got.loc[origin, "temp_dewp_spread_last"] == pytest.approx(last.temp - last.dewp)
        assert got.loc[origin, "temp_trend"] == pytest.approx(
            evening.temp.mean() - morning.temp.mean()
        )


def test_timetable_features_on_a_hand_made_timetable(spark):
    """Two planes' legs on Independence Day: departures per origin hour and hour either side,
    each plane's legs and their order, and the turn since the previous leg is due to arrive
    (arrival local to the destination: Chicago is an hour behind New York)."""
    ny, chicago = "America/New_York", "America/Chicago"
    rows = [  # flight_id, origin, tailnum, local departure, sched_arr_time, dest_tz
        ("a", "EWR", "N1", "06:00", 730, chicago),  # arrives 08:30 New York time
        ("b", "EWR", "N1", "10:00", 1130, chicago),  # 90 minutes after a's arrival
        ("c", "EWR", "N2", "10:30", 1200, ny),
        ("d", "EWR", None, "11:10", 1300, ny),  # no tail number: no plane features
        ("e", "JFK", "N1", "23:00", 30, chicago),  # arrives after midnight
    ]
    day = dt.date(2013, 7, 4)
    frame = spark.createDataFrame(
        pd.DataFrame(
            {
                "flight_id": [r[0] for r in rows],
                "flight_date": [day] * len(rows),
                "origin": [r[1] for r in rows],
                "tailnum": [r[2] for r in rows],
                # EDT: UTC-4
                "sched_dep_utc": [
                    pd.Timestamp(f"2013-07-04 {r[3]}") + pd.Timedelta(hours=4) for r in rows
                ],
                "sched_arr_time": [r[4] for r in rows],
                "dest_tz": [r[5] for r in rows],
            }
        )
    )
    got = gold.timetable_features(frame, [day]).toPandas().set_index("flight_id")
    assert got.origin_hour_departures.to_dict() == {"a": 1, "b": 2, "c": 2, "d": 1, "e": 1}
    assert got.origin_3h_departures.to_dict() == {"a": 1, "b": 3, "c": 3, "d": 3, "e": 1}
    assert got.plane_legs.drop("d").to_dict() == {"a": 3, "b": 3, "c": 1, "e": 3}
    assert pd.isna(got.plane_legs["d"]) and pd.isna(got.plane_leg_number["d"])
    assert got.plane_leg_number[["a", "b", "e", "c"]].tolist() == [1, 2, 3, 1]
    assert pd.isna(got.sched_turn_minutes["a"]) and pd.isna(got.sched_turn_minutes["c"])
    assert got.sched_turn_minutes["b"] == 90.0
    assert got.sched_turn_minutes["e"] == pytest.approx(23 * 60 - (11 * 60 + 30 + 60))
    assert set(got.days_to_holiday) == {0}  # the Fourth of July


def timetable_features_from_the_landed_file(lake, landed_on):
    """The timetable features recomputed with pandas from the one file landed with
    ``landed_on`` (schedule.csv: the next day's timetable), and nothing else."""
    from jobs.lakehouse import landing

    t = pd.read_csv(
        landing.landing_file(lake, landed_on, "schedule"), dtype=str, keep_default_na=False
    )
    airports = source.table("airports").set_index("faa").tzone
    local = pd.to_datetime(t.year + "-" + t.month + "-" + t.day)
    dep, arr = t.sched_dep_time.astype(int), t.sched_arr_time.astype(int)
    t["hour"] = dep // 100
    t["dep_utc"] = (
        (local + pd.to_timedelta(dep // 100 * 60 + dep % 100, unit="min"))
        .dt.tz_localize("America/New_York")
        .dt.tz_convert("UTC")
    )
    arrival_local = local + pd.to_timedelta(arr // 100 * 60 + arr % 100, unit="min")
    arr_utc = pd.Series(
        pd.to_datetime(
            [
                a.tz_localize(airports[d]).tz_convert("UTC") if d in airports else pd.NaT
                for a, d in zip(arrival_local, t.dest, strict=True)
            ],
            utc=True,
        ),
        index=t.index,
    )
    t["arr_utc"] = arr_utc.where(arr_utc >= t.dep_utc, arr_utc + pd.Timedelta(days=1))
    t["flight_id"] = local.dt.strftime("%Y%m%d") + "-" + t.carrier + "-" + t.flight + "-" + t.origin
    per_hour = t.groupby(["origin", "hour"]).size()
    t["origin_hour_departures"] = [per_hour[(o, h)] for o, h in zip(t.origin, t.hour, strict=True)]
    t["origin_3h_departures"] = [
        sum(per_hour.get((o, x), 0) for x in (h - 1, h, h + 1))
        for o, h in zip(t.origin, t.hour, strict=True)
    ]
    planes = t[t.tailnum != "NA"].sort_values(["dep_utc", "flight_id"])
    by_plane = planes.groupby("tailnum")
    planes = planes.assign(
        plane_legs=by_plane.flight_id.transform("size"),
        plane_leg_number=by_plane.cumcount() + 1,
        sched_turn_minutes=(planes.dep_utc - by_plane.arr_utc.shift()).dt.total_seconds() / 60,
    )
    return t.set_index("flight_id").join(
        planes.set_index("flight_id")[["plane_legs", "plane_leg_number", "sched_turn_minutes"]]
    )


def test_each_timetable_feature_comes_from_the_timetable_landed_the_day_before(built):
    """Leak test: every timetable feature of the flights of D+1 equals what the one file landed
    with D (D+1's timetable, no outcome) says, for every flight; gold wrote them before any
    outcome of D+1 existed, and writing them again after D+1's flights have landed changes
    nothing."""
    lake, tables = built
    tomorrow = DAYS[-1] + dt.timedelta(days=1)  # nothing of it has landed but its timetable
    got = tables.read(tb.GOLD_SCHEDULED_FLIGHTS, partitions={"flight_date": [tomorrow]}).toPandas()
    expected = timetable_features_from_the_landed_file(lake, DAYS[-1]).loc[got.flight_id]
    got = got.set_index("flight_id")
    assert len(got) > 700
    for feature in tb.TIMETABLE_FEATURES.names:
        if feature == "days_to_holiday":
            assert set(got[feature]) == {0}  # 2013-07-04
            continue
        pd.testing.assert_series_equal(
            got[feature].astype(float), expected[feature].astype(float), check_names=False
        )
    assert got.sched_turn_minutes.notna().sum() > 100


def test_timetable_features_do_not_change_once_the_day_has_flown(spark, built):
    """Run D-1's gold again after D's flights (their outcomes) and D's own timetable of D+1 have
    landed: D's scheduled flights, features included, are unchanged."""
    lake, tables = built
    day = DAYS[1]
    before = tables.read(tb.GOLD_SCHEDULED_FLIGHTS, partitions={"flight_date": [day]}).toPandas()
    run_stage("gold", DAYS[0], "again", lake, spark=spark)
    after = tables.read(tb.GOLD_SCHEDULED_FLIGHTS, partitions={"flight_date": [day]}).toPandas()
    pd.testing.assert_frame_equal(
        before.sort_values("flight_id", ignore_index=True),
        after.sort_values("flight_id", ignore_index=True),
    )


@pytest.mark.parametrize(
    "spec, added",
    [
        # written before the timetable features: it gets them and the flight number
        (tb.GOLD_SCHEDULED_FLIGHTS, [*tb.TIMETABLE_FEATURES.names, tb.FLIGHT_NUMBER]),
        # written with them, before the flight number: it gets the flight number alone
        (tb.GOLD_SCHEDULED_FLIGHTS, [tb.FLIGHT_NUMBER]),
        (tb.GOLD_FLIGHTS, [tb.FLIGHT_NUMBER]),
    ],
    ids=["scheduled-before-timetable", "scheduled-before-flight-number", "flights"],
)
def test_a_gold_flights_table_from_an_older_version_gets_the_columns_added_since(
    tables, spec, added
):
    """What gold does first on a lakehouse an older version wrote: the columns added since are
    appended in a metadata-only commit, the old rows read null, and a second call does
    nothing."""
    import pyarrow as pa
    from pyspark.sql import types as T

    from jobs.common.delta import TableSpec

    assert spec.columns[-len(added) :] == added and set(added) <= set(spec.appended)
    old = TableSpec(spec.name, T.StructType(spec.schema.fields[: -len(added)]), spec.partition_by)
    row = {f.name: None for f in old.schema} | {
        "flight_id": "20130704-UA-1-EWR",
        "flight_date": dt.date(2013, 7, 4),
    }
    tables.append(old, pa.Table.from_pylist([row], schema=old.arrow_schema))
    assert tables.add_new_columns(spec, "r") == added
    assert tables.add_new_columns(spec, "r") == []
    got = tables.read(spec).toPandas()
    assert list(got.columns) == spec.columns
    assert got.loc[0, "flight_id"] == "20130704-UA-1-EWR" and got[added].isna().all(axis=None)
