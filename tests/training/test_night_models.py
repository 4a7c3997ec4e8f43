"""Which models score a night, replayed from the decision log (no MLflow, no Spark): the
promotions, rejections and rollbacks a lifecycle writes, in the order it writes them."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from jobs.common.delta.snapshot import append_arrow
from jobs.common.settings import DATA_START, Settings
from jobs.training import registry
from jobs.training.registry import NightModels


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(f"2013-{text}")


def decide(settings, version, decision, champion_after, window_end=None, from_night=None):
    """One row as train.run or registry.rollback writes it (a training: its window ends on
    ``window_end``, MM-DD)."""
    end = day(window_end) if window_end else None
    row = {
        "decided_at": dt.datetime.now(dt.UTC),
        "model_name": settings.model_name,
        "version": version,
        "decision": decision,
        "champion_after": champion_after,
        "eval_window": f"{end}..{end}" if end else None,
        "from_night": from_night or (end and registry.from_night(end)),
    }
    append_arrow(
        settings.table_uri(registry.DECISIONS_TABLE),
        pa.Table.from_pylist([row], schema=registry.DECISION_SCHEMA),
    )


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, lakehouse_uri=str(tmp_path / "lakehouse"))


def test_before_any_training_no_night_has_a_model(settings):
    night = registry.night_models(settings, day("03-01"))
    assert (night.champion, night.shadow) == (None, None)
    assert night.reason == "no version of flight_disruption has been trained yet"
    assert registry.next_night(settings) == DATA_START  # nothing scored: from the first night


def test_each_night_gets_the_models_of_its_time(settings):
    decide(settings, "1", "promoted", "1", "01-05")  # the bootstrap request of 01-05
    decide(settings, "2", "rejected", "1", "01-09")  # a drift retraining, worse
    decide(settings, "3", "promoted", "3", "01-20")
    decide(settings, "1", "rolled_back", "1", from_night=day("01-25"))
    # trained later by hand on a window reaching into March, then a rejected one before it
    decide(settings, "4", "promoted", "4", "03-31")
    decide(settings, "5", "rejected", "4", "02-10")

    def models(night: str) -> tuple:
        chosen = registry.night_models(settings, day(night))
        return chosen.champion, chosen.shadow

    before = registry.night_models(settings, day("01-05"))
    assert before == NightModels(
        None,
        None,
        "no version of flight_disruption was champion on the night of 2013-01-05: the first, "
        "v1, was trained on data up to 2013-01-05 (held out 2013-01-05..2013-01-05) and scores "
        "nights "
        "from 2013-01-06 on",
    )
    assert models("01-06") == ("1", None)
    assert models("01-09") == ("1", None)  # v2 was asked for by this night's policy
    assert models("01-10") == ("1", "2")  # rejected: in shadow
    assert models("01-21") == ("3", None)
    assert models("01-25") == ("1", "3")  # rolled back from this night on
    # v5's decision names v4 as champion, but v4 saw March: the night before still gets v1
    assert models("02-11") == ("1", "5")
    assert models("04-01") == ("4", "5")


def test_rows_from_before_the_column_govern_from_their_window(settings):
    legacy = pa.schema([f for f in registry.DECISION_SCHEMA if f.name != "from_night"])
    row = {"decided_at": dt.datetime.now(dt.UTC), "model_name": settings.model_name}
    row |= {"version": "1", "decision": "promoted", "champion_after": "1"}
    row["eval_window"] = "2013-01-05..2013-01-05"
    append_arrow(
        settings.table_uri(registry.DECISIONS_TABLE), pa.Table.from_pylist([row], schema=legacy)
    )
    old = registry.decisions(settings)  # the column filled in: from the night after 01-05
    assert old.from_night.tolist() == [day("01-06")]
    assert registry.night_models(settings, day("01-06")).champion == "1"
