"""The daily monitoring reports in the Airflow UI.

- The API server serves ``<state>/monitoring/reports`` under ``/nightjar/reports/`` (a FastAPI
  sub-application), with a *Monitoring reports* entry in the UI's navigation.
- The daily DAG's ``monitor`` task gets a *Monitoring report* extra link: the task pushes its
  day's page as the XCom ``report_url``; tasks without one show no link.

The reports hold only aggregate statistics, but like any plugin app they sit behind the API
server, not its auth manager: on a shared deployment put the UI behind the usual proxy auth.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

PREFIX = "/nightjar"


def reports_dir() -> Path:
    # The same folder as Settings.reports_dir, without importing the job code into the UI.
    state = os.environ.get("NIGHTJAR_STATE_DIR") or Path(__file__).resolve().parents[1] / ".state"
    return Path(state) / "monitoring" / "reports"


def reports_app():
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="Nightjar monitoring reports")
    folder = reports_dir()
    folder.mkdir(parents=True, exist_ok=True)

    @app.get("/reports/", response_class=HTMLResponse)
    def days() -> str:
        found = sorted(
            (p.name for p in folder.iterdir() if (p / "index.html").exists()), reverse=True
        )
        items = "".join(f'<li><a href="{d}/index.html">{d}</a></li>' for d in found)
        title = "<!doctype html><title>Nightjar monitoring</title><h1>Monitoring reports</h1>"
        return f"{title}<ul>{items}</ul>"

    app.mount("/reports", StaticFiles(directory=folder, html=True), name="reports")
    return app


class MonitoringReportLink(BaseOperatorLink):
    name = "Monitoring report"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        if ti_key.task_id != "monitor":
            return ""
        with create_session() as session:
            value = session.execute(
                XComModel.get_many(
                    key="report_url",
                    run_id=ti_key.run_id,
                    dag_ids=ti_key.dag_id,
                    task_ids=ti_key.task_id,
                    map_indexes=ti_key.map_index,
                ).with_only_columns(XComModel.value)
            ).scalar()
        if value is None:
            return ""
        with contextlib.suppress(TypeError, ValueError):  # JSON text, or already decoded
            value = json.loads(value)
        return str(value)


class NightjarReports(AirflowPlugin):
    name = "nightjar_reports"
    fastapi_apps = [{"app": reports_app(), "url_prefix": PREFIX, "name": "Nightjar reports"}]
    external_views = [
        {
            "name": "Monitoring reports",
            "href": f"{PREFIX}/reports/",
            "destination": "nav",
            "url_route": "nightjar_reports",
        }
    ]
    global_operator_extra_links = [MonitoringReportLink()]
