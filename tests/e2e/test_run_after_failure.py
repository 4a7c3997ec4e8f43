"""`make run` after a failed night, through real Airflow: the demo driver runs the failed night
again, says so, and the window ends green (tooling/demo.py).

A platform of its own (state folder, the embedded SQLite metadata DB `make run` uses) shares the
test session's Spark Connect server. The upstream export of the window's first night comes with
no flights: bronze's quality gate refuses it (an input error: no retries). The second night
runs until its `gold`, which waits for the first night's (``depends_on_past``), so the backfill
stays open, as a failed `make run` leaves it. Then the export is fixed and the driver backfills
the same window again.
"""

from __future__ import annotations

import datetime as dt
import time

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobs.common.delta.snapshot import read_arrow
from jobs.lakehouse import source
from jobs.lakehouse import tables as tb
from tests.conftest import TEST_STATE
from tooling import demo, services
from tooling.airflow_api import AirflowAPI

pytestmark = pytest.mark.airflow
START, END = dt.date(2013, 1, 1), dt.date(2013, 1, 2)
BUSY = {"queued", "scheduled", "running", "up_for_retry", "up_for_reschedule", "restarting"}


@pytest.fixture(scope="module")
def platform(spark):
    from jobs.common.settings import Settings

    with pytest.MonkeyPatch.context() as env:
        env.setenv("NIGHTJAR_STATE_DIR", str(TEST_STATE / "recovery"))
        env.setenv("AIRFLOW_HOME", str(TEST_STATE / "recovery" / "airflow"))
        settings = Settings()
        # as `make run`: the first backfill starts the scheduler
        services.up(settings, spark=False, defer=frozenset({"scheduler"}))
        try:
            api = AirflowAPI(settings)
            api.wait_for_dag(demo.DAG_ID)
            api.patch(f"/dags/{demo.DAG_ID}", {"is_paused": False})
            yield settings, api
        finally:
            services.down(settings, services.AIRFLOW_COMPONENTS)


def wait_until_idle(api, timeout: float = 300) -> None:
    """Until no task of the daily DAG is running or waiting to run."""
    deadline = time.monotonic() + timeout
    while any(
        t["state"] in BUSY
        for run in api.dag_runs(demo.DAG_ID)
        for t in api.task_instances(demo.DAG_ID, run["dag_run_id"])
    ):
        assert time.monotonic() < deadline, "the daily DAG is still busy"
        time.sleep(2)


def test_the_next_backfill_runs_a_failed_night_again_and_says_so(platform, capsys):
    settings, api = platform
    cache = settings.state_dir / "source_cache"
    source.warm_cache(cache)
    flights = cache / "flights.parquet"
    export = flights.read_bytes()
    table = pq.read_table(flights)
    first_night = pc.and_(pc.equal(table["month"], "1"), pc.equal(table["day"], "1"))
    pq.write_table(table.filter(pc.invert(first_night)), flights)

    with pytest.raises(RuntimeError, match="backfill run\\(s\\) failed"):
        demo.backfill(api, START, END, max_active_runs=2)
    wait_until_idle(api)  # the second night waits for the first night's gold
    first = next(r for r in api.dag_runs(demo.DAG_ID) if r["logical_date"][:10] == str(START))
    assert first["state"] == "failed"
    assert not api.dag_runs(demo.DAG_ID, state="success")
    capsys.readouterr()

    flights.write_bytes(export)  # the upstream re-delivers the night
    runs = demo.backfill(api, START, END, max_active_runs=2)
    assert sorted((r["logical_date"][:10], r["state"]) for r in runs) == [
        (START.isoformat(), "success"),
        (END.isoformat(), "success"),
    ]
    said = capsys.readouterr().out
    assert (
        f"{START}: its earlier run {first['dag_run_id']} failed (failed tasks: bronze); "
        "running that night again"
    ) in " ".join(said.split())
    gold = read_arrow(settings.table_uri(tb.GOLD_FLIGHTS.name), {"flight_date": [START]})
    assert gold.num_rows == len(source.table("flights", cache, START))
