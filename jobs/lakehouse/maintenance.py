"""Table maintenance: compact small files, vacuum unreferenced ones, checkpoint, record it all.

What a day's writes leave behind: every stage replaces its day's partitions, so each run adds
a few small files per table and removes the ones it replaces (the removed files stay on disk,
for time travel); merges rewrite the small dimension tables; each write adds a commit to the
log; and a write killed between writing its Parquet files and committing them (``kill -9``, a
lost worker) leaves files no commit ever mentions. Nothing else ever deletes any of them.

For every Delta table under the lakehouse (``<lakehouse>/<layer>/<table>`` with a ``_delta_log``:
every table the code declares that has been written, the per-service ``ml.served_features__*``
ones included), local or on S3 (delta-rs and pyarrow read the ``AWS_*`` variables
``jobs/common/storage.py`` exports), :func:`run`:

1. **raises the table's retention properties** if the window is longer than them
   (``delta.deletedFileRetentionDuration``, 7 days by default: a checkpoint forgets older
   removals, and a full vacuum would then judge those files by their age alone;
   ``delta.logRetentionDuration``, 30 days: older commits are deleted with the log). A metadata
   commit, made once, when the setting is raised;
2. **compacts** each partition holding two files or more (``optimize.compact``: rows and their
   order unchanged, one commit per group of partitions). A partition with a file written within
   ``maintenance_quiet_hours`` is left for the next run: a nightly run may still be writing it;
3. **vacuums** in delta-rs's *full* mode, with ``maintenance_retention_hours``: deletes the files
   a commit removed longer ago than the window (replaced partitions, compacted small files) and
   the files no commit ever referenced once they are older than the window (a killed write's
   orphans; a write in progress is younger). Delta-rs's default *lite* mode only looks at files
   the log removed, and would leave the orphans forever. Every version committed within the
   window keeps its files: time travel to it keeps working;
4. **checkpoints** the table at its newest version (readers replay only the commits after it)
   and deletes commit files older than the log retention (``cleanup_metadata``);
5. **records** one row per table in ``ops.maintenance`` and logs a summary.

A table's *first* write killed before its first commit leaves data files in a folder with no
Delta log: no table yet, so nothing above sees them. They are harmless (a reader of the table
that a later write creates there reads only what its log adds; those files are then that
table's orphans, and step 3 deletes them), but a table no later write creates would keep them
forever: :func:`run` also deletes the data files of such folders (``<layer>/<table>`` holding
``*.parquet`` and no log) once they are older than the window, as step 3 deletes a table's
orphans, and removes the folders they leave empty; recorded in ``ops.maintenance`` like a table
(``vacuumed_files``, the detail saying it has no log).

**Concurrent writers.** Delta commits are optimistic: delta-rs checks a compaction's commit
against the commits made since it read the table. A writer that appended meanwhile does not
conflict (its new files are not touched); one that replaced or merged a partition being
compacted does, and the compaction's commit fails with ``CommitFailedError``, having changed
nothing: recorded as ``conflict``, logged, not a failure; the next run compacts that partition.
The other way round, a writer whose snapshot predates a compaction of *its* partition fails its
commit the same way and retries (``DeltaRsTables``' writes retry a failed commit, re-reading the
table; a stage that still fails is retried by Airflow). Partitions of other days never conflict.
The quiet hours and the DAG's schedule (after the night's deadline) keep both rare. Vacuum and
checkpoints commit nothing a writer can conflict with. With the Spark-native backend on S3,
Spark's single-driver log store assumes no other process commits: run maintenance (a
delta-rs process) only while no stage runs there.

Any other error fails that table (recorded as ``failed``, with the error); the other tables are
still maintained, and then the run raises :class:`MaintenanceFailed` so that the task is
retried and, in the end, alerts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError

from jobs.common import storage
from jobs.common.delta.base import commit_metadata
from jobs.common.settings import Settings
from jobs.lakehouse.tables import MAINTENANCE

log = logging.getLogger(__name__)

# What Delta assumes when a table sets no property.
TOMBSTONE_RETENTION = ("delta.deletedFileRetentionDuration", dt.timedelta(days=7))
LOG_RETENTION = ("delta.logRetentionDuration", dt.timedelta(days=30))
_UNITS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
}


class MaintenanceFailed(RuntimeError):
    """Some tables could not be maintained; the others were, and each table's outcome is in
    ``ops.maintenance``. Not an input error: the task is retried."""


@dataclasses.dataclass
class TableReport:
    """One row of ``ops.maintenance``."""

    run_date: dt.date
    run_id: str
    table_name: str
    retention_hours: int
    started_at: dt.datetime
    status: str = "ok"
    detail: str | None = None
    version_before: int | None = None
    version_after: int | None = None
    files_before: int | None = None
    files_after: int | None = None
    bytes_before: int | None = None
    bytes_after: int | None = None
    partitions_compacted: int = 0
    partitions_deferred: int = 0
    files_removed: int = 0
    files_added: int = 0
    bytes_removed: int = 0
    bytes_added: int = 0
    vacuumed_files: int = 0
    vacuumed_bytes: int = 0
    checkpoint_version: int | None = None
    log_files_removed: int = 0
    duration_s: float = 0.0

    @classmethod
    def starting(
        cls, name: str, run_id: str, retention_hours: int, run_started: dt.datetime | None
    ) -> TableReport:
        """The report of a table's maintenance that starts now (dated by the run's start)."""
        started_at = dt.datetime.now(dt.UTC)
        return cls(
            run_date=(run_started or started_at).date(),
            run_id=run_id,
            table_name=name,
            retention_hours=int(retention_hours),
            started_at=started_at,
        )

    def note(self, status: str, detail: str) -> None:
        self.status = "failed" if "failed" in (self.status, status) else status
        self.detail = f"{self.detail}; {detail}" if self.detail else detail


def run(
    settings: Settings,
    run_id: str | None = None,
    *,
    tables: Sequence[str] | None = None,
    retention_hours: int | None = None,
    quiet_hours: float | None = None,
    keep_versions: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Maintain every Delta table under the lakehouse (or ``tables``, by name), record what
    was done in ``ops.maintenance``; returns the summary. ``retention_hours`` and
    ``quiet_hours`` override the settings (tests, a deliberate clean-up: any value is taken).
    ``keep_versions`` (table name -> versions) pins versions older than the window: vacuum
    keeps their files (e.g. the inputs a registered model recorded, for `model reproduce`)."""
    retention = settings.maintenance_retention_hours if retention_hours is None else retention_hours
    quiet = settings.maintenance_quiet_hours if quiet_hours is None else quiet_hours
    started_at = dt.datetime.now(dt.UTC)
    run_id = run_id or f"manual__maintenance__{started_at:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:6]}"
    names = list(tables) if tables is not None else discover(settings)
    unlogged = unlogged_folders(settings, names if tables is not None else None)
    names = [name for name in names if name not in unlogged]
    log.info(
        "maintenance %s: %d tables under %s, retention %dh, quiet %.1fh",
        run_id,
        len(names),
        settings.lakehouse,
        retention,
        quiet,
    )
    pins = keep_versions or {}
    reports = [
        maintain_table(
            settings.table_uri(name), name, retention, quiet, run_id, started_at, pins.get(name)
        )
        for name in names
    ]
    reports += [
        clear_unlogged(settings.table_uri(name), name, retention, run_id, started_at)
        for name in unlogged
    ]
    record(settings, reports, run_id)
    result = summarise(reports)
    log.info(
        "maintenance %s: %d tables (%d conflicts, %d failed), %s -> %s files, %d small files "
        "compacted into %d in %d partitions (%d deferred), %d unreferenced files vacuumed "
        "(%s), in %.1fs",
        run_id,
        result["tables"],
        result["conflicts"],
        len(result["failed"]),
        f"{result['files_before']:,}",
        f"{result['files_after']:,}",
        result["files_removed"],
        result["files_added"],
        result["partitions_compacted"],
        result["partitions_deferred"],
        result["vacuumed_files"],
        _size(result["vacuumed_bytes"]),
        result["duration_s"],
    )
    if result["failed"]:
        raise MaintenanceFailed(
            f"maintenance {run_id} failed for {', '.join(result['failed'])} (the other tables "
            f"were maintained; see {MAINTENANCE.name} and the log): "
            + "; ".join(f"{r.table_name}: {r.detail}" for r in reports if r.status == "failed")
        )
    return result


def discover(settings: Settings) -> list[str]:
    """``layer.table`` of every Delta table under the lakehouse, sorted."""
    from pyarrow import fs as pafs

    filesystem, root = storage.filesystem(settings.lakehouse)
    if filesystem.get_file_info(root).type != pafs.FileType.Directory:
        return []
    names = []
    for layer in _folders(filesystem, root):
        for table in _folders(filesystem, layer.path):
            name = f"{layer.base_name}.{table.base_name}"
            if DeltaTable.is_deltatable(settings.table_uri(name)):
                names.append(name)
    return sorted(names)


def unlogged_folders(settings: Settings, names: Sequence[str] | None = None) -> list[str]:
    """``layer.table`` of every folder under the lakehouse (or of ``names``) that holds data
    files and no Delta log: a first write killed before its commit (see the module's doc)."""
    from pyarrow import fs as pafs

    filesystem, root = storage.filesystem(settings.lakehouse)
    if names is None:
        if filesystem.get_file_info(root).type != pafs.FileType.Directory:
            return []
        names = [
            f"{layer.base_name}.{table.base_name}"
            for layer in _folders(filesystem, root)
            for table in _folders(filesystem, layer.path)
        ]
    found = []
    for name in names:
        uri = settings.table_uri(name)
        if not DeltaTable.is_deltatable(uri) and _data_files(uri):
            found.append(name)
    return sorted(found)


def _data_files(uri: str) -> list:
    """The ``*.parquet`` files under a table folder, outside its log."""
    from pyarrow import fs as pafs

    filesystem, root = storage.filesystem(uri)
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return [
        info
        for info in filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File
        and info.base_name.endswith(".parquet")
        and "_delta_log" not in info.path[len(root) :].split("/")
    ]


def clear_unlogged(
    uri: str, name: str, retention_hours: int, run_id: str, run_started: dt.datetime
) -> TableReport:
    """Delete the data files older than the window of a folder with no Delta log (a first write
    killed before its commit; a write in progress is younger), and the folders they leave
    empty; what happened, in a report (never raises)."""
    from pyarrow import fs as pafs

    report = TableReport.starting(name, run_id, retention_hours, run_started)
    clock = time.perf_counter()
    try:
        filesystem, root = storage.filesystem(uri)
        files = _data_files(uri)
        cutoff = report.started_at - dt.timedelta(hours=retention_hours)
        old = [info for info in files if info.mtime is not None and info.mtime < cutoff]
        for info in old:
            filesystem.delete_file(info.path)
        report.files_before, report.files_after = len(files), len(files) - len(old)
        report.vacuumed_files = len(old)
        report.vacuumed_bytes = sum(info.size or 0 for info in old)
        if old and isinstance(filesystem, pafs.LocalFileSystem):
            _remove_empty_folders(root)
        report.note(
            "ok",
            f"no Delta log (a first write killed before its commit): {len(old)} data files "
            f"older than the window deleted, {len(files) - len(old)} younger kept",
        )
    except Exception as exc:  # recorded, and the run fails after the other tables
        log.exception("maintenance of %s (no Delta log) failed", name)
        report.note("failed", f"{type(exc).__name__}: {exc}")
    report.duration_s = round(time.perf_counter() - clock, 3)
    level = logging.WARNING if report.vacuumed_files or report.status != "ok" else logging.INFO
    log.log(level, "%s: %s; %.2fs", name, report.detail, report.duration_s)
    return report


def _remove_empty_folders(root: str) -> None:
    """Remove the empty folders under ``root`` and ``root`` if it ends empty (a folder a
    writer fills meanwhile is not empty, and stays)."""
    import contextlib
    import os

    for folder, _, _ in sorted(os.walk(root), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):  # not empty
            os.rmdir(folder)


def _folders(filesystem, path: str) -> list:
    from pyarrow import fs as pafs

    infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=False))
    return [
        info
        for info in infos
        if info.type == pafs.FileType.Directory and not info.base_name.startswith(("_", "."))
    ]


def maintain_table(
    uri: str,
    name: str,
    retention_hours: int,
    quiet_hours: float,
    run_id: str,
    run_started: dt.datetime | None = None,
    keep_versions: Sequence[int] | None = None,
) -> TableReport:
    """Compact, vacuum and checkpoint one table; what happened, in a report (never raises)."""
    report = TableReport.starting(name, run_id, retention_hours, run_started)
    clock = time.perf_counter()
    try:
        table = DeltaTable(uri)
        actions = _actions(table)
        report.version_before = table.version()
        report.files_before = actions.num_rows
        report.bytes_before = _total(actions, "size_bytes")
        try:
            _ensure_retention(table, retention_hours, run_id)
        except CommitFailedError as exc:
            # Vacuum must not run before the properties are raised (see the module's doc).
            report.note("conflict", f"raising the retention properties lost to a writer: {exc}")
        else:
            _compact(uri, table, actions, quiet_hours, run_id, report)
            _vacuum(uri, retention_hours, run_id, report, keep_versions)
            _checkpoint(uri, report)
        table = DeltaTable(uri)
        after = _actions(table)
        report.version_after = table.version()
        report.files_after = after.num_rows
        report.bytes_after = _total(after, "size_bytes")
    except Exception as exc:  # recorded, and the run fails after the other tables
        log.exception("maintenance of %s failed", name)
        report.note("failed", f"{type(exc).__name__}: {exc}")
    report.duration_s = round(time.perf_counter() - clock, 3)
    log.info(
        "%s: %s; %s -> %s files; compacted %d files into %d in %d partitions (%d deferred); "
        "vacuumed %d files (%s); checkpoint at v%s; %.2fs",
        name,
        report.status + (f" ({report.detail})" if report.detail else ""),
        report.files_before,
        report.files_after,
        report.files_removed,
        report.files_added,
        report.partitions_compacted,
        report.partitions_deferred,
        report.vacuumed_files,
        _size(report.vacuumed_bytes),
        report.checkpoint_version,
        report.duration_s,
    )
    return report


# --- 1. retention properties ---------------------------------------------------------------
def _ensure_retention(table: DeltaTable, retention_hours: int, run_id: str) -> dict[str, str]:
    """Raise the table's tombstone and log retention to the window where they are shorter."""
    wanted = dt.timedelta(hours=retention_hours)
    configuration = table.metadata().configuration
    change = {
        prop: f"interval {int(retention_hours)} hours"
        for prop, default in (TOMBSTONE_RETENTION, LOG_RETENTION)
        if interval(configuration.get(prop), default) < wanted
    }
    if change:
        table.alter.set_table_properties(change, commit_properties=_commit(run_id, "retention"))
        log.info("%s: set %s (the retention window)", table.table_uri, change)
    return change


def interval(text: str | None, default: dt.timedelta) -> dt.timedelta:
    """A Delta interval property (``interval 7 days``) as a timedelta; ``default`` when unset
    or not understood."""
    if not text:
        return default
    match = re.fullmatch(r"\s*(?:interval\s+)?(\d+)\s*([a-z]+?)s?\s*", text, re.IGNORECASE)
    if not match or match.group(2).lower() not in _UNITS:
        log.warning("retention property %r not understood; taken as %s", text, default)
        return default
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])


# --- 2. compaction -------------------------------------------------------------------------
def plan_compaction(
    actions: pa.Table, partition_columns: Sequence[str], newest_allowed_ms: int
) -> tuple[list[list[tuple] | None], int, int]:
    """(partition filters to compact, one per group of partitions; partitions to compact;
    partitions deferred). A partition is compacted when it holds two files or more, none
    modified after ``newest_allowed_ms``. Partitions sharing all values but the last column's
    go in one filter (``a = x AND b IN (...)``): one commit per group, exactly these
    partitions."""
    columns = [f"partition.{c}" for c in partition_columns]
    files: dict[tuple, list[int]] = defaultdict(list)
    rows = actions.select(["modification_time", *columns]).to_pylist()
    for row in rows:
        key = tuple(_partition_text(row[c]) for c in columns)
        files[key].append(row["modification_time"])
    ready, deferred = [], 0
    for key, times in files.items():
        if len(times) < 2:
            continue
        if max(times) > newest_allowed_ms or None in key:  # a null: no filter can name it
            deferred += 1
        else:
            ready.append(key)
    if not partition_columns:
        return ([None] if ready else []), len(ready), deferred
    groups: dict[tuple, list[str]] = defaultdict(list)
    for key in ready:
        groups[key[:-1]].append(key[-1])
    filters = [
        [
            *((c, "=", v) for c, v in zip(partition_columns[:-1], prefix, strict=True)),
            (partition_columns[-1], "in", sorted(values)),
        ]
        for prefix, values in sorted(groups.items())
    ]
    return filters, len(ready), deferred


def _compact(
    uri: str,
    table: DeltaTable,
    actions: pa.Table,
    quiet_hours: float,
    run_id: str,
    report: TableReport,
) -> None:
    newest_allowed = int((time.time() - quiet_hours * 3600) * 1000)
    partition_columns = table.metadata().partition_columns
    filters, _, deferred = plan_compaction(actions, partition_columns, newest_allowed)
    report.partitions_deferred = deferred
    for group in filters:
        snapshot = compaction_snapshot(uri)
        try:
            metrics = snapshot.optimize.compact(
                partition_filters=group, commit_properties=_commit(run_id, "compact")
            )
        except CommitFailedError as exc:
            # A writer replaced or merged one of these partitions meanwhile: nothing was
            # committed, the writer's data stands; the next run compacts them.
            log.warning("%s: compaction of %s skipped, a writer was first: %s", uri, group, exc)
            report.note("conflict", f"compaction of {_describe(group)} lost to a writer")
            continue
        removed, added = _json(metrics.get("filesRemoved")), _json(metrics.get("filesAdded"))
        report.partitions_compacted += int(metrics.get("partitionsOptimized", 0))
        report.files_removed += int(metrics.get("numFilesRemoved", 0))
        report.files_added += int(metrics.get("numFilesAdded", 0))
        report.bytes_removed += int(removed.get("totalSize", 0))
        report.bytes_added += int(added.get("totalSize", 0))


def compaction_snapshot(uri: str) -> DeltaTable:
    """The snapshot a compaction plans from and commits against (the tests put a concurrent
    writer's commit between the two here)."""
    return DeltaTable(uri)


# --- 3. vacuum -----------------------------------------------------------------------------
def _vacuum(
    uri: str,
    retention_hours: int,
    run_id: str,
    report: TableReport,
    keep_versions: Sequence[int] | None = None,
) -> None:
    table = DeltaTable(uri)
    prop, default = TOMBSTONE_RETENTION
    tombstones = interval(table.metadata().configuration.get(prop), default)
    options = {
        "retention_hours": int(retention_hours),
        # below the table's own retention only by an explicit choice (a test, a clean-up)
        "enforce_retention_duration": dt.timedelta(hours=retention_hours) >= tombstones,
        "full": True,  # also the files no commit references: a killed write's
        "keep_versions": sorted(keep_versions) if keep_versions else None,
    }
    candidates = table.vacuum(dry_run=True, **options)
    if not candidates:  # a vacuum that deletes nothing still commits: not made
        return
    sizes = _sizes(uri, candidates)
    deleted = table.vacuum(dry_run=False, commit_properties=_commit(run_id, "vacuum"), **options)
    report.vacuumed_files = len(deleted)
    report.vacuumed_bytes = sum(sizes.get(path, 0) for path in deleted)


def _sizes(uri: str, paths: Sequence[str]) -> dict[str, int]:
    filesystem, root = storage.filesystem(uri)
    infos = filesystem.get_file_info([f"{root.rstrip('/')}/{path}" for path in paths])
    return {path: info.size or 0 for path, info in zip(paths, infos, strict=True)}


# --- 4. checkpoint -------------------------------------------------------------------------
def _checkpoint(uri: str, report: TableReport) -> None:
    table = DeltaTable(uri)
    table.create_checkpoint()
    report.checkpoint_version = table.version()
    before = _log_files(uri)
    table.cleanup_metadata()  # commits older than the log retention, before the checkpoint
    report.log_files_removed = len(before - _log_files(uri))


def _log_files(uri: str) -> set[str]:
    from pyarrow import fs as pafs

    filesystem, root = storage.filesystem(uri)
    selector = pafs.FileSelector(f"{root.rstrip('/')}/_delta_log", recursive=False)
    return {info.base_name for info in filesystem.get_file_info(selector)}


# --- 5. the record -------------------------------------------------------------------------
def record(settings: Settings, reports: Sequence[TableReport], run_id: str) -> None:
    """Append the reports to ``ops.maintenance`` (with delta-rs whatever the backend: the rows
    are Arrow already, no Spark session is needed)."""
    from jobs.common.delta.rs import DeltaRsTables

    if not reports:
        return
    data = pa.Table.from_pylist(
        [dataclasses.asdict(r) for r in reports], schema=MAINTENANCE.arrow_schema
    )
    DeltaRsTables(None, settings).append(MAINTENANCE, data, run_id=run_id)  # type: ignore[arg-type]


def summarise(reports: Sequence[TableReport]) -> dict[str, Any]:
    totals = (
        "files_before",
        "files_after",
        "partitions_compacted",
        "partitions_deferred",
        "files_removed",
        "files_added",
        "vacuumed_files",
        "vacuumed_bytes",
        "log_files_removed",
    )
    return {
        "tables": len(reports),
        "conflicts": sum(r.status == "conflict" for r in reports),
        "failed": [r.table_name for r in reports if r.status == "failed"],
        **{key: sum(getattr(r, key) or 0 for r in reports) for key in totals},
        "duration_s": round(sum(r.duration_s for r in reports), 3),
        "per_table": {
            r.table_name: {
                "status": r.status,
                "files": [r.files_before, r.files_after],
                "compacted": r.files_removed,
                "vacuumed": r.vacuumed_files,
                "version": r.version_after,
            }
            for r in reports
        },
    }


# --- helpers -------------------------------------------------------------------------------
def _actions(table: DeltaTable) -> pa.Table:
    return pa.table(table.get_add_actions(flatten=True))


def _total(actions: pa.Table, column: str) -> int:
    return int(sum(v or 0 for v in actions.column(column).to_pylist())) if actions.num_rows else 0


def _commit(run_id: str, operation: str) -> CommitProperties:
    return CommitProperties(custom_metadata={"userMetadata": commit_metadata(run_id, operation)[1]})


def _partition_text(value: Any) -> str | None:
    """A partition value as the log writes it (what a partition filter compares with)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def _describe(group: list[tuple] | None) -> str:
    if group is None:
        return "the table"
    return " AND ".join(f"{c} {op} {v}" for c, op, v in group)


def _json(value: Any) -> dict:
    import json

    if isinstance(value, str):
        return json.loads(value)
    return dict(value or {})


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
