"""`make bench-features`: Feast materialization throughput and historical retrieval time,
printed and saved to .state/bench-features/features.json.

1. One day (2013-03-02's features: entity statistics, weather, 03-03's timetable) materialized
   by the daily DAG's task into the SQLite and the Redis online store.
2. Synthetic planes (tail numbers with statistics for one day, written to gold.plane_stats)
   materialized into a fresh store of each kind: 1M rows by the configured engine
   (jobs/adapters/feast_arrow_engine.py), streamed in batches, and by Feast's stock local engine,
   so the ratio is visible; 1M, 4M and 10M rows into SQLite by the configured engine streamed,
   and up to 4M reading the window whole (its path before streaming), so the task's memory is
   visible. Each runs in a fresh process, whose peak RSS above its start is printed.
3. Historical retrieval of the flight_disruption_v1 service for 100,000 entity rows (real keys
   of 2013-03-02..03 at their prediction times, repeated).

Runs in its own state folder, Spark Connect port and Redis server.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor

from benchmarks.harness import isolate, memory_mb, save, start_afresh

STATE = isolate("features", 25022)

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jobs.adapters import feast_arrow_engine  # noqa: E402
from jobs.common.dates import end_of_day_utc  # noqa: E402
from jobs.common.delta import open_tables  # noqa: E402
from jobs.common.delta.snapshot import read_arrow  # noqa: E402
from jobs.common.settings import Settings  # noqa: E402
from jobs.common.spark import get_spark  # noqa: E402
from jobs.features import materialize, store, training  # noqa: E402
from jobs.lakehouse import tables as tb  # noqa: E402
from jobs.pipeline import run_stage  # noqa: E402
from tooling import servers, services  # noqa: E402

console = Console()
DAYS = [dt.date(2013, 3, 1), dt.date(2013, 3, 2), dt.date(2013, 3, 3)]
SYNTHETIC = {  # rows: day
    1_000_000: dt.date(2013, 3, 4),
    4_000_000: dt.date(2013, 3, 5),
    10_000_000: dt.date(2013, 3, 6),
}
WHOLE_MAX = 4_000_000  # the window read whole needs ~1.2 GB per 1M rows: not run past this
ENTITY_ROWS = 100_000


def stores(settings: Settings, redis: servers.Redis) -> dict[str, Settings]:
    return {
        "sqlite": settings,
        "redis": settings.model_copy(
            update={"feast_online_store": "redis", "feast_redis": redis.connection_string()}
        ),
    }


def fresh_store(config: Settings, name: str) -> Settings:
    """``config`` with an empty online store of its kind (and its own registry)."""
    if config.feast_online_store == "redis":
        redis = config.feast_redis.split(",")[0].split(":")
        servers.Redis(redis[0], int(redis[1])).client().flushdb()
        fresh = config
    else:
        fresh = config.model_copy(
            update={
                "state_dir": STATE / name,
                "lakehouse_uri": config.lakehouse,
                "landing_uri": config.landing,
            }
        )
    store.apply(fresh)
    return fresh


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


def synthetic_planes(settings: Settings, n: int, day: dt.date) -> None:
    spec = tb.gold_stats("plane", settings.rolling_windows_days)
    columns = {
        "tailnum": pa.array([f"S{i:07d}" for i in range(n)]),
        "as_of_date": pa.array([day] * n, pa.date32()),
        "event_ts": pa.array([end_of_day_utc(day).replace(tzinfo=None)] * n, pa.timestamp("us")),
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
        spec, data, {"as_of_date": [day]}
    )


def materialize_planes(settings: Settings, day: dt.date, engine: str) -> dict[str, float]:
    """Materialize ``day``'s synthetic planes (in a fresh process: see :func:`measured`) with
    ``engine``: "streamed" (the configured engine), "whole" (the configured engine reading the
    window whole, as Feast's plan does) or "stock" (Feast's own local engine)."""
    fs = store.feature_store(settings)
    if engine == "stock":
        fs.config.batch_engine_config = "local"  # Feast's own writer
    if engine == "whole":
        feast_arrow_engine.streams = lambda view, task: False
    start = end_of_day_utc(day - dt.timedelta(days=1)) + dt.timedelta(microseconds=1)
    baseline = memory_mb(field="VmRSS")
    started = time.perf_counter()
    fs.materialize(start_date=start, end_date=end_of_day_utc(day), feature_views=["plane_stats"])
    seconds = time.perf_counter() - started
    return {"s": seconds, "peak_above_start_mb": memory_mb() - baseline}


def measured(settings: Settings, n: int, engine: str, name: str) -> dict[str, float]:
    """:func:`materialize_planes` of ``n`` rows into a fresh store, in a fresh process."""
    config = fresh_store(settings, name)
    spawn = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
            return child.submit(materialize_planes, config, SYNTHETIC[n], engine).result()
    finally:  # 10M entities of 12 features are ~20 GB of SQLite
        if config.state_dir != settings.state_dir:
            shutil.rmtree(config.state_dir, ignore_errors=True)


def entity_rows(settings: Settings) -> pd.DataFrame:
    flights = training.labeled_flights(settings, DAYS[1], DAYS[2])
    repeats = -(-ENTITY_ROWS // len(flights))
    return pd.concat([flights] * repeats, ignore_index=True).head(ENTITY_ROWS)


def main() -> None:
    settings = start_afresh(STATE)
    results: dict = {}
    spark = None
    with servers.running(settings, "redis") as redis:
        try:
            spark = get_spark(settings)
            for day in DAYS:
                for stage in ("land", "bronze", "silver", "gold"):
                    run_stage(stage, day, "bench", settings, spark=spark)
            for n, day in SYNTHETIC.items():
                synthetic_planes(settings, n, day)
            store.apply(settings)
            for name, config in stores(settings, redis).items():
                config = fresh_store(config, f"{name}-day")
                started = time.perf_counter()
                materialize.run(config, DAYS[1])
                results[f"day_{name}_s"] = time.perf_counter() - started
                results[f"day_{name}_rows"] = window_rows(settings, DAYS[1])
                for engine in ("streamed", "stock"):
                    key = f"planes_1000000_{name}_{engine}"
                    results[key] = measured(config, 1_000_000, engine, key)
            for n in SYNTHETIC:
                for engine in ("streamed", "whole") if n <= WHOLE_MAX else ("streamed",):
                    key = f"planes_{n}_sqlite_{engine}"
                    if key not in results:  # 1M streamed ran above
                        results[key] = measured(settings, n, engine, key)
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
            if spark is not None:  # a Connect client left open hangs the exit once it is gone
                spark.stop()
            services.down(settings)
    report(results)
    save(results, STATE / "features.json", console)


def report(results: dict) -> None:
    table = Table(title="Feast on the gold Delta tables")
    for column in ("measure", "SQLite", "Redis"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    day_rows = results["day_sqlite_rows"]
    table.add_row(
        f"materialize one day ({day_rows:,} rows)",
        *(f"{results[f'day_{s}_s']:.1f}s" for s in ("sqlite", "redis")),
    )

    def cell(key: str, rows: int) -> str:
        if key not in results:
            return ""
        run = results[key]
        return (
            f"{run['s']:.1f}s = {rows / run['s']:,.0f} rows/s, "
            f"+{run['peak_above_start_mb']:,.0f} MB"
        )

    for n in SYNTHETIC:
        for engine, label in (
            ("streamed", "streamed in batches"),
            ("whole", "window read whole"),
            ("stock", "Feast's stock engine"),
        ):
            cells = [cell(f"planes_{n}_{s}_{engine}", n) for s in ("sqlite", "redis")]
            if any(cells):
                table.add_row(f"materialize {n:,} plane rows, {label}", *cells)
    console.print(table)

    def seconds(store_kind: str, engine: str) -> float:
        return results[f"planes_1000000_{store_kind}_{engine}"]["s"]

    console.print(
        "configured engine vs stock on 1M rows: "
        + ", ".join(
            f"{s} {seconds(s, 'stock') / seconds(s, 'streamed'):.1f}x" for s in ("sqlite", "redis")
        )
        + "; SQLite peak memory above start at "
        + ", ".join(f"{n:,}" for n in SYNTHETIC)
        + " rows: "
        + "; ".join(
            f"{e} "
            + " / ".join(
                f"{results[k]['peak_above_start_mb']:,.0f}"
                for n in SYNTHETIC
                if (k := f"planes_{n}_sqlite_{e}") in results
            )
            + " MB"
            for e in ("streamed", "whole")
        )
    )
    console.print(
        f"historical retrieval, {results['historical_rows']:,} entity rows x "
        f"{results['historical_columns']} columns: {results['historical_100k_s']:.1f}s "
        "(targets: >= 50k rows/s materialized, <= 5 s for 100k rows)"
    )


if __name__ == "__main__":
    main()
