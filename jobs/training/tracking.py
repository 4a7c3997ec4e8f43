"""MLflow: where runs and models are tracked, and the code version they came from.

**Runs of killed trainings.** A training's MLflow run is ended when its ``with`` block exits,
FAILED on an error; a training killed inside it (SIGKILL, the OOM killer, a lost worker) leaves
the run RUNNING forever. So each training run (and each of its search trials' nested runs)
records its process in the tag ``nightjar.owner`` (``jobs/common/owner.py``: pid, start time,
host), and every training starts by marking KILLED the runs of the training experiment still
RUNNING whose owner is dead (:func:`end_dead_runs`). A run whose owner still runs, runs on
another host, or was not recorded is left as it is.
"""

from __future__ import annotations

import logging
import subprocess

from jobs.common import owner
from jobs.common.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)
OWNER_TAG = "nightjar.owner"


def client(settings: Settings):
    """An MlflowClient on the configured tracking URI; the experiment (named after the
    registered model) is created on first use, its artifacts in the bucket when the platform
    keeps its data in one, else local files for the embedded store."""
    import mlflow
    from filelock import FileLock
    from mlflow import MlflowClient

    mlflow_dir = settings.state_dir / "mlflow"
    mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    # One process at a time creates the store: the first client of an embedded SQLite store
    # runs its migrations, and two tasks doing so at once fail one of them ("Online migration
    # expected to match one row"); a night's `score` lost a try that way.
    with FileLock(mlflow_dir / ".client.lock"):
        tracking = MlflowClient(settings.tracking_uri, settings.tracking_uri)
        for name, task in (
            (settings.model_name, "flight disruption, day-before risk"),
            (
                monitoring_experiment(settings),
                f"daily drift and performance of {settings.model_name}",
            ),
        ):
            if tracking.get_experiment_by_name(name) is None:
                local = settings.tracking_uri.startswith("sqlite:")
                if settings.mlflow_artifacts:
                    artifacts = f"{settings.mlflow_artifacts}/{name}"
                else:
                    artifacts = (mlflow_dir / "artifacts").as_uri() if local else None
                tracking.create_experiment(
                    name,
                    artifact_location=artifacts,
                    tags={"project": "nightjar", "task": task},
                )
    return tracking


# Errors of a tracking server that is down, restarting or overloaded: worth a retry (the task's
# retries, with backoff, after MLflow's own HTTP retries), never a verdict on the model.
TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}
TRANSIENT_TYPES = {"ConnectionError", "Timeout", "OperationalError"}  # requests', SQLAlchemy's


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the tracking server could not be reached or
    answered 5xx/429, rather than that a model or version is missing or broken."""
    seen = exc
    while seen is not None:
        if any(kind.__name__ in TRANSIENT_TYPES for kind in type(seen).__mro__):
            return True
        if getattr(seen, "error_code", None) in TRANSIENT_CODES:
            return True
        status = getattr(seen, "get_http_status_code", lambda: None)()
        if getattr(seen, "json_kwargs", None) is not None and status in (429, 500, 502, 503, 504):
            return True  # a RestException: the server's own answer
        seen = seen.__cause__ or seen.__context__
    return False


def log_delta_inputs(settings: Settings, versions: dict[str, int]) -> None:
    """Each table the active run read, as an MLflow dataset (the run page's *Datasets*): its
    name, its Delta location and version, and a digest of the two (the same table at the same
    version has the same digest, so runs on the same data read as such)."""
    import hashlib

    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    for table, version in sorted(versions.items()):
        uri = settings.table_uri(table)
        source = DeltaDatasetSource(path=uri, delta_table_version=int(version))
        digest = hashlib.sha256(f"{uri}@{version}".encode()).hexdigest()[:8]
        mlflow.log_input(MetaDataset(source, name=table, digest=digest), context="training")


def owner_tags() -> dict[str, str]:
    """The tag that names this process as the owner of the runs it starts."""
    return {OWNER_TAG: str(owner.current())}


def end_dead_runs(settings: Settings, tracking) -> list[str]:
    """Mark KILLED the training experiment's runs left RUNNING by a training that died (their
    ``nightjar.owner`` is a process of this host that no longer runs); returns their ids. A
    run whose owner runs, runs elsewhere or is not recorded is left, and logged."""
    experiment = tracking.get_experiment_by_name(settings.model_name)
    if experiment is None:
        return []
    ended = []
    for run in tracking.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    ):
        info, recorded = run.info, run.data.tags.get(OWNER_TAG)
        writer = owner.Owner.parse(recorded)
        alive = writer.alive() if writer else None
        if alive is False:
            tracking.set_terminated(info.run_id, "KILLED")
            ended.append(info.run_id)
            log.warning(
                "MLflow run %s (%s) marked KILLED: the training that started it (pid %s on %s) "
                "died before ending it",
                info.run_id,
                info.run_name,
                writer.pid,
                writer.host,
            )
        else:
            log.info(
                "MLflow run %s (%s) is RUNNING and left so: %s",
                info.run_id,
                info.run_name,
                "its training runs"
                if alive
                else f"its owner ({recorded or 'not recorded'}) cannot be checked from this host",
            )
    return ended


def monitoring_experiment(settings: Settings) -> str:
    return f"{settings.model_name}-monitoring"


def experiment_id(tracking, settings: Settings, name: str | None = None) -> str:
    return tracking.get_experiment_by_name(name or settings.model_name).experiment_id


def logged_model_id(tracking, name: str, version: str) -> str | None:
    """The MLflow 3 logged model behind a registered version (the SQL store leaves the
    version's ``model_id`` empty; its source is ``models:/<model id>``)."""
    found = tracking.get_model_version(name, version)
    if found.model_id:
        return found.model_id
    source = found.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


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
