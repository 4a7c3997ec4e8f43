"""MLflow: where runs and models are tracked, and the code version they came from."""

from __future__ import annotations

import subprocess

from jobs.common.settings import PROJECT_ROOT, Settings


def client(settings: Settings):
    """An MlflowClient on the configured tracking URI; the experiment (named after the
    registered model) is created on first use, with local artifacts for the embedded store."""
    import mlflow
    from mlflow import MlflowClient

    mlflow_dir = settings.state_dir / "mlflow"
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    tracking = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    if tracking.get_experiment_by_name(settings.model_name) is None:
        local = settings.tracking_uri.startswith("sqlite:")
        tracking.create_experiment(
            settings.model_name,
            artifact_location=(mlflow_dir / "artifacts").as_uri() if local else None,
            tags={"project": "nightjar", "task": "flight disruption, day-before risk"},
        )
    return tracking


def experiment_id(tracking, settings: Settings) -> str:
    return tracking.get_experiment_by_name(settings.model_name).experiment_id


def code_version() -> dict[str, str]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else "unknown"

    return {
        "mlflow.source.git.commit": git("rev-parse", "HEAD"),
        "git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))).lower(),
    }
