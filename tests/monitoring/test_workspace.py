"""The Evidently workspace the monitor fills (jobs/monitoring/workspace.py): a run per model and
day, timestamped with the day, a re-run replacing it, and the project's dashboard."""

from __future__ import annotations

import datetime as dt

from evidently.ui.workspace import Workspace

from jobs.monitoring import workspace

DAYS = [dt.date(2013, 1, 6) + dt.timedelta(days=i) for i in range(3)]


def row(role: str, drift: float, auc: float | None) -> dict:
    figures = {"drift_share": drift, "prediction_drift": 0.04, "roc_auc": auc}
    return {"role": role, "model_version": "1", **figures, "rolling_roc_auc": float("nan")}


def runs(ws, name: str) -> dict[str, object]:
    (project,) = ws.search_project(name)
    found = [ws.get_run(project.id, r) for r in ws.list_runs(project.id)]
    return {run.name: run for run in found}


def test_each_day_is_a_run_of_its_models_project_and_a_rerun_replaces_it(tmp_path):
    for i, day in enumerate(DAYS):
        rows = [row("champion", 0.1 * i, 0.7), row("none", 0.0, None)]
        assert workspace.record(tmp_path, "flight_disruption", day, rows) == 1
    assert workspace.record(tmp_path, "flight_disruption", DAYS[1], [row("champion", 0.9, None)])
    ws = Workspace(str(workspace.folder(tmp_path)))
    champion = runs(ws, "flight_disruption champion")
    assert sorted(champion) == [f"{d} v1" for d in DAYS]
    assert {r.timestamp.date() for r in champion.values()} == set(DAYS)
    values = {r.display_name: r.value for r in champion[f"{DAYS[1]} v1"].metric_results.values()}
    assert values == {  # the re-run's figures; its missing AUC is left out, not charted as 0
        "Mean value of 'drift_share'": 0.9,
        "Mean value of 'prediction_drift'": 0.04,
    }
    assert ws.search_project("flight_disruption none") == []  # no model: nothing to chart
    (project,) = ws.search_project("flight_disruption champion")
    titles = [p.title for p in project.dashboard.model().panels]
    assert titles == [
        "Drift share of the features",
        "Prediction drift score",
        "ROC AUC of the labeled predictions",
    ]
