"""A small client of Airflow 3's REST API (``/api/v2``), used by ``make run`` and the tests."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from jobs.common.settings import Settings


def admin_password(settings: Settings) -> str:
    """The simple auth manager's generated password for ``admin``."""
    path = settings.airflow_home / "passwords.json"
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Airflow wrote no password file at {path}; is the API server up?")
        time.sleep(0.5)
    return json.loads(path.read_text())["admin"]


class Unavailable(RuntimeError):
    """The API answered 503 (retried)."""


class Conflict(RuntimeError):
    """The API answered 409."""


class AirflowAPI:
    def __init__(self, settings: Settings):
        self.base = f"http://{settings.airflow_host}:{settings.airflow_port}"
        self.settings = settings
        token = httpx.post(
            f"{self.base}/auth/token",
            json={"username": "admin", "password": admin_password(settings)},
            timeout=30,
        )
        token.raise_for_status()
        self.client = httpx.Client(
            base_url=f"{self.base}/api/v2",
            timeout=30,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )

    @retry(
        # SQLite (the embedded metadata DB) answers "database is locked" under concurrent
        # writes, which the API reports as 503: a short wait and a retry get through.
        retry=retry_if_exception_type(Unavailable),
        stop=stop_after_attempt(8),
        wait=wait_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    def _call(self, method: str, path: str, **kwargs) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code == 503:
            raise Unavailable(f"Airflow API {method} {path}: 503 {response.text}")
        if response.status_code == 409:
            raise Conflict(f"Airflow API {method} {path}: 409 {response.text}")
        if response.is_error:
            raise RuntimeError(
                f"Airflow API {method} {path}: {response.status_code} {response.text}"
            )
        return response.json() if response.content else None

    def get(self, path: str, **params) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: dict) -> Any:
        return self._call("POST", path, json=body)

    def patch(self, path: str, body: dict) -> Any:
        return self._call("PATCH", path, json=body)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        """Wait until the DAG processor has parsed and serialized ``dag_id``."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.client.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            if time.monotonic() > deadline:
                errors = self.get("/importErrors")
                raise TimeoutError(
                    f"DAG {dag_id} not parsed after {timeout:.0f}s; import errors: "
                    f"{errors.get('import_errors')}"
                )
            time.sleep(1)

    def dag_runs(self, dag_id: str, **params) -> list[dict]:
        runs, offset = [], 0
        while True:
            page = self.get(f"/dags/{dag_id}/dagRuns", limit=100, offset=offset, **params)
            runs += page["dag_runs"]
            offset += len(page["dag_runs"])
            if not page["dag_runs"] or offset >= page["total_entries"]:
                return runs

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def backfill_logical_dates(self, dag_id: str, start: str, end: str) -> set[str]:
        """The logical dates (YYYY-MM-DD) a backfill of ``[start, end]`` would run, as the
        scheduler computes them from the DAG's schedule (its dry run)."""
        body = {
            "dag_id": dag_id,
            "from_date": f"{start}T00:00:00Z",
            "to_date": f"{end}T00:00:00Z",
            "reprocess_behavior": "completed",
        }
        runs = self.post("/backfills/dry_run", body)["backfills"]
        return {r["logical_date"][:10] for r in runs}

    def create_backfill(
        self,
        dag_id: str,
        start: str,
        end: str,
        max_active_runs: int = 4,
        reprocess: str = "completed",
    ) -> dict:
        body = {
            "dag_id": dag_id,
            "from_date": f"{start}T00:00:00Z",
            "to_date": f"{end}T00:00:00Z",
            "max_active_runs": max_active_runs,
            "reprocess_behavior": reprocess,
            "run_backwards": False,
            "dag_run_conf": {},
        }
        try:
            return self.post("/backfills", body)
        except Conflict:
            # A retried request may have created it already: use that one if it matches.
            for backfill in self.get("/backfills", dag_id=dag_id)["backfills"]:
                if (
                    backfill["completed_at"] is None
                    and backfill["from_date"] == body["from_date"]
                    and backfill["to_date"] == body["to_date"]
                ):
                    return backfill
            raise
