"""`make bench-quality`: what the quality gates cost, printed and saved to
.state/bench-quality/quality.json.

1. Validation time added to a day-run: one day (2013-03-01) built through land -> bronze ->
   silver -> gold, with 28 days of silver history before it (copies of the day's flights, so
   the cross-day bands read a full window). Each stage and each gate runs as the DAG's tasks
   run it (its own Spark Connect client); the gates (bronze, silver, gold) are timed against
   the day-run without them, with GX on pandas (the default) and on GX's Spark engine.
2. 1M silver rows (the day's flights repeated with distinct keys, written to a Delta
   partition): `check_silver` end to end (snapshot read, every silver and cross-day
   expectation, the quarantine rate, results recorded), pandas against Spark.
3. A month of `check_silver`'s validations, as a history run's gate makes them: the day's
   frame validated as 31 days against both silver suites, as the gates run them (with
   `jobs.adapters.gx_expectation_kwargs`, BASIC results), with GX's own kwargs methods, and
   asking for GX's fuller SUMMARY results (alternating, median of 3; CPU seconds too).

Runs in its own state folder and Spark Connect port, beside a running `make airflow`.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import time

from benchmarks.harness import isolate, save, start_afresh

STATE = isolate("quality", 25012)

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from jobs.adapters import gx_expectation_kwargs  # noqa: E402
from jobs.common.delta import open_tables  # noqa: E402
from jobs.common.settings import Settings  # noqa: E402
from jobs.common.spark import get_spark  # noqa: E402
from jobs.lakehouse import bronze  # noqa: E402
from jobs.lakehouse import tables as tb  # noqa: E402
from jobs.pipeline import release, run_stage  # noqa: E402
from jobs.quality import gates, gx_runner  # noqa: E402
from tooling import services  # noqa: E402

console = Console()
DAY = dt.date(2013, 3, 1)
REPEATS = 3
SCALED_ROWS = 1_000_000


def in_own_session(job, settings: Settings) -> float:
    """Seconds for ``job(spark, tables)`` in a fresh Connect client, as a DAG task runs it."""
    started = time.perf_counter()
    spark = get_spark(settings)
    try:
        job(spark, open_tables(spark, settings))
    finally:
        release(spark)
    return time.perf_counter() - started


def median_seconds(job, settings: Settings) -> float:
    return statistics.median(in_own_session(job, settings) for _ in range(REPEATS))


def copy_history(settings: Settings, flights: pa.Table, days: int) -> None:
    tables = open_tables(get_spark(settings), settings)
    for n in range(1, days + 1):
        day = DAY - dt.timedelta(days=n)
        copy = flights.set_column(
            flights.schema.get_field_index("flight_date"),
            "flight_date",
            pa.array([day] * flights.num_rows, pa.date32()),
        ).set_column(
            flights.schema.get_field_index("flight_id"),
            "flight_id",
            pc.binary_join_element_wise(flights["flight_id"], pa.scalar(f"h{n}"), "-"),
        )
        tables.overwrite_partitions(tb.SILVER_FLIGHTS, copy, {"flight_date": [day]})


def scaled(flights: pa.Table, factor: int) -> pa.Table:
    """``flights`` repeated ``factor`` times, each copy with its own flight ids."""
    copies = []
    for n in range(factor):
        ids = pc.binary_join_element_wise(flights["flight_id"], pa.scalar(f"x{n}"), "-")
        copies.append(
            flights.set_column(flights.schema.get_field_index("flight_id"), "flight_id", ids)
        )
    return pa.concat_tables(copies)


def gate(check, engine: str):
    def job(spark, tables):
        check(spark, tables, settings_for(engine), DAY, "bench")

    return job


def settings_for(engine: str, **changes) -> Settings:
    return Settings().model_copy(update={"quality_engine": engine, **changes})


def month_of_validations(tables, settings: Settings) -> dict[str, float]:
    """Seconds (wall and CPU, median of 3) of ``check_silver``'s GX validations for a month:
    the day's frame as each of 31 days, against both silver suites, as the gates run them
    (``adapter``), with GX's own kwargs methods (``stock``) and with SUMMARY results
    (``summary``)."""
    frame = gates.per_day(
        gates.silver_frame(tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": [DAY]})),
        "flight_date",
        [DAY],
        settings,
        drop=True,
    )[DAY]
    month = [DAY + dt.timedelta(days=n) for n in range(31)]
    parameters, bands, _ = gates.silver_parameters(tables, [DAY])

    def validate() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        frames = dict.fromkeys(month, frame)
        gx_runner.validate_days(
            frames,
            "silver_flights",
            "silver",
            dict.fromkeys(month, parameters[DAY]),
            settings,
            "bench",
        )
        gx_runner.validate_days(
            frames,
            "silver_flights_trends",
            "silver",
            dict.fromkeys(month, bands[DAY]),
            settings,
            "bench",
        )
        return time.perf_counter() - wall, time.process_time() - cpu

    validate()  # imports and the template cache, for all
    runs: dict[str, list[tuple[float, float]]] = {"stock": [], "adapter": [], "summary": []}
    for _ in range(REPEATS):
        with gx_expectation_kwargs.stock():
            runs["stock"].append(validate())
        runs["adapter"].append(validate())
        gx_runner.RESULT_FORMAT, platform = "SUMMARY", gx_runner.RESULT_FORMAT
        try:
            runs["summary"].append(validate())
        finally:
            gx_runner.RESULT_FORMAT = platform
    return {
        f"month_{variant}_{measure}_s": statistics.median(r[i] for r in found)
        for variant, found in runs.items()
        for i, measure in enumerate(("wall", "cpu"))
    }


def main() -> None:
    settings = start_afresh(STATE)
    results: dict[str, float] = {}
    try:
        # --- 1. a day-run with and without its gates -----------------------------------------
        stage_seconds = {}
        for stage in ("land", "bronze", "silver", "gold"):
            started = time.perf_counter()
            run_stage(stage, DAY, "bench", settings)
            stage_seconds[stage] = time.perf_counter() - started
        spark = get_spark(settings)
        tables = open_tables(spark, settings)
        silver = tables.read(tb.SILVER_FLIGHTS, partitions={"flight_date": [DAY]}).toArrow()
        copy_history(settings, silver, 28)
        # bronze's own time, without the gate that the bronze task runs after it
        stage_seconds["bronze"] = median_seconds(
            lambda s, t: bronze.run(s, t, settings, DAY, "bench"), settings
        )
        results["day_run_without_gates_s"] = sum(stage_seconds.values())
        for engine in ("pandas", "spark"):
            for name, check in (
                ("bronze", gates.check_bronze),
                ("silver", gates.check_silver),
                ("gold", gates.check_gold),
            ):
                results[f"gate_{name}_{engine}_s"] = median_seconds(gate(check, engine), settings)
            results[f"gates_added_per_day_{engine}_s"] = sum(
                results[f"gate_{n}_{engine}_s"] for n in ("bronze", "silver", "gold")
            )
        results["silver_rows_per_day"] = silver.num_rows

        # --- 2. 1M silver rows -----------------------------------------------------------------
        big = settings_for("pandas", lakehouse_uri=str(STATE / "lakehouse-1m"))
        spark = get_spark(settings)  # the gates above released the earlier client
        tables = open_tables(spark, settings)
        big_tables = open_tables(spark, big)
        results |= month_of_validations(tables, settings)  # --- 3. ---------------------------
        for dimension in (tb.SILVER_AIRLINES, tb.SILVER_AIRPORTS):
            big_tables.merge(dimension, tables.read(dimension).toArrow())
        reconciliation = {"source_table": ["flights"], "logical_date": [DAY]}
        big_tables.overwrite_partitions(
            tb.RECONCILIATION,
            tables.read(tb.RECONCILIATION, partitions=reconciliation).toArrow(),
            reconciliation,
        )
        rows = scaled(silver, math.ceil(SCALED_ROWS / silver.num_rows))
        big_tables.overwrite_partitions(tb.SILVER_FLIGHTS, rows, {"flight_date": [DAY]})
        results["scaled_rows"] = rows.num_rows
        for engine in ("pandas", "spark"):
            config = big.model_copy(update={"quality_engine": engine})
            results[f"silver_1m_{engine}_s"] = in_own_session(
                lambda s, t, c=config: gates.check_silver(s, open_tables(s, c), c, DAY, "bench"),
                config,
            )
        release(spark)
    finally:
        services.down(settings)

    table = Table(title="Quality gates (median of 3 runs per gate)")
    table.add_column("measure")
    table.add_column("pandas", justify="right")
    table.add_column("Spark", justify="right")
    table.add_column("Spark / pandas", justify="right")
    for label, key in (
        ("bronze gate (in the bronze task)", "gate_bronze_{}_s"),
        ("check_silver (incl. 28-day bands)", "gate_silver_{}_s"),
        ("check_gold", "gate_gold_{}_s"),
        ("validation added per day-run", "gates_added_per_day_{}_s"),
        (f"check_silver on {results['scaled_rows']:,} rows", "silver_1m_{}_s"),
    ):
        p, s = results[key.format("pandas")], results[key.format("spark")]
        table.add_row(label, f"{p:.2f}s", f"{s:.2f}s", f"{s / p:.1f}x")
    console.print(table)
    console.print(
        f"day-run without gates ({results['silver_rows_per_day']} flights): "
        f"{results['day_run_without_gates_s']:.1f}s; targets: <= 3 s added per day-run, "
        "<= 20 s for 1M rows"
    )
    month = Table(title="A month of check_silver's validations (31 days x 2 suites)")
    for column in ("variant", "wall", "CPU", "CPU / the gates'"):
        month.add_column(column, justify="left" if column == "variant" else "right")
    for label, variant in (
        ("as the gates run them (kwargs adapter, BASIC results)", "adapter"),
        ("GX's own kwargs methods", "stock"),
        ("SUMMARY results", "summary"),
    ):
        wall, cpu = results[f"month_{variant}_wall_s"], results[f"month_{variant}_cpu_s"]
        ratio = cpu / results["month_adapter_cpu_s"]
        month.add_row(label, f"{wall:.1f} s", f"{cpu:.1f} s", f"{ratio:.2f}x")
    console.print(month)
    save(results, STATE / "quality.json", console)


if __name__ == "__main__":
    main()
