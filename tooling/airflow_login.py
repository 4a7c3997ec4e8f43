"""How to log in to the local Airflow UI."""

from __future__ import annotations

from jobs.common.settings import Settings
from tooling.airflow_api import admin_password


def instructions(settings: Settings) -> str:
    url = f"http://{settings.airflow_host}:{settings.airflow_port}"
    return (
        f"Airflow UI: {url}  (user: admin, password: {admin_password(settings)}; "
        f"stored in {settings.airflow_home / 'passwords.json'})"
    )
