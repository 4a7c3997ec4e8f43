"""The scale generator: seeded, unique flights, consistent with tomorrow's timetable and with the
real entities, and every synthetic flight reaches silver."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from jobs.lakehouse import landing, synthetic
from jobs.pipeline import run_stage

DAY = dt.date(2013, 6, 3)
N = 5_000  # more than five real days' worth: several blocks of renumbered flights


def land(lake, seed: int) -> Path:
    synthetic.land(lake, DAY, N, seed=seed)
    return Path(landing.landing_dir(lake, DAY))


def test_the_same_seed_gives_the_same_files_and_another_seed_other_flights(lake):
    first = {p.name: p.read_bytes() for p in land(lake, 7).iterdir()}
    again = {p.name: p.read_bytes() for p in land(lake, 7).iterdir()}
    assert first == again
    other = {p.name: p.read_bytes() for p in land(lake, 8).iterdir()}
    assert other["flights.csv"] != first["flights.csv"]
    assert other["weather.csv"] == first["weather.csv"]  # the real day's weather


def test_flights_are_unique_consistent_and_tomorrows_timetable_is_tomorrows_flights():
    day = synthetic.flights(DAY, N, seed=7)
    assert day.num_rows == N
    ids = set(zip(*(day[c].to_pylist() for c in ("carrier", "flight", "origin")), strict=True))
    assert len(ids) == N
    real = synthetic.source.table("flights", day=DAY)
    assert set(day["tailnum"].to_pylist()) == set(real.tailnum)  # the real planes
    assert set(day["dest"].to_pylist()) == set(real.dest)
    cancelled = sum(v == "NA" for v in day["dep_delay"].to_pylist())
    blocks, rest = divmod(N, len(real))
    assert cancelled >= blocks * int((real.dep_delay == "NA").sum())
    tomorrow = synthetic.flights(DAY + dt.timedelta(days=1), N, seed=7)
    exported = synthetic.export_day(DAY, N, seed=7)["schedule"]
    assert exported.equals(tomorrow.select(synthetic.source.SCHEDULE_COLUMNS))


def test_every_synthetic_flight_reaches_silver(spark, lake, tables):
    from jobs.lakehouse import tables as tb

    land(lake, 7)
    for stage in ("bronze", "silver"):
        run_stage(stage, DAY, "synthetic", lake, spark=spark)
    counts = (
        tables.read(tb.RECONCILIATION)
        .where("source_table = 'flights'")
        .select("landed", "accepted", "quarantined", "duplicates")
        .collect()[0]
    )
    assert counts.landed == N and counts.duplicates == 0
    assert counts.accepted + counts.quarantined == N and counts.accepted > 0.95 * N
