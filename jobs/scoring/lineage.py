"""Reading the predictions: tomorrow's riskiest flights, and the lineage of one prediction
(prediction row -> model version -> MLflow run -> the Delta versions it was trained on, and the
features it was served)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from jobs.common.delta.snapshot import read_arrow, read_arrow_if_exists
from jobs.common.errors import NightjarError
from jobs.common.settings import Settings
from jobs.scoring.predictions import PREDICTIONS, served_features


def predictions(settings: Settings, flight_date: dt.date) -> pd.DataFrame:
    frame = read_arrow_if_exists(
        settings.table_uri(PREDICTIONS.name), {"flight_date": [flight_date]}
    )
    if frame is None:
        raise NightjarError("no predictions table yet: run the daily DAG")
    frame = frame.to_pandas()
    if frame.empty:
        raise NightjarError(f"no predictions for flights on {flight_date}: run the daily DAG")
    return frame


def top_risk(settings: Settings, flight_date: dt.date, n: int = 20) -> pd.DataFrame:
    """The champion's ``n`` highest-risk flights scheduled on ``flight_date``, each with why
    (:func:`explain`)."""
    frame = predictions(settings, flight_date)
    frame = frame[frame.role == "champion"].nlargest(n, "probability")
    columns = ["flight_id", "carrier", "route", "sched_dep_utc", "probability", "flagged"]
    top = frame[columns].reset_index(drop=True)
    reasons = frame["reasons"] if "reasons" in frame else [None] * len(frame)
    named = {}
    for service in frame.feature_service.unique():
        named |= served_categories(settings, service, flight_date, list(frame.flight_id))
    return top.assign(
        why=[explain(r, named.get(f, {})) for r, f in zip(reasons, frame.flight_id, strict=True)]
    )


def served_categories(
    settings: Settings, feature_service: str, flight_date: dt.date, flight_ids: list[str]
) -> dict[str, dict[str, str]]:
    """The categorical features (the string ones, a route) the scorer read for ``flight_ids``:
    flight id -> feature -> category. A reason stores only numbers; a category's is its name."""
    from deltalake import DeltaTable

    spec = served_features(feature_service)
    uri = settings.table_uri(spec.name)
    if not DeltaTable.is_deltatable(uri):
        return {}
    names = [
        f.name
        for f in pa.schema(DeltaTable(uri).schema().to_arrow())
        if f.name not in {*spec.schema.names, *spec.partition_by} and pa.types.is_string(f.type)
    ]
    if not names:
        return {}
    rows = read_arrow(uri, {"flight_date": [flight_date]}, ["flight_id", *names])
    rows = rows.filter(pc.is_in(rows.column("flight_id"), pa.array(flight_ids))).to_pylist()
    return {row.pop("flight_id"): row for row in rows}


def feature_label(name: str) -> str:
    """``origin_stats__cancel_rate_7d`` -> ``origin_stats cancel_rate_7d``."""
    return name.replace("__", " ", 1)


def number(value: float | None) -> str:
    if value is None or pd.isna(value):
        return "missing"
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.3g}"


def explain(reasons, categories: dict[str, str] | None = None) -> str:
    """A prediction's reasons as one line: the features that raise its risk, then those that
    lower it, each with its value, e.g. "raised by origin_stats cancel_rate_7d 0.31,
    flight_schedule sched_dep_hour 17; lowered by plane_stats flights_28d 3". A categorical
    feature's value is its category, from ``categories`` (feature -> the served category), e.g.
    "flight_route route EWR-ORD". Empty for a flight without reasons (not among the riskiest
    flagged flights, or scored before reasons were stored)."""
    if reasons is None or len(reasons) == 0:
        return ""
    categories = categories or {}
    parts = []
    for label, sign in (("raised by", 1), ("lowered by", -1)):
        named = [
            f"{feature_label(r['feature'])} {categories.get(r['feature']) or number(r['value'])}"
            for r in reasons
            if r["contribution"] * sign > 0
        ]
        if named:
            parts.append(f"{label} {', '.join(named)}")
    return "; ".join(parts)


def lineage(settings: Settings, flight_id: str, flight_date: dt.date) -> list[dict]:
    """One entry per model that scored the flight, with its chain back to the training data."""
    from jobs.training import tracking

    frame = predictions(settings, flight_date)
    rows = frame[frame.flight_id == flight_id]
    if rows.empty:
        raise NightjarError(f"no prediction for flight {flight_id!r} on {flight_date}")
    client = tracking.client(settings)
    chain = []
    for row in rows.to_dict("records"):
        features = served(settings, row["feature_service"], flight_id, flight_date)
        values = features.get("values", {})
        version = client.get_model_version(row["model_name"], row["model_version"])
        run = client.get_run(row["mlflow_run_id"])
        params = run.data.params
        chain.append(
            {
                "prediction": {
                    "flight_id": row["flight_id"],
                    "flight_date": str(row["flight_date"]),
                    "probability": row["probability"],
                    "flagged": bool(row["flagged"]),
                    "reasons": None if row.get("reasons") is None else list(row["reasons"]),
                    "why": explain(row.get("reasons"), strings(values)),
                    "role": row["role"],
                    "scored_by": row["_run_id"],
                    "logical_ts": str(row["logical_ts"]),
                },
                "model": {
                    "name": row["model_name"],
                    "version": row["model_version"],
                    "aliases": list(version.aliases),
                    "source": version.source,
                },
                "mlflow_run": {
                    "run_id": row["mlflow_run_id"],
                    "experiment_id": run.info.experiment_id,
                    "git_commit": run.data.tags.get("mlflow.source.git.commit"),
                    "training_window": f"{params['window_start']}..{params['window_end']}",
                    "seed": params["seed"],
                    "feature_service": params["feature_service"],
                },
                "training_inputs": {
                    k.removeprefix("delta_version."): int(v)
                    for k, v in params.items()
                    if k.startswith("delta_version.")
                },
                "served_features": features,
            }
        )
    return chain


def strings(values: dict) -> dict[str, str]:
    return {name: value for name, value in values.items() if isinstance(value, str)}


def served(settings: Settings, feature_service: str, flight_id: str, flight_date: dt.date) -> dict:
    """The features the scorer read for the flight, from ``ml.served_features__<service>``."""
    from deltalake import DeltaTable

    name = served_features(feature_service).name
    uri = settings.table_uri(name)
    if not DeltaTable.is_deltatable(uri):  # scored before the served features were kept
        return {}
    table = DeltaTable(uri)
    rows = read_arrow(uri, {"flight_date": [flight_date]}).to_pandas()
    rows = rows[rows.flight_id == flight_id].drop(columns=["flight_id", "flight_date", "_run_id"])
    values = rows.iloc[0].to_dict() if len(rows) else {}
    values = {k: None if pd.isna(v) else v for k, v in values.items()}  # JSON has no NaN
    return {"table": name, "uri": uri, "delta_version": table.version(), "values": values}
