"""The daily DAG's ``monitor`` task for day D, per scoring model (champion, shadow challenger):

- **drift**: the features scored tonight (D+1's flights, as of the end of D) and their
  predictions against the model's training reference (Evidently);
- **performance**: the predictions made last night for D's flights against their outcomes,
  which landed with D's data, and the same figures over the trailing 7 days.

Outputs: one HTML report per model and kind under ``<state>/monitoring/reports/D/`` with an
index page (served in the Airflow UI, linked from the task), a run per day in the MLflow
monitoring experiment (metrics linked to the model version), and D's partition of
``ml.monitoring_metrics`` (per model name), replaced as a whole so a re-run is idempotent.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from jobs.common.delta import DeltaTables
from jobs.common.delta.snapshot import read_arrow, read_arrow_if_exists
from jobs.common.errors import NightjarError
from jobs.common.settings import DATA_START, Settings
from jobs.monitoring import drift, performance, reference, workspace
from jobs.monitoring.reference import PROBABILITY
from jobs.monitoring.tables import FIGURES, MONITORING_METRICS
from jobs.scoring import score
from jobs.scoring.predictions import PREDICTIONS, served_features
from jobs.training import tracking

log = logging.getLogger(__name__)
ROLLING_DAYS = 7


def report_url(day: dt.date) -> str:
    """Where the Airflow UI serves D's index page (plugins/nightjar_reports.py)."""
    return f"/nightjar/reports/{day.isoformat()}/index.html"


def scored_frame(settings: Settings, model: score.ScoringModel, day: dt.date) -> pd.DataFrame:
    """The features of D+1's flights as the model was served them (kept by the ``score`` task),
    with its predictions."""
    tomorrow = day + dt.timedelta(days=1)
    served = settings.table_uri(served_features(model.feature_service).name)
    if not DeltaTable.is_deltatable(served):  # nothing scored with this service yet
        return pd.DataFrame(columns=[*model.features, PROBABILITY])
    features = read_arrow(served, {"flight_date": [tomorrow]}, ["flight_id", *model.features])
    predicted = read_arrow(
        settings.table_uri(PREDICTIONS.name),
        {"flight_date": [tomorrow]},
        ["flight_id", "model_name", "role", "model_version", PROBABILITY],
    ).to_pandas()
    predicted = predicted[
        (predicted.model_name == model.name)
        & (predicted.role == model.role)
        & (predicted.model_version == model.version)
    ]
    return features.to_pandas().merge(
        predicted[["flight_id", PROBABILITY]], on="flight_id", how="inner"
    )


def models_to_monitor(settings: Settings, day: dt.date) -> list[score.ScoringModel]:
    """The models that scored D+1 tonight, read from their predictions, so a promotion between
    tonight's ``score`` and ``monitor`` cannot leave the night unmonitored; when nothing was
    scored, the models the aliases name now (or none)."""
    from jobs.common.errors import StageSkipped

    columns = ["model_name", "role", "model_version"]
    scored = read_arrow_if_exists(
        settings.table_uri(PREDICTIONS.name), {"flight_date": [day + dt.timedelta(days=1)]}, columns
    )
    scored = pd.DataFrame(columns=columns) if scored is None else scored.to_pandas()
    scored = scored[scored.model_name == settings.model_name].drop_duplicates()
    if len(scored):
        client = tracking.client(settings)
        ordered = scored.sort_values("role")  # champion before shadow
        return [score.load(client, settings, r.model_version, r.role) for r in ordered.itertuples()]
    try:
        return score.resolve(settings, day)
    except StageSkipped:
        return []


def run(spark, tables: DeltaTables, settings: Settings, day: dt.date, run_id: str) -> dict:
    out = settings.reports_dir / day.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    models = models_to_monitor(settings, day)
    rolling_days = [day - dt.timedelta(days=i) for i in range(ROLLING_DAYS)]
    labeled = performance.labeled_predictions(settings, rolling_days)
    rows, pages = [], []
    for model in models:
        row, links = monitor_model(settings, model, day, labeled, out)
        rows.append(row)
        pages += links
    if not models:
        rows.append({"role": "none", "model_name": settings.model_name, "status": "no_model"})
    index = write_index(out, day, rows, pages)
    mlflow_run = log_to_mlflow(settings, day, rows, out)
    base = {
        "monitor_date": day,
        "report": str(index),
        "mlflow_run_id": mlflow_run,
        "_run_id": run_id,
    }
    data = pa.Table.from_pylist(
        [{**base, **row} for row in rows], schema=MONITORING_METRICS.arrow_schema
    )
    tables.overwrite_partitions(
        MONITORING_METRICS,
        data,
        {"model_name": [settings.model_name], "monitor_date": [day]},
        run_id=run_id,
    )
    workspace.record(settings.state_dir, settings.model_name, day, rows)  # Evidently's UI
    summary = {
        r["role"]: {
            k: r.get(k)
            for k in (
                "model_version",
                "drift_share",
                "prediction_drift",
                "roc_auc",
                "rolling_roc_auc",
            )
        }
        for r in rows
    }
    log.info("monitoring %s: %s; report %s", day, summary, index)
    return {"report": str(index), "report_url": report_url(day), "models": summary}


def monitor_model(
    settings: Settings,
    model: score.ScoringModel,
    day: dt.date,
    labeled: pd.DataFrame,
    out: Path,
) -> tuple[dict, list[tuple[str, str]]]:
    current = scored_frame(settings, model, day)
    row = {
        "role": model.role,
        "model_name": model.name,
        "model_version": model.version,
        "status": "ok",
        "n_scored": len(current),
    }
    try:
        ref = reference.load(settings, model.run_id)
    except NightjarError as exc:  # a model trained before references were logged
        log.warning("%s: no drift for it, performance only", exc)
        ref, row["status"] = None, "no_reference"
    links = []
    if len(current) and ref is not None:
        calibrated = {}
        if settings.drift_calibrate:
            calibrated = reference.thresholds(settings, model.run_id)
        result = drift.measure(ref, current, model.features, settings.drift_threshold, calibrated)
        name = f"{model.role}-drift.html"
        result.snapshot.save_html(str(out / name))
        links.append((f"{model.role} v{model.version}: data and prediction drift", name))
        row |= {
            "n_features": result.n_features,
            "drift_share": result.share,
            "drifted_features": len(result.drifted),
            "feature_drift": result.scores,
            "prediction_drift": result.prediction_score,
            "prediction_drifted": result.prediction_drifted,
        }
    # Performance of whatever this role predicted for D (possibly an earlier version).
    mine = labeled[labeled.role == model.role]
    today = mine[mine.flight_date == day]
    if len(today):
        row |= performance.figures(today)
        row["perf_model_version"] = ",".join(sorted(today.model_version.unique()))
        if ref is not None:
            name = f"{model.role}-performance.html"
            performance.report(ref, today).save_html(str(out / name))
            links.append((f"{model.role}: performance on {day}'s flights", name))
    if len(mine):
        rolling = performance.figures(mine)
        row["rolling_n"] = rolling.pop("n_labeled")
        row |= {f"rolling_{k}": rolling.get(k) for k in FIGURES}
    return row, links


def write_index(out: Path, day: dt.date, rows: list[dict], pages: list[tuple[str, str]]) -> Path:
    def fmt(value) -> str:
        return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    keys = [
        "role",
        "model_version",
        "status",
        "n_scored",
        "drift_share",
        "prediction_drift",
        "n_labeled",
        "roc_auc",
        "precision",
        "recall",
        "ece",
        "rolling_roc_auc",
    ]
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(r.get(k)))}</td>" for k in keys) + "</tr>"
        for r in rows
    )
    links = "".join(f'<li><a href="{n}">{html.escape(t)}</a></li>' for t, n in pages)
    page = out / "index.html"
    page.write_text(
        f"<!doctype html><meta charset=utf-8><title>Nightjar monitoring {day}</title>"
        f"<h1>Monitoring of {day}</h1>"
        f"<table border=1 cellpadding=4><tr>{''.join(f'<th>{k}</th>' for k in keys)}</tr>"
        f"{table}</table><ul>{links or '<li>no model scored this day</li>'}</ul>"
    )
    return page


def log_to_mlflow(settings: Settings, day: dt.date, rows: list[dict], out: Path) -> str:
    """One run per monitored day in the monitoring experiment (a re-run logs into the same
    run); each role's figures are also linked to its model version's logged model."""
    import mlflow

    client = tracking.client(settings)
    experiment = tracking.experiment_id(client, settings, tracking.monitoring_experiment(settings))
    found = client.search_runs(
        [experiment], filter_string=f"tags.monitoring_date = '{day.isoformat()}'", max_results=1
    )
    step = (day - DATA_START).days
    champion = next((r for r in rows if r["role"] == "champion"), None)
    with mlflow.start_run(
        run_id=found[0].info.run_id if found else None,
        experiment_id=None if found else experiment,
        run_name=f"monitor-{day}",
        tags={
            "monitoring_date": day.isoformat(),
            "model_name": settings.model_name,
            "champion_version": champion["model_version"] if champion else "none",
        },
    ) as active:
        for row in rows:
            if row["role"] == "none":
                continue
            values = {
                k: float(v)
                for k, v in row.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and v is not None
            }
            model_id = tracking.logged_model_id(client, settings.model_name, row["model_version"])
            mlflow.log_metrics(
                {f"{row['role']}_{k}": v for k, v in values.items()}, step=step, model_id=model_id
            )
        mlflow.log_artifacts(str(out), artifact_path="reports")
    return active.info.run_id
