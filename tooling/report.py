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


def _frame(settings: Settings, table: str):
    """A small ML table as pandas (delta-rs, no Spark); empty when it does not exist yet."""
    import pandas as pd

    from jobs.common.delta.snapshot import read_arrow_if_exists

    frame = read_arrow_if_exists(settings.table_uri(table))
    return pd.DataFrame() if frame is None else frame.to_pandas()


def _fmt(value, digits: int = 3) -> str:
    import pandas as pd

    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if digits == 0:  # counts (stored as nullable numbers)
        return f"{int(value):,}"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_lifecycle(settings: Settings, start: dt.date, end: dt.date, console: Console) -> None:
    """The champion's history with reasons, daily performance and drift, retrain requests."""
    from jobs.monitoring.retrain import REQUESTS_TABLE
    from jobs.monitoring.tables import MONITORING_METRICS
    from jobs.training import registry

    decisions = registry.decisions(settings)
    history = Table(title=f"Model versions of {settings.model_name}")
    for c in ("decided at", "version", "decision", "champion after", "reason", "trigger"):
        history.add_column(c)
    for r in decisions.itertuples():
        history.add_row(
            f"{r.decided_at:%H:%M:%S}",
            r.version,
            r.decision,
            _fmt(r.champion_after),
            r.reason,
            _fmt(getattr(r, "trigger", None)),
        )
    console.print(history)

    metrics = _frame(settings, MONITORING_METRICS.name)
    daily = Table(
        title="Daily monitoring (champion): drift of tonight's scores, AUC of last night's"
    )
    for c in (
        "day",
        "version",
        "scored",
        "drift share",
        "pred. drift",
        "labeled",
        "ROC AUC",
        "precision",
        "recall",
        "7-day AUC",
    ):
        daily.add_column(c, justify="right")
    if len(metrics):
        rows = metrics[
            (metrics.model_name == settings.model_name)
            & (metrics.role == "champion")
            & (metrics.monitor_date >= start)
            & (metrics.monitor_date <= end)
        ].sort_values("monitor_date")
        for r in rows.itertuples():
            daily.add_row(
                str(r.monitor_date),
                r.model_version,
                _fmt(r.n_scored, 0),
                _fmt(r.drift_share, 2),
                _fmt(r.prediction_drift, 2),
                _fmt(r.n_labeled, 0),
                _fmt(r.roc_auc),
                _fmt(r.precision),
                _fmt(r.recall),
                _fmt(r.rolling_roc_auc),
            )
    console.print(daily)

    requests = _frame(settings, REQUESTS_TABLE)
    alerts = Table(title="Retrain requests (drift and performance alerts, first model)")
    for c in ("day", "rule", "reason", "served by", "outcome"):
        alerts.add_column(c)
    if len(requests):
        requests = requests[requests.model_name == settings.model_name]
        served = requests[requests.event == "served"].set_index("request_id")
        for r in requests[requests.event == "requested"].sort_values("request_date").itertuples():
            done = served.loc[r.request_id] if r.request_id in served.index else None
            alerts.add_row(
                str(r.request_date),
                r.rule,
                r.reason,
                f"v{done.model_version}" if done is not None else "pending",
                done.outcome if done is not None else "-",
            )
    console.print(alerts)


def where_to_look(settings: Settings) -> str:
    from tooling import observability

    if observability.available():
        urls = observability.urls(settings)
        watch = (
            f"  Metrics      {urls['Prometheus']} (nightjar_* series; alerts under /alerts), "
            f"Alertmanager {urls['Alertmanager']}; while `make airflow` runs\n"
            f"  Dashboard    {observability.CONFIG_DIR / 'grafana' / 'nightjar.json'} "
            "(Grafana, provisioned by docker-compose.yml)\n"
        )
    else:
        watch = f"  Metrics      {observability.missing_hint()}\n"
    return (
        f"Where to look:\n"
        f"  Airflow UI   http://{settings.airflow_host}:{settings.airflow_port} "
        "(make airflow; the monitor task's 'Monitoring report' link)\n"
        f"  MLflow UI    http://127.0.0.1:5000 (make mlflow): experiments {settings.model_name} "
        f"and {settings.model_name}-monitoring\n"
        f"  Reports      {settings.reports_dir}/<day>/index.html; drift and AUC over the days: "
        "make monitoring-ui (Evidently's UI, http://127.0.0.1:8001)\n"
        f"{watch}"
        f"  Lakehouse    {settings.lakehouse} (ml.predictions, ml.monitoring_metrics, "
        "ml.model_decisions, ml.retrain_requests)"
    )
