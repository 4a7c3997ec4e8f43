"""`make bench-chaos`: the crash harness. Every writing stage's process is killed with SIGKILL at
seeded random points, the state is checked, the stage is re-run and its result compared with a
clean run's.

Its own platform (state folder ``.state/bench-chaos/platform``, a Spark Connect server on port
25052, metrics off), so it never touches another run. Settings sized for six days, as the
lifecycle test's: the first model is requested once 5 days are labeled (1 validation and 1 test
day, minimum ROC AUC 0.5), a drift day (30% of the features, uncalibrated) requests a
retraining, no cooldown.

**The clean reference.** From an empty state: 2013-03-01..03-04 through the lakehouse and the
features as one interval (the history DAG's way), then ``score``, ``monitor`` and
``request_retrain`` for each of those nights; 2013-03-05 through every nightly stage (its policy
requests the bootstrap model); training #1 (serves it); 2013-03-06 through every nightly stage;
training #2 (a champion exists, so the challenger is compared with it). Each stage runs as the
DAG's tasks do, in a process of its own (``nightjar stage <stage> --date D``); a training runs
what the ``nightjar_training`` DAG's task runs when a request's Asset event starts it
(``jobs.training.requests.train_pending(requested=True)``: every pending request served, then
marked served; nothing to do, a skip, when none is pending, as for a retry of that task).
``nightjar model train`` is not that: with nothing pending it trains anyway (a manual training),
so re-run after a kill that came once the requests were served (the process printing its
result, or exiting) it would train a second version.
Before each killed step the state folder is copied aside; after it, the content of everything
is kept (below) with the step's wall time and when it first and last wrote (an output's
fingerprint changed, polled every 0.1 s).

**The kills.** For each target (``--stages``), ``--kills`` times (default 20, ``--seed``):
restore the copy taken before the step, start the step, SIGKILL its process group after a delay
drawn uniformly within the step's wall time (half of the kills) or within its writes (from
0.25 s before its first write in the clean run to 0.25 s after its last: the other half); the
wall time is the median of the step's latest clean runs (the reference's, then the re-runs'),
as the machine's load moves it, and the writes' times are scaled with it.
Then

1. *check*: every Delta table under the lakehouse opens and reads whole at its latest version
   (else **corrupt**, as is MLflow's SQLite store failing its integrity check once a killed
   writer's journal is rolled back, in a copy; a data file no commit ever added is a
   **leftover**, as is a table folder with data files and no log yet, a landing staging
   folder, an MLflow run left RUNNING or a registered version no decision names); every
   declared key is unique (else **duplicate**); the bookkeeping agrees (else
   **inconsistent**, see :func:`bookkeeping`): reconciliation against bronze, silver and
   quarantine, the quality gates' row counts against their tables, every gold table holding
   each gold day, predictions and served features against the timetable, monitoring rows
   against the predictions, the online store serving the newest day its registry records,
   the aliases where the decision log says;
2. *re-run* the step to completion (it must succeed) and check again; a process that had
   finished before its kill is not re-run (a task that succeeded is not retried; a second
   training would be a second training, not a retry). The platform cleans what a killed
   process left at the step's next run (landing's staging folders, training's RUNNING runs),
   but for the data files no commit added: its table maintenance deletes those once they are
   older than its window (a write in progress is younger). So the orphans found after the
   re-run are given to the platform's maintenance (``jobs/lakehouse/maintenance.run``) on a
   copy of their tables, dated back past its window; those it deletes are counted apart,
   *left to maintenance*, and only those it leaves stay leftovers;
3. *compare* the content with the clean run's after the same step (:func:`content`).

Targets: ``land``, ``bronze`` (with its gate), ``silver``, ``gold``, ``materialize``, ``score``,
``monitor`` (night of 2013-03-06), ``request_retrain`` (2013-03-05, whose policy makes the
bootstrap request), ``training`` (training #2), and ``spark-connect``: the Spark Connect server
is killed during a Spark stage of 2013-03-06 (bronze, silver, gold or score, drawn), restarted
at once with ``services.up``, and the stage's process is left to fail or finish (killed if it
is still running 5 minutes later). ``check_silver`` and ``check_gold`` can be named too.

**What "equal to a clean run" means.** Every Delta table's rows (sorted, floats to 1e-9
relative), less the columns that say which run or when (run ids, Airflow and MLflow run ids,
``decided_at``, ``recorded_at``, the report path: ``tooling/lakehouse_diff.RUN_METADATA``);
each landed file's bytes; the online store's rows less ``created_ts``; each feature view's
newest materialized time; the registry's aliases; the Evidently workspace's runs (project, name,
timestamp, values); the monitoring reports' file names. Model versions are compared by their
place in the decision log (the first decided version, the second, ...), not their number: a
killed training may have registered a version no decision names (counted as a leftover), and
the re-run's version then has the next number.

A **lost request** is a retrain request the clean run recorded that the re-run's state lacks,
one that stays pending after a re-run training, or one whose Asset event no re-run carries (a
request a killed ``request_retrain`` recorded must come back from the re-run, which re-emits it).

**Kills after writes** (``--after-writes``, kept apart: ``seed-<seed>-after-writes``): the
timed kills rarely fall between two commits of a stage that commits its tables within a
fraction of a second (silver's five). These kill a step as soon as it has changed ``k`` of the
``n`` outputs its clean run changed (``k`` drawn in 1..n-1, polled every 5 ms), for the steps
with two outputs or more.

**Kept and resumed.** The clean run is kept under ``reference/`` with its :func:`code_key`
(a digest of the code under test, the quality suites, the services' set-up and the lock, not
the commit): a later call on the same code reuses it (``--rebuild-reference`` rebuilds it).
Each kill's result is saved as it ends, to ``kills/<code key>/seed-<seed>/<target>/<i>.json``
(the control run to ``control.json``): a later call with the same seed on the same code goes on
where an earlier one stopped (``--stop-after`` minutes, an interruption), since kill ``i`` of a
target always draws from its own generator (``seed/target/i``), and counts every kill kept;
kills run in rounds (kill ``i`` of every target, then ``i + 1``), so a call stopped early has
covered the targets alike. ``--fresh`` discards the kept kills of this seed and code.

Prints, per target: kills, kills that landed mid-write (some of the step's outputs committed,
not all), kills after which the process had finished anyway, corrupt tables, duplicate keys,
inconsistencies after the kill (healed by the re-run or not), lost requests, re-runs equal to
the clean run, leftovers after the re-run, orphans left to maintenance, wall time; and one
control re-run per target without a kill (a re-run that differs without a kill is not the
crash's doing). Saved to ``.state/bench-chaos/chaos.json``, each process's output under
``.state/bench-chaos/logs``.

The steps run this checkout's code (its folder leads ``PYTHONPATH``), so the harness can run
from a worktree pinned at a commit while the main checkout changes.

    make bench-chaos                                   # 20 kills per target (hours)
    .venv/bin/python -m benchmarks.chaos --kills 2 --stages silver,training
    .venv/bin/python -m benchmarks.chaos --stop-after 120     # then the same again goes on
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import pickle
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import ROOT, isolate

DEFAULT_STATE = ROOT / ".state" / "bench-chaos"
DEFAULT_PORT = 25052
ONE_DAY = dt.timedelta(days=1)
FIRST, BOOTSTRAP, NIGHT = dt.date(2013, 3, 1), dt.date(2013, 3, 5), dt.date(2013, 3, 6)
HISTORY = ("land", "bronze", "silver", "check_silver", "gold", "check_gold", "materialize")
ML_NIGHT = ("score", "monitor", "request_retrain")
NIGHTLY = (*HISTORY, *ML_NIGHT)
# The lifecycle test's settings (tests/e2e/test_lifecycle.py), without the cooldown: a model
# within five days, a drift request the night after.
SETTINGS_ENV = {
    "NIGHTJAR_INITIAL_TRAINING_DAYS": "5",
    "NIGHTJAR_TRAINING_WINDOW_DAYS": "8",
    "NIGHTJAR_VALIDATION_DAYS": "1",
    "NIGHTJAR_TEST_DAYS": "1",
    "NIGHTJAR_PROMOTE_MIN_ROC_AUC": "0.5",
    "NIGHTJAR_RETRAIN_DRIFT_SHARE": "0.3",
    "NIGHTJAR_RETRAIN_DRIFT_DAYS": "1",
    "NIGHTJAR_RETRAIN_COOLDOWN_DAYS": "0",
    "NIGHTJAR_DRIFT_CALIBRATE": "false",
    "NIGHTJAR_METRICS_ENABLED": "false",
    # sessions of killed clients are closed sooner (the least the settings allow)
    "NIGHTJAR_SPARK_CONNECT_IDLE_TIMEOUT_MINUTES": "6",
}
# what a snapshot of the state folder leaves out: the services' pid files and logs, Spark's
# scratch space, the upstream's cached files
NOT_STATE = ("run", "spark", "source_cache")
SPARK_STAGES = ("bronze", "silver", "gold", "score")  # where the Connect server is killed
SPARK_WAIT_S = 300  # how long a stage may go on after its server was killed
WRITE_WINDOW_SHARE = 0.5  # of the kills drawn within the step's writes, the rest anywhere in it
CLEAN_TRIES, CLEAN_RETRY_S = 3, 30  # a clean step that fails is tried again, as a task is


CODE_PATHS = ("jobs", "dags", "feature_repo")
# what a result depends on besides the harness: the code under test, the quality suites, the
# services' set-up, the locked libraries
REFERENCE_PATHS = (*CODE_PATHS, "expectations", "plugins", "tooling", "uv.lock", "pyproject.toml")
# what a kept clean run depends on in the harness (bump on a change to the steps' commands, to
# content() or to what it reads)
REFERENCE_FORMAT = 4


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True).stdout


def _tree_digest(paths: tuple[str, ...]) -> str:
    """A digest of ``paths`` as the working tree has them: their committed trees, the
    uncommitted changes to them and their untracked files (not which commit holds them)."""
    digest = hashlib.sha1()
    for path in paths:
        digest.update(path.encode() + b"=" + _git("rev-parse", f"HEAD:{path}").strip() + b"\n")
    digest.update(_git("diff", "HEAD", "--", *paths))
    for name in sorted(_git("ls-files", "--others", "--exclude-standard", "--", *paths).split()):
        digest.update(name + (ROOT / name.decode()).read_bytes())
    return digest.hexdigest()[:12]


def code_version() -> str:
    """The commit and a digest of the code under test (jobs/, dags/, feature_repo/, committed
    or not): a result is only about the code it ran."""
    return f"{_git('rev-parse', '--short', 'HEAD').decode().strip()}+{_tree_digest(CODE_PATHS)}"


def code_key() -> str:
    """What a clean reference and the kills' results are kept under: the same for any commit
    whose code under test, quality suites, services and libraries are the same (a commit that
    changes only the harness or the docs keeps them)."""
    return f"{_tree_digest(REFERENCE_PATHS)}-h{REFERENCE_FORMAT}"


# --- the steps -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    stage: str  # a pipeline stage, or "training"
    day: dt.date | None = None
    end: dt.date | None = None  # an interval's end (exclusive)

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "_").replace("#", "").replace(".", "")

    def command(self) -> list[str]:
        nightjar = str(Path(sys.executable).with_name("nightjar"))
        if self.stage == "training":  # the training DAG's task, started by a request's event
            return [sys.executable, "-c", TRAIN_REQUESTED]
        assert self.day is not None
        command = [nightjar, "stage", self.stage]
        command += ["--date", self.day.isoformat(), "--run-id", f"scheduled__{self.day}"]
        return command + (["--end", self.end.isoformat()] if self.end else [])


# dags/nightjar_training.py's task as a request's Asset event starts it (requested=True)
TRAIN_REQUESTED = """
import logging
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
from jobs.common.errors import StageSkipped
from jobs.common.settings import Settings
from jobs.training import requests, train
try:
    served = requests.train_pending(
        Settings(), "asset_triggered__chaos", "asset_triggered run", requested=True
    )
except StageSkipped as skipped:
    print(f"skipped: {skipped}")
else:
    print(train.describe(served.result), "served", served.request_ids)
"""


def timeline() -> list[Step]:
    history = [
        Step(f"{FIRST}..{BOOTSTRAP - ONE_DAY} {stage}", stage, FIRST, BOOTSTRAP)
        for stage in HISTORY
    ]
    days = [FIRST + dt.timedelta(days=i) for i in range((BOOTSTRAP - FIRST).days)]
    nights = [Step(f"{day} {stage}", stage, day) for day in days for stage in ML_NIGHT]
    fifth = [Step(f"{BOOTSTRAP} {stage}", stage, BOOTSTRAP) for stage in NIGHTLY]
    sixth = [Step(f"{NIGHT} {stage}", stage, NIGHT) for stage in NIGHTLY]
    return [
        *history,
        *nights,
        *fifth,
        Step("training #1", "training"),
        *sixth,
        Step("training #2", "training"),
    ]


TARGETS = {
    **{stage: f"{NIGHT} {stage}" for stage in (*HISTORY, "score", "monitor")},
    "request_retrain": f"{BOOTSTRAP} request_retrain",
    "training": "training #2",
}
DEFAULT_TARGETS = (
    "land",
    "bronze",
    "silver",
    "gold",
    "materialize",
    "score",
    "monitor",
    "request_retrain",
    "training",
    "spark-connect",
)


def killed_steps(targets: list[str]) -> list[str]:
    """The steps a run of ``targets`` kills (and so needs a copy of the state before)."""
    names = {TARGETS[t] for t in targets if t in TARGETS}
    if "spark-connect" in targets:
        names |= {f"{NIGHT} {stage}" for stage in SPARK_STAGES}
    return sorted(names)


# --- the platform ------------------------------------------------------------------------------
def configure(state: Path, port: int) -> None:
    """This harness's settings: its own state folder and ports, whatever the caller's
    environment says (every NIGHTJAR_ variable of the caller is dropped)."""
    isolate("chaos", port, folder=state, platform="platform", drop_caller=True)
    os.environ.update(SETTINGS_ENV)


def copy_state(source: Path, target: Path) -> None:
    """Replace ``target``'s state (all but NOT_STATE) with ``source``'s (``cp -a``: links,
    modes and times kept as ``shutil.copytree(symlinks=True)`` keeps them, in a seventh of its
    time)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in target.iterdir():
        if entry.name not in NOT_STATE:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    entries = [str(e) for e in sorted(source.iterdir()) if e.name not in NOT_STATE]
    if entries:
        subprocess.run(["cp", "-a", "-t", str(target), *entries], check=True)


def ensure_spark(settings) -> None:
    from tooling import services

    if services.pid_of(settings, "spark-connect") is None:
        services.up(settings, airflow=False)


@dataclasses.dataclass
class Ran:
    rc: int | None  # None: killed by the harness
    wall_s: float
    output: str  # the tail of its output


def _wait(proc, began, kill_after, spark_kill, watch, kill_when) -> int | None:
    """The step's exit status; None: killed by the harness (see :func:`run_step`)."""
    if kill_when is not None:
        while (rc := proc.poll()) is None:
            if kill_when():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return None
            time.sleep(0.005)
        return rc
    try:
        if watch is None:
            return proc.wait(timeout=kill_after)
        while (rc := proc.poll()) is None:
            watch(time.perf_counter() - began)
            time.sleep(0.1)
        return rc
    except subprocess.TimeoutExpired:
        if spark_kill is not None:
            spark_kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                return proc.wait(timeout=SPARK_WAIT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def run_step(
    step: Step,
    log: Path,
    kill_after: float | None = None,
    spark_kill: Callable[[], None] | None = None,
    watch: Callable[[float], None] | None = None,
    kill_when: Callable[[], bool] | None = None,
) -> Ran:
    """Run the step in a process group of its own, its output to ``log``. ``kill_after``: SIGKILL
    the group that many seconds after the start (if still running). ``spark_kill``: a callable
    run at that moment instead (the process is then left to end, within SPARK_WAIT_S).
    ``watch``: called with the seconds since the start every 0.1 s while the step runs.
    ``kill_when``: polled every 5 ms; SIGKILL the group once it answers True."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(
            step.command(),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        rc: int | None
        try:
            rc = _wait(proc, began, kill_after, spark_kill, watch, kill_when)
        except BaseException:  # the harness interrupted: the step does not outlive it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        wall = time.perf_counter() - began
    # a killed group's children (none expected) must not outlive it
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return Ran(rc, wall, log.read_text(errors="replace")[-3000:])


# --- what the state holds ---------------------------------------------------------------------
def _read_delta(path: Path):
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_table().to_pandas()


def delta_tables(settings) -> dict[str, Path]:
    root = Path(settings.lakehouse)
    return {
        f"{p.parent.parent.name}.{p.parent.name}": p.parent for p in root.glob("*/*/_delta_log")
    }


def version_ordinals(settings) -> dict[str, str]:
    """Each decided model version -> its place in the decision log (#1, #2, ...)."""
    path = delta_tables(settings).get("ml.model_decisions")
    if path is None:
        return {}
    log = _read_delta(path).sort_values("decided_at")
    trained = log[log.decision.isin(("promoted", "rejected"))].version.tolist()
    return {v: f"#{i}" for i, v in enumerate(dict.fromkeys(trained), start=1)}


VERSION_COLUMNS = (
    "version",
    "previous_champion",
    "champion_after",
    "model_version",
    "perf_model_version",
)


def _by_ordinal(value, ordinals: dict[str, str]):
    if not isinstance(value, str) or value in ("None", "nan", ""):
        return value
    return ",".join(ordinals.get(v, f"unlogged v{v}") for v in value.split(","))


def _sorted(frame):
    keys = frame.apply(lambda c: c.round(9) if c.dtype.kind == "f" else c.astype(str))
    order = keys.sort_values(list(keys.columns)).index if len(keys.columns) else keys.index
    return frame.loc[order].reset_index(drop=True)


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def mlflow_db(settings):
    """MLflow's SQLite store, read directly (an MLflow client would keep an engine on the file a
    restore replaces) from a copy: a writer killed mid-transaction leaves a rollback journal,
    which SQLite rolls back when the store is next opened for writing, as MLflow's next process
    does; a read-only connection cannot ("attempt to write a readonly database"), and the check
    must not change the state the re-run starts from. None where there is no store."""
    import tempfile

    path = settings.state_dir / "mlflow" / "mlflow.db"
    if not path.exists():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="chaos-mlflow-") as folder:
        for suffix in ("", "-journal", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            with contextlib.suppress(FileNotFoundError):
                shutil.copy2(source, Path(folder) / source.name)
        with contextlib.closing(sqlite3.connect(Path(folder) / path.name)) as db:
            yield db


def registry_state(settings) -> dict:
    """The registered versions, the aliases, the runs still RUNNING, and SQLite's integrity
    check of the store (after the recovery of a killed writer's journal)."""
    with mlflow_db(settings) as db:
        if db is None:
            return {"versions": [], "aliases": {}, "running": [], "integrity": "ok"}
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
        name = settings.model_name
        versions = [
            str(v)
            for (v,) in db.execute("SELECT version FROM model_versions WHERE name = ?", (name,))
        ]
        aliases = dict(
            db.execute(
                "SELECT alias, CAST(version AS TEXT) FROM registered_model_aliases WHERE name = ?",
                (name,),
            ).fetchall()
        )
        running = [
            r for (r,) in db.execute("SELECT name FROM runs WHERE status = 'RUNNING'").fetchall()
        ]
    return {"versions": versions, "aliases": aliases, "running": running, "integrity": integrity}


def workspace_runs(settings) -> tuple[list[dict], list[str]]:
    """The Evidently workspace's runs (project, name, timestamp, values) and the files that
    cannot be read."""
    folder = settings.state_dir / "monitoring" / "workspace"
    runs, unreadable = [], []
    for meta in sorted(folder.glob("*/metadata.json")):
        try:
            project = json.loads(meta.read_text())["name"]
        except (ValueError, KeyError):
            unreadable.append(str(meta.relative_to(settings.state_dir)))
            continue
        for snapshot in sorted(meta.parent.glob("snapshots/*.json")):
            try:
                data = json.loads(snapshot.read_text())
            except ValueError:
                unreadable.append(str(snapshot.relative_to(settings.state_dir)))
                continue
            values = {
                r.get("display_name"): r.get("value")
                for r in data.get("metric_results", {}).values()
            }
            runs.append(
                {
                    "project": project,
                    "name": data.get("name"),
                    "timestamp": data.get("timestamp"),
                    "values": json.dumps(values, sort_keys=True, default=str),
                }
            )
    return runs, unreadable


def table_fingerprint(path: Path) -> str:
    """A digest of every file of a Delta table (names and bytes): equal fingerprints, equal
    content."""
    digest = hashlib.sha1()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + _sha1(file).encode())
    return digest.hexdigest()


# lakehouse_content's frame of a table, by the table's name and fingerprint: a kill's re-run
# changes a few tables; the others are the bytes the step started from, read once
_TABLE_FRAMES: dict[tuple[str, str], object] = {}
TABLE_FRAMES_KEPT = 250  # ~60 MB a whole lakehouse, ~30 tables


def lakehouse_frames(lakehouse: str) -> dict:
    """:func:`tooling.lakehouse_diff.lakehouse_content` of the lakehouse, each table read only
    when its files differ from every recently read one's (a copy of the kept frame otherwise)."""
    import tempfile

    from tooling.lakehouse_diff import lakehouse_content

    paths = {f"{p.parent.parent.name}.{p.parent.name}": p.parent
             for p in Path(lakehouse).glob("*/*/_delta_log")}  # fmt: skip
    keys = {name: (name, table_fingerprint(path)) for name, path in paths.items()}
    unread = [name for name, key in keys.items() if key not in _TABLE_FRAMES]
    if unread:
        with tempfile.TemporaryDirectory() as view:  # the unread tables alone, as links
            for name in unread:
                layer, table = name.split(".", 1)
                (Path(view) / layer).mkdir(exist_ok=True)
                (Path(view) / layer / table).symlink_to(paths[name].resolve())
            read = lakehouse_content(view)
        for name in unread:
            _TABLE_FRAMES[keys[name]] = read[name]
    for key in keys.values():  # the most recently used last
        _TABLE_FRAMES[key] = _TABLE_FRAMES.pop(key)
    while len(_TABLE_FRAMES) > TABLE_FRAMES_KEPT:
        del _TABLE_FRAMES[next(iter(_TABLE_FRAMES))]
    return {name: _TABLE_FRAMES[keys[name]].copy() for name in sorted(paths)}


def content(settings) -> dict:
    """Everything the platform's state holds, as comparable frames (see the module's doc)."""
    import pandas as pd

    from jobs.features import materialize
    from jobs.features.store import unchecked_feature_store

    ordinals = version_ordinals(settings)
    out = {}
    for name, frame in lakehouse_frames(settings.lakehouse).items():
        if name.startswith("ml."):
            for column in set(VERSION_COLUMNS) & set(frame.columns):
                frame[column] = frame[column].map(lambda v: _by_ordinal(v, ordinals))
            frame = _sorted(frame)
        out[f"delta {name}"] = frame
    landing = Path(settings.landing)
    files = [
        {"file": str(p.relative_to(landing)), "sha1": _sha1(p)}
        for p in sorted(landing.glob("[0-9]*/*"))
        if p.is_file()
    ]
    out["landing"] = pd.DataFrame(files, columns=["file", "sha1"])
    online = settings.state_dir / "feast" / "online.db"
    if online.exists():
        with contextlib.closing(sqlite3.connect(f"file:{online}?mode=ro", uri=True)) as db:
            tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            for (table,) in tables:
                frame = pd.read_sql(f'SELECT * FROM "{table}"', db).drop(columns=["created_ts"])
                for column in frame.columns:
                    frame[column] = frame[column].map(
                        lambda v: v.hex() if isinstance(v, bytes) else v
                    )
                out[f"online {table}"] = _sorted(frame)
    if (settings.state_dir / "feast" / "registry.db").exists():
        store = unchecked_feature_store(settings)
        views = [
            {"view": v.name, "newest": str(v.most_recent_end_time)}
            for v in store.list_feature_views()
        ]
        out["feast materialized"] = _sorted(pd.DataFrame(views, columns=["view", "newest"]))
        newest = materialize.newest_materialized_day(store)
        out["feast newest day"] = pd.DataFrame([{"day": str(newest)}])
    registry = registry_state(settings)
    aliases = [
        {"alias": a, "version": _by_ordinal(v, ordinals)} for a, v in registry["aliases"].items()
    ]
    out["mlflow aliases"] = _sorted(pd.DataFrame(aliases, columns=["alias", "version"]))
    runs, _ = workspace_runs(settings)
    for run in runs:  # "2013-03-06 v2" -> "2013-03-06 #2"
        day, _, version = (run["name"] or "").partition(" v")
        run["name"] = f"{day} {_by_ordinal(version, ordinals)}" if version else run["name"]
    out["evidently runs"] = _sorted(
        pd.DataFrame(runs, columns=["project", "name", "timestamp", "values"])
    )
    reports = settings.reports_dir
    names = [str(p.relative_to(reports)) for p in sorted(reports.glob("*/*")) if p.is_file()]
    out["monitoring reports"] = pd.DataFrame({"file": names})
    return out


def differences(clean: dict, now: dict) -> list[str]:
    """What differs between two :func:`content` results (empty: equal)."""
    import pandas as pd

    found = []
    for name in sorted(set(clean) | set(now)):
        if name not in now:
            found.append(f"{name}: missing")
            continue
        if name not in clean:
            found.append(f"{name}: not in the clean run ({len(now[name])} rows)")
            continue
        left, right = clean[name], now[name]
        if list(left.columns) != list(right.columns) or len(left) != len(right):
            found.append(
                f"{name}: {len(right)} rows x {list(right.columns)} where the clean run has "
                f"{len(left)} x {list(left.columns)}"
            )
            continue
        for column in left.columns:
            try:
                pd.testing.assert_series_equal(
                    left[column].reset_index(drop=True),
                    right[column].reset_index(drop=True),
                    check_dtype=False,
                    check_exact=False,
                    check_names=False,
                    rtol=1e-9,
                    obj=f"{name}.{column}",
                )
            except AssertionError as exc:
                found.append(f"{name}.{column}: {' '.join(str(exc).split())}"[:400])
    return found


def difference_key(line: str) -> str:
    """What a line of :func:`differences` is about (a table, or a table's column)."""
    return line.split(": ", 1)[0]


def tokens(settings) -> dict[str, str]:
    """One token per output (a Delta table's version, a landed day's files, the online store,
    Feast's and MLflow's stores, the monitoring files): which of them a step changed."""
    out = {}
    for name, path in delta_tables(settings).items():
        commits = sorted((path / "_delta_log").glob("*.json"))
        out[f"delta {name}"] = commits[-1].stem if commits else ""
    landing = Path(settings.landing)
    for day in sorted(landing.glob("[0-9]*")):
        out[f"landing {day.name}"] = "".join(_sha1(f) for f in sorted(day.iterdir()))
    for rel in ("feast/online.db", "feast/registry.db", "mlflow/mlflow.db"):
        path = settings.state_dir / rel
        out[rel] = _sha1(path) if path.exists() else ""
    monitoring = settings.state_dir / "monitoring"
    files = sorted(p for p in monitoring.rglob("*") if p.is_file()) if monitoring.exists() else []
    out["monitoring files"] = str(len(files))
    return out


def quick_tokens(settings) -> tuple:
    """A cheap fingerprint of the outputs (commit counts, file names and stamps), polled while
    a clean step runs to find when it first writes."""
    parts = []
    for name, path in sorted(delta_tables(settings).items()):
        parts.append((name, len(list((path / "_delta_log").glob("*.json")))))
    landing = Path(settings.landing)
    if landing.exists():
        for day in sorted(landing.iterdir()):
            if day.is_dir():
                parts.append(
                    (day.name, tuple(sorted((f.name, f.stat().st_mtime_ns) for f in day.iterdir())))
                )
    for rel in ("feast/online.db", "feast/registry.db", "mlflow/mlflow.db"):
        path = settings.state_dir / rel
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            parts.append((rel, stat.st_mtime_ns, stat.st_size))
    monitoring = settings.state_dir / "monitoring"
    if monitoring.exists():
        parts.append(("monitoring", sum(1 for p in monitoring.rglob("*") if p.is_file())))
    return tuple(parts)


def output_stamps(settings, outputs: list[str]) -> dict[str, object]:
    """A cheap stamp of each of ``outputs`` (:func:`tokens`' names: a Delta table's commit
    count, a landed day's file names, a file's time and size, the monitoring files' count),
    polled while a step runs to kill it once it has changed some of them."""
    stamps: dict[str, object] = {}
    for key in outputs:
        kind, _, name = key.partition(" ")
        if kind == "delta":
            layer, table = name.split(".", 1)
            log = Path(settings.lakehouse) / layer / table / "_delta_log"
            stamps[key] = len(list(log.glob("*.json"))) if log.exists() else 0
        elif kind == "landing":
            day = Path(settings.landing) / name
            stamps[key] = sorted(p.name for p in day.iterdir()) if day.exists() else None
        elif key == "monitoring files":
            folder = settings.state_dir / "monitoring"
            stamps[key] = sum(1 for p in folder.rglob("*") if p.is_file())
        else:
            path = settings.state_dir / key
            with contextlib.suppress(FileNotFoundError):
                stamps[key] = (path.stat().st_mtime_ns, path.stat().st_size)
    return stamps


# --- the invariants ---------------------------------------------------------------------------
def table_keys(settings, names) -> dict[str, tuple[str, ...]]:
    from jobs.lakehouse.tables import MAINTENANCE
    from jobs.monitoring.tables import MONITORING_METRICS
    from jobs.scoring.predictions import PREDICTIONS
    from tests.lakehouse.snapshot import all_specs

    specs = [
        *all_specs(settings.rolling_windows_days),
        PREDICTIONS,
        MONITORING_METRICS,
        MAINTENANCE,
    ]
    keys = {spec.name: spec.key for spec in specs if spec.key}
    keys["silver.reconciliation"] = ("source_table", "logical_date")
    keys["ml.retrain_requests"] = ("request_id", "event")
    for name in names:
        if name.startswith("ml.served_features__"):
            keys[name] = ("flight_id",)
    return keys


def _count(frames: dict, table: str, column: str, day) -> int:
    frame = frames.get(table)
    return 0 if frame is None else int((frame[column] == day).sum())


def _days(frames: dict, table: str, column: str) -> set:
    frame = frames.get(table)
    return set() if frame is None else set(frame[column])


# the quality suites' row-count expectations: suite -> the table and date column it counted
ROW_COUNT_SUITES = {
    "bronze_flights": ("bronze.flights", "_logical_date"),
    "silver_flights": ("silver.flights", "flight_date"),
    "silver_flights_trends": ("silver.flights", "flight_date"),
    "gold_flights": ("gold.flights", "flight_date"),
}
# silver source -> (its table, date column, the accepted rows' day relative to the landed day)
SILVER_OF = {
    "flights": ("silver.flights", "flight_date", 0),
    "schedule": ("silver.schedule", "flight_date", 1),
    "weather": ("silver.weather", "obs_date", 0),
}


def bookkeeping(frames: dict, settings) -> list[str]:
    """Where the bookkeeping disagrees with the data, one line each."""
    from jobs.lakehouse import tables as tb

    found = []
    recon = frames.get("silver.reconciliation")
    quarantine = frames.get("silver.quarantine")
    recorded = set()
    if recon is not None:
        for r in recon.itertuples():
            day, source = r.logical_date, r.source_table
            recorded.add((source, day))
            where = f"reconciliation {source} {day}"
            if r.landed != r.accepted + r.quarantined + r.duplicates:
                found.append(f"{where}: landed {r.landed} != accepted+quarantined+duplicates")
            bronze = _count(frames, f"bronze.{source}", "_logical_date", day)
            if bronze != r.landed:
                found.append(f"{where}: landed {r.landed}, bronze holds {bronze}")
            q = 0
            if quarantine is not None:
                q = int(
                    ((quarantine.source_table == source) & (quarantine.logical_date == day)).sum()
                )
            if q != r.quarantined + r.duplicates:
                found.append(f"{where}: quarantined+duplicates {r.quarantined + r.duplicates}, "
                             f"silver.quarantine holds {q}")  # fmt: skip
            if source in SILVER_OF:
                table, column, offset = SILVER_OF[source]
                accepted = _count(frames, table, column, day + dt.timedelta(days=offset))
                if accepted != r.accepted:
                    found.append(f"{where}: accepted {r.accepted}, {table} holds {accepted}")
    for source, (table, column, offset) in SILVER_OF.items():
        for day in _days(frames, table, column):
            if (source, day - dt.timedelta(days=offset)) not in recorded:
                found.append(f"{table} holds {day} with no reconciliation")
    if quarantine is not None:
        for source, day in set(zip(quarantine.source_table, quarantine.logical_date, strict=True)):
            if (source, day) not in recorded:
                found.append(f"silver.quarantine holds {source} {day} with no reconciliation")
    # bronze: the six exports of each day, and the gate's results (the bronze task runs both)
    bronze_days = set().union(*(_days(frames, f"bronze.{n}", "_logical_date") for n in tb.BRONZE))
    quality = frames.get("quality.results")
    gated = set()
    if quality is not None:
        gated = set(quality.loc[quality.layer == "bronze", "logical_date"])
        counts = quality[quality.expectation.str.startswith("expect_table_row_count")]
        for r in counts.itertuples():
            if r.suite in ROW_COUNT_SUITES and r.observed_value not in (None, ""):
                table, column = ROW_COUNT_SUITES[r.suite]
                rows = _count(frames, table, column, r.logical_date)
                if int(float(r.observed_value)) != rows:
                    found.append(f"quality {r.suite} {r.logical_date}: counted "
                                 f"{r.observed_value} rows, {table} holds {rows}")  # fmt: skip
    for day in sorted(bronze_days):
        missing = [n for n in tb.BRONZE if not _count(frames, f"bronze.{n}", "_logical_date", day)]
        # weather and the timetable may legitimately be empty; flights never are
        if "flights" in missing or len(missing) > 2:
            found.append(f"bronze {day}: no rows in {missing}")
        if day not in gated:
            found.append(f"bronze {day} written, its quality gate not recorded")
    # gold: each day in every gold table, and the day's flights as silver's
    windows = settings.rolling_windows_days
    day_tables = {
        "gold.entity_daily": "flight_date",
        "gold.origin_weather_daily": "as_of_date",
        **{tb.gold_stats(e, windows).name: "as_of_date" for e in tb.ENTITY_KEYS},
    }
    for day in sorted(_days(frames, "gold.flights", "flight_date")):
        for table, column in day_tables.items():
            if not _count(frames, table, column, day):
                found.append(f"gold.flights holds {day}, {table} does not")
        for gold, silver, on in (
            ("gold.flights", "silver.flights", day),
            ("gold.scheduled_flights", "silver.schedule", day + ONE_DAY),
        ):
            a, b = (
                _count(frames, gold, "flight_date", on),
                _count(frames, silver, "flight_date", on),
            )
            if a != b:
                found.append(f"{gold} holds {a} rows of {on}, {silver} {b}")
    for table, column in day_tables.items():
        for day in _days(frames, table, column) - _days(frames, "gold.flights", "flight_date"):
            found.append(f"{table} holds {day}, gold.flights does not")
    found += ml_bookkeeping(frames, settings)
    return found


def ml_bookkeeping(frames: dict, settings) -> list[str]:
    found = []
    predictions = frames.get("ml.predictions")
    scheduled = frames.get("gold.scheduled_flights")
    served = {n: f for n, f in frames.items() if n.startswith("ml.served_features__")}
    predicted_days = set() if predictions is None else set(predictions.flight_date)
    for day in sorted(predicted_days):
        rows = predictions[predictions.flight_date == day]
        flights = _count(frames, "gold.scheduled_flights", "flight_date", day)
        if len(rows) != flights * rows.role.nunique():
            found.append(f"ml.predictions {day}: {len(rows)} rows for {flights} flights x "
                         f"{rows.role.nunique()} models")  # fmt: skip
    for name, frame in served.items():
        for day in sorted(set(frame.flight_date)):
            flights = _count(frames, "gold.scheduled_flights", "flight_date", day)
            n = int((frame.flight_date == day).sum())
            if n != flights:
                found.append(f"{name} {day}: {n} rows for {flights} scheduled flights")
            if day not in predicted_days:
                found.append(f"{name} holds {day}, ml.predictions does not")
    del scheduled
    metrics = frames.get("ml.monitoring_metrics")
    runs, unreadable = workspace_runs(settings)
    found += [f"monitoring workspace file unreadable: {u}" for u in unreadable]
    if metrics is not None:
        for day in sorted(set(metrics.monitor_date)):
            roles = set(metrics.loc[metrics.monitor_date == day, "role"])
            tomorrow = day + ONE_DAY
            scored = (
                set(predictions.loc[predictions.flight_date == tomorrow, "role"])
                if predictions is not None
                else set()
            )
            if scored and roles != scored:
                found.append(f"ml.monitoring_metrics {day}: roles {sorted(roles)}, "
                             f"{tomorrow} was scored by {sorted(scored)}")  # fmt: skip
        per_run: dict[tuple, int] = {}
        for run in runs:
            key = (run["project"], (run["name"] or "")[:10])
            per_run[key] = per_run.get(key, 0) + 1
        for key, n in per_run.items():
            if n > 1:
                found.append(f"monitoring workspace: {n} runs of {key[0]} on {key[1]}")
    found += registry_bookkeeping(frames, settings)
    found += online_bookkeeping(settings)
    return found


def registry_bookkeeping(frames: dict, settings) -> list[str]:
    from jobs.training import registry

    decisions = frames.get("ml.model_decisions")
    if decisions is None:
        return []
    log = decisions[decisions.model_name == settings.model_name].sort_values("decided_at")
    state = registry_state(settings)
    found = []
    trained = log[log.decision.isin(registry.TRAINED)].version.tolist()
    missing = sorted(set(log.version) - set(state["versions"]))
    if missing:
        found.append(f"the decision log names versions the registry lacks: {missing}")
    wanted = {
        registry.CHAMPION: (registry.champions(log) or [None])[-1],
        registry.CHALLENGER: (trained or [None])[-1],
    }
    for alias, version in wanted.items():
        if state["aliases"].get(alias) != version:
            found.append(f"alias {alias} -> v{state['aliases'].get(alias)}, "
                         f"the decision log says v{version}")  # fmt: skip
    return found


def online_bookkeeping(settings) -> list[str]:
    """The online store serves the newest day its registry records as materialized."""
    if not (settings.state_dir / "feast" / "registry.db").exists():
        return []
    from jobs.features import materialize
    from jobs.features.store import unchecked_feature_store

    store = unchecked_feature_store(settings)
    newest = materialize.newest_materialized_day(store)
    if newest is None:
        return []
    try:
        lost = materialize.lost_online(store, newest)
    except Exception as exc:  # an unreadable online store is inconsistent, not a crash here
        return [f"online store unreadable: {type(exc).__name__}: {exc}"]
    return [f"online store lost {item} of {newest}" for item in lost]


def orphan_files(settings, readable=None) -> dict[str, tuple[list[str], bool]]:
    """Data files no commit ever added, by table: (their paths in the table's folder, whether
    the folder has a Delta log). In a table (of ``readable``'s names, when given), the files
    no commit of its log adds (files replaced since included); a folder with data files and no
    log is a table's first write killed before its first commit (the re-run's commit makes
    them orphans of a table)."""
    from urllib.parse import unquote

    found: dict[str, tuple[list[str], bool]] = {}
    for name, path in sorted(delta_tables(settings).items()):
        if readable is not None and name not in readable:
            continue
        added = set()
        for commit in (path / "_delta_log").glob("*.json"):
            for line in commit.read_text().splitlines():
                if line.strip():
                    action = json.loads(line)
                    if "add" in action:
                        added.add(unquote(action["add"]["path"]))
        on_disk = {
            str(p.relative_to(path))
            for p in path.rglob("*.parquet")
            if "_delta_log" not in p.relative_to(path).parts
        }
        if orphans := on_disk - added:
            found[name] = (sorted(orphans), True)
    for folder in sorted(Path(settings.lakehouse).glob("[!_]*/*")):
        logged = not folder.is_dir() or (folder / "_delta_log").exists()
        if not logged and (files := list(folder.rglob("*.parquet"))):
            name = f"{folder.parent.name}.{folder.name}"
            found[name] = (sorted(str(f.relative_to(folder)) for f in files), False)
    return found


def orphan_line(name: str, files: list[str], logged: bool) -> str:
    return f"{name}: {len(files)} data file(s) " + (
        "no commit added" if logged else "and no Delta log"
    )


def maintenance_leaves(settings, orphans: dict[str, tuple[list[str], bool]]) -> dict[str, list]:
    """Of ``orphans`` (:func:`orphan_files`), the files the platform's own table maintenance
    (``jobs/lakehouse/maintenance.run``, the weekly ``nightjar_maintenance`` DAG's job, with
    the settings' window) does not delete once they are older than its window. Run on a copy
    of those tables with the orphans dated back past the window (the harness cannot wait a
    week): nothing of the state the next step starts from changes."""
    import tempfile

    from jobs.lakehouse import maintenance

    hours = settings.maintenance_retention_hours
    then = time.time() - (hours + 1) * 3600
    with tempfile.TemporaryDirectory(prefix="chaos-maintenance-") as folder:
        copy = settings.model_copy(update={"lakehouse_uri": str(Path(folder) / "lakehouse")})
        for name, (files, _) in orphans.items():
            layer, table = name.split(".", 1)
            target = Path(copy.lakehouse) / layer / table
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(Path(settings.lakehouse) / layer / table),
                            str(target)], check=True)  # fmt: skip
            for file in files:
                os.utime(target / file, (then, then))
        with contextlib.suppress(maintenance.MaintenanceFailed):  # a table it failed keeps them
            maintenance.run(copy, "chaos-maintenance", tables=sorted(orphans))
        left = {
            name: [f for f in files if (Path(copy.table_uri(name)) / f).exists()]
            for name, (files, _) in orphans.items()
        }
    return {name: files for name, files in left.items() if files}


def left_to_maintenance(settings, found: dict[str, list[str]]) -> dict[str, list[str]]:
    """``found`` (:func:`inspect`'s) with its orphan data files that the platform's maintenance
    deletes once they are older than its window (:func:`maintenance_leaves`) moved from
    *leftovers* to *left_to_maintenance*: the platform cleans them, a week later. The files it
    would leave stay leftovers."""
    found = {**found, "left_to_maintenance": []}
    orphans = orphan_files(settings)
    if not orphans:
        return found
    kept = maintenance_leaves(settings, orphans)
    for name, (files, logged) in orphans.items():
        line = orphan_line(name, files, logged)
        if name not in kept and line in found["leftovers"]:
            found["leftovers"] = [x for x in found["leftovers"] if x != line]
            found["left_to_maintenance"].append(line)
    return found


def inspect(settings) -> dict[str, list[str]]:
    """The invariants: corrupt tables, duplicate keys, inconsistent bookkeeping, leftovers."""
    from deltalake import DeltaTable

    found: dict[str, list[str]] = {
        "corrupt": [],
        "duplicates": [],
        "inconsistent": [],
        "leftovers": [],
    }
    frames = {}
    paths = delta_tables(settings)
    for name, path in sorted(paths.items()):
        try:
            table = DeltaTable(str(path))
            frames[name] = table.to_pyarrow_table().to_pandas()
        except Exception as exc:
            found["corrupt"].append(
                f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
            )
            continue
        stray = [p.name for p in (path / "_delta_log").iterdir() if not p.name[0].isdigit()]
        stray = [s for s in stray if s not in ("_last_checkpoint", "_commits")]
        if stray:
            found["leftovers"].append(f"{name}: stray log files {stray}")
    for name, (files, logged) in sorted(orphan_files(settings, frames).items()):
        found["leftovers"].append(orphan_line(name, files, logged))
    # the day claims (jobs/common/day_claims.py): a record that does not parse blocks its day
    for record in sorted(Path(settings.lakehouse).glob("_claims/*/*.json")):
        try:
            json.loads(record.read_text())
        except ValueError:
            found["corrupt"].append(f"day claim {record.parent.name}/{record.name} unreadable")
    keys = table_keys(settings, frames)
    for name, frame in frames.items():
        key = [k for k in keys.get(name, ()) if k in frame.columns]
        if key and len(frame):
            n = int(frame.duplicated(key).sum())
            if n:
                found["duplicates"].append(f"{name}: {n} row(s) repeat a key {tuple(key)}")
    decisions = frames.get("ml.model_decisions")
    if decisions is not None:
        trained = decisions[decisions.decision.isin(("promoted", "rejected"))]
        if n := int(trained.duplicated(["model_name", "version"]).sum()):
            found["duplicates"].append(f"ml.model_decisions: {n} version(s) decided twice")
    found["inconsistent"] = bookkeeping(frames, settings)
    landing = Path(settings.landing)
    if landing.exists():
        staged = [p.name for p in landing.iterdir() if p.name.startswith(".")]
        if staged:
            found["leftovers"].append(f"landing: {len(staged)} staging folder(s) {staged[:3]}")
    registry = registry_state(settings)
    if registry["integrity"] != "ok":
        found["corrupt"].append(f"MLflow's store: integrity check {registry['integrity']}")
    if registry["running"]:
        found["leftovers"].append(f"MLflow runs left RUNNING: {registry['running']}")
    ordinals = version_ordinals(settings)
    if unlogged := sorted(set(registry["versions"]) - set(ordinals), key=int):
        found["leftovers"].append(f"registered versions no decision names: {unlogged}")
    return found


def requests_of(settings) -> tuple[set[str], set[str]]:
    """(requested, served) request ids of the request log."""
    path = delta_tables(settings).get("ml.retrain_requests")
    if path is None:
        return set(), set()
    rows = _read_delta(path)
    rows = rows[rows.model_name == settings.model_name]
    return set(rows.request_id[rows.event == "requested"]), set(
        rows.request_id[rows.event == "served"]
    )


# --- the clean run ----------------------------------------------------------------------------
class Harness:
    def __init__(self, state: Path, port: int, targets: list[str]):
        configure(state, port)
        from jobs.common.settings import Settings

        self.state, self.targets = state, targets
        self.settings = Settings()
        self.platform = self.settings.state_dir
        self.reference = state / "reference"
        self.logs = state / "logs"
        self.steps = {step.name: step for step in timeline()}

    def before(self, step: str) -> Path:
        return self.reference / "before" / self.steps[step].slug

    def after(self, step: str) -> Path:
        return self.reference / "after" / f"{self.steps[step].slug}.pkl"

    def manifest(self) -> dict:
        path = self.reference / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def start_platform(self) -> None:
        from jobs.lakehouse import source
        from tooling import services

        services.down(self.settings)
        shutil.rmtree(self.platform, ignore_errors=True)
        self.platform.mkdir(parents=True)
        cache = self.platform / "source_cache"
        shared = ROOT / ".state" / "source_cache"  # the upstream's files, converted once
        if shared.is_dir():
            shutil.copytree(shared, cache)
        source.warm_cache(cache)
        services.up(self.settings, airflow=False)

    def build_reference(self) -> dict:
        """Run the timeline from an empty state: the copies before each killed step, the
        content after it, and each step's wall time."""
        from jobs.features import store

        wanted = killed_steps(self.targets)
        shutil.rmtree(self.reference, ignore_errors=True)
        self.start_platform()
        store.apply(self.settings)
        steps = {}
        began = time.perf_counter()
        order = [step.name for step in timeline()]
        last = max(order.index(name) for name in wanted)  # nothing after it is needed
        for step in timeline()[: last + 1]:
            first_write: dict[str, float] = {}  # "s": the first write, "last": the last
            watch = None
            if step.name in wanted:
                copy_state(self.platform, self.before(step.name))
                before = tokens(self.settings)
                unwritten = quick_tokens(self.settings)

                def watch(elapsed: float, unwritten=unwritten, first_write=first_write) -> None:
                    now = quick_tokens(self.settings)
                    if now != first_write.get("tokens", unwritten):
                        first_write.setdefault("s", elapsed)
                        first_write["last"], first_write["tokens"] = elapsed, now

            for attempt in range(1, CLEAN_TRIES + 1):
                first_write.clear()
                log = self.logs / "reference" / f"{step.slug}.{attempt}.log"
                ran = run_step(step, log, watch=watch)
                print(f"clean {step.name}: rc {ran.rc}, {ran.wall_s:.1f} s", flush=True)
                if ran.rc == 0:
                    break
                if attempt == CLEAN_TRIES:
                    raise SystemExit(f"the clean run's {step.name} failed:\n{ran.output}")
                # a step that fails is retried, as the DAG's tasks are (a failed try of a
                # stage changes nothing a retry does not replace); its time is the retry's
                print(f"  retried in {CLEAN_RETRY_S} s:\n{ran.output[-800:]}", flush=True)
                time.sleep(CLEAN_RETRY_S)
            if step.name in wanted:
                after = tokens(self.settings)
                changed = sorted(k for k in after if after[k] != before.get(k))
                problems = inspect(self.settings)
                self.after(step.name).parent.mkdir(parents=True, exist_ok=True)
                self.after(step.name).write_bytes(pickle.dumps(content(self.settings)))
                steps[step.name] = {
                    "wall_s": round(ran.wall_s, 1),
                    "first_write_s": round(first_write["s"], 1) if first_write else None,
                    "last_write_s": round(first_write["last"], 1) if first_write else None,
                    "changed": changed,
                    "clean_problems": problems,
                    "output": ran.output[-600:],
                    "requests": sorted(requests_of(self.settings)[0]),
                }
                if any(problems[k] for k in ("corrupt", "duplicates", "inconsistent")):
                    print(f"  the clean state after {step.name} fails a check: {problems}")
        manifest = {
            "built_s": round(time.perf_counter() - began),
            "code": code_version(),
            "code_key": code_key(),
            "targets": self.targets,
            "steps": steps,
            "settings": SETTINGS_ENV,
        }
        (self.reference / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return manifest


# --- the kills --------------------------------------------------------------------------------
def progress(before: dict, killed: dict, changed_clean: list[str]) -> str:
    """How far the killed step got: none, partial or all of the outputs the clean step
    changed (by their tokens)."""
    done = [k for k in changed_clean if killed.get(k) != before.get(k)]
    if not done:
        return "none"
    return "all" if len(done) == len(changed_clean) else "partial"


def one_kill(
    h: Harness,
    target: str,
    index: int,
    rng: random.Random,
    manifest: dict,
    walls: dict[str, list[float]],
    after_writes: bool = False,
) -> dict:
    """Kill ``target`` once, check, re-run, check and compare. ``walls``: the step's clean wall
    times so far (the reference's, then each re-run's and each process's that finished before
    its kill), whose recent median is the step's current wall time (the machine's load moves
    it): the delay is drawn within it. ``after_writes``: instead of a delay, kill the step as
    soon as it has changed ``k`` of the ``n`` outputs its clean run changed (``k`` drawn in
    1..n-1)."""
    from tooling import services

    settings = h.settings
    if target == "spark-connect":
        stage = rng.choice(SPARK_STAGES)
        step = h.steps[f"{NIGHT} {stage}"]
    else:
        step = h.steps[TARGETS[target]]
    clean = manifest["steps"][step.name]
    seen = walls.setdefault(step.name, [clean["wall_s"]])
    wall = statistics.median(seen[-5:])
    first, last = clean.get("first_write_s"), clean.get("last_write_s") or clean["wall_s"]
    within_writes = first is not None and rng.random() < WRITE_WINDOW_SHARE
    if within_writes:
        scale = wall / clean["wall_s"]
        low = max(0.0, first * scale - 0.25)
        delay = rng.uniform(low, min(wall, max(low, last * scale + 0.25)))
    else:
        delay = rng.uniform(0, wall)
    began = time.perf_counter()
    ensure_spark(settings)
    copy_state(h.before(step.name), h.platform)
    before = tokens(settings)
    record: dict = {"target": target, "kill": index, "step": step.name, "delay_s": round(delay, 2)}
    record["drawn_within"] = "writes" if within_writes else "step"
    kill_when = None
    if after_writes:
        outputs = clean["changed"]
        k = rng.randint(1, len(outputs) - 1)
        unwritten = output_stamps(settings, outputs)
        record["drawn_within"] = f"after {k} of {len(outputs)} outputs"
        record["delay_s"] = None

        def kill_when() -> bool:
            now = output_stamps(settings, outputs)
            return sum(now.get(o) != unwritten.get(o) for o in outputs) >= k

    def kill_server() -> None:
        pid = services.pid_of(settings, "spark-connect")
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        # the JVM's main thread reads as exited before its other threads have let go of the
        # port; services.up refuses a port in use
        closed = time.monotonic() + 60
        while services.port_open(settings.spark_connect_port) and time.monotonic() < closed:
            time.sleep(0.2)
        restarted = time.perf_counter()
        services.up(settings, airflow=False)
        record["server_restart_s"] = round(time.perf_counter() - restarted, 1)

    log = h.logs / target / f"{index:03d}"
    ran = run_step(
        step,
        log.with_suffix(".killed.log"),
        kill_after=None if after_writes else delay,
        spark_kill=kill_server if target == "spark-connect" else None,
        kill_when=kill_when,
    )
    if after_writes:
        record["delay_s"] = round(ran.wall_s, 2)
    record["process"] = "killed" if ran.rc is None else f"exited {ran.rc}"
    if target == "spark-connect":
        record["process"] = (
            "still running, killed" if ran.rc is None else f"exited {ran.rc} after the server died"
        )
    ensure_spark(settings)
    record["progress"] = progress(before, tokens(settings), clean["changed"])
    record["after_kill"] = inspect(settings)
    requested_after_kill = requests_of(settings)[0]
    if ran.rc == 0:
        # it finished before the kill (or despite the server's): a task that succeeded is not
        # run again (for a training, a second run is a second training, not a retry)
        record["rerun"] = "exited 0: not needed, the killed process had finished"
        emitted = ran.output
        if target != "spark-connect":
            seen.append(ran.wall_s)  # a clean run's wall time
            record["clean_wall_s"] = round(ran.wall_s, 1)
    else:
        rerun = run_step(step, log.with_suffix(".rerun.log"))
        record["rerun"] = f"exited {rerun.rc} in {rerun.wall_s:.1f} s"
        emitted = rerun.output
        if rerun.rc == 0:
            seen.append(rerun.wall_s)
            record["clean_wall_s"] = round(rerun.wall_s, 1)
        else:
            record["rerun_output"] = rerun.output[-1500:]
    # a process that finished was not re-run: the state checked after the kill is the state
    # after it, checked once
    record["after_rerun"] = inspect(settings) if ran.rc != 0 else record["after_kill"]
    # orphan data files the platform's maintenance deletes once older than its window are
    # counted apart from the leftovers nothing cleans
    record["after_rerun"] = left_to_maintenance(settings, record["after_rerun"])
    expected = pickle.loads(h.after(step.name).read_bytes())
    try:
        record["differences"] = differences(expected, content(settings))
    except Exception as exc:  # a table the re-run left unreadable: not equal, and said why
        record["differences"] = [f"content unreadable: {type(exc).__name__}: {exc}"[:400]]
    record["equal"] = record["rerun"].startswith("exited 0") and not record["differences"]
    # lost requests: the clean run's requests must all be there; a request the killed process
    # recorded must come back from the re-run (re-emitted with its Asset event); a training
    # leaves none pending
    requested, served = requests_of(settings)
    lost = [f"{r}: not recorded" for r in sorted(set(clean["requests"]) - requested)]
    if step.stage == "request_retrain":
        lost += [
            f"{r}: recorded by the killed process, not re-emitted by the re-run"
            for r in sorted(requested_after_kill - served)
            if r not in emitted
        ]
    if step.stage == "training":
        lost += [
            f"{r}: still pending after the re-run training" for r in sorted(requested - served)
        ]
    record["lost_requests"] = lost
    record["wall_s"] = round(time.perf_counter() - began, 1)
    return record


def control(h: Harness, target: str, manifest: dict) -> dict:
    """The step re-run once from its clean start, without a kill: equal to the clean run?"""
    step = h.steps[TARGETS.get(target, f"{NIGHT} silver")]
    ensure_spark(h.settings)
    copy_state(h.before(step.name), h.platform)
    ran = run_step(step, h.logs / target / "control.log")
    found = differences(pickle.loads(h.after(step.name).read_bytes()), content(h.settings))
    return {"rc": ran.rc, "wall_s": round(ran.wall_s, 1), "differences": found}


def summarize(target: str, kills: list[dict], control_run: dict | None) -> dict:
    def count(phase: str, kind: str) -> int:
        return sum(len(k[phase][kind]) for k in kills)

    return {
        "target": target,
        "kills": len(kills),
        "killed_mid_write": sum(k["progress"] == "partial" for k in kills),
        "killed_before_any_write": sum(k["progress"] == "none" for k in kills),
        "finished_before_kill": sum(not k["process"].startswith(("killed", "still")) for k in kills)
        if target != "spark-connect"
        else sum(k["process"] == "exited 0 after the server died" for k in kills),
        "corrupt_tables": count("after_kill", "corrupt") + count("after_rerun", "corrupt"),
        "duplicate_keys": count("after_kill", "duplicates") + count("after_rerun", "duplicates"),
        "inconsistent_after_kill": sum(bool(k["after_kill"]["inconsistent"]) for k in kills),
        "inconsistent_after_rerun": sum(bool(k["after_rerun"]["inconsistent"]) for k in kills),
        "lost_requests": sum(len(k["lost_requests"]) for k in kills),
        "reruns_equal": sum(k["equal"] for k in kills),
        # equal but for the columns the control re-run (no kill) also differs in: what the
        # stage does not reproduce anyway, not what the crash did
        "reruns_equal_but_control": sum(
            k["rerun"].startswith("exited 0") and not k["unexplained_differences"] for k in kills
        ),
        "reruns_failed": sum(not k["rerun"].startswith("exited 0") for k in kills),
        "reruns_needed": sum(not k["rerun"].startswith("exited 0: not needed") for k in kills),
        "with_leftovers": sum(bool(k["after_rerun"]["leftovers"]) for k in kills),
        "left_to_maintenance": sum(
            bool(k["after_rerun"].get("left_to_maintenance")) for k in kills
        ),
        "control_equal": None if control_run is None else not control_run["differences"],
        "wall_s": round(sum(k["wall_s"] for k in kills)),
    }


def print_table(rows: list[dict], kills: int, seed: int, after_writes: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    when = "once k of its n outputs changed" if after_writes else "at random points"
    table = Table(title=f"SIGKILL {when}: {kills} per target asked, seed {seed}")
    columns = (
        ("target", "target"),
        ("kills", "kills"),
        ("mid-write", "killed_mid_write"),
        ("finished first", "finished_before_kill"),
        ("corrupt tables", "corrupt_tables"),
        ("duplicate keys", "duplicate_keys"),
        ("inconsistent after kill", "inconsistent_after_kill"),
        ("inconsistent after re-run", "inconsistent_after_rerun"),
        ("lost requests", "lost_requests"),
        ("re-runs equal", "reruns_equal"),
        ("leftovers", "with_leftovers"),
        ("left to maintenance", "left_to_maintenance"),
        ("control", "control_equal"),
        ("wall", "wall_s"),
    )
    for title, _ in columns:
        table.add_column(title, justify="left" if title == "target" else "right")
    for row in rows:
        cells = []
        for _, key in columns:
            value = row[key]
            if key == "reruns_equal":
                but = row["reruns_equal_but_control"]
                value = f"{value}/{row['kills']}" + (
                    f" ({but} but for the control's)" if but != value else ""
                )
            elif key == "control_equal":
                value = "-" if value is None else ("equal" if value else "DIFFERS")
            elif key == "wall_s":
                value = "{}m{:02d}s".format(*divmod(value, 60))
            cells.append(str(value))
        table.add_row(*cells)
    Console(width=200).print(table)


class Results:
    """The kills' results as they complete, one file each: ``kills/<code key>/seed-<seed>/
    <target>/<index>.json`` (and ``control.json``). A later call with the same seed, on the
    same code, goes on where an earlier one stopped: kill ``i`` of a target draws from its own
    generator (``seed/target/i``), so the kills done and those still to do are one run's."""

    def __init__(self, state: Path, key: str, seed: int, kind: str = ""):
        self.folder = state / "kills" / key / f"seed-{seed}{kind}"

    def path(self, target: str, kill: int | str) -> Path:
        name = kill if isinstance(kill, str) else f"{kill:03d}"
        return self.folder / target / f"{name}.json"

    def get(self, target: str, kill: int | str) -> dict | None:
        path = self.path(target, kill)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, target: str, kill: int | str, record: dict) -> None:
        path = self.path(target, kill)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(record, default=str, indent=1))
        partial.replace(path)  # a result is whole or absent, whenever this process dies

    def kills(self, target: str) -> list[dict]:
        folder = self.folder / target
        found = sorted(folder.glob("[0-9]*.json")) if folder.exists() else []
        return [json.loads(p.read_text()) for p in found]

    def others(self) -> int:
        """Kills kept for other code (not counted here)."""
        kept = self.folder.parent.parent
        mine = self.folder.parent
        return sum(1 for p in kept.glob("*/seed-*/*/[0-9]*.json") if p.parent.parent.parent != mine)


def harness_version() -> str:
    return hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:10]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per target (default 20)")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument(
        "--stages",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated targets (default all: {','.join(DEFAULT_TARGETS)}; "
        "check_silver and check_gold can be added)",
    )
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--rebuild-reference",
        action="store_true",
        help="rebuild the clean run even where one for the same code is kept",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="discard the kills kept for this seed and code instead of going on with them",
    )
    parser.add_argument("--no-control", action="store_true", help="skip the control re-runs")
    parser.add_argument(
        "--stop-after",
        type=float,
        metavar="MINUTES",
        help="start no kill after this many minutes (the next call goes on from there)",
    )
    parser.add_argument(
        "--after-writes",
        action="store_true",
        help="kill each step once it has changed k of the n outputs its clean run changed (k "
        "drawn in 1..n-1; the steps with two outputs or more), kept apart from the timed kills",
    )
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.stages.split(",") if t.strip()]
    unknown = [t for t in targets if t not in (*TARGETS, "spark-connect")]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {[*TARGETS, 'spark-connect']}")
    args.state = args.state.resolve()
    args.state.mkdir(parents=True, exist_ok=True)
    h = Harness(args.state, args.port, targets)
    from tooling import services

    # SIGTERM stops it as Ctrl-C does: the step's process group killed, the services stopped,
    # the kills done kept for the next call (a background job started without job control
    # ignores SIGINT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began, code, key = time.perf_counter(), code_version(), code_key()
    deadline = None if args.stop_after is None else began + args.stop_after * 60
    results = Results(args.state, key, args.seed, "-after-writes" if args.after_writes else "")
    if args.fresh:
        shutil.rmtree(results.folder, ignore_errors=True)
    try:
        manifest = h.manifest()
        kept = set(killed_steps(targets)) <= set(manifest.get("steps", {}))
        if args.rebuild_reference or not kept or manifest.get("code_key") != key:
            manifest = h.build_reference()
        else:
            print(f"the clean run kept for this code ({key}, built {manifest['built_s']} s) is "
                  "reused", flush=True)  # fmt: skip
            ensure_spark(h.settings)
        if args.after_writes:
            single = [t for t in targets if len(manifest["steps"].get(TARGETS.get(t, ""), {})
                                                .get("changed", [])) < 2]  # fmt: skip
            if single:
                print(f"--after-writes: {single} change fewer than two outputs, left out")
                targets = [t for t in targets if t not in single]
        controls: dict[str, dict | None] = {}
        for target in targets:
            control_run = results.get(target, "control")
            if control_run is None and not args.no_control:
                control_run = {"target": target, "kill": "control", **control(h, target, manifest)}
                results.put(target, "control", control_run)
            if control_run and control_run["differences"]:
                print(
                    f"{target}: the control re-run (no kill) DIFFERS: {control_run['differences']}"
                )
            controls[target] = control_run
        walls: dict[str, dict[str, list[float]]] = {t: {} for t in targets}
        for index in range(args.kills):  # kill i of every target, then kill i + 1: a call
            for target in targets:  # stopped early has them all about as often
                record = results.get(target, index)
                if record is not None:  # done by an earlier call: its clean wall time counts
                    if record.get("clean_wall_s"):
                        reference = manifest["steps"][record["step"]]["wall_s"]
                        seen = walls[target].setdefault(record["step"], [reference])
                        seen.append(record["clean_wall_s"])
                    continue
                if deadline is not None and time.perf_counter() > deadline:
                    continue
                # one generator per kill: a later call draws what one whole run would have
                rng = random.Random(f"{args.seed}/{target}/{index}")
                record = one_kill(h, target, index, rng, manifest, walls[target], args.after_writes)
                known = {difference_key(d) for d in (controls[target] or {}).get("differences", [])}
                record["unexplained_differences"] = [
                    d for d in record["differences"] if difference_key(d) not in known
                ]
                record["code"], record["harness"] = code, harness_version()
                results.put(target, index, record)
                problems = {
                    phase: {k: len(v) for k, v in record[phase].items() if v}
                    for phase in ("after_kill", "after_rerun")
                }
                print(
                    f"{target} #{index}: {record['step']}, killed at {record['delay_s']} s "
                    f"({record['process']}, {record['progress']} written); re-run "
                    f"{record['rerun']}, {'equal' if record['equal'] else 'DIFFERS'}; "
                    f"{problems}; lost requests {len(record['lost_requests'])}; "
                    f"{record['wall_s']} s",
                    flush=True,
                )
                for line in record["differences"][:5]:
                    print(f"    differs: {line}", flush=True)
    finally:
        services.down(h.settings)
    records, rows = {}, []
    for target in targets:  # every kill kept for this seed and code, this call's or earlier
        kills = results.kills(target)
        records[target] = {"kills": kills, "control": controls.get(target)}
        rows.append(summarize(target, kills, controls.get(target)))
    print_table(rows, args.kills, args.seed, args.after_writes)
    if others := results.others():
        print(f"({others} kill(s) kept for other code are not counted)")
    harnesses = sorted({k.get("harness", "?") for r in records.values() for k in r["kills"]})
    if len(harnesses) > 1:
        print(f"the kills counted ran under {len(harnesses)} versions of the harness")
    output = {
        "kills_per_target": args.kills,
        "seed": args.seed,
        "wall_s": round(time.perf_counter() - began),
        "reference": {k: v for k, v in manifest.items() if k != "steps"}
        | {
            "steps": {
                n: {"wall_s": s["wall_s"], "changed": s["changed"]}
                for n, s in manifest["steps"].items()
            }
        },
        "code": code,
        "code_key": key,
        "code_at_end": code_version(),
        "harness_versions": harnesses,
        "results": str(results.folder),
        "summary": rows,
        "targets": records,
    }
    out = args.state / ("chaos-after-writes.json" if args.after_writes else "chaos.json")
    out.write_text(json.dumps(output, indent=2, default=str))
    if output["code_at_end"] != code:
        print(f"the code under test changed during the run ({code} -> {output['code_at_end']})")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
