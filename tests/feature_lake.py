"""A small lakehouse (2013-03-01..03-04 through gold) with the Feast repository applied to it,
built once per test session for the feature store and training tests (registered as a fixture
in tests/conftest.py); Feast's registry and online store are private to it."""

from __future__ import annotations

import datetime as dt

import pytest

from jobs.common.delta import open_tables
from jobs.features import store
from jobs.pipeline import run_stage

DAYS = [dt.date(2013, 3, d) for d in range(1, 5)]


@pytest.fixture(scope="session")
def feast_lake(spark, settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("feast")
    lake = settings.model_copy(
        update={
            "lakehouse_uri": str(root / "lakehouse"),
            "landing_uri": str(root / "landing"),
            "feast_registry": str(root / "feast" / "registry.db"),
        }
    )
    lake = lake.model_copy(update={"state_dir": root})
    for day in DAYS:
        for stage in ("land", "bronze", "silver", "gold"):
            run_stage(stage, day, "r", lake, spark=spark)
    store.apply(lake)  # the real `feast apply`, in its own process
    return lake, open_tables(spark, lake)


def service_columns(settings, service: str = store.FEATURE_SERVICE) -> list[str]:
    """The training set's feature columns of ``service`` (``<view>__<feature>``), from the
    registry."""
    from jobs.features.training import feature_columns

    return feature_columns(store.feature_store(settings).get_feature_service(service))
