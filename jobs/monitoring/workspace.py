"""Each monitored day in an Evidently workspace, for Evidently's UI (``make monitoring-ui``): a
project per model with a dashboard of drift share, prediction drift and ROC AUC over time.

The day's figures (``ml.monitoring_metrics``' row) become a one-row dataset summarised by stock
Evidently metrics (``MeanValue`` per figure), as a run timestamped with the monitored day, so
the dashboard's time axis is the data's days and the UI needs no Nightjar code to read it. A
re-run of a day replaces that day's run. The full drift and performance reports stay the HTML
pages of the Airflow UI.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

FIGURES = {  # column -> legend
    "drift_share": "drift share",
    "prediction_drift": "prediction drift",
    "roc_auc": "ROC AUC (day)",
    "rolling_roc_auc": "ROC AUC (7 days)",
}
PANELS = (
    ("Drift share of the features", ["drift_share"]),
    ("Prediction drift score", ["prediction_drift"]),
    ("ROC AUC of the labeled predictions", ["roc_auc", "rolling_roc_auc"]),
)


def folder(state_dir: Path) -> Path:
    return state_dir / "monitoring" / "workspace"


def project(workspace, name: str):
    """The project ``name``, created with its dashboard on first use."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    found = workspace.search_project(name)
    if found:
        return found[0]
    created = workspace.create_project(name, description="Nightjar's daily monitoring")
    for title, columns in PANELS:
        metrics = [
            PanelMetric(legend=FIGURES[c], metric="MeanValue", metric_labels={"column": c})
            for c in columns
        ]
        created.dashboard.add_panel(line_plot_panel(title, metrics, size="half"))
    return created


def record(state_dir: Path, model_name: str, day: dt.date, rows: list[dict]) -> int:
    """Add the day's figures of each monitored model (``rows``: the day's monitoring rows) as
    runs of the project ``<model_name> <role>``; returns how many runs were added."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(folder(state_dir)))
    added = 0
    for row in rows:
        figures = {c: row.get(c) for c in FIGURES}
        figures = {c: float(v) for c, v in figures.items() if v is not None and not math.isnan(v)}
        if row.get("role") == "none" or not figures:
            continue
        target = project(workspace, f"{model_name} {row['role']}")
        name = f"{day.isoformat()} v{row.get('model_version')}"
        for run_id in workspace.list_runs(target.id):  # a re-run replaces the day's run
            run = workspace.get_run(target.id, run_id)
            if run is not None and (run.name or "").startswith(day.isoformat()):
                workspace.delete_run(target.id, run_id)
        spec = DataDefinition(numerical_columns=list(figures))
        data = Dataset.from_pandas(pd.DataFrame([figures]), data_definition=spec)
        snapshot = Report([MeanValue(column=c) for c in figures]).run(
            data, timestamp=dt.datetime.combine(day, dt.time()), name=name
        )
        workspace.add_run(target.id, snapshot)
        added += 1
    return added
