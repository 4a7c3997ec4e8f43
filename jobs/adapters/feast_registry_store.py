"""Feast's file registry, written atomically.

Feast 0.67's ``FileRegistryStore`` rewrites the registry file in place (truncate, then write).
A task reading the registry at that moment parses an empty or partial file: `make run` saw a
`score` task fail with "Feature service flight_disruption_v1 does not exist" while a
`materialize` task recorded its interval in the registry. This store writes a temporary file
beside the registry and renames it over the old one, so a reader sees one whole version or
the other.

- Replaces: Feast's ``FileRegistryStore`` (the file registry's writer).
- Why: a ``score`` task read a half-written registry during ``materialize`` (``make run``);
  ``tests/features/test_feature_store.py`` reads while 200 rewrites run.
- Written for: Feast 0.67.
- Back to stock: drop ``registry_store_type`` from the registry in
  ``feature_repo/feature_store.yaml`` (the jobs take the registry's options from that file).
"""

from __future__ import annotations

import os
import tempfile
import uuid

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto
from feast.utils import _utc_now


class AtomicFileRegistryStore(FileRegistryStore):
    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(_utc_now())
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".registry-", dir=self._filepath.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(registry_proto.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self._filepath)  # atomic on POSIX filesystems
        except BaseException:
            os.unlink(temporary)
            raise
