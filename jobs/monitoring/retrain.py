"""The retraining policy (the daily DAG's ``request_retrain`` task) and its request log.

For day D, the first rule that holds makes a request:

1. **bootstrap**: no champion yet, and gold holds at least ``initial_training_days`` labeled
   days up to D (the first model is trained on them);
2. **drift**: the champion's drift share reached ``retrain_drift_share`` on each of the last
   ``retrain_drift_days`` monitored days;
3. **performance**: the champion's rolling 7-day ROC AUC fell below ``retrain_min_rolling_auc``.

**Cooldown**: no request is made when one was made for a day in the ``retrain_cooldown_days``
before D (counted in data days, so a backfill behaves like the nightly runs): one drift episode
starts one retraining, not one per day.

``ml.retrain_requests`` is an outbox, append-only: a ``requested`` row, then a ``served`` row
when a training run has handled it. The Asset event only wakes the training DAG; each training
run serves *every* pending request in the log, not only the events that triggered it. So an
event that Airflow leaves unconsumed (apache/airflow#56050: with ``max_active_runs=1``, events
arriving during a run can wait until another event comes) loses no request: the run that
follows, requested or weekly, serves it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import pandas as pd
import pyarrow as pa

from jobs.common.delta import TableSpec
from jobs.common.delta.snapshot import append_arrow, read_arrow_if_exists
from jobs.common.errors import StageSkipped
from jobs.common.schema import struct
from jobs.common.settings import Settings
from jobs.monitoring.tables import MONITORING_METRICS

log = logging.getLogger(__name__)
MIN_ROLLING_ROWS = 500  # below this a rolling AUC is too noisy to act on
REQUESTS = TableSpec(
    name="ml.retrain_requests",
    schema=struct(
        "request_id string",
        "event string",  # requested | served
        "model_name string",
        "request_date date",  # D of the daily run that requested
        "rule string",  # bootstrap | drift | performance
        "reason string",
        "details string",  # JSON: the figures behind the decision
        "window_days long",  # training window to use (bootstrap), else default
        "recorded_at timestamp",
        "airflow_run_id string",  # the daily run (requested) or training run (served)
        "mlflow_run_id string",  # served: the training run
        "model_version string",  # served: the version it registered
        "outcome string",  # served: promoted | rejected
    ),
    key=("request_id", "event"),
    description="The retraining outbox, append-only: a requested row, then a served row",
)
REQUESTS_TABLE, SCHEMA = REQUESTS.name, REQUESTS.arrow_schema


def log_rows(settings: Settings) -> pd.DataFrame:
    frame = read_arrow_if_exists(settings.table_uri(REQUESTS_TABLE))
    if frame is None:  # no request yet
        return pd.DataFrame(columns=SCHEMA.names)
    frame = frame.to_pandas()
    return frame[frame.model_name == settings.model_name].sort_values("recorded_at")


def pending(settings: Settings) -> list[dict]:
    """Requests no training run has served yet, oldest first."""
    rows = log_rows(settings)
    served = set(rows.request_id[rows.event == "served"])
    return rows[(rows.event == "requested") & ~rows.request_id.isin(served)].to_dict("records")


def append(settings: Settings, rows: list[dict]) -> None:
    now = dt.datetime.now(dt.UTC)
    records = [{"model_name": settings.model_name, "recorded_at": now, **r} for r in rows]
    append_arrow(settings.table_uri(REQUESTS_TABLE), pa.Table.from_pylist(records, schema=SCHEMA))


def mark_served(settings: Settings, requests: list[dict], airflow_run_id: str, result) -> None:
    append(
        settings,
        [
            {
                "request_id": r["request_id"],
                "event": "served",
                "request_date": r["request_date"],
                "rule": r["rule"],
                "reason": r["reason"],
                "airflow_run_id": airflow_run_id,
                "mlflow_run_id": result.run_id,
                "model_version": result.version,
                "outcome": "promoted" if result.promoted else "rejected",
            }
            for r in requests
        ],
    )


def plan(requests: list[dict], default_trigger: str) -> tuple[dt.date | None, int | None, str]:
    """(window end, window days, trigger) of a training run serving ``requests``: the newest
    requested day, the largest requested window, and every request's reason."""
    if not requests:
        return None, None, default_trigger
    windows = [int(r["window_days"]) for r in requests if pd.notna(r["window_days"])]
    trigger = "; ".join(f"{r['rule']} on {r['request_date']}: {r['reason']}" for r in requests)
    return max(r["request_date"] for r in requests), max(windows, default=None), trigger


def decide(
    day: dt.date,
    history: pd.DataFrame,
    requests: pd.DataFrame,
    has_champion: bool,
    labeled_days: int,
    settings: Settings,
) -> dict | None:
    """The request for ``day``, or None. ``history``: the champion's ``ml.monitoring_metrics``
    rows up to ``day``; ``requests``: the request log."""
    made = requests[requests.event == "requested"] if len(requests) else requests
    since = day - dt.timedelta(days=settings.retrain_cooldown_days)
    recent = made[(made.request_date > since) & (made.request_date <= day)] if len(made) else made
    if len(recent):
        log.info(
            "cooldown: %s requested on %s", recent.request_id.iloc[-1], recent.request_date.iloc[-1]
        )
        return None
    if not has_champion:
        if labeled_days >= settings.initial_training_days:
            window = min(labeled_days, settings.training_window_days)
            return request(
                day,
                "bootstrap",
                f"no champion yet; {labeled_days} labeled days available",
                {"labeled_days": labeled_days},
                window,
            )
        return None
    days = [day - dt.timedelta(days=i) for i in range(settings.retrain_drift_days)]
    shares = history.set_index("monitor_date").drift_share.reindex(days)
    if shares.notna().all() and (shares >= settings.retrain_drift_share).all():
        return request(
            day,
            "drift",
            f"drift share >= {settings.retrain_drift_share} on {len(days)} consecutive days "
            f"({', '.join(f'{s:.2f}' for s in shares[::-1])})",
            {str(d): float(s) for d, s in shares.items()},
        )
    today = history[history.monitor_date == day]
    if len(today):
        auc, n = today.rolling_roc_auc.iloc[0], today.rolling_n.iloc[0]
        if (
            pd.notna(auc)
            and pd.notna(n)
            and n >= MIN_ROLLING_ROWS
            and auc < settings.retrain_min_rolling_auc
        ):
            return request(
                day,
                "performance",
                f"rolling 7-day ROC AUC {auc:.4f} below {settings.retrain_min_rolling_auc} "
                f"({int(n)} labeled predictions)",
                {"rolling_roc_auc": float(auc), "rolling_n": int(n)},
            )
    return None


def request(
    day: dt.date, rule: str, reason: str, details: dict, window_days: int | None = None
) -> dict:
    return {
        "request_id": f"{day.isoformat()}-{rule}",
        "event": "requested",
        "request_date": day,
        "rule": rule,
        "reason": reason,
        "details": json.dumps(details, sort_keys=True),
        "window_days": window_days,
    }


def training_wait(settings: Settings, day: dt.date) -> str | None:
    """Why the night of ``day`` must wait before it is scored, or None: an earlier night asked
    for a retraining that no training run has served yet. The version it registers governs
    the nights after the request's (``registry.from_night``), this one included, so scoring
    before it is decided would give the night another model than a replay of it would. In a
    backfill the nights after a request run beside its training."""
    rows = log_rows(settings)
    served = set(rows.request_id[rows.event == "served"])
    waiting = rows[
        (rows.event == "requested") & (rows.request_date < day) & ~rows.request_id.isin(served)
    ]
    if waiting.empty:
        return None
    first = waiting.iloc[0]
    return (
        f"the retraining requested on {first.request_date} ({first.request_id}: "
        f"{first.reason}) is not served yet, and its model may score this night"
    )


def run(settings: Settings, day: dt.date, airflow_run_id: str) -> dict:
    """Apply the policy for ``day``: record the request and return it (the task then emits
    the retrain-request Asset event), or raise StageSkipped saying why not."""
    from jobs.training import labeled, registry

    requests = log_rows(settings)
    if len(requests) and (requests.request_date == day).any():
        # A request recorded by an earlier try whose task died before its Asset event was
        # emitted is returned again, so the event goes out now (a training run serves every
        # pending request once, however many events carry it).
        if mine := [r for r in pending(settings) if r["request_date"] == day]:
            log.warning("re-emitting the pending request %s of %s", mine[0]["request_id"], day)
            return {**as_event(mine[0]), "request_date": day.isoformat()}
        raise StageSkipped(f"a retraining was already requested and served for {day}")
    history = read_arrow_if_exists(settings.table_uri(MONITORING_METRICS.name))
    history = (
        pd.DataFrame(columns=MONITORING_METRICS.arrow_schema.names)
        if history is None  # nothing monitored yet
        else history.to_pandas()
    )
    history = history[
        (history.model_name == settings.model_name)
        & (history.role == "champion")
        & (history.monitor_date <= day)
    ]
    wanted = decide(
        day,
        history,
        requests,
        registry.night_models(settings, day).champion is not None,
        labeled.days_until(settings, day),
        settings,
    )
    if wanted is None:
        raise StageSkipped(f"no retraining needed on {day} (policy and cooldown: see the log)")
    append(settings, [{**wanted, "airflow_run_id": airflow_run_id}])
    log.info("retraining requested: %s", wanted["reason"])
    return {**wanted, "request_date": day.isoformat()}  # JSON for XCom and the Asset event


def as_event(row: dict) -> dict:
    """A logged request as ``request`` made it (the Asset event's extra)."""
    keys = ("request_id", "event", "request_date", "rule", "reason", "details", "window_days")
    window = row.get("window_days")
    window = None if pd.isna(window) else int(window)
    return {**{k: row.get(k) for k in keys}, "window_days": window}
