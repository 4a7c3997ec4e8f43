"""A model's drift reference: a sample of its training rows with the model's own predictions,
logged with its training run and cached locally by the monitor.

The sample is drawn from the train split (the data the model learned from), with the label, so
the same file serves feature drift, prediction drift and the reference side of the performance
report. Beside it, ``thresholds.json``: the per-column drift thresholds calibrated on the
training days (``drift.calibrate``)."""

from __future__ import annotations

import json
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


def _artifact(settings: Settings, run_id: str, artifact: str) -> Path:
    """Training run ``run_id``'s ``artifact``, downloaded once, then read locally."""
    import mlflow

    cache = settings.state_dir / "monitoring" / "reference" / run_id
    path = cache / Path(artifact).name
    if not path.exists():
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=artifact,
            dst_path=str(cache),
            tracking_uri=settings.tracking_uri,
        )
    return Path(path)


def load(settings: Settings, run_id: str) -> pd.DataFrame:
    """The reference logged by training run ``run_id``."""
    from jobs.common.errors import NightjarError

    try:
        return pd.read_parquet(_artifact(settings, run_id, ARTIFACT))
    except Exception as exc:
        raise NightjarError(
            f"training run {run_id} has no drift reference ({ARTIFACT}): {exc}. Retrain the "
            "model with this version of Nightjar to monitor it"
        ) from exc


def thresholds(settings: Settings, run_id: str) -> dict[str, float]:
    """The calibrated drift thresholds of training run ``run_id``; none (so the global
    threshold applies) for a run that logged none."""
    import mlflow

    cache = settings.state_dir / "monitoring" / "reference" / run_id / Path(THRESHOLDS).name
    if not cache.exists():
        # Absent means trained before calibration. Any other failure (the tracking server
        # down) must not quietly fall back to the global threshold: it would read as drift.
        logged = mlflow.artifacts.list_artifacts(
            run_id=run_id, artifact_path=ARTIFACT_DIR, tracking_uri=settings.tracking_uri
        )
        if THRESHOLDS not in {f.path for f in logged}:
            return {}
    return json.loads(_artifact(settings, run_id, THRESHOLDS).read_text())
