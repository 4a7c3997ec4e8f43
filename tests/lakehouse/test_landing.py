import datetime as dt
from pathlib import Path

import pytest

from jobs.common.errors import NightjarError
from jobs.lakehouse import landing, source
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
