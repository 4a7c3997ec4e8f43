"""The monitoring reports' web app (plugins/nightjar_reports.py) on its own: only for logged-in
users, what it lists is escaped, and no path leads out of the reports folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("NIGHTJAR_STATE_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(ROOT / "plugins"))
    sys.modules.pop("nightjar_reports", None)
    import nightjar_reports

    reports = tmp_path / "monitoring" / "reports"
    for day in ("2013-01-09", '<img src=x onerror="alert(1)">'):
        (reports / day).mkdir(parents=True)
        (reports / day / "index.html").write_text(f"<h1>Monitoring of {day}</h1>")
    (tmp_path / "secret.txt").write_text("not for the web")
    return nightjar_reports.reports_app()


def test_the_reports_need_an_airflow_login(app):
    client = TestClient(app)
    assert client.get("/reports/").status_code == 401
    assert client.get("/reports/2013-01-09/index.html").status_code == 401


def test_a_logged_in_user_gets_escaped_listings_and_nothing_outside_the_folder(app):
    from airflow.api_fastapi.core_api.security import get_user

    app.dependency_overrides[get_user] = lambda: object()
    client = TestClient(app)
    listing = client.get("/reports/").text
    assert '<a href="2013-01-09/index.html">2013-01-09</a>' in listing
    assert "<img" not in listing and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in listing
    page = client.get("/reports/2013-01-09/")
    assert page.status_code == 200 and "Monitoring of 2013-01-09" in page.text
    for way_out in ("%2e%2e/%2e%2e/%2e%2e/secret.txt", "..%2f..%2f..%2fsecret.txt"):
        answer = client.get(f"/reports/{way_out}")
        assert answer.status_code == 404 and "not for the web" not in answer.text
