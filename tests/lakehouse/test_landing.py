import datetime as dt
import logging
import os
import pickle
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jobs.common.errors import NightjarError
from jobs.common.owner import Owner
from jobs.lakehouse import landing, source
from jobs.pipeline import run_stage
from tests.conftest import ROOT
from tests.lakehouse.helpers import read_csv


def test_landing_exports_the_day_and_tomorrows_timetable(lake):
    day = dt.date(2013, 3, 10)  # the day New York moved to daylight saving time
    counts = landing.run(day, lake)
    flights = source.table("flights")
    on = (flights.year == "2013") & (flights.month == "3")
    assert counts["flights"] == int((on & (flights.day == "10")).sum()) == 908
    assert counts["schedule"] == int((on & (flights.day == "11")).sum())
    rows = read_csv(Path(landing.landing_file(lake, day, "schedule")))
    assert rows[0] == source.SCHEDULE_COLUMNS  # the timetable carries no outcomes
    assert {r[2] for r in rows[1:]} == {"11"}
    assert counts["weather"] == 69  # the day has 23 local hours, and gaps


def test_relanding_replaces_the_folder_whole(lake):
    day = dt.date(2013, 1, 5)
    folder = Path(landing.landing_dir(lake, day))
    landing.run(day, lake)
    (folder / "stray.csv").write_text("left over")
    landing.run(day, lake)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{e}.csv" for e in landing.EXPORTS)
    assert not [p for p in folder.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("day", [dt.date(2012, 12, 31), dt.date(2014, 1, 1)])
def test_a_date_outside_the_data_is_refused(lake, day):
    with pytest.raises(
        NightjarError, match=f"logical date {day} is outside .*2013-01-01..2013-12-31"
    ):
        landing.run(day, lake)
    assert not Path(landing.landing_dir(lake, day)).exists()


def test_the_source_cache_serves_a_day_as_the_upstream_holds_it(tmp_path):
    """The Parquet cache holds one row group per day (a landing reads one, not the year), and a
    day read from it is the package's rows for that day, as text, in the package's order."""
    import pyarrow.parquet as pq

    day = dt.date(2013, 12, 30)  # late in the year: far into the file
    for name in ("flights", "weather"):
        cached = source.table(name, tmp_path, day).reset_index(drop=True)
        upstream = source.table(name, day=day).reset_index(drop=True)
        assert len(cached) > 0
        assert cached.equals(upstream)
    assert pq.ParquetFile(tmp_path / "flights.parquet").metadata.num_row_groups == 365
    planes = source.table("planes", tmp_path)
    assert planes.equals(source.table("planes"))


# A landing stopped after staging its export, before the rename that publishes it: where a
# SIGKILL leaves a staging folder behind. The stage runs as its task runs it (run_stage: under
# the day's claim).
STOPPED_LANDING = """
import datetime, pickle, sys, time
from jobs.lakehouse import landing
from jobs.pipeline import run_stage

def stop(files, staging, target):
    print("staged", flush=True)
    time.sleep(600)

landing._publish = stop
settings = pickle.loads(open(sys.argv[1], "rb").read())
run_stage("land", datetime.date.fromisoformat(sys.argv[2]), sys.argv[3], settings)
"""
RUN_ID = "scheduled__2013-03-06"
STAGED = dt.date(2013, 3, 6)


def stopped_landing(lake, tmp_path) -> subprocess.Popen:
    """A landing of STAGED in a process of its own, stopped once it has staged every file."""
    settings = tmp_path / "settings.pkl"
    settings.write_bytes(pickle.dumps(lake))
    proc = subprocess.Popen(
        [sys.executable, "-c", STOPPED_LANDING, str(settings), STAGED.isoformat(), RUN_ID],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "staged"
    return proc


def staging_folders(lake) -> list[str]:
    return sorted(p.name for p in Path(lake.landing).iterdir() if p.name.startswith("."))


def landed(settings, day: dt.date) -> dict[str, bytes]:
    folder = Path(landing.landing_dir(settings, day))
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_killed_landings_staging_folder_is_removed_by_the_next_landing(lake, tmp_path, caplog):
    """The crash harness's leftover: a landing SIGKILLed before its rename. Re-run (the task's
    retry), the landing removes it, says so, and lands what a clean landing lands."""
    proc = stopped_landing(lake, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    [left] = staging_folders(lake)
    assert sorted(p.name for p in (Path(lake.landing) / left).iterdir()) == sorted(
        f"{e}.csv" for e in landing.EXPORTS
    )
    assert not Path(landing.landing_dir(lake, STAGED)).exists()

    with caplog.at_level(logging.INFO, logger=landing.__name__):
        run_stage("land", STAGED, RUN_ID, lake)
    assert staging_folders(lake) == []
    assert f"removed {Path(lake.landing) / left}" in caplog.text
    assert f"landing (pid {proc.pid} on" in caplog.text and "died" in caplog.text
    clean = lake.model_copy(update={"landing_uri": str(tmp_path / "clean")})
    run_stage("land", STAGED, RUN_ID, clean)
    assert landed(lake, STAGED) == landed(clean, STAGED)


def test_a_running_landings_staging_folder_is_left_alone(lake, tmp_path):
    """Another landing of the day beside a live one (called directly, as a test or a tool
    would, without the day's claim) leaves the live one's folder; once that one dies, the next
    landing removes it."""
    proc = stopped_landing(lake, tmp_path)
    try:
        [live] = staging_folders(lake)
        landing.run(STAGED, lake)
        assert staging_folders(lake) == [live]
    finally:
        proc.kill()
        proc.wait()
    landing.run(STAGED, lake)
    assert staging_folders(lake) == []


def test_a_staging_folder_of_unknown_liveness_is_removed_only_under_the_days_claim(lake):
    """A staging folder whose owner cannot be checked from here (another host's, or named
    before owners were) is removed by a landing that holds the day's claim (the stage's), not
    by one that does not."""
    root = Path(lake.landing)
    elsewhere = root / f".{STAGED}.{Owner('another-host', 4242, 17)}.{uuid.uuid4().hex}.tmp"
    unnamed = root / f".{STAGED}.{uuid.uuid4().hex}.tmp"
    other_day = root / f".{STAGED + dt.timedelta(days=1)}.{uuid.uuid4().hex}.tmp"
    for folder in (elsewhere, unnamed, other_day):
        folder.mkdir(parents=True)
        (folder / "flights.csv").write_text("year,month\n")
    landing.run(STAGED, lake)
    assert staging_folders(lake) == sorted(p.name for p in (elsewhere, unnamed, other_day))
    run_stage("land", STAGED, RUN_ID, lake)
    assert staging_folders(lake) == [other_day.name]  # another day's claim is not held
