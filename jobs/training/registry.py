"""Champion / challenger with MLflow registry aliases, every decision recorded.

A new version gets the alias ``challenger``; it is promoted (``champion`` moved to it) only if
it passes the absolute threshold and is not worse than the champion, on the same most recent
held-out window, by more than the configured margin. Decisions are tagged on the version and
appended to the ``ml.model_decisions`` Delta table; a rollback moves ``champion`` back to the
previous champion and is recorded the same way.

The decision log is the truth and the aliases follow it: a decision is recorded before its
aliases move, and :func:`sync_aliases` (at the start of every training and rollback) moves an
alias a crash left behind. The aliases say who scores the next night. A past night (re-run,
backfilled, replayed) is scored by the models the decision log gave it (:func:`night_models`):
each decision governs the nights from its ``from_night`` on (a trained version: the night after
its window's last day, so no night is scored by a model that saw its future; a rollback: the
next night not yet scored).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

import pyarrow as pa

from jobs.common.delta import TableSpec
from jobs.common.delta.snapshot import append_arrow, partition_values, read_arrow_if_exists
from jobs.common.errors import NightjarError
from jobs.common.schema import struct
from jobs.common.settings import Settings
from jobs.training.tracking import transient

CHAMPION, CHALLENGER = "champion", "challenger"
ONE_DAY = dt.timedelta(days=1)
DECISIONS = TableSpec(
    name="ml.model_decisions",
    schema=struct(
        "decided_at timestamp",
        "model_name string",
        "version string",
        "decision string",  # promoted | rejected | rolled_back
        "reason string",
        "previous_champion string",
        "champion_after string",
        "metrics string",  # JSON: the version's test metrics
        "champion_metrics string",  # JSON: the champion's, on the same window
        "eval_window string",
        "run_id string",
        "trigger string",  # why the training ran (weekly, manual, a retrain request)
        "from_night date",  # the first night whose scoring this decision governs
    ),
    key=("model_name", "decided_at"),
    description="Every champion/challenger decision and rollback, append-only: the champion "
    "of each night is replayed from it (night_models)",
)
DECISIONS_TABLE, DECISION_SCHEMA = DECISIONS.name, DECISIONS.arrow_schema
TRAINED = ("promoted", "rejected")  # the decisions that register a version


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class NightModels:
    """Who scores a night: the champion (None: no model may, ``reason`` says why) and an
    unpromoted challenger in shadow (None if there is none)."""

    champion: str | None
    shadow: str | None
    reason: str


def alias_version(tracking, settings: Settings, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(tracking.get_model_version_by_alias(settings.model_name, alias).version)
    except MlflowException as exc:  # no such alias, or no such model yet; anything else raises
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise


def load_champion(tracking, settings: Settings):
    """(version, model) of the current champion, or None before the first promotion. A
    champion that cannot be loaded is an error: nothing is compared against a broken model."""
    import mlflow

    version = alias_version(tracking, settings, CHAMPION)
    if version is None:
        return None
    try:
        model = mlflow.xgboost.load_model(f"models:/{settings.model_name}@{CHAMPION}")
    except Exception as exc:
        if transient(exc):
            raise  # the server is down or restarting: the task is retried, with backoff
        raise NightjarError(
            f"the champion {settings.model_name} v{version} cannot be loaded ({exc}); fix or "
            "roll back the champion (nightjar model rollback) before training a challenger"
        ) from exc
    return version, model


def decide(
    challenger: dict[str, float], champion: dict[str, float] | None, settings: Settings
) -> Decision:
    auc = challenger["roc_auc"]
    if auc < settings.promote_min_roc_auc:
        return Decision(
            False, f"ROC AUC {auc:.4f} below the minimum {settings.promote_min_roc_auc}"
        )
    if champion is None:
        return Decision(True, f"first model; ROC AUC {auc:.4f} passes the minimum")
    floor = champion["roc_auc"] - settings.promote_max_auc_drop
    if auc < floor:
        return Decision(
            False,
            f"ROC AUC {auc:.4f} worse than the champion's {champion['roc_auc']:.4f} by more "
            f"than the margin {settings.promote_max_auc_drop}",
        )
    return Decision(
        True, f"ROC AUC {auc:.4f} vs champion {champion['roc_auc']:.4f} (margin {floor:.4f})"
    )


def record(settings: Settings, tracking, row: dict) -> None:
    row = {"decided_at": dt.datetime.now(dt.UTC), "model_name": settings.model_name, **row}
    append_arrow(
        settings.table_uri(DECISIONS_TABLE), pa.Table.from_pylist([row], schema=DECISION_SCHEMA)
    )
    for key in ("decision", "reason", "decided_at"):
        tracking.set_model_version_tag(
            settings.model_name, row["version"], f"nightjar.{key}", str(row[key])
        )


def decisions(settings: Settings):
    """The configured model's decision log, oldest first (empty before the first decision)."""
    import pandas as pd

    frame = read_arrow_if_exists(settings.table_uri(DECISIONS_TABLE))
    if frame is None:  # no decision yet
        return pd.DataFrame(columns=DECISION_SCHEMA.names)
    frame = frame.to_pandas()
    frame = frame[frame.model_name == settings.model_name].reindex(columns=DECISION_SCHEMA.names)
    if frame.from_night.isna().any():  # rows written before the column: from their window
        ends = frame.eval_window.str.partition("..")[2].replace("", None)
        frame["from_night"] = frame.from_night.fillna(
            ends.map(lambda end: from_night(dt.date.fromisoformat(end)), "ignore")
        )
    return frame.sort_values("decided_at", ignore_index=True)


def night_models(settings: Settings, night: dt.date) -> NightModels:
    """The models that held ``champion`` and ``challenger`` when ``night`` ran, replayed from
    the decisions that govern it (``from_night <= night``), newest decision last. A champion
    trained on data past the night is never returned, whatever the log says after it."""
    log = decisions(settings)
    trained = log[log.decision.isin(TRAINED)]
    valid_from = dict(zip(trained.version, trained.from_night, strict=True))
    log = log[log.from_night <= night]
    champion = next(
        (
            v
            for v in reversed(log.champion_after.tolist())
            if v in valid_from and valid_from[v] <= night
        ),
        None,
    )
    newest = log[log.decision.isin(TRAINED)].version.tolist()[-1:]
    shadow = next((v for v in newest if v != champion), None)
    if champion is not None:
        return NightModels(champion, shadow, f"champion v{champion} for the night of {night}")
    if trained.empty:
        reason = f"no version of {settings.model_name} has been trained yet"
    else:
        first = trained.iloc[0]
        reason = (
            f"no version of {settings.model_name} was champion on the night of {night}: the "
            f"first, v{first.version}, was trained on data up to {first.from_night - ONE_DAY} "
            f"(held out {first.eval_window}) and scores nights from {first.from_night} on"
        )
    return NightModels(None, shadow, reason)


def from_night(window_end: dt.date) -> dt.date:
    """The first night a model trained on data up to ``window_end`` may score: the night of
    that day itself ran before the model existed (its policy asked for it)."""
    return window_end + ONE_DAY


def champions(log) -> list[str]:
    """The champions in order, replayed from the decision log: a promotion pushes, a rollback
    pops; the last is the current one."""
    stack: list[str] = []
    for row in log.itertuples():
        if row.decision == "promoted":
            stack.append(row.version)
        elif row.decision == "rolled_back" and stack:
            stack.pop()
    return stack


def sync_aliases(settings: Settings, tracking) -> None:
    """Point ``champion`` and ``challenger`` where the decision log says (the current champion;
    the newest trained version). A crash between a decision's record and its alias move leaves
    the alias behind; so does a hand-made move in the MLflow UI, which is undone: the log
    decides, and ``nightjar model rollback`` is how to change the champion by hand."""
    from mlflow.exceptions import MlflowException

    log = decisions(settings)
    trained = log[log.decision.isin(TRAINED)].version.tolist()
    wanted = {CHAMPION: (champions(log) or [None])[-1], CHALLENGER: (trained or [None])[-1]}
    for alias, version in wanted.items():
        current = alias_version(tracking, settings, alias)
        if version is not None and current != version:
            logging.getLogger(__name__).warning(
                "%s@%s points at v%s but the decision log says v%s: alias moved",
                settings.model_name,
                alias,
                current,
                version,
            )
            try:
                tracking.set_registered_model_alias(settings.model_name, alias, version)
            except MlflowException as exc:
                raise NightjarError(
                    f"the decision log ({DECISIONS_TABLE}) names {settings.model_name} "
                    f"v{version} as {alias}, but the registry at {settings.mlflow_tracking_uri} "
                    f"cannot point at it ({exc.message}): the log and the registry disagree"
                ) from None


def rollback(settings: Settings, tracking, from_night: dt.date | None = None) -> str:
    """Move ``champion`` back to the champion before the current one; returns its version.
    ``from_night``: the first night the rollback governs (default: the night after the newest
    one scored, so past nights replay as they ran; give an earlier night to re-score it)."""
    sync_aliases(settings, tracking)
    stack = champions(decisions(settings))
    if not stack:
        raise NightjarError(f"{settings.model_name} has no champion to roll back from")
    if len(stack) < 2:
        raise NightjarError(
            f"champion v{stack[-1]} was the first champion of {settings.model_name}; there is "
            "nothing to roll back to"
        )
    current, previous = stack[-1], stack[-2]
    record(
        settings,
        tracking,
        {
            "version": previous,
            "decision": "rolled_back",
            "reason": f"champion moved back from v{current} to v{previous}",
            "previous_champion": current,
            "champion_after": previous,
            "metrics": None,
            "champion_metrics": None,
            "eval_window": None,
            "run_id": None,
            "trigger": "rollback",
            "from_night": from_night or next_night(settings),
        },
    )
    tracking.set_registered_model_alias(settings.model_name, CHAMPION, previous)
    return previous


def next_night(settings: Settings) -> dt.date:
    """The night after the newest one scored (night D scores D+1's flights), or the first night
    of the data when none was."""
    from jobs.common.settings import DATA_START
    from jobs.scoring.predictions import PREDICTIONS

    scored = partition_values(settings.table_uri(PREDICTIONS.name), "flight_date")
    return scored[-1] if scored else DATA_START


def as_json(values: dict | None) -> str | None:
    return None if values is None else json.dumps(values, sort_keys=True)
