"""`make bench-features`: Feast materialization throughput and historical retrieval time,
printed and saved to .state/bench-features/features.json.

1. One day (2013-03-02's features: entity statistics, weather, 03-03's timetable) materialized
   by the daily DAG's task into the SQLite and the Redis online store.
2. 1M feature rows (synthetic planes: 1,000,000 tail numbers with statistics for one day,
   written to gold.plane_stats) materialized into each store, by the configured engine
   (jobs/adapters/feast_arrow_engine.py) and, into a fresh store of the same kind, by Feast's stock
   local engine, so the ratio is visible.
3. Historical retrieval of the flight_disruption_v1 service for 100,000 entity rows (real keys
   of 2013-03-02..03 at their prediction times, repeated).

Runs in its own state folder, Spark Connect port and Redis database (15, flushed).
"""

from __future__ import annotations

import datetime as dt
import time

from benchmarks.harness import isolate, save, start_afresh

STATE = isolate("features", 25022)

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import redis  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jobs.common.dates import end_of_day_utc  # noqa: E402
from jobs.common.delta import open_tables  # noqa: E402
from jobs.common.delta.snapshot import read_arrow  # noqa: E402
from jobs.common.settings import Settings  # noqa: E402
from jobs.common.spark import get_spark  # noqa: E402
from jobs.features import materialize, store, training  # noqa: E402
from jobs.lakehouse import tables as tb  # noqa: E402
from jobs.pipeline import run_stage  # noqa: E402
from tooling import services  # noqa: E402

console = Console()
DAYS = [dt.date(2013, 3, 1), dt.date(2013, 3, 2), dt.date(2013, 3, 3)]
SYNTHETIC_DAY = dt.date(2013, 3, 4)
SYNTHETIC_ROWS = 1_000_000
ENTITY_ROWS = 100_000
REDIS_DB = 15


def stores(settings: Settings) -> dict[str, Settings]:
    return {
        "sqlite": settings,
        "redis": settings.model_copy(
            update={"feast_online_store": "redis", "feast_redis": f"127.0.0.1:6379,db={REDIS_DB}"}
        ),
    }


def window_rows(settings: Settings, day: dt.date) -> int:
    """Rows in the day's materialization window, over every feature view's source."""
    uris = [settings.table_uri(f"gold.{e}_stats") for e in tb.ENTITY_KEYS]
    n = sum(read_arrow(u, {"as_of_date": [day]}, ["as_of_date"]).num_rows for u in uris)
    n += read_arrow(settings.table_uri(tb.GOLD_WEATHER.name), {"as_of_date": [day]}).num_rows
    tomorrow = day + dt.timedelta(days=1)
    return (
        n
        + read_arrow(
            settings.table_uri(tb.GOLD_SCHEDULED_FLIGHTS.name), {"flight_date": [tomorrow]}
        ).num_rows
    )


def synthetic_planes(settings: Settings) -> None:
    spec = tb.gold_stats("plane", settings.rolling_windows_days)
    n = SYNTHETIC_ROWS
    columns = {
        "tailnum": pa.array([f"S{i:07d}" for i in range(n)]),
        "as_of_date": pa.array([SYNTHETIC_DAY] * n, pa.date32()),
        "event_ts": pa.array(
            [end_of_day_utc(SYNTHETIC_DAY).replace(tzinfo=None)] * n, pa.timestamp("us")
        ),
    }
    for field in spec.arrow_schema:
        if field.name not in columns:
            columns[field.name] = pa.array(
                (pd.Series(range(n)) % 97 / (97 if field.type == pa.float64() else 1)).astype(
                    "float64" if field.type == pa.float64() else "int64"
                )
            )
    data = pa.table(columns).select(spec.arrow_schema.names).cast(spec.arrow_schema)
    open_tables(get_spark(settings), settings).overwrite_partitions(
        spec, data, {"as_of_date": [SYNTHETIC_DAY]}
    )


def materialize_planes(settings: Settings, engine: str = "configured") -> float:
    fs = store.feature_store(settings)
    if engine == "stock":
        fs.config.batch_engine_config = "local"  # Feast's own writer
    started = time.perf_counter()
    fs.materialize(
        start_date=end_of_day_utc(SYNTHETIC_DAY - dt.timedelta(days=1))
        + dt.timedelta(microseconds=1),
        end_date=end_of_day_utc(SYNTHETIC_DAY),
        feature_views=["plane_stats"],
    )
    return time.perf_counter() - started


def entity_rows(settings: Settings) -> pd.DataFrame:
    flights = training.labeled_flights(settings, DAYS[1], DAYS[2])
    repeats = -(-ENTITY_ROWS // len(flights))
    return pd.concat([flights] * repeats, ignore_index=True).head(ENTITY_ROWS)


def main() -> None:
    settings = start_afresh(STATE)
    results: dict[str, float] = {}
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    spark = None
    try:
        spark = get_spark(settings)
        for day in DAYS:
            for stage in ("land", "bronze", "silver", "gold"):
                run_stage(stage, day, "bench", settings, spark=spark)
        synthetic_planes(settings)
        store.apply(settings)
        for name, config in stores(settings).items():
            if name == "redis":
                store.apply(config)
            started = time.perf_counter()
            materialize.run(config, DAYS[1])
            results[f"day_{name}_s"] = time.perf_counter() - started
            results[f"day_{name}_rows"] = window_rows(settings, DAYS[1])
            results[f"planes_1m_{name}_s"] = materialize_planes(config)
            # the stock engine into an empty store of the same kind: both runs are first writes
            if name == "redis":
                redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
                stock = config
            else:
                stock = config.model_copy(
                    update={
                        "state_dir": STATE / "stock-engine",
                        "lakehouse_uri": config.lakehouse,
                        "landing_uri": config.landing,
                    }
                )
                store.apply(stock)
            results[f"planes_1m_{name}_stock_s"] = materialize_planes(stock, "stock")
        entities = entity_rows(settings)
        fs = store.feature_store(settings)
        service = fs.get_feature_service(store.FEATURE_SERVICE)
        started = time.perf_counter()
        frame = fs.get_historical_features(
            entity_df=entities, features=service, full_feature_names=True
        ).to_df()
        results["historical_100k_s"] = time.perf_counter() - started
        results["historical_rows"] = len(frame)
        results["historical_columns"] = frame.shape[1]
    finally:
        redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
        if spark is not None:  # a Connect client left open hangs the exit once its server is gone
            spark.stop()
        services.down(settings)

    table = Table(title="Feast on the gold Delta tables")
    table.add_column("measure")
    table.add_column("SQLite", justify="right")
    table.add_column("Redis", justify="right")
    day_rows = results["day_sqlite_rows"]
    for label, key, rows in (
        (f"materialize one day ({day_rows:,} rows)", "day_{}_s", day_rows),
        (f"materialize {SYNTHETIC_ROWS:,} plane rows", "planes_1m_{}_s", SYNTHETIC_ROWS),
        ("same, Feast's stock engine", "planes_1m_{}_stock_s", SYNTHETIC_ROWS),
    ):
        cells = [
            f"{results[key.format(s)]:.1f}s = {rows / results[key.format(s)]:,.0f} rows/s"
            for s in ("sqlite", "redis")
        ]
        table.add_row(label, *cells)
    console.print(table)
    console.print(
        "column-wise engine vs stock on 1M rows: "
        + ", ".join(
            f"{s} {results[f'planes_1m_{s}_stock_s'] / results[f'planes_1m_{s}_s']:.1f}x"
            for s in ("sqlite", "redis")
        )
    )
    console.print(
        f"historical retrieval, {results['historical_rows']:,} entity rows x "
        f"{results['historical_columns']} columns: {results['historical_100k_s']:.1f}s "
        "(targets: >= 50k rows/s materialized, <= 5 s for 100k rows)"
    )
    save(results, STATE / "features.json", console)


if __name__ == "__main__":
    main()
