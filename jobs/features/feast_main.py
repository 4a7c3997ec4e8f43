"""The ``feast`` CLI as ``nightjar feast`` runs it (``store.feast_cli``):
``python -m jobs.features.feast_main <feature_store.yaml> <feast arguments>`` runs Feast's own
command line on ``feature_repo/`` with that configuration, after the registry has forgotten any
online tables it records in another store (``store.forget_foreign_online_tables``), which
`feast apply` would otherwise drop there."""

from __future__ import annotations

import sys
from pathlib import Path

from feast import FeatureStore
from feast.cli.cli import cli

from jobs.features.store import FEATURE_REPO, forget_foreign_online_tables

if __name__ == "__main__":
    config, args = Path(sys.argv[1]), sys.argv[2:]
    forget_foreign_online_tables(FeatureStore(repo_path=str(FEATURE_REPO), fs_yaml_file=config))
    cli(
        ["--chdir", str(FEATURE_REPO), "--feature-store-yaml", str(config), *args],
        prog_name="feast",
    )
