"""The daily monitoring reports in the Airflow UI.

- The API server serves ``<state>/monitoring/reports`` under ``/nightjar/reports/`` (a FastAPI
  sub-application), with a *Monitoring reports* entry in the UI's navigation.
- The daily DAG's ``monitor`` task gets a *Monitoring report* extra link: the task pushes its
  day's page as the XCom ``report_url``; tasks without one show no link.

Only a logged-in Airflow user gets them (Airflow's ``get_user`` guards every route), and the
page that lists the days escapes what it shows.
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
    """The reports under /nightjar/reports/, for logged-in Airflow users only: every route
    depends on Airflow's own ``get_user`` (the UI's session cookie or an API bearer token)."""
    import html
    from urllib.parse import quote

    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse

    app = FastAPI(title="Nightjar monitoring reports", dependencies=[Depends(get_user)])
    folder = reports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    root = folder.resolve()

    @app.get("/reports/", response_class=HTMLResponse)
    def days() -> str:
        found = sorted(
            (p.name for p in folder.iterdir() if (p / "index.html").exists()), reverse=True
        )
        items = "".join(
            f'<li><a href="{quote(d)}/index.html">{html.escape(d)}</a></li>' for d in found
        )
        title = "<!doctype html><title>Nightjar monitoring</title><h1>Monitoring reports</h1>"
        return f"{title}<ul>{items}</ul>"

    @app.get("/reports/{path:path}")
    def report(path: str) -> FileResponse:
        target = (root / path).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(root) or not target.is_file():  # no way out of the folder
            raise HTTPException(status_code=404, detail="no such report")
        return FileResponse(target)

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
