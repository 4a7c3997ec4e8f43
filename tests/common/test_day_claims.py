"""One writer per day: two runs of one day never process it at once, whatever started them."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from jobs.common import day_claims
from jobs.common.day_claims import Claim, DayBusy, Store, claimed
from tests.lakehouse.helpers import land

DAY = dt.date(2013, 3, 2)


@pytest.fixture()
def fast(lake, monkeypatch):
    monkeypatch.setattr(day_claims, "POLL_S", 0.05)
    return lake.model_copy(update={"day_claim_wait_minutes": 0.05})  # 3 s


def records(settings, day=DAY) -> list[dict]:
    folder = f"{Store(settings).root}/{day}"
    return [json.loads(open(f"{folder}/{name}").read()) for name in sorted(os.listdir(folder))]


def test_a_second_run_waits_for_the_first_and_fails_naming_it_when_it_does_not_finish(fast):
    with claimed(fast, [DAY], "backfill__2013-03-02", "silver"):
        started = time.monotonic()
        busy = r"processed by run backfill__2013-03-02 \(stage silver"
        with pytest.raises(DayBusy, match=busy), claimed(fast, [DAY], "manual__2", "silver"):
            pass
        assert time.monotonic() - started >= 3  # it waited the configured time first
    # released: the second run may go now
    with claimed(fast, [DAY], "manual__2", "bronze"):
        pass
    assert [(r["run_id"], r["released_at"] is not None) for r in records(fast)] == [
        ("backfill__2013-03-02", True),
        ("manual__2", True),
    ]


def test_a_waiting_run_goes_as_soon_as_the_holder_releases(fast):
    order = []
    holding = threading.Event()

    def first():
        with claimed(fast, [DAY], "run-a", "land"):
            holding.set()
            time.sleep(1)
            order.append("a done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait()
    with claimed(fast, [DAY], "run-b", "land"):
        order.append("b starts")
    thread.join()
    assert order == ["a done", "b starts"]


def test_a_dead_holders_claim_is_free_after_its_lease_and_a_retry_of_the_same_run_at_once(fast):
    store = Store(fast)
    dead = day_claims.acquire(store, str(DAY), "run-killed", "gold", dt.timedelta(0))
    # never released (kill -9): the same run's retry takes it over at once
    with claimed(fast, [DAY], "run-killed", "gold") as (retry,):
        assert retry.generation == dead.generation + 1
    dead = day_claims.acquire(store, str(DAY), "run-killed", "gold", dt.timedelta(0))
    with pytest.raises(DayBusy):
        day_claims.acquire(store, str(DAY), "other", "gold", dt.timedelta(0))
    dead.expires_at = (day_claims.now() - dt.timedelta(seconds=1)).isoformat()  # time passes
    store.replace(dead)
    assert day_claims.acquire(store, str(DAY), "other", "gold", dt.timedelta(0)).run_id == "other"


def test_of_runs_racing_for_a_free_day_exactly_one_wins(fast):
    barrier = threading.Barrier(6)
    won = []

    def race(i):
        barrier.wait()
        with contextlib.suppress(DayBusy):
            won.append(
                day_claims.acquire(Store(fast), str(DAY), f"run-{i}", "silver", dt.timedelta(0))
            )

    threads = [threading.Thread(target=race, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and won[0].generation == 1


def test_overlapping_intervals_claim_in_date_order_and_never_deadlock(fast):
    days = [DAY + dt.timedelta(days=i) for i in range(3)]
    done = []

    def run(name, span):
        with claimed(fast, span, name, "gold"):
            time.sleep(0.3)
        done.append(name)

    a = threading.Thread(target=run, args=("history", days))
    b = threading.Thread(target=run, args=("daily", list(reversed(days[1:]))))
    a.start()
    b.start()
    a.join(10)
    b.join(10)
    assert sorted(done) == ["daily", "history"]


# Another process reads the day's newest claim as fast as it can until told to stop; it prints
# how many claims it found, and how many it could not parse.
READER = textwrap.dedent(
    """
    import json, os, sys
    from jobs.common.day_claims import Store
    from jobs.common.settings import Settings

    store = Store(Settings(lakehouse_uri=sys.argv[1]))
    found = partial = 0
    print("ready", flush=True)
    while not os.path.exists(sys.argv[2]):
        try:
            found += store.newest(sys.argv[3]) is not None
        except json.JSONDecodeError:
            partial += 1
    print(found, partial)
    """
)


def test_a_run_reading_the_claims_never_finds_one_half_written(lake, tmp_path):
    """A claim appears whole: a run that looks at a day while another takes it finds the old
    claim or the new one, never an empty file (which failed the looking run)."""
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, lake.lakehouse, str(stop), str(DAY)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout.readline().strip() == "ready"
    store, moment = Store(lake), day_claims.now().isoformat()
    for generation in range(1, 2001):
        claim = Claim(str(DAY), generation, "run", "gold", "here:1", moment, moment)
        assert store.create(claim)
        assert not store.create(claim)  # taken: refused, not overwritten
    stop.touch()
    found, partial = map(int, reader.communicate(timeout=60)[0].split())
    assert found > 0 and partial == 0
    assert store.newest(str(DAY)).generation == 2000
    assert sorted(os.listdir(f"{store.root}/{DAY}"))[-1] == "00002000.json"  # nothing else left


def test_two_runs_of_one_day_started_together_process_it_one_after_the_other(spark, lake, tmp_path):
    """Two real stage processes (a backfill's and a manual trigger's) for one day: both
    succeed, one after the other, and the second's log names the run it waited for."""
    land(lake, DAY)
    env = {
        **os.environ,
        "NIGHTJAR_LAKEHOUSE_URI": lake.lakehouse,
        "NIGHTJAR_LANDING_URI": lake.landing,
    }

    def start(run_id):
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobs",
                "stage",
                "bronze",
                "--date",
                str(DAY),
                "--run-id",
                run_id,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    runs = [start("backfill__2013-03-02"), start("manual__date-2013-03-02")]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    held = records(lake)
    assert [r["stage"] for r in held] == ["bronze", "bronze"]
    first, second = held
    assert first["released_at"] <= second["acquired_at"]  # never at once
    waited = next(o for o, r in zip(outputs, runs, strict=True) if second["run_id"] in r.args)
    assert f"held by run {first['run_id']} (stage bronze" in waited
