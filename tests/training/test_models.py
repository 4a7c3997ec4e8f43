"""The disruption model's inputs: a string feature (the route) is a category the trees split on,
and a category the model never trained on is missing, never an error or another's code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jobs.training import models
from jobs.training.dataset import LABEL, Split

FEATURES = ["hour", "route"]


def flights(n: int, routes: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"hour": rng.integers(5, 23, n).astype(float), "route": rng.choice(routes, n)}
    )
    # EWR-ORD is the disrupted route; late hours a little too
    risk = 0.1 + 0.6 * (frame.route == "EWR-ORD") + 0.01 * frame.hour
    frame[LABEL] = rng.random(n) < risk
    return frame


@pytest.fixture(scope="module")
def model():
    routes = ["EWR-ORD", "JFK-LAX", "LGA-ATL"]
    parts = Split(
        train=flights(4000, routes, 1),
        validation=flights(1000, routes, 2),
        test=flights(10, routes, 3),
    )
    return models.train_xgboost(parts, FEATURES, seed=42).model


def test_the_model_stores_the_training_days_routes_as_its_categories(model):
    assert models.model_categories(model) == {"route": ["EWR-ORD", "JFK-LAX", "LGA-ATL"]}
    assert model.get_booster().feature_types == ["float", "c"]


def test_predictions_follow_the_route_not_the_order_of_the_categories(model):
    frame = pd.DataFrame(
        {"hour": [17.0] * 5, "route": ["LGA-ATL", "EWR-ORD", "JFK-LAX", None, "X"]}
    )
    p = models.predict(model, frame, FEATURES)
    assert p[1] > max(p[0], p[2]) + 0.1  # the disrupted route
    assert p[4] == p[3]  # a route first flown after training: missing, not an error
    assert p[4] != p[1]  # (not mistaken for the riskiest one)
    reordered = frame.assign(
        route=pd.Categorical(frame.route, ["X", "LGA-ATL", "JFK-LAX", "EWR-ORD"])
    )
    np.testing.assert_array_equal(models.predict(model, reordered, FEATURES), p)
    numeric = models.predict(model, frame.drop(columns="route").assign(route=np.nan), FEATURES)
    assert numeric[0] == p[3]
