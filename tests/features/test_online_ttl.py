"""Online equals offline for every flight of a scored day, TTL included
(jobs/adapters/feast_online_expiry.py), in SQLite and in Redis.

The online store is loaded as the daily DAG loads it, night after night (03-01 .. 03-04); the
flights scored the night of 03-04 are 03-05's, whose prediction time is the end of 03-04. For
each of them the online features must equal the point-in-time historical ones at that instant.
The small lakehouse has no plane whose statistics are older than the views' 2-day TTL (gold
keeps a row per plane for 28 days after its last flight), so two are crafted among 03-05's
planes that have no statistics at all: one whose last value is from 03-01 (older than the TTL
as of 03-04: null in a point-in-time join) and one from 03-02 (exactly the TTL: still served).
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pytest

from jobs.common.dates import end_of_day_utc
from jobs.common.delta import open_tables
from jobs.common.delta.snapshot import read_arrow
from jobs.features import materialize, store, training
from jobs.lakehouse import tables as tb
from tests.feature_lake import DAYS

SCORED = DAYS[-1] + dt.timedelta(days=1)  # 03-05, scored the night of 03-04
REDIS_DB = 12
EXPIRED_FLIGHTS, BOUNDARY_FLIGHTS = 99, 77  # the crafted planes' flights_28d


@dataclass
class Served:
    settings: object
    online: pd.DataFrame  # every flight of SCORED: entity columns and features, by flight_id
    offline: pd.DataFrame  # the same, from the point-in-time join at their prediction time
    expired_plane: str
    boundary_plane: str
    nightly: dict  # day -> the crafted planes' online flights_28d after that night's run


def plane_row(spec, tailnum: str, day: dt.date, flights: int) -> dict:
    row = {f.name: None for f in spec.arrow_schema}
    row.update(
        tailnum=tailnum,
        as_of_date=day,
        event_ts=end_of_day_utc(day).replace(tzinfo=None),
        flights_1d=flights,
        flights_7d=flights,
        flights_28d=flights,
        disrupted_rate_28d=0.5,
    )
    return row


def online_planes(settings, tailnums: list[str]) -> list:
    fs = store.feature_store(settings)
    return fs.get_online_features(
        features=["plane_stats:flights_28d"], entity_rows=[{"tailnum": t} for t in tailnums]
    ).to_dict()["flights_28d"]


def features_of(settings, flights: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The feature service's features of ``flights`` (gold.scheduled_flights rows): online, and
    point-in-time at each flight's prediction time; both ordered by flight_id, every feature
    (all numeric) as float64 with NaN for null, so the frames compare value by value."""
    fs = store.feature_store(settings)
    service = fs.get_feature_service(store.FEATURE_SERVICE)
    columns = sorted(
        f"{p.name}__{f.name}" for p in service.feature_view_projections for f in p.features
    )
    keys = flights[training.ENTITY_COLUMNS]
    with_plane = keys.tailnum.notna()
    parts = [
        fs.get_online_features(
            features=service,
            entity_rows=keys[with_plane].to_dict("records"),
            full_feature_names=True,
        ).to_df()
    ]
    if not with_plane.all():
        # Feast cannot look up a null key: a flight without a tail number is asked for the other
        # views' features, and its plane features are null (as in the point-in-time join)
        others = [c.replace("__", ":") for c in columns if not c.startswith("plane_stats__")]
        rows = keys[~with_plane].drop(columns="tailnum").to_dict("records")
        part = fs.get_online_features(features=others, entity_rows=rows, full_feature_names=True)
        parts.append(part.to_df().assign(tailnum=None))
    offline = fs.get_historical_features(
        entity_df=keys.assign(event_timestamp=pd.to_datetime(flights.prediction_ts, utc=True)),
        features=service,
        full_feature_names=True,
    ).to_df()

    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reindex(columns=["flight_id", "tailnum", *columns])
        numeric = [c for c in columns if c != "flight_route__route"]  # the route: a string
        return frame.astype(dict.fromkeys(numeric, "float64"))

    online = pd.concat([tidy(part) for part in parts], ignore_index=True)
    return tuple(
        frame.sort_values("flight_id").reset_index(drop=True) for frame in (online, tidy(offline))
    )


def scheduled(settings, day: dt.date) -> pd.DataFrame:
    return read_arrow(
        settings.table_uri("gold.scheduled_flights"), {"flight_date": [day]}
    ).to_pandas()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def served(request, feast_lake, spark, tmp_path_factory):
    """A copy of the session's lakehouse (the crafted rows stay in it) with its own registry
    and online store, loaded night by night; the features of every flight of SCORED."""
    lake, _ = feast_lake
    root = tmp_path_factory.mktemp(f"online-ttl-{request.param}")
    shutil.copytree(lake.lakehouse, root / "lakehouse")
    own = lake.model_copy(
        update={
            "state_dir": root,
            "lakehouse_uri": str(root / "lakehouse"),
            "feast_registry": None,
        }
    )
    client = None
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        client = redis.client(REDIS_DB)
        client.flushdb()
        own = own.model_copy(
            update={"feast_online_store": "redis", "feast_redis": redis.connection_string(REDIS_DB)}
        )
    store.apply(own)

    spec = tb.gold_stats("plane", own.rolling_windows_days)
    planes = set(read_arrow(own.table_uri(spec.name), columns=["tailnum"]).to_pandas().tailnum)
    unseen = sorted(set(scheduled(own, SCORED).tailnum.dropna()) - planes)
    assert len(unseen) >= 2, "03-05 has no two planes without statistics to craft"
    expired_plane, boundary_plane = unseen[:2]
    crafted = [
        plane_row(spec, expired_plane, DAYS[0], EXPIRED_FLIGHTS),
        plane_row(spec, boundary_plane, DAYS[1], BOUNDARY_FLIGHTS),
    ]
    open_tables(spark, own).merge(spec, pa.Table.from_pylist(crafted, schema=spec.arrow_schema))

    nightly = {}
    for day in DAYS:  # the daily DAG's materialize task, night after night
        materialize.run(own, day)
        nightly[day] = online_planes(own, [expired_plane, boundary_plane])
    online, offline = features_of(own, scheduled(own, SCORED))
    yield Served(own, online, offline, expired_plane, boundary_plane, nightly)
    if client is not None:
        client.flushdb()


def test_online_features_equal_point_in_time_ones_for_every_flight_of_the_day(served):
    online, offline = served.online, served.offline
    flights = scheduled(served.settings, SCORED)
    assert (pd.to_datetime(flights.prediction_ts, utc=True) == end_of_day_utc(DAYS[-1])).all()
    assert len(online) == len(flights) > 500  # every flight of the day, not a sample
    assert online.flight_id.tolist() == offline.flight_id.tolist()
    # values that matter: the equality is not one of nulls
    assert online["carrier_stats__flights_28d"].notna().all()
    assert online["origin_weather__temp_mean"].notna().all()
    assert online["flight_schedule__sched_dep_hour"].notna().all()
    has_plane = online.tailnum.notna()
    assert online.loc[has_plane, "plane_stats__flights_28d"].notna().mean() > 0.5
    pd.testing.assert_frame_equal(online, offline)


def test_a_value_older_than_the_ttl_is_not_served_online(served):
    """The expired plane's value was online until the night its age passed the TTL; the
    boundary plane's, exactly the TTL old, is served by both paths."""
    assert served.nightly == {
        DAYS[0]: [EXPIRED_FLIGHTS, None],
        DAYS[1]: [EXPIRED_FLIGHTS, BOUNDARY_FLIGHTS],
        DAYS[2]: [EXPIRED_FLIGHTS, BOUNDARY_FLIGHTS],  # 03-01's value: exactly 2 days old
        DAYS[3]: [None, BOUNDARY_FLIGHTS],  # 3 days old: gone; 03-02's: exactly 2 days old
    }
    for frame in (served.online, served.offline):
        by_plane = frame.set_index("tailnum")["plane_stats__flights_28d"]
        assert by_plane.loc[[served.expired_plane]].isna().all()
        assert (by_plane.loc[[served.boundary_plane]] == BOUNDARY_FLIGHTS).all()


def test_expired_timetables_leave_the_online_store(served):
    """Each night writes tomorrow's timetable; the flights whose timetable is older than the
    TTL read null online as in a point-in-time join at the same instant, so the store does not
    grow with every day's flights."""
    as_of = end_of_day_utc(DAYS[-1])
    for day, kept in ((DAYS[1], False), (DAYS[2], True)):  # stamped end of 03-01 / of 03-02
        flights = scheduled(served.settings, day).head(200)
        flights = flights.assign(prediction_ts=as_of)
        online, offline = features_of(served.settings, flights)
        hours = "flight_schedule__sched_dep_hour"
        assert online[hours].notna().all() if kept else online[hours].isna().all()
        pd.testing.assert_series_equal(online[hours], offline[hours])


def test_a_plane_that_did_not_fly_on_the_day_has_zero_counts_not_nulls_or_stale_ones(served):
    """A plane of 03-05 that flew on 03-01..03-03 but not on 03-04: as of 03-04 its one-day
    window is empty (0 flights, rates null) and its 7-day window counts its flights, online as
    offline; it does not carry its last day's figures."""
    gold = read_arrow(
        served.settings.table_uri("gold.flights"), {"flight_date": DAYS}, ["tailnum", "flight_date"]
    ).to_pandas()
    last_day = gold.dropna().groupby("tailnum").flight_date.max()
    counts = gold.dropna().groupby("tailnum").size()
    for frame in (served.online, served.offline):
        planes = frame.dropna(subset=["tailnum"]).drop_duplicates("tailnum").set_index("tailnum")
        absent = planes[planes.index.map(last_day.get).isin(DAYS[:-1])]
        assert len(absent) > 20
        assert (absent["plane_stats__flights_1d"] == 0).all()
        assert absent["plane_stats__disrupted_rate_1d"].isna().all()
        assert absent["plane_stats__flights_7d"].tolist() == counts[absent.index].tolist()
        flew = planes[planes.index.map(last_day.get) == DAYS[-1]]
        assert (flew["plane_stats__flights_1d"] >= 1).all() and len(flew) > 20


@pytest.fixture(params=["sqlite", "redis"])
def own_store(request, feast_lake, tmp_path):
    """The session's lakehouse with a registry and an empty online store of its own."""
    lake, _ = feast_lake
    own = lake.model_copy(update={"state_dir": tmp_path, "feast_registry": None})
    client = None
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        client = redis.client(REDIS_DB + 1)
        client.flushdb()
        own = own.model_copy(
            update={
                "feast_online_store": "redis",
                "feast_redis": redis.connection_string(REDIS_DB + 1),
            }
        )
    store.apply(own)
    yield own
    if client is not None:
        client.flushdb()


def test_expiry_runs_on_an_empty_window_and_keeps_the_other_views_of_an_entity(own_store):
    """An origin's statistics and its weather share one Redis hash: expiring the weather
    removes its fields only. A window without rows still expires what aged out."""
    fs = store.feature_store(own_store)
    fs.materialize(*materialize.window(DAYS[0]), feature_views=["origin_weather"])
    fs.materialize(*materialize.window(DAYS[3]), feature_views=["origin_stats"])
    refs = ["origin_weather:temp_mean", "origin_stats:flights_1d"]
    rows = [{"origin": origin} for origin in ("EWR", "JFK", "LGA")]
    before = fs.get_online_features(features=refs, entity_rows=rows).to_dict()
    assert None not in before["temp_mean"] + before["flights_1d"]
    # weather is stamped at the end of its day: this window holds none, and as of its end the
    # weather of 03-01 is older than the TTL
    start, end = end_of_day_utc(DAYS[2]) + dt.timedelta(seconds=1), end_of_day_utc(DAYS[3])
    fs.materialize(start, end - dt.timedelta(seconds=1), feature_views=["origin_weather"])
    after = fs.get_online_features(features=refs, entity_rows=rows).to_dict()
    assert after["temp_mean"] == [None, None, None]
    assert after["flights_1d"] == before["flights_1d"]
