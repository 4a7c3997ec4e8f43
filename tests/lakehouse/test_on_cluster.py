"""The scale path: results checkpointed on the executors and written by them (no day's output
through the task) build the same lakehouse as the day-sized path that collects to the task.
A small output is collected even on the scale path, a large one is not."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from jobs.lakehouse import frames
from jobs.pipeline import run_stage
from tooling.lakehouse_diff import assert_same_lakehouse, lakehouse_content

DAYS = [dt.date(2013, 5, 1), dt.date(2013, 5, 2)]


def build(spark, settings, root, **paths):
    lake = settings.model_copy(
        update={
            "lakehouse_uri": str(root / "lakehouse"),
            "landing_uri": str(root / "landing"),
            **paths,
        }
    )
    for day in DAYS:
        for stage in ("land", "bronze", "silver", "gold"):
            run_stage(stage, day, "r", lake, spark=spark)
    return lake


def test_keeping_results_on_the_cluster_builds_the_same_tables(spark, settings, tmp_path):
    """delta-rs committing the executors' files here; Spark-native Delta (also on the cluster
    path) is compared with the collecting path by the two-worker DAG test in tests/e2e."""
    collected = build(spark, settings, tmp_path / "collected")
    assert not frames.on_cluster(collected)
    distributed = build(
        spark,
        settings,
        tmp_path / "executors",
        delta_rs_write_path="executors",
        collect_max_rows=0,  # every output on the cluster, however small
    )
    assert frames.on_cluster(distributed)
    mine, theirs = lakehouse_content(distributed.lakehouse), lakehouse_content(collected.lakehouse)
    assert "gold.entity_daily" in mine and len(mine["silver.flights"]) > 1500
    assert_same_lakehouse(mine, theirs)


def test_only_outputs_larger_than_the_threshold_stay_on_the_cluster(spark, settings):
    frame = spark.range(3)
    executors = settings.model_copy(update={"delta_rs_write_path": "executors"})
    assert isinstance(frames.run_once(frame, executors, 10), pa.Table)
    assert not isinstance(frames.run_once(frame, executors, 10**6), pa.Table)
    assert frames.num_rows(frames.run_once(frame, executors, 10**6)) == 3
    # the day-sized default collects whatever the size
    assert isinstance(frames.run_once(frame, settings, 10**6), pa.Table)


def test_a_mix_of_collected_and_cluster_results_concatenates_on_the_cluster(spark):
    on_cluster = spark.range(3).selectExpr("id", "'big' AS part").localCheckpoint()
    small = pa.table({"id": pa.array([7], pa.int64()), "part": ["small"]})
    empty = small.slice(0, 0)
    both = frames.concat([small, on_cluster, empty])
    assert sorted((r.id, r.part) for r in both.collect()) == [
        (0, "big"),
        (1, "big"),
        (2, "big"),
        (7, "small"),
    ]
    assert frames.concat([small, empty]).num_rows == 1


def test_gold_keeps_every_output_but_the_weather_on_the_cluster_past_the_threshold(
    spark, settings, tmp_path, monkeypatch
):
    """A day's statistics and counts have a row per plane or flight number: millions at scale
    (a 10M-flight day's overflowed what the driver may send a task), so they follow the day's
    flights; the weather (a row per origin) is collected."""
    lake = settings.model_copy(
        update={
            "lakehouse_uri": str(tmp_path / "lakehouse"),
            "landing_uri": str(tmp_path / "landing"),
            "delta_rs_write_path": "executors",
            "collect_max_rows": 100,  # below the day's ~900 flights
        }
    )
    for stage in ("land", "bronze", "silver"):
        run_stage(stage, DAYS[0], "r", lake, spark=spark)
    collected = {}
    stock = frames.run_once
    monkeypatch.setattr(
        frames,
        "run_once",
        lambda frame, s, rows: collected.setdefault(len(collected), stock(frame, s, rows)),
    )
    counts = run_stage("gold", DAYS[0], "r", lake, spark=spark)

    kinds = [isinstance(result, pa.Table) for result in collected.values()]
    assert len(kinds) == len(counts) and kinds.count(True) == 1  # the weather
    assert counts["gold.origin_weather_daily"] == 3 and counts["gold.plane_stats"] > 100
