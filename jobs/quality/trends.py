"""Cross-day checks: bounds for a day's statistics derived from its trailing window.

A suite's expectation opts in with ``meta.band`` (see ``expectations/silver_flights_trends.json``):
``stat`` is the daily statistic (``row_count``, ``mean``, ``median`` or ``non_null_rate`` of the
expectation's column), and ``relative`` or ``absolute`` the band's half-width around its center,
the mean of that statistic over the ``trailing_days`` before D. The bounds are handed to GX as
the expectation's ``$PARAMETER`` values, so every threshold stays in the suite file.

The daily statistics are aggregated by Spark on the trailing partitions (one small job, one row
per day comes back), so the cost does not grow with the lakehouse's history.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs.common.delta import DeltaTables, TableSpec
from jobs.common.errors import NightjarError
from jobs.lakehouse import frames


def _daily_stat(stat: str, column: str | None) -> Column:
    if stat == "row_count":
        return F.count(F.lit(1))
    if column is None:
        raise NightjarError(f"band statistic {stat!r} needs the expectation's column")
    if stat == "mean":
        return F.avg(column)
    if stat == "median":
        return F.median(column)
    if stat == "non_null_rate":
        return F.avg(F.col(column).isNotNull().cast("double"))
    raise NightjarError(
        f"unknown band statistic {stat!r}; expected row_count, mean, median or non_null_rate"
    )


def _parameter(value: Any) -> str | None:
    return value.get("$PARAMETER") if isinstance(value, dict) else None


def banded(suite: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(statistic alias, band, kwargs) of every expectation with a trailing band."""
    out = []
    for i, expectation in enumerate(suite["expectations"]):
        band = expectation.get("meta", {}).get("band")
        if band is None:
            continue
        kwargs = expectation["kwargs"]
        if not (_parameter(kwargs.get("min_value")) and _parameter(kwargs.get("max_value"))):
            raise NightjarError(
                f"suite {suite['name']}: expectation {i} has meta.band but its min_value and "
                "max_value are not $PARAMETER references"
            )
        if ("relative" in band) == ("absolute" in band):
            raise NightjarError(
                f"suite {suite['name']}: expectation {i}: meta.band needs exactly one of "
                "'relative' or 'absolute'"
            )
        out.append((f"{band['stat']}__{kwargs.get('column') or 'table'}", band, kwargs))
    return out


def daily_stats(
    tables: DeltaTables,
    table: TableSpec,
    date_column: str,
    days: list[dt.date],
    suite: dict[str, Any],
) -> pd.DataFrame:
    """Every daily statistic ``suite`` bands (``meta.band``) and every correlation it tracks
    (``meta.correlations``), for ``days`` and the ``trailing_days`` before the first: one Spark
    job on those partitions, one row per day that has data, indexed by date."""
    trailing = int(suite["meta"]["trailing_days"])
    read = [days[0] - dt.timedelta(days=n) for n in range(trailing, 0, -1)] + list(days)
    aggregates = {
        alias: _daily_stat(band["stat"], kw.get("column")) for alias, band, kw in banded(suite)
    }
    aggregates |= {alias: exact_corr(a, b) for alias, (a, b) in _correlations(suite).items()}
    stats = (
        tables.read(table, partitions={date_column: read})
        .groupBy(date_column)
        .agg(*[expr.alias(alias) for alias, expr in aggregates.items()])
    )
    return frames.to_pandas(stats).set_index(date_column)


def exact_corr(a: str, b: str) -> Column:
    """Pearson's correlation of columns ``a`` and ``b`` over the rows that have both, from sums
    taken exactly (as decimals). Spark's ``corr`` updates its moments row by row, so its last
    digits follow the order the rows are read in: a day read within a month's files recorded a
    different value than the same day read alone (1e-15 apart), and the history rebuild must
    record what the daily runs do."""
    both = F.col(a).isNotNull() & F.col(b).isNotNull()
    x, y = (F.when(both, F.col(c).cast("decimal(18,4)")) for c in (a, b))
    n = F.count(x)

    def spread(u: Column, v: Column) -> Column:  # n times the sum of the co-deviations, exact
        return (n * F.sum(u * v) - F.sum(u) * F.sum(v)).cast("double")

    # Each term stays within a decimal's 38 digits up to ~1e9 rows; their product would not
    # (a day of 10M flights overflowed it), so it is taken in doubles, from the exact terms.
    return F.try_divide(spread(x, y), F.sqrt(spread(x, x) * spread(y, y)))


def window(daily: pd.DataFrame, day: dt.date, suite: dict[str, Any]) -> pd.DataFrame:
    """The rows of ``daily_stats`` a day is checked with: the day and its ``trailing_days``."""
    trailing = int(suite["meta"]["trailing_days"])
    first = day - dt.timedelta(days=trailing)
    return daily[[first <= d <= day for d in daily.index]]


def _correlations(suite: dict[str, Any]) -> dict[str, tuple[str, str]]:
    pairs = suite["meta"].get("correlations", [])
    return {f"corr__{a}__{b}": (a, b) for a, b in (p["columns"] for p in pairs)}


def trailing_parameters(
    daily: pd.DataFrame, day: dt.date, suite: dict[str, Any]
) -> tuple[dict[str, float | None], int]:
    """The ``$PARAMETER`` bounds of ``suite``'s banded expectations for ``day`` from its
    ``daily_stats``, and how many days of history they were derived from. Open bounds (None)
    below ``min_history_days``."""
    daily = daily.drop(index=day, errors="ignore")
    history = len(daily)
    enough = history >= int(suite["meta"]["min_history_days"])
    parameters: dict[str, float | None] = {}
    for alias, band, kwargs in banded(suite):
        low, high = None, None
        center = daily[alias].mean() if enough else None
        if center is not None and center == center:  # NaN: the column was null every day
            if "relative" in band:
                low, high = center * (1 - band["relative"]), center * (1 + band["relative"])
            else:
                low, high = center - band["absolute"], center + band["absolute"]
        parameters[_parameter(kwargs["min_value"])] = None if low is None else float(low)
        parameters[_parameter(kwargs["max_value"])] = None if high is None else float(high)
    return parameters, history


def correlation_rows(
    daily: pd.DataFrame, day: dt.date, suite: dict[str, Any], run_id: str
) -> list[dict[str, Any]]:
    """Feature-correlation drift, as gate results: for each ``meta.correlations`` entry of the
    suite, D's Pearson correlation of the column pair (from its ``daily_stats``) must lie within
    ``absolute`` of its mean over the trailing days (GX has no correlation expectation, so Spark
    computes both and the result is recorded like any other). Open below ``min_history_days``."""
    import json

    pairs = suite["meta"].get("correlations", [])
    aliases = _correlations(suite)
    history = daily.drop(index=day, errors="ignore")
    enough = len(history) >= int(suite["meta"]["min_history_days"])
    rows = []
    for pair, alias in zip(pairs, aliases, strict=True):
        observed = float(daily.loc[day, alias]) if day in daily.index else None
        center = float(history[alias].mean()) if enough else None
        low = None if center is None else center - pair["absolute"]
        high = None if center is None else center + pair["absolute"]
        success = observed is not None and (center is None or low <= observed <= high)
        rows.append(
            {
                "logical_date": day,
                "layer": "silver",
                "suite": suite["name"],
                "expectation": "column_pair_correlation_within_trailing_band",
                "column": ",".join(pair["columns"]),
                "kwargs": json.dumps({"min_value": low, "max_value": high}),
                "severity": pair["severity"],
                "success": success,
                "observed_value": json.dumps(observed),
                "exception": None,
                "_run_id": run_id,
            }
        )
    return rows
