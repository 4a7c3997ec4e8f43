"""A table that cannot be read is an error, never "no data": only a table that was never
written reads as absent. Damaged the way a crash or a lost disk damages them (a torn commit, a
lost data file), the ML bookkeeping tables fail their readers loudly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from deltalake.exceptions import DeltaError

from jobs.common.delta.snapshot import partition_values, read_arrow_if_exists
from jobs.common.settings import Settings
from jobs.monitoring import retrain
from jobs.training import registry

DAY = dt.date(2013, 2, 1)


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, lakehouse_uri=str(tmp_path / "lakehouse"))


def written(uri: str) -> pa.Table:
    data = pa.table({"d": pa.array([DAY, DAY + dt.timedelta(days=1)]), "x": [1, 2]})
    write_deltalake(uri, data, partition_by=["d"])
    return data


def tear_last_commit(uri: str) -> None:
    commits = sorted((Path(uri) / "_delta_log").glob("*.json"))
    commits[-1].write_text('{"add": {"path": "d=2013-02-01/part-0')  # cut mid-line


def lose_a_data_file(uri: str) -> None:
    next(Path(uri).rglob("*.parquet")).unlink()


def test_a_table_never_written_reads_as_absent(tmp_path):
    assert read_arrow_if_exists(str(tmp_path / "nothing")) is None
    assert partition_values(str(tmp_path / "nothing"), "d") == []


def test_a_readable_table_reads_whole(tmp_path):
    uri = str(tmp_path / "t")
    data = written(uri)
    assert read_arrow_if_exists(uri).sort_by("x").select(["d", "x"]).equals(data)
    assert partition_values(uri, "d") == [DAY, DAY + dt.timedelta(days=1)]


@pytest.mark.parametrize("damage", [tear_last_commit, lose_a_data_file])
def test_a_damaged_table_is_an_error_not_an_empty_one(tmp_path, damage):
    uri = str(tmp_path / "t")
    written(uri)
    damage(uri)
    with pytest.raises((DeltaError, OSError)):
        read_arrow_if_exists(uri)


def test_a_damaged_request_log_stops_the_policy_instead_of_losing_requests(settings):
    retrain.append(settings, [retrain.request(DAY, "drift", "drift share >= 0.5", {})])
    assert [r["request_id"] for r in retrain.pending(settings)] == ["2013-02-01-drift"]
    lose_a_data_file(settings.table_uri(retrain.REQUESTS_TABLE))
    with pytest.raises((DeltaError, OSError)):
        retrain.pending(settings)  # not []: a training run would think nothing is pending
    with pytest.raises((DeltaError, OSError)):
        retrain.training_wait(settings, DAY + dt.timedelta(days=2))  # not "nothing to wait for"


def test_a_damaged_decision_log_stops_scoring_instead_of_finding_no_champion(settings):
    row = {"model_name": settings.model_name, "version": "1", "decision": "promoted"}
    row |= {"champion_after": "1", "from_night": DAY, "decided_at": dt.datetime.now(dt.UTC)}
    uri = settings.table_uri(registry.DECISIONS_TABLE)
    write_deltalake(uri, pa.Table.from_pylist([row], schema=registry.DECISION_SCHEMA))
    assert registry.night_models(settings, DAY).champion == "1"
    tear_last_commit(uri)
    with pytest.raises((DeltaError, OSError)):
        registry.night_models(settings, DAY)
