"""Model cards: what a registered version is, what it was trained on, how good it is, where it
fails and why it was (not) promoted.

Built by the training run (``train.run``) from what it already computed: the window, the Delta
versions read, the feature service, the metrics per split, the baseline's and the champion's
metrics on the same held-out days, and the decision. On the held-out test predictions it adds
a calibration table (predicted vs observed rate per probability decile, the expected
calibration error) and the performance per carrier and per origin, all with
:func:`jobs.training.evaluate.metrics`, the one metrics function.

The card is Markdown: set as the model version's description (the registry shows it on the
version's page) and logged as ``model_card.md`` on the training run. Print a version's card
from the registry with ``python -m jobs.training.model_card [VERSION | @ALIAS]``.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.common.settings import DATA_START, Settings
from jobs.features.training import TrainingSet
from jobs.training import evaluate
from jobs.training.dataset import LABEL, Split, Window

ARTIFACT = "model_card.md"
# A group with fewer held-out rows (or disrupted flights) than this gets its metrics flagged as
# unreliable; one with a single class has no ROC AUC at all.
MIN_GROUP_ROWS = 100
MIN_GROUP_DISRUPTED = 10
FEW, ONE_CLASS = "few rows", "one class"
CALIBRATION_BINS = evaluate.CALIBRATION_BINS
# The registry's column for a version's description (VARCHAR(5000) on PostgreSQL).
DESCRIPTION_LIMIT = 5000
METRICS = (  # (key in evaluate.metrics, label on the card)
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC"),
    ("log_loss", "Log loss"),
    ("brier", "Brier score"),
    ("precision", "Precision"),
    ("recall", "Recall"),
)
SPLIT_NAMES = {"train": "Training", "validation": "Validation", "test": "Test (held out)"}


@dataclass(frozen=True)
class Card:
    markdown: str


def calibration(y, p: np.ndarray, bins: int = CALIBRATION_BINS) -> tuple[pd.DataFrame, float]:
    """Equal-count probability bins (lowest first): rows, the range and mean of the predicted
    probability, the observed disruption rate; and the expected calibration error (the
    row-weighted mean of |mean predicted - observed|)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    rows = []
    for index, members in enumerate(np.array_split(order, min(bins, len(p))), start=1):
        rows.append(
            {
                "bin": index,
                "rows": len(members),
                "p_min": float(p[members].min()),
                "p_max": float(p[members].max()),
                "mean_predicted": float(p[members].mean()),
                "observed_rate": float(y[members].mean()),
            }
        )
    return pd.DataFrame(rows), evaluate.expected_calibration_error(y, p, bins)


def by_group(test: pd.DataFrame, p: np.ndarray, column: str, threshold: float) -> pd.DataFrame:
    """Held-out performance per value of ``column`` (largest group first), with a note on
    groups too small or single-class to judge."""
    frame = pd.DataFrame(
        {"group": test[column].fillna("(none)").to_numpy(), "y": test[LABEL].astype(int), "p": p}
    )
    rows = []
    for group, part in frame.groupby("group", sort=False):
        disrupted = int(part.y.sum())
        row = {
            "group": str(group),
            "rows": len(part),
            "disrupted": disrupted,
            "observed_rate": float(part.y.mean()),
            "mean_predicted": float(part.p.mean()),
        }
        if 0 < disrupted < len(part):
            row.update(evaluate.metrics(part.y, part.p.to_numpy(), threshold))
            small = len(part) < MIN_GROUP_ROWS or disrupted < MIN_GROUP_DISRUPTED
            row["note"] = FEW if small else ""
        else:
            row["note"] = ONE_CLASS
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(["rows", "group"], ascending=[False, True], ignore_index=True)


def build(
    settings: Settings,
    *,
    version: str,
    run_id: str,
    window: Window,
    data: TrainingSet,
    parts: Split,
    scores: np.ndarray,
    metrics: dict[str, dict[str, float]],
    baseline: dict[str, float],
    champion: dict[str, float] | None,
    champion_version: str | None,
    decision,
) -> Card:
    """The card of ``version``, trained on ``data`` (its Delta versions, feature service and
    features) split into ``parts``. ``scores``: its test-split probabilities (``parts.test``'s
    row order); ``metrics``: its metrics per split; ``baseline`` / ``champion``: theirs on the test
    split (``champion`` None when there was none); ``decision``: ``registry.decide``'s."""
    test = parts.test
    threshold = settings.decision_threshold
    calibrated, ece = calibration(test[LABEL], scores)
    carriers = by_group(test, scores, "carrier", threshold)
    origins = by_group(test, scores, "origin", threshold)
    airports = ", ".join(sorted(test["origin"].dropna().unique()))
    name = settings.model_name
    out: list[str] = []
    add = out.append

    add(f"# Model card: {name} v{version}")
    add("")
    verdict = "Promoted to champion" if decision.promote else "Rejected (stays challenger)"
    add(f"**{verdict}**: {decision.reason}. MLflow run `{run_id}`.")

    add("")
    add("## Intended use")
    add("")
    add(
        f"- **Predicts** at the end of day D the probability that a flight from New York "
        f"({airports}) scheduled on D+1 is disrupted (cancelled or "
        f"{settings.disruption_delay_minutes}+ minutes late), for planners ranking tomorrow's "
        "flights (`make top-risk`, `ml.predictions`)."
    )
    add(
        f"- **Decision threshold** {threshold}: flights at or above it are flagged (precision "
        "and recall below)."
    )
    add(
        "- **Not for**: other airports or years; same-day decisions (it knows nothing after "
        "D); judging carriers, crews or airports (associations, not causes); decisions about "
        "passengers (compensation, pricing); a probability read as a rate (see calibration)."
    )

    add("")
    add("## Data")
    add("")
    add("| Split | From | To | Days | Rows | Disrupted rate | ROC AUC |")
    add("|---|---|---|---|---|---|---|")
    bounds = {
        "train": (window.start, window.validation_start - dt.timedelta(days=1)),
        "validation": (window.validation_start, window.test_start - dt.timedelta(days=1)),
        "test": (window.test_start, window.end),
    }
    sizes = parts.sizes()
    for split, (start, end) in bounds.items():
        add(
            f"| {SPLIT_NAMES[split]} | {start} | {end} | {(end - start).days + 1} | "
            f"{sizes[split]} | {_f(metrics[split]['positive_rate'])} | "
            f"{_f(metrics[split]['roc_auc'])} |"
        )
    add("")
    versions = ", ".join(f"{t} {v}" for t, v in sorted(data.delta_versions.items()))
    add(f"Delta versions read: {versions}.")
    add("")
    add(
        f"Features: {len(data.feature_columns)} from the feature service "
        f"`{data.feature_service}`, as of the end of D:"
    )
    add("")
    for views, names in _features_by_view(data.feature_columns).items():
        each = " each" if len(views) > 1 else ""
        add(f"- {', '.join(f'`{v}`' for v in views)} ({len(names)}{each}): {_summarize(names)}")

    add("")
    add(f"## Metrics on the held-out days ({window.test_start}..{window.end})")
    add("")
    champion_head = f"Champion v{champion_version}" if champion is not None else "Champion"
    add(f"| Metric | This model (v{version}) | Logistic baseline | {champion_head} |")
    add("|---|---|---|---|")
    for key, label in METRICS:
        theirs = "—" if champion is None else _f(champion[key])
        add(f"| {label} | {_f(metrics['test'][key])} | {_f(baseline[key])} | {theirs} |")
    add("")
    add(
        f"Same {sizes['test']} flights (disrupted rate {_f(metrics['test']['positive_rate'])}); "
        "the baseline: logistic regression on scheduled hour, weekday, carrier."
        + ("" if champion is not None else " No champion to compare with.")
    )

    add("")
    add("## Calibration")
    add("")
    mean_p = float(np.mean(scores))
    observed = metrics["test"]["positive_rate"]
    add(
        f"Brier score {_f(metrics['test']['brier'])}; expected calibration error {_f(ece)} "
        f"({len(calibrated)} equal-count bins); mean predicted probability {_f(mean_p)} vs "
        f"observed rate {_f(observed)}."
    )
    add("")
    add("| Bin | Rows | Up to | Mean predicted | Observed rate |")
    add("|---|---|---|---|---|")
    for row in calibrated.itertuples():
        add(
            f"| {row.bin} | {row.rows} | {_f(row.p_max, 3)} | {_f(row.mean_predicted)} | "
            f"{_f(row.observed_rate)} |"
        )

    for title, table in (("carrier", carriers), ("origin", origins)):
        add("")
        add(f"## Performance by {title}")
        add("")
        add(f"| {title.capitalize()} | Rows | Disrupted | ROC AUC | Recall | Note |")
        add("|---|---|---|---|---|---|")
        for row in table.to_dict("records"):
            add(
                f"| {row['group']} | {row['rows']} | {row['disrupted']} | "
                f"{_f(row.get('roc_auc'))} | {_f(row.get('recall'))} | {row['note']} |"
            )
    add("")
    add(
        f"*{FEW}*: under {MIN_GROUP_ROWS} flights or {MIN_GROUP_DISRUPTED} disrupted, figures "
        f"unreliable; *{ONE_CLASS}*: no ROC AUC."
    )

    add("")
    add("## Known limits")
    add("")
    limits = _limits(window, sizes["test"], baseline, carriers, origins, mean_p, observed)
    for limit in limits:
        add(f"- {limit}")

    add("")
    add("## Promotion decision")
    add("")
    add(f"- **{'Promoted' if decision.promote else 'Rejected'}**: {decision.reason}.")
    add(
        f"- Gate: test ROC AUC ≥ {settings.promote_min_roc_auc} and ≥ the champion's on the "
        f"same days − {settings.promote_max_auc_drop}."
    )
    before = f"v{champion_version}" if champion_version else "none"
    after = f"v{version}" if decision.promote else before
    add(f"- Champion before: {before}; after: {after}. Recorded in `ml.model_decisions`.")
    return Card("\n".join(out) + "\n")


def description(card: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``card`` as the registry's description: whole when it fits the registry's column; else
    without the calibration bins' table; else also cut at a line. Either says where the whole
    card is."""
    if len(card) <= limit:
        return card
    lines = card.splitlines(keepends=True)
    start = lines.index("## Calibration\n")
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith("## "))
    table = [i for i in range(start, end) if lines[i].startswith("|")]
    if table:  # the section's one table
        pointer = f"(The bins' table: in the run's artifact `{ARTIFACT}`.)\n"
        lines[table[0] : table[-1] + 1] = [pointer]
    card = "".join(lines)
    if len(card) <= limit:
        return card
    note = f"\n\n… cut to fit the registry: the whole card is the run's artifact `{ARTIFACT}`.\n"
    return card[: card.rfind("\n", 0, limit - len(note))] + note


def publish(client, settings: Settings, version: str, run_id: str, **inputs) -> Card:
    """Build the card of ``version`` (``inputs``: :func:`build`'s), log it on the training run
    as ``model_card.md`` and set it as the version's
    description."""
    card = build(settings, version=version, run_id=run_id, **inputs)
    client.log_text(run_id, card.markdown, ARTIFACT)
    client.update_model_version(settings.model_name, version, description(card.markdown))
    return card


def show(settings: Settings, ref: str) -> str:
    """The whole card of a registered version (``3``) or alias (``@champion``): its run's
    artifact (the registry's description may leave the calibration bins out to fit)."""
    from jobs.training import tracking

    client = tracking.client(settings)
    if ref.startswith("@"):
        found = client.get_model_version_by_alias(settings.model_name, ref[1:])
    else:
        found = client.get_model_version(settings.model_name, ref)
    if ARTIFACT in {a.path for a in client.list_artifacts(found.run_id)}:
        with tempfile.TemporaryDirectory() as folder:
            return Path(client.download_artifacts(found.run_id, ARTIFACT, folder)).read_text()
    return found.description or f"{settings.model_name} v{found.version} has no model card"


def _limits(window, test_rows, baseline, carriers, origins, mean_p, observed) -> list[str]:
    limits = [
        f"{_days(window.start, window.end)} of data ({window.start}..{window.end}) from one "
        f"year of NYC flights ({DATA_START.year}): other airports and unseen seasons are out "
        "of scope.",
        "No weather forecast, nothing of D+1 (storms, ground stops): features stop at D.",
        f"Held out: {_days(window.test_start, window.end)} ({test_rows} flights), so its "
        "figures are noisy.",
    ]
    if abs(mean_p - observed) > 0.05:
        direction = "overstate" if mean_p > observed else "understate"
        limits.append(
            f"Probabilities {direction} the rate ({_f(mean_p)} vs {_f(observed)}; classes "
            "re-weighted in training): rank by them, or read the calibration table."
        )
    for title, table in (("carriers", carriers), ("origins", origins)):
        judged = table[table.note == ""] if "roc_auc" in table else table.iloc[0:0]
        weak = judged[judged.roc_auc < baseline["roc_auc"]]
        if not weak.empty:
            names = ", ".join(f"{r.group} ({_f(r.roc_auc)})" for r in weak.itertuples())
            limits.append(
                f"Weak on {title} {names}: ROC AUC below the baseline's overall "
                f"{_f(baseline['roc_auc'])}."
            )
        unjudged = table[table.note != ""]
        if not unjudged.empty:
            limits.append(
                f"Not judged on {title} {', '.join(unjudged.group)} "
                f"({int(unjudged.rows.sum())} flights): too few rows."
            )
    return limits


def _features_by_view(features: list[str]) -> dict[tuple[str, ...], list[str]]:
    """Feature names per view (``<view>__<name>``), views with the same names together."""
    views: dict[str, list[str]] = defaultdict(list)
    for feature in features:
        view, _, name = feature.rpartition("__")
        views[view or "(other)"].append(name)
    same: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for view, names in views.items():
        same[tuple(names)].append(view)
    return {tuple(v): list(names) for names, v in same.items()}


def _summarize(names: list[str]) -> str:
    """Feature names, those that differ only by a trailing window (``_7d``) folded:
    ``flights, cancel_rate × 1d/7d/28d``."""
    windows: dict[str, list[str]] = defaultdict(list)
    plain: list[str] = []
    for name in names:
        match = re.fullmatch(r"(.+)_(\d+d)", name)
        if match:
            windows[match[1]].append(match[2])
        else:
            plain.append(name)
    folded: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for stem, suffixes in windows.items():
        folded[tuple(suffixes)].append(stem)
    parts = [", ".join(plain)] if plain else []
    parts += [f"{', '.join(stems)} × {'/'.join(w)}" for w, stems in folded.items()]
    return "; ".join(parts)


def _days(start: dt.date, end: dt.date) -> str:
    days = (end - start).days + 1
    return f"{days} day{'s' if days != 1 else ''}"


def _f(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Print a registered version's model card.")
    parser.add_argument("ref", nargs="?", default="@champion", help="VERSION or @ALIAS")
    print(show(Settings(), parser.parse_args(argv).ref), end="")


if __name__ == "__main__":
    main()
