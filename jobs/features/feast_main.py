"""The ``feast`` CLI as ``nightjar feast`` runs it (``store.feast_cli``): Feast's own command
line, after the registry has forgotten any online tables it records in another store
(``store.forget_foreign_online_tables``), which `feast apply` would otherwise drop there."""

from __future__ import annotations

from feast import FeatureStore
from feast.cli.cli import cli

from jobs.features.store import FEATURE_REPO, forget_foreign_online_tables

if __name__ == "__main__":
    # feature_store.yaml is rendered from the environment store.feast_cli sets
    forget_foreign_online_tables(FeatureStore(repo_path=str(FEATURE_REPO)))
    cli(prog_name="feast")
