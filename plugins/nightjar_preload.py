"""Preload the job stack in the scheduler, so that task processes start warm.

With the LocalExecutor, every task process is forked from the scheduler (via its executor
workers), so modules imported here are inherited for free instead of being imported by every
task: pandas, pyarrow, the Spark Connect client and delta-rs cost ~1.5 s per task on two cores, and
Great Expectations several seconds more.
Only the scheduler preloads (the API server, DAG processor and triggerer do not run tasks), and
only when Airflow loads plugins eagerly (``[core] lazy_load_plugins = False``, which
``tooling/airflow_env.py`` sets). Importing is all it does: no Spark session or gRPC
channel is opened before the fork.
"""

from __future__ import annotations

import importlib
import logging
import sys

from airflow.plugins_manager import AirflowPlugin

from jobs import stages

log = logging.getLogger(__name__)

PRELOAD = (
    # what the task runner imports to parse the DAG file and run a @task
    "airflow.sdk.bases.decorator",
    "airflow.sdk.definitions.decorators",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.standard.operators.python",
    "jinja2.ext",
    "pandas",
    "pyarrow",
    "pyarrow.compute",
    "pyspark.sql.connect.session",
    "grpc._channel",
    "pyspark.sql.connect.functions",
    "deltalake",
    "jobs.pipeline",
    "jobs.common.delta.rs",
    "great_expectations",
    # the ML side: Feast, MLflow, XGBoost, Evidently cost 5-15 s each to import on two cores
    "feast",
    "feast.repo_operations",
    "feast.infra.passthrough_provider",
    "feast.infra.online_stores.redis",
    "ibis.backends.duckdb",  # Feast's point-in-time joins (sqlglot's dialects with it)
    "jobs.adapters.feast_offline_store",
    "jobs.adapters.feast_arrow_engine",
    "mlflow",
    # imported by the first client of a sqlite/SQL tracking store: 1.5 s per task, alembic included
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.xgboost",
    "mlflow.sklearn",
    "mlflow.tracing.processor",
    "mlflow.tracing.export",
    "opentelemetry.sdk.metrics",
    "xgboost",
    "evidently",
    # what Evidently's report widgets draw with
    "plotly.offline",
    "plotly.tools",
    "plotly.validators._data",
    "plotly.validators._layout",
    "plotly.validators._frames",
    "plotly.validators.bar",
    "plotly.validators.scatter",
    "narwhals._pandas_like.dataframe",
    "jobs.adapters.evidently_column_drift",
    "jobs.training.train",
    # every stage's module, as jobs/stages.py declares them
    *dict.fromkeys(stage.module for stage in stages.STAGES),
)


def _is_scheduler() -> bool:
    return len(sys.argv) > 1 and sys.argv[1] == "scheduler"


if _is_scheduler():
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except Exception:  # a failed preload only costs the task the import it would do anyway
            log.warning("nightjar: could not preload %s", module, exc_info=True)


class NightjarPreload(AirflowPlugin):
    name = "nightjar_preload"
