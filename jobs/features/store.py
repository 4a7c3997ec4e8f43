"""Open Nightjar's Feast repository with the platform's settings.

``feature_repo/feature_store.yaml`` is a plain Feast configuration whose stores are the local
platform's defaults: a file registry and an SQLite online store under the project's
``.state/feast/``, named relative to ``feature_repo/``. So ``cd feature_repo && feast apply``
(``plan``, ``materialize``, ``ui``) works with the venv active and nothing else. The jobs start
from the same file and replace its registry and online store with the settings'
(:func:`repo_config_dict`: another state folder, a SQL registry, Redis): :func:`feature_store`
hands the result to ``FeatureStore(config=...)`` and :func:`feast_cli` to Feast's CLI
(``--feature-store-yaml``). With default settings the two are the same configuration (a test
holds them equal), so the stock CLI and the jobs share one registry and one online store.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from jobs.common.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)
FEATURE_REPO = PROJECT_ROOT / "feature_repo"
FEATURE_STORE_YAML = FEATURE_REPO / "feature_store.yaml"
FEATURE_SERVICE = "flight_disruption_v4"


def _absolute(uri: str) -> str:
    return uri if "://" in uri else str(Path(uri).resolve())


# Feast warns that the flag "typically has no effect" on a file registry; it does (the serving
# gate reads it from any registry), so the warning is noise in every task log.
logging.getLogger("feast.repo_config").addFilter(
    lambda record: "serve_features_while_materializing" not in record.getMessage()
)


def _from_repo(path: Path) -> str:
    """``path`` as ``feature_store.yaml`` names its files: relative to ``feature_repo/``.

    Feast records an SQLite online table's file as the repository folder joined to the
    configured path, as written (``feature_repo/../.state/...``), and a ``feast apply`` that
    finds a table recorded at another path tears it down without creating it again (Feast
    0.67). The stock CLI on the plain file and the jobs must record the same string."""
    return os.path.relpath(path, FEATURE_REPO)


def _sqlite_online_store(settings: Settings) -> str:
    return _from_repo(settings.state_dir / "feast" / "online.db")


def online_store_path(settings: Settings) -> str | None:
    """The SQLite online store's file, as Feast records it (None for Redis)."""
    if settings.feast_online_store == "redis":
        return None
    return str(FEATURE_REPO / _sqlite_online_store(settings))


def repo_config_dict(settings: Settings) -> dict:
    """``feature_store.yaml`` with the registry and online store the settings name; the rest
    of the file (adapters, registry options) as it is."""
    config = yaml.safe_load(FEATURE_STORE_YAML.read_text())
    registry = {**config["registry"]}
    path = settings.feast_registry or _from_repo(settings.state_dir / "feast" / "registry.db")
    if "://" in path:  # a SQLAlchemy URL: Feast's SQL registry, which has no file store
        registry.pop("registry_store_type", None)
        registry.update(registry_type="sql", path=path)
    else:
        registry.update(registry_type="file", path=path)
    config["registry"] = registry
    if settings.feast_online_store == "redis":
        # skip_dedup: a re-materialized correction carries the same timestamp as the value it
        # corrects; Redis would keep the old one (jobs/features/materialize.py keeps the order)
        config["online_store"] = {
            "type": "redis",
            "connection_string": settings.feast_redis,
            "skip_dedup": True,
        }
    else:
        config["online_store"] = {"type": "sqlite", "path": _sqlite_online_store(settings)}
    return config


def repo_config(settings: Settings):
    """The ``RepoConfig`` of ``feature_repo/`` under ``settings``."""
    from feast.repo_config import RepoConfig

    config = RepoConfig(**repo_config_dict(settings))
    config.repo_path = FEATURE_REPO
    return config


def repo_env(settings: Settings) -> dict[str, str]:
    """The settings the feature repository's modules read (``data_sources.py`` the lakehouse,
    ``feature_views.py`` the rolling windows), for a Feast CLI run in another process."""
    return {
        "NIGHTJAR_STATE_DIR": str(settings.state_dir),
        "NIGHTJAR_LAKEHOUSE_URI": _absolute(settings.lakehouse),
        "NIGHTJAR_ROLLING_WINDOWS_DAYS": json.dumps(list(settings.rolling_windows_days)),
    }


class FeatureRegistryError(RuntimeError):
    """Feast's registry does not describe the repository at the settings' lakehouse."""


def feature_store(settings: Settings | None = None):
    """A ``FeatureStore`` on ``feature_repo/`` configured from ``settings``, whose registry
    reads the lakehouse the settings name.

    The registry stores each source's absolute path when ``feast apply`` runs: after the
    lakehouse moves (another state folder, object storage) Feast would go on reading the old
    tables. A registry that is missing the repository or points elsewhere (a source, or the
    online tables of another store) is re-applied."""
    settings = settings or Settings()
    store = unchecked_feature_store(settings)
    if problems := registry_problems(store, settings):
        log.warning("Feast's registry is out of date (%s): running feast apply", problems)
        apply(settings)
        store = unchecked_feature_store(settings)
        if problems := registry_problems(store, settings):
            raise FeatureRegistryError(f"after feast apply, the registry still {problems}")
    return store


def unchecked_feature_store(settings: Settings):
    """The store as its registry stands."""
    from feast import FeatureStore

    (settings.state_dir / "feast").mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(settings))


def registry_problems(store, settings: Settings) -> str | None:
    """Why the registry does not serve this repository at the settings' lakehouse and online
    store, if it does not: never applied, a source registered at another path, or online
    tables recorded in another store."""
    if FEATURE_SERVICE not in {service.name for service in store.list_feature_services()}:
        return f"has no feature service {FEATURE_SERVICE!r} (never applied)"
    if foreign := foreign_online_tables(store):
        return f"records online tables in {', '.join(foreign)}, another store"
    lakehouse = _absolute(settings.lakehouse).rstrip("/")
    for source in store.list_data_sources():
        expected = f"{lakehouse}/gold/{source.name.removeprefix('gold_')}"
        if getattr(source, "path", expected) != expected:
            return f"reads {source.name} from {source.path}, not {expected}"
    return None


def foreign_online_tables(store) -> list[str]:
    """The files of the online tables the registry records outside the store's configured
    online store (a copied state folder's registry names the original's files)."""
    online = store.config.online_store
    here = None
    if online.type == "sqlite":  # the file as Feast names it (SqliteOnlineStore._get_db_path)
        here = online.path
        if not Path(here).is_absolute():
            here = str(Path(store.config.repo_path) / here)
    # the raw record: Feast's own SqliteTable objects would open (so create) each file
    recorded = store.registry.proto().infra.infra_objects
    return sorted({t.sqlite_table.path for t in recorded if t.HasField("sqlite_table")} - {here})


def forget_foreign_online_tables(store) -> None:
    """Remove other stores' online tables from the registry's record of its infrastructure.
    `feast apply` replaces a recorded table whose path differs from the configured one,
    dropping it at the recorded path: run with a copied state folder's settings, it emptied
    the original's online store. ``nightjar feast`` does this before every command."""
    from feast.infra.infra_object import Infra
    from feast.protos.feast.core.InfraObject_pb2 import Infra as InfraProto

    if not (foreign := foreign_online_tables(store)):
        return
    log.warning(
        "Feast's registry records online tables in %s, not in this store: forgetting them, "
        "so that feast apply leaves them as they are",
        ", ".join(foreign),
    )
    kept = [
        t
        for t in store.registry.proto().infra.infra_objects
        if not t.HasField("sqlite_table") or t.sqlite_table.path not in foreign
    ]
    infra = Infra.from_proto(InfraProto(infra_objects=kept))
    store.registry.update_infra(infra, store.project, commit=True)


def feast_cli(
    args: list[str], settings: Settings | None = None, **run
) -> subprocess.CompletedProcess:
    """Run the ``feast`` CLI on ``feature_repo/`` with the platform's settings, as
    ``feast_main`` runs it (never touching another store's online tables): the configuration
    is rendered into a file of its own for the run. ``feast ui`` listens on 127.0.0.1 unless
    told otherwise (Feast's default is every interface)."""
    settings = settings or Settings()
    if args[:1] == ["ui"] and not {"-h", "--host"} & set(args):
        args = [*args, "--host", "127.0.0.1"]
    feast_dir = settings.state_dir / "feast"
    feast_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=feast_dir, prefix="feature_store.", suffix=".yaml", delete=False
    ) as file:
        yaml.safe_dump(repo_config_dict(settings), file, sort_keys=False)
    try:
        return subprocess.run(
            [sys.executable, "-m", "jobs.features.feast_main", file.name, *args],
            env={**os.environ, **repo_env(settings)},
            check=True,
            **run,
        )
    finally:
        os.unlink(file.name)


def apply(settings: Settings | None = None) -> None:
    """``feast apply``: register the repository's definitions (idempotent). Run as the CLI in
    its own process: Feast's apply changes the working directory and imports the repository's
    modules by name."""
    feast_cli(["apply"], settings, capture_output=True, text=True)
