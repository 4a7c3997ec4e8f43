"""A model's drift reference: a sample of its training rows with the model's own predictions,
logged with its training run and cached locally by the monitor.

The sample is drawn from the train split (the data the model learned from), with the label, so
the same file serves feature drift, prediction drift and the reference side of the performance
report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jobs.common.settings import Settings

ARTIFACT_DIR = "monitoring"
ARTIFACT = f"{ARTIFACT_DIR}/reference.parquet"
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
    frame = rows[features].assign(**{LABEL: label.astype(int).to_numpy(), PROBABILITY: probability})
    return frame.sample(n=min(n, len(frame)), random_state=seed).reset_index(drop=True)


def load(settings: Settings, run_id: str) -> pd.DataFrame:
    """The reference logged by training run ``run_id`` (downloaded once, then read locally)."""
    import mlflow

    from jobs.common.errors import NightjarError

    cache = settings.state_dir / "monitoring" / "reference" / run_id
    path = cache / Path(ARTIFACT).name
    if not path.exists():
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=ARTIFACT,
                dst_path=str(cache),
                tracking_uri=settings.tracking_uri,
            )
        except Exception as exc:
            raise NightjarError(
                f"training run {run_id} has no drift reference ({ARTIFACT}): {exc}. Retrain the "
                "model with this version of Nightjar to monitor it"
            ) from exc
    return pd.read_parquet(Path(path))
