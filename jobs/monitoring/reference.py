"""A model's drift reference: a sample of its training rows with the model's own predictions,
logged with its training run and cached locally by the monitor.

The sample is drawn from the train split (the data the model learned from), with the label, so
the same file serves feature drift, prediction drift and the reference side of the performance
report. Beside it, ``thresholds.json``: the per-column drift thresholds calibrated on the
training days (``drift.calibrate``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.common.settings import Settings

ARTIFACT_DIR = "monitoring"
ARTIFACT = f"{ARTIFACT_DIR}/reference.parquet"
THRESHOLDS = f"{ARTIFACT_DIR}/thresholds.json"
PROBABILITY = "probability"
LABEL = "label"


def sample(
    rows: pd.DataFrame,
    features: list[str],
    label: pd.Series,
    probability: np.ndarray,
    n: int,
    seed: int,
) -> pd.DataFrame:
    """``n`` of ``rows`` with their label and probability; the index is ``rows``'s (calibration
    tells a day's own rows by it)."""
    frame = rows[features].assign(**{LABEL: label.astype(int).to_numpy(), PROBABILITY: probability})
    return frame.sample(n=min(n, len(frame)), random_state=seed)


def _cached(settings: Settings, run_id: str, artifact: str) -> Path:
    return settings.state_dir / "monitoring" / "reference" / run_id / Path(artifact).name


def _artifact(settings: Settings, run_id: str, artifact: str) -> Path:
    """Training run ``run_id``'s ``artifact``, downloaded once, then read locally. The download
    lands in a temporary folder and is renamed into the cache whole, so a killed download
    leaves nothing that a later run would take for the artifact."""
    import mlflow

    path = _cached(settings, run_id, artifact)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
            got = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=artifact,
                dst_path=tmp,
                tracking_uri=settings.tracking_uri,
            )
            os.replace(got, path)
    return path


def _logged(settings: Settings, run_id: str, artifact: str) -> bool:
    """Whether the run logged ``artifact`` (cached, or listed by the tracking server). An
    unreachable server raises: absent and unknown are not the same answer."""
    import mlflow

    if _cached(settings, run_id, artifact).exists():
        return True
    listed = mlflow.artifacts.list_artifacts(
        run_id=run_id, artifact_path=ARTIFACT_DIR, tracking_uri=settings.tracking_uri
    )
    return artifact in {f.path for f in listed}


def load(settings: Settings, run_id: str) -> pd.DataFrame:
    """The reference logged by training run ``run_id``."""
    from jobs.common.errors import NightjarError

    if not _logged(settings, run_id, ARTIFACT):
        raise NightjarError(
            f"training run {run_id} has no drift reference ({ARTIFACT}). Retrain the model "
            "with this version of Nightjar to monitor it"
        )
    return pd.read_parquet(_artifact(settings, run_id, ARTIFACT))


def thresholds(settings: Settings, run_id: str) -> dict[str, float]:
    """The calibrated drift thresholds of training run ``run_id``; none (so the global
    threshold applies) for a run that logged none."""
    # Absent means trained before calibration. Any other failure (the tracking server down)
    # must not quietly fall back to the global threshold: it would read as drift.
    if not _logged(settings, run_id, THRESHOLDS):
        return {}
    return json.loads(_artifact(settings, run_id, THRESHOLDS).read_text())
