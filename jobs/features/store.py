"""Open Nightjar's Feast repository with the platform's settings.

``feature_repo/feature_store.yaml`` takes its registry and online store from environment
variables; :func:`feast_env` renders them from :class:`Settings`, and :func:`feature_store`
and :func:`feast_cli` hand them to Feast, so the CLI and the jobs share one configuration.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from jobs.common.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)
FEATURE_REPO = PROJECT_ROOT / "feature_repo"
FEATURE_SERVICE = "flight_disruption_v1"


def _absolute(uri: str) -> str:
    return uri if "://" in uri else str(Path(uri).resolve())


# Feast warns that the flag "typically has no effect" on a file registry; it does (the serving
# gate reads it from any registry), so the warning is noise in every task log.
logging.getLogger("feast.repo_config").addFilter(
    lambda record: "serve_features_while_materializing" not in record.getMessage()
)


def online_store_path(settings: Settings) -> str | None:
    """The SQLite online store's file (None for Redis)."""
    if settings.feast_online_store == "redis":
        return None
    return str(settings.state_dir / "feast" / "online.db")


def feast_env(settings: Settings) -> dict[str, str]:
    """The environment ``feature_store.yaml`` is rendered with (JSON is YAML flow syntax)."""
    feast_dir = settings.state_dir / "feast"
    registry = settings.feast_registry or str(feast_dir / "registry.db")
    registry_config = {
        "registry_type": "sql" if "://" in registry else "file",
        "path": registry,
        "cache_ttl_seconds": 60,
        # A daily run's `materialize` marks the views MATERIALIZING in the registry; without
        # this, a training or scoring run reading features at that moment is refused
        # (Feast 0.67; found by `make run`). Offline reads use the Delta snapshot anyway.
        "serve_features_while_materializing": True,
    }
    if registry_config["registry_type"] == "file":  # rewritten atomically (registry_store.py)
        registry_config["registry_store_type"] = (
            "jobs.adapters.feast_registry_store.AtomicFileRegistryStore"
        )
    if settings.feast_online_store == "redis":
        # skip_dedup: a re-materialized correction carries the same timestamp as the value it
        # corrects; Redis would keep the old one (jobs/features/materialize.py keeps the order)
        online = {"type": "redis", "connection_string": settings.feast_redis, "skip_dedup": True}
    else:
        online = {"type": "sqlite", "path": online_store_path(settings)}
    return {
        "NIGHTJAR_FEAST_REGISTRY_CONFIG": json.dumps(registry_config),
        "NIGHTJAR_FEAST_ONLINE_STORE_CONFIG": json.dumps(online),
        # the feature repo's modules read the lakehouse location from the settings
        "NIGHTJAR_STATE_DIR": str(settings.state_dir),
        "NIGHTJAR_LAKEHOUSE_URI": _absolute(settings.lakehouse),
        **{"NIGHTJAR_ROLLING_WINDOWS_DAYS": json.dumps(list(settings.rolling_windows_days))},
    }


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
    """The store as its registry stands. The environment is set only while Feast reads
    ``feature_store.yaml``, so other settings are untouched."""
    from feast import FeatureStore

    (settings.state_dir / "feast").mkdir(parents=True, exist_ok=True)
    with _environment(feast_env(settings)):
        return FeatureStore(repo_path=str(FEATURE_REPO))


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
    online store (a copied state folder's registry names the original's, by absolute path)."""
    online = store.config.online_store
    here = online.path if online.type == "sqlite" else None
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
    ``feast_main`` runs it (never touching another store's online tables). ``feast ui``
    listens on 127.0.0.1 unless told otherwise (Feast's default is every interface)."""
    settings = settings or Settings()
    if args[:1] == ["ui"] and not {"-h", "--host"} & set(args):
        args = [*args, "--host", "127.0.0.1"]
    (settings.state_dir / "feast").mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "jobs.features.feast_main", "--chdir", str(FEATURE_REPO), *args],
        env={**os.environ, **feast_env(settings)},
        check=True,
        **run,
    )


def apply(settings: Settings | None = None) -> None:
    """``feast apply``: register the repository's definitions (idempotent). Run as the CLI in
    its own process: Feast's apply changes the working directory and imports the repository's
    modules by name."""
    feast_cli(["apply"], settings, capture_output=True, text=True)
