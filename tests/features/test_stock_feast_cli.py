"""The stock ``feast`` CLI works on ``feature_repo/`` with the venv active and nothing else:
``feature_store.yaml`` is a plain Feast configuration whose stores are the local platform's
defaults (jobs/features/store.py), the same ones the jobs configure from default settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from feast import FeatureStore

from jobs.common.settings import PROJECT_ROOT, Settings
from jobs.features import store

FEAST = Path(sys.executable).with_name("feast")


def test_default_settings_configure_the_stores_feature_store_yaml_names():
    """So the stock CLI and the jobs share one registry and one online store, and Feast
    records the online tables at the same path from either (a `feast apply` by one would
    otherwise tear down the tables the other recorded)."""
    default = Settings(
        state_dir=PROJECT_ROOT / ".state",
        lakehouse_uri=None,
        s3_bucket=None,
        feast_registry=None,
        feast_online_store="sqlite",
    )
    plain = yaml.safe_load(store.FEATURE_STORE_YAML.read_text())
    assert store.repo_config_dict(default) == plain
    assert plain["online_store"]["path"] == "../.state/feast/online.db"
    assert store.online_store_path(default) == str(store.FEATURE_REPO / "../.state/feast/online.db")


def stock_feast(args: list[str], repo: Path, lakehouse: str) -> str:
    """``feast <args>`` in ``repo`` as a shell with the venv active runs it: no NIGHTJAR_FEAST_*
    or FEAST_* variable, no settings but the lakehouse the repository's sources read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIGHTJAR_", "FEAST_"))}
    env |= {
        "PATH": f"{FEAST.parent}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(FEAST.parent.parent),
        "NIGHTJAR_LAKEHOUSE_URI": lakehouse,
    }
    done = subprocess.run(
        ["feast", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_stock_feast_cli_plans_applies_and_materializes_the_repository(feast_lake, tmp_path):
    """Run on a copy of feature_repo/ in a project folder of its own: its `../.state` is that
    folder's, so the developer's .state/ is never touched."""
    lake, _ = feast_lake
    repo = tmp_path / "project" / "feature_repo"
    shutil.copytree(store.FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    state = tmp_path / "project" / ".state" / "feast"

    planned = stock_feast(["plan"], repo, lake.lakehouse)
    assert "Created feature service flight_disruption_v1" in planned

    stock_feast(["apply"], repo, lake.lakehouse)
    assert (state / "registry.db").exists() and (state / "online.db").exists()
    assert "flight_disruption_v1" in stock_feast(["feature-services", "list"], repo, lake.lakehouse)

    window = ["2013-03-02T05:00:01", "2013-03-03T05:00:00"]
    stock_feast(["materialize", "--views", "carrier_stats", *window], repo, lake.lakehouse)
    online = FeatureStore(repo_path=str(repo)).get_online_features(
        features=["carrier_stats:flights_7d"], entity_rows=[{"carrier": "UA"}]
    )
    assert online.to_dict()["flights_7d"][0] > 0  # the stock configuration's online store
