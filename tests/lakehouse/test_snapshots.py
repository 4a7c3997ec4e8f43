"""An interval's equal dimension snapshots are classified once and copied to each day: the same
silver, quarantine and reconciliation as classifying every day, bad rows included."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from jobs.common.delta.snapshot import read_arrow
from jobs.lakehouse import snapshots
from jobs.lakehouse import tables as tb
from jobs.pipeline import run_stage
from tests.lakehouse.helpers import edit_row, land, read_csv, write_csv
from tooling.lakehouse_diff import assert_same_lakehouse, lakehouse_content

DAYS = [dt.date(2013, 2, 11), dt.date(2013, 2, 12), dt.date(2013, 2, 13)]


def tamper(folder, plane_year: str) -> None:
    """A plane out of range, another landed twice (the copy conflicting), a plane year."""
    planes = folder / "planes.csv"
    edit_row(planes, 20, seats="-1")
    rows = read_csv(planes)
    write_csv(planes, [*rows, [*rows[6][:-1], "999"]])  # row 5 again, another speed
    edit_row(planes, 30, year=plane_year)


@pytest.fixture(scope="module")
def built(spark, settings, tmp_path_factory):
    """Days landed once (a shared landing zone, so records name the same files), then silver
    built day by day and as one interval; the interval's groups of equal snapshots."""
    root = tmp_path_factory.mktemp("snapshots")
    landed = settings.model_copy(update={"landing_uri": str(root / "landing")})
    for day, plane_year in zip(DAYS, ["1999", "1999", "2001"], strict=True):
        tamper(land(landed, day), plane_year)  # 02-11 and 02-12 equal, 02-13 not
    daily = landed.model_copy(update={"lakehouse_uri": str(root / "daily")})
    interval = landed.model_copy(update={"lakehouse_uri": str(root / "interval")})
    for day in DAYS:
        for stage in ("bronze", "silver"):
            run_stage(stage, day, "daily", daily, spark=spark)
    groups = {}
    stock = snapshots.equal_days

    def spy(uri, days):
        groups[uri.rsplit("/", 1)[-1]] = found = stock(uri, days)
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshots, "equal_days", spy)
        end = DAYS[-1] + dt.timedelta(days=1)
        for stage in ("bronze", "silver"):
            run_stage(stage, DAYS[0], "interval", interval, spark=spark, end=end)
    return daily, interval, {name: found[0] for name, found in groups.items()}


def test_equal_snapshots_are_grouped_and_a_changed_one_is_not(built):
    _, _, groups = built
    assert groups["planes"] == {DAYS[0]: DAYS[:2], DAYS[2]: DAYS[2:]}
    assert groups["airports"] == groups["airlines"] == {DAYS[0]: DAYS}


def test_the_interval_builds_what_the_days_build(built):
    daily, interval, _ = built
    mine, theirs = lakehouse_content(interval.lakehouse), lakehouse_content(daily.lakehouse)
    assert_same_lakehouse(mine, theirs)


def test_each_copy_names_its_own_day_and_file(built):
    _, interval, _ = built
    quarantine = read_arrow(interval.table_uri(tb.QUARANTINE.name)).to_pylist()
    planes = [r for r in quarantine if r["source_table"] == "planes"]
    by_day = {day: sorted(r["reason"] for r in planes if r["logical_date"] == day) for day in DAYS}
    assert by_day[DAYS[0]] == by_day[DAYS[1]] == ["DUPLICATE_CONFLICT", "OUT_OF_RANGE:seats"]
    for row in planes:
        assert row["source_file"].endswith(f"/{row['logical_date']}/planes.csv")
        assert json.loads(row["record"])["_source_file"] == row["source_file"]


def test_a_single_day_is_its_own_group_and_nothing_is_read():
    assert snapshots.equal_days("/nonexistent/table", [DAYS[0]]) == ({DAYS[0]: [DAYS[0]]}, {})


def test_a_record_that_does_not_name_its_file_is_not_copied():
    rows = pa.table(
        {
            "_logical_date": pa.array([DAYS[0]], pa.date32()),
            "logical_date": pa.array([DAYS[0]], pa.date32()),
            "_source_file": ["/l/2013-02-11/planes.csv"],
            "source_file": ["/l/2013-02-11/planes.csv"],
            "_record": ['{"tailnum":"N1"}'],
            "record": ['{"tailnum":"N1"}'],
        }
    )
    files = {DAYS[0]: "/l/2013-02-11/planes.csv", DAYS[1]: "/l/2013-02-12/planes.csv"}
    assert snapshots.copy_to_days(rows, {DAYS[0]: DAYS[:2]}, files) is None
