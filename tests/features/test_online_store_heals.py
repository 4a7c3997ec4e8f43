"""A lost online store heals at the next `materialize`, and Feast run with one state folder's
settings never changes another's files (jobs/features/materialize.py, store.py)."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from jobs.features import materialize, store
from tests.feature_lake import DAYS
from tests.features.test_feature_store import online_and_offline

REDIS_DB = 11


@pytest.fixture(params=["sqlite", "redis"])
def own_store(request, feast_lake, tmp_path):
    """The session's lakehouse with a registry and online store of its own, and a way to
    lose that online store: its SQLite file deleted, or its Redis database flushed (as a
    restart without persistence leaves it)."""
    lake, _ = feast_lake
    own = lake.model_copy(update={"state_dir": tmp_path, "feast_registry": None})
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        client = redis.client(REDIS_DB)
        client.flushdb()
        own = own.model_copy(
            update={"feast_online_store": "redis", "feast_redis": redis.connection_string(REDIS_DB)}
        )
        store.apply(own)
        yield own, client.flushdb
        client.flushdb()
    else:
        store.apply(own)
        yield own, Path(store.online_store_path(own)).unlink


def test_a_lost_online_store_is_rebuilt_by_the_next_night(own_store, caplog):
    lake, lose = own_store
    materialize.run(lake, DAYS[2])
    lose()
    with caplog.at_level(logging.WARNING, logger=materialize.__name__):
        result = materialize.run(lake, DAYS[3])
    assert result == {
        "materialized_day": DAYS[3].isoformat(),
        "feature_views": len(store.feature_store(lake).list_feature_views()),  # all of them
        "reloaded_day": DAYS[2].isoformat(),
    }
    assert "the online store has lost what was materialized" in caplog.text
    assert f"reloading {DAYS[2]}, the newest day materialized" in caplog.text
    # the newest day is served as the offline store has it ...
    online, offline = online_and_offline(lake, DAYS[3])
    assert online["route_stats__flights_28d"].notna().all()
    pd.testing.assert_frame_equal(online, offline, check_dtype=False)
    # ... and so is what only the reloaded day held: the timetable of the flights of DAYS[3]
    online, offline = online_and_offline(lake, DAYS[2])
    timetable = [c for c in online.columns if c.startswith("flight_schedule__")]
    assert online[timetable].notna().any().all()
    pd.testing.assert_frame_equal(online[timetable], offline[timetable], check_dtype=False)
    # a store that is whole is left alone
    caplog.clear()
    assert materialize.run(lake, DAYS[3])["reloaded_day"] is None
    assert "lost" not in caplog.text


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_feast_run_on_a_copied_state_folder_never_changes_the_original(feast_lake, tmp_path):
    """Feast's registry records each online table by its absolute path; `feast apply` with a
    copy's settings used to drop the original's tables (an infrastructure "update")."""
    lake, _ = feast_lake
    first, second = tmp_path / "original", tmp_path / "copy"
    shutil.copytree(lake.lakehouse, first / "lakehouse")
    original = lake.model_copy(
        update={
            "state_dir": first,
            "lakehouse_uri": str(first / "lakehouse"),
            "feast_registry": None,
        }
    )
    store.apply(original)
    materialize.run(original, DAYS[2])
    served, _ = online_and_offline(original, DAYS[2])

    shutil.copytree(first, second)
    copy = original.model_copy(
        update={"state_dir": second, "lakehouse_uri": str(second / "lakehouse")}
    )
    before = fingerprint(first)
    store.feast_cli(["apply"], copy, capture_output=True, text=True)  # `nightjar feast apply`
    materialize.run(copy, DAYS[3])
    assert fingerprint(first) == before  # not a byte of the original changed

    after, _ = online_and_offline(original, DAYS[2])
    pd.testing.assert_frame_equal(after, served)  # and it still serves
    copied = store.feature_store(copy)
    assert store.registry_problems(copied, copy) is None
    assert all(s.path.startswith(str(second)) for s in copied.list_data_sources())
    online, offline = online_and_offline(copy, DAYS[3])
    pd.testing.assert_frame_equal(online, offline, check_dtype=False)
