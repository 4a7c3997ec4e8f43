"""The run summary `make run` prints: rows per layer per day, quarantine by reason."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F
from rich.console import Console
from rich.table import Table

from jobs.common.delta import open_tables
from jobs.common.settings import Settings
from jobs.common.spark import get_spark
from jobs.lakehouse import tables as tb


def layer_counts(settings: Settings, start: dt.date, end: dt.date) -> dict[dt.date, dict[str, int]]:
    """{day: {column: rows}} for the flights path through the layers."""
    spark = get_spark(settings)
    tables = open_tables(spark, settings)
    window = F.col("d").between(F.lit(start), F.lit(end))

    def per_day(spec, date_col, name, where=None):
        df = tables.read(spec).withColumnRenamed(date_col, "d").where(window)
        if where is not None:
            df = df.where(where)
        return {r["d"]: {name: r["count"]} for r in df.groupBy("d").count().collect()}

    out: dict[dt.date, dict[str, int]] = {}
    sources = [
        per_day(tb.BRONZE["flights"], "_logical_date", "bronze"),
        per_day(tb.SILVER_FLIGHTS, "flight_date", "silver"),
        per_day(tb.GOLD_FLIGHTS, "flight_date", "gold"),
        per_day(tb.GOLD_SCHEDULED_FLIGHTS, "flight_date", "to score"),
        per_day(
            tb.QUARANTINE,
            "logical_date",
            "quarantined",
            (F.col("source_table") == "flights") & (F.col("reason") != "DUPLICATE"),
        ),
    ]
    recon = tables.read(tb.RECONCILIATION).where(F.col("source_table") == "flights")
    sources.append(
        {
            r["logical_date"]: {"duplicates": r["duplicates"]}
            for r in recon.collect()
            if start <= r["logical_date"] <= end
        }
    )
    for source in sources:
        for day, counts in source.items():
            out.setdefault(day, {}).update(counts)
    return dict(sorted(out.items()))


def quarantine_by_reason(
    settings: Settings, start: dt.date, end: dt.date
) -> list[tuple[str, str, int]]:
    spark = get_spark(settings)
    df = (
        open_tables(spark, settings)
        .read(tb.QUARANTINE)
        .where(F.col("logical_date").between(F.lit(start), F.lit(end)))
    )
    rows = df.groupBy("source_table", "reason").count().orderBy(F.desc("count")).collect()
    return [(r["source_table"], r["reason"], r["count"]) for r in rows]


def print_summary(settings: Settings, start: dt.date, end: dt.date, console: Console) -> None:
    counts = layer_counts(settings, start, end)
    columns = ["bronze", "silver", "quarantined", "duplicates", "gold", "to score"]
    table = Table(title=f"Flights per layer, {start} .. {end}")
    table.add_column("day")
    for c in columns:
        table.add_column(c, justify="right")
    totals = dict.fromkeys(columns, 0)
    for day, row in counts.items():
        table.add_row(str(day), *[str(row.get(c, 0)) for c in columns])
        for c in columns:
            totals[c] += row.get(c, 0)
    table.add_row("total", *[str(totals[c]) for c in columns], style="bold")
    console.print(table)
    reasons = quarantine_by_reason(settings, start, end)
    q = Table(title="Quarantined records by reason")
    for c in ("source", "reason", "records"):
        q.add_column(c)
    for source, reason, n in reasons:
        q.add_row(source, reason, str(n))
    if not reasons:
        q.add_row("-", "none", "0")
    console.print(q)
