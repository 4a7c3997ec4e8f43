"""Model cards: set as the registered version's description, logged on the training run, and
every figure on them the run's own (logged metrics and parameters, logged test predictions).

Trains on the feature tests' lakehouse like tests/training/test_training.py (its ``ml``
settings), under a model name of its own: the decision log in the lakehouse is shared, and
another module's versions are not in this module's registry.
"""

from __future__ import annotations

import datetime as dt
import re

import mlflow
import numpy as np
import pandas as pd
import pytest

from jobs.common.settings import Settings
from jobs.features.training import TrainingSet
from jobs.lakehouse import gold_tables
from jobs.training import evaluate, model_card, registry, tracking, train
from jobs.training.dataset import LABEL, Split, Window
from tests.training.test_training import END, ml  # noqa: F401  (the settings fixture)


@pytest.fixture(scope="module")
def cards(ml):  # noqa: F811  (the fixture imported above)
    return ml.model_copy(update={"model_name": "flight_disruption_cards"})


@pytest.fixture(scope="module")
def runs(cards):
    """The first version (promoted, no champion to compare with), then one rejected against
    it as the champion, on the same window."""
    first = train.run(cards, END)
    rejected = train.run(cards.model_copy(update={"promote_max_auc_drop": -1.0}), END)
    assert first.promoted and not rejected.promoted
    return first, rejected


def section(card: str, heading: str) -> str:
    """The text under the ``## heading...`` line, up to the next section."""
    start = card.index(f"\n## {heading}")
    end = card.find("\n## ", start + 1)
    return card[start + 1 : end if end > 0 else None]


def table(text: str) -> list[dict[str, str]]:
    """The first Markdown table in ``text``, as rows keyed by its header."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, body = cells[0], cells[2:]
    assert set(lines[1]) <= set("|-")  # the separator line
    return [dict(zip(header, row, strict=True)) for row in body]


def logged(settings, result):
    run = tracking.client(settings).get_run(result.run_id)
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/{model_card.ARTIFACT}")
    return run.data.params, run.data.metrics, run.data.tags, card


def f4(value: float) -> str:
    return f"{value:.4f}"


def test_every_version_has_its_card_as_description_and_as_a_run_artifact(cards, runs):
    client = tracking.client(cards)
    for result in runs:
        *_, card = logged(cards, result)
        version = client.get_model_version(cards.model_name, result.version)
        # the whole card where it fits the registry's column; else all but the calibration
        # bins, which the description says are in the artifact
        assert version.description == model_card.description(card)
        assert len(version.description) <= model_card.DESCRIPTION_LIMIT
        assert "| Bin | Rows | Up to |" in card
        if len(card) > model_card.DESCRIPTION_LIMIT:
            assert (
                "(The bins' table: in the run's artifact `model_card.md`.)" in version.description
            )
            assert "… cut to fit" not in version.description  # everything else is there
        assert card.startswith(f"# Model card: {cards.model_name} v{result.version}\n")
        assert f"MLflow run `{result.run_id}`" in card
        assert model_card.show(cards, result.version) == card
    first, _ = runs
    assert model_card.show(cards, "@champion") == logged(cards, first)[-1]


def test_the_cards_figures_are_the_runs_logged_metrics_and_parameters(cards, runs):
    first, rejected = runs
    params, metrics, tags, card = logged(cards, rejected)

    # the metrics against the baseline and the champion, on the same held-out days
    held_out = section(card, "Metrics on the held-out days")
    assert held_out.splitlines()[0].endswith(f"({params['test_start']}..{params['window_end']})")
    rows = {row["Metric"]: row for row in table(held_out)}
    assert set(rows) == {label for _, label in model_card.METRICS}
    for key, label in model_card.METRICS:
        assert rows[label][f"This model (v{rejected.version})"] == f4(metrics[f"test_{key}"])
        assert rows[label]["Logistic baseline"] == f4(metrics[f"baseline_test_{key}"])
        assert rows[label][f"Champion v{first.version}"] == f4(metrics[f"champion_test_{key}"])
    # the champion compared is the first version, scored on the same flights
    assert metrics["champion_test_roc_auc"] == pytest.approx(first.test_metrics["roc_auc"])
    assert f"Same {params['rows_test']} flights" in held_out

    # the windows, their sizes and each split's ROC AUC
    one_day = dt.timedelta(days=1)
    validation_start = dt.date.fromisoformat(params["validation_start"])
    test_start = dt.date.fromisoformat(params["test_start"])
    splits = {row["Split"]: row for row in table(section(card, "Data"))}
    expected = {
        "Training": (params["window_start"], str(validation_start - one_day), "train"),
        "Validation": (params["validation_start"], str(test_start - one_day), "validation"),
        "Test (held out)": (params["test_start"], params["window_end"], "test"),
    }
    assert set(splits) == set(expected)
    for name, (start, end, split) in expected.items():
        assert (splits[name]["From"], splits[name]["To"]) == (start, end)
        assert splits[name]["Rows"] == params[f"rows_{split}"]
        assert splits[name]["ROC AUC"] == f4(metrics[f"{split}_roc_auc"])
        assert splits[name]["Disrupted rate"] == f4(metrics[f"{split}_positive_rate"])
    assert params["window_start"] == str(END - dt.timedelta(days=3))  # the 4 labeled days

    # the gold tables' Delta versions, as logged (and as the reproduction reads them)
    line = re.search(r"Delta versions read: (.+)\.\n", card)[1]
    on_card = {table: int(v) for table, v in (item.split(" ") for item in line.split(", "))}
    assert on_card == {
        k.removeprefix("delta_version."): int(v)
        for k, v in params.items()
        if k.startswith("delta_version.")
    }
    inputs = mlflow.artifacts.load_dict(f"runs:/{rejected.run_id}/inputs.json")
    assert on_card == inputs["delta_versions"] and set(on_card) == set(gold_tables.PUBLISHED)

    # the feature service and exactly its features
    head = re.search(r"Features: (\d+) from the feature service `([^`]+)`", card)
    assert head.groups() == (params["n_features"], params["feature_service"])
    features = mlflow.artifacts.load_dict(f"runs:/{rejected.run_id}/features.json")["features"]
    assert listed_features(section(card, "Data")) == sorted(features)

    # the threshold, the calibration figures and the decision
    assert f"**Decision threshold** {params['decision_threshold']}:" in card
    calibration = section(card, "Calibration")
    assert f"Brier score {f4(metrics['test_brier'])};" in calibration
    assert f"expected calibration error {f4(metrics['test_ece'])} " in calibration
    version_tags = tracking.client(cards).get_model_version(cards.model_name, rejected.version)
    reason = version_tags.tags["nightjar.reason"]
    assert reason == tags["decision"] == rejected.reason
    assert f"**Rejected (stays challenger)**: {reason}." in card
    decision = section(card, "Promotion decision")
    assert f"- **Rejected**: {reason}." in decision
    assert f"Champion before: v{first.version}; after: v{first.version}." in decision
    logged_row = registry.decisions(cards).set_index("version").loc[rejected.version]
    assert logged_row.decision == "rejected" and logged_row.champion_after == first.version

    # the first version: promoted, with no champion to compare with
    params, metrics, _, card = logged(cards, first)
    assert not any(k.startswith("champion_test_") for k in metrics)
    rows = {row["Metric"]: row for row in table(section(card, "Metrics on the held-out days"))}
    assert rows["ROC AUC"]["Champion"] == "—"
    assert rows["ROC AUC"][f"This model (v{first.version})"] == f4(metrics["test_roc_auc"])
    assert f"**Promoted to champion**: {first.reason}." in card
    assert f"Champion before: none; after: v{first.version}." in card


def listed_features(data: str) -> list[str]:
    """The ``<view>__<feature>`` names a card's feature list stands for (windows unfolded)."""
    names = []
    for views, listed in re.findall(
        r"^- ((?:`[^`]+`(?:, )?)+) \(\d+(?: each)?\): (.+)$", data, re.M
    ):
        for part in listed.split("; "):
            stems, _, windows = part.partition(" × ")
            full = [
                f"{stem}_{w}" if windows else stem
                for stem in stems.split(", ")
                for w in (windows.split("/") if windows else [""])
            ]
            names += [f"{view}__{n}" for view in re.findall(r"`([^`]+)`", views) for n in full]
    return sorted(names)


def test_groups_and_calibration_bins_cover_every_held_out_flight(cards, runs):
    _, result = runs
    params, metrics, _, card = logged(cards, result)
    rows_test = int(params["rows_test"])
    predictions = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=result.run_id, artifact_path="test_predictions.parquet"
        )
    )
    frame = train.training_set(cards, END, END).frame.set_index("flight_id")
    test = frame.loc[predictions.flight_id].assign(p=predictions.p.to_numpy())
    assert len(test) == rows_test
    disrupted = int(test[LABEL].sum())
    assert disrupted == round(metrics["test_positive_rate"] * rows_test)

    for column, title in (("carrier", "Carrier"), ("origin", "Origin")):
        groups = table(section(card, f"Performance by {column}"))
        assert sum(int(g["Rows"]) for g in groups) == rows_test
        assert sum(int(g["Disrupted"]) for g in groups) == disrupted
        assert {g[title] for g in groups} == set(test[column])
        for group in groups:  # each row: that group's held-out flights, scored as logged
            part = test[test[column] == group[title]]
            y, n = part[LABEL].astype(int), len(part)
            assert (int(group["Rows"]), int(group["Disrupted"])) == (n, int(y.sum()))
            if y.nunique() < 2:
                assert (group["Note"], group["ROC AUC"]) == ("one class", "—")
                continue
            expected = evaluate.metrics(y, part.p.to_numpy(), cards.decision_threshold)
            assert group["ROC AUC"] == f4(expected["roc_auc"])
            assert group["Recall"] == f4(expected["recall"])
            few = n < model_card.MIN_GROUP_ROWS or y.sum() < model_card.MIN_GROUP_DISRUPTED
            assert group["Note"] == ("few rows" if few else "")
    # one day of four airports' flights has small carriers: some must be flagged
    assert any(g["Note"] for g in table(section(card, "Performance by carrier")))

    bins = table(section(card, "Calibration"))
    counts = np.array([int(b["Rows"]) for b in bins])
    assert len(bins) == model_card.CALIBRATION_BINS and counts.sum() == rows_test
    assert counts.max() - counts.min() <= 1  # equal-count bins
    tops = [float(b["Up to"]) for b in bins]
    assert tops == sorted(tops) and tops[-1] == pytest.approx(test.p.max(), abs=5e-4)
    predicted = np.array([float(b["Mean predicted"]) for b in bins])
    observed = np.array([float(b["Observed rate"]) for b in bins])
    assert predicted @ counts / rows_test == pytest.approx(test.p.mean(), abs=1e-4)
    assert observed @ counts / rows_test == pytest.approx(metrics["test_positive_rate"], abs=1e-4)
    ece = np.abs(predicted - observed) @ counts / rows_test
    assert ece == pytest.approx(metrics["test_ece"], abs=2e-4)


def synthetic(carrier_sizes: dict[str, int], seed: int = 0):
    """Inputs for :func:`model_card.build` without a lakehouse: carriers of the given sizes,
    the model good on all but ``BAD`` (scores inverted) and ``ONE`` (never disrupted)."""
    rng = np.random.default_rng(seed)
    carrier = np.repeat(list(carrier_sizes), list(carrier_sizes.values()))
    y = (rng.random(len(carrier)) < 0.3) & (carrier != "ONE")
    p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.15, len(y)), 0.01, 0.99)
    p[carrier == "BAD"] = 1 - p[carrier == "BAD"]
    test = pd.DataFrame({"carrier": carrier, "origin": "JFK", LABEL: y})
    parts = Split(train=test, validation=test, test=test)
    data = TrainingSet(
        frame=test,
        delta_versions={"gold.flights": 3},
        feature_service="flight_disruption_v1",
        feature_columns=[f"carrier_stats__{s}_{w}d" for w in (1, 7) for s in ("a", "b")],
    )
    metrics = evaluate.metrics(y, p, 0.5)
    return {
        "version": "7",
        "run_id": "r" * 32,
        "window": Window(dt.date(2013, 5, 1), dt.date(2013, 5, 30), 7, 7),
        "data": data,
        "parts": parts,
        "scores": p,
        "metrics": {"train": metrics, "validation": metrics, "test": metrics},
        "baseline": {**metrics, "roc_auc": 0.66},
        "champion": None,
        "champion_version": None,
        "decision": registry.Decision(True, "first model"),
    }


def test_a_card_flags_small_single_class_and_weak_groups():
    inputs = synthetic({"AA": 400, "BAD": 300, "SM": 40, "ONE": 150})
    card = model_card.build(Settings(), **inputs).markdown
    groups = {g["Carrier"]: g for g in table(section(card, "Performance by carrier"))}
    assert [g["Rows"] for g in groups.values()] == ["400", "300", "150", "40"]  # largest first
    assert groups["AA"]["Note"] == groups["BAD"]["Note"] == ""
    assert (groups["SM"]["Note"], groups["ONE"]["Note"]) == ("few rows", "one class")
    assert groups["ONE"]["ROC AUC"] == "—" and float(groups["BAD"]["ROC AUC"]) < 0.5
    assert float(groups["AA"]["ROC AUC"]) > 0.8
    limits = section(card, "Known limits")
    assert "Weak on carriers BAD (" in limits and "AA (" not in limits  # judged, and weak
    assert "Not judged on carriers ONE, SM (190 flights)" in limits
    assert "- Probabilities overstate the rate (" in limits  # mean 0.42 against 0.23
    assert "- `carrier_stats` (4): a, b × 1d/7d" in card
    assert "There was no champion" not in card and "No champion to compare with." in card


def test_a_card_too_long_for_the_registry_is_shortened_there_and_whole_in_the_artifact():
    card = model_card.build(Settings(), **synthetic({f"C{i:02}": 60 for i in range(30)})).markdown
    bins = table(section(card, "Calibration"))
    assert len(bins) == model_card.CALIBRATION_BINS
    assert model_card.description(card) == card  # it fits

    # a little too long: the calibration bins' table goes, everything else stays
    limit = len(card) - 100
    shorter = model_card.description(card, limit)
    assert len(shorter) <= limit
    assert "|" not in section(shorter, "Calibration")
    assert "artifact `model_card.md`" in section(shorter, "Calibration")
    rest = card.replace(section(card, "Calibration"), "")
    assert rest == shorter.replace(section(shorter, "Calibration"), "")
    assert "## Promotion decision" in shorter

    # far too long: also cut at a line, saying where the whole card is
    card = model_card.build(Settings(), **synthetic({f"C{i:03}": 60 for i in range(120)})).markdown
    cut = model_card.description(card)
    assert len(cut) <= model_card.DESCRIPTION_LIMIT < len(card)
    kept, note = cut.split("\n\n… ")
    assert "artifact `model_card.md`" in note
    rest = card.replace(section(card, "Calibration"), "")
    assert rest.startswith(kept.replace(section(kept, "Calibration"), "") + "\n")
