"""Object storage: one set of settings (``s3_*``), in the form each library wants it.

The landing zone, the lakehouse and MLflow's artifacts can live in a bucket on any server that
speaks the S3 API (``NIGHTJAR_S3_BUCKET``, ``_ENDPOINT``, ``_ACCESS_KEY``, ``_SECRET_KEY``). Each
library names and configures S3 its own way; this module is the one place that translates:

* **URIs**: ``s3://bucket/key`` everywhere. Hadoop's ``s3a://`` is accepted in the settings and
  rewritten there; Spark opens ``s3://`` with S3A (``fs.s3.impl``), so no job rewrites a URI.
* **delta-rs, pyarrow, boto3** (MLflow's artifact store) read the standard ``AWS_*`` variables:
  :func:`export_environment` sets them in the process when a ``Settings`` with object storage is
  made (so every task, CLI command and Feast subprocess gets them), and the Spark services get
  them in their environment.
* **Spark** (Hadoop's S3A, jars fetched by ``make setup``): :func:`spark_conf`.

Concurrent Delta commits: delta-rs 1.x commits with S3's conditional put (``If-None-Match``),
so writers in different processes are safe without a lock table on any server that honours it
(AWS S3, the versitygw server the tests start). Spark's Delta commits through its single-driver
S3 log store, which is safe because every job shares one driver (the Connect server).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyarrow import fs as pafs

    from jobs.common.settings import Settings


def environment(settings: Settings) -> dict[str, str]:
    """The ``AWS_*`` variables delta-rs, pyarrow and boto3 read (none without object storage)."""
    if not (settings.s3_bucket or settings.s3_endpoint):
        return {}
    env = {"AWS_REGION": settings.s3_region, "AWS_DEFAULT_REGION": settings.s3_region}
    if settings.s3_endpoint:
        env["AWS_ENDPOINT_URL"] = settings.s3_endpoint
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint  # MLflow's own name for it
        if settings.s3_endpoint.startswith("http://"):
            env["AWS_ALLOW_HTTP"] = "true"  # delta-rs refuses plain HTTP otherwise
    if settings.s3_access_key:
        env["AWS_ACCESS_KEY_ID"] = settings.s3_access_key
    if settings.s3_secret_key:
        env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_key
    return env


def export_environment(settings: Settings) -> None:
    os.environ.update(environment(settings))


def spark_conf(settings: Settings) -> dict[str, str]:
    """Hadoop's S3A for ``s3://`` and ``s3a://`` URIs, on the same endpoint and credentials."""
    from jobs.common.spark_jars import installed_jars

    if not (settings.s3_bucket or settings.s3_endpoint):
        return {}
    s3a = {
        "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.s3a.endpoint.region": settings.s3_region,
        "fs.s3a.path.style.access": "true",  # a local server has no per-bucket host names
    }
    if settings.s3_endpoint:
        s3a["fs.s3a.endpoint"] = settings.s3_endpoint
        s3a["fs.s3a.connection.ssl.enabled"] = str(settings.s3_endpoint.startswith("https"))
    if settings.s3_access_key and settings.s3_secret_key:
        s3a["fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        )
        s3a["fs.s3a.access.key"] = settings.s3_access_key
        s3a["fs.s3a.secret.key"] = settings.s3_secret_key
    return {
        "spark.jars": ",".join(installed_jars(jar_set="s3")),
        **{f"spark.hadoop.{key}": value for key, value in s3a.items()},
        # Python workers on the executors (scoring's UDFs) read with pyarrow
        **{f"spark.executorEnv.{key}": value for key, value in environment(settings).items()},
    }


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for ``uri`` (a path, file:// or s3://) and the path inside it."""
    from pyarrow import fs as pafs

    if "://" not in uri:
        uri = f"file://{os.path.abspath(uri)}"
    return pafs.FileSystem.from_uri(uri)
