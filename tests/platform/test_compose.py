"""docker-compose.yml validates with Debian's docker-compose and keeps its promises: secrets
only from .env, only the UIs published (on loopback), one image with Spark-native Delta."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "FEAST_DB_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_SECRET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_FERNET_KEY",
    "GRAFANA_ADMIN_PASSWORD",
}


def compose(*args: str, env_file: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: run `make system-deps` (Debian package)")
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", "docker-compose.yml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose("config", env_file=ROOT / ".env.example")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_compose_file_validates_with_the_example_env():
    result = compose("config", "-q", env_file=ROOT / ".env.example")
    assert result.returncode == 0, result.stderr


def test_without_an_env_file_it_refuses_naming_the_missing_secret(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose("config", "-q", env_file=empty)
    assert result.returncode != 0
    assert "in .env" in result.stderr and any(s in result.stderr for s in SECRETS)


def test_every_secret_comes_from_the_env_file_which_is_not_committed():
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(example) >= SECRETS
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in SECRETS:
        assert f"${{{secret}:?" in text, secret
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, ".env must be git-ignored"


def binding(port: str | dict) -> tuple[str | None, int]:
    """(host ip, container port) of a published port, long or short syntax."""
    if isinstance(port, dict):
        return port.get("host_ip"), int(port["target"])
    parts = port.split("/")[0].split(":")
    return (parts[0] if len(parts) == 3 else None), int(parts[-1])


def bind_mount(volume: str | dict) -> tuple[str, str] | None:
    """(repository path, container path) of a file mounted from the repository, long or short
    syntax; None for a named volume."""
    if isinstance(volume, dict):
        source, target = volume.get("source", ""), volume["target"]
    else:
        source, target = volume.split(":")[:2]
    if not source.startswith(str(ROOT)):
        return None
    return source.removeprefix(str(ROOT) + "/"), target


def test_only_the_uis_are_published_and_only_on_loopback(config):
    published = {
        name: [binding(p) for p in service.get("ports", [])]
        for name, service in config["services"].items()
        if service.get("ports")
    }
    assert published == {
        "airflow-apiserver": [("127.0.0.1", 8080)],
        "mlflow": [("127.0.0.1", 5000)],
        "prometheus": [("127.0.0.1", 9090)],
        "grafana": [("127.0.0.1", 3000)],
    }


def test_the_stack_has_every_service_and_the_jobs_use_spark_native_delta(config):
    services = config["services"]
    assert {
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "spark-master",
        "spark-worker",
        "spark-connect",
        "mlflow",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "statsd-exporter",
        "pushgateway",
        "alertmanager",
        "prometheus",
        "grafana",
    } == set(services)
    scheduler = services["airflow-scheduler"]["environment"]
    assert scheduler["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
        "postgresql+psycopg2://airflow:"
    )
    assert scheduler["NIGHTJAR_DELTA_BACKEND"] == "spark"
    assert scheduler["NIGHTJAR_SPARK_REMOTE"] == "sc://spark-connect:15002"
    assert scheduler["NIGHTJAR_FEAST_ONLINE_STORE"] == "redis"
    assert scheduler["NIGHTJAR_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "postgresql+psycopg2://mlflow:" in " ".join(services["mlflow"]["command"])
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    # Delta's and S3A's jars come from the same step as `make setup`
    assert "python -m jobs.common.spark_jars" in dockerfile and "spark-jars-s3" in dockerfile
    assert services["airflow-scheduler"]["depends_on"]["airflow-init"] == {
        "condition": "service_completed_successfully"
    }


def test_the_tasks_push_metrics_that_prometheus_scrapes_and_grafana_shows(config):
    """The compose services mount the files the local stack is tested with: the rules, the
    configurations this repository builds, and the provisioned dashboard."""
    services = config["services"]
    scheduler = services["airflow-scheduler"]["environment"]
    assert scheduler["NIGHTJAR_PUSHGATEWAY_URL"] == "http://pushgateway:9091"
    assert scheduler["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter"
    mounts = {
        name: dict(bind_mount(v) for v in s["volumes"] if bind_mount(v))
        for name, s in services.items()
        if name in ("prometheus", "alertmanager", "grafana", "statsd-exporter")
    }
    assert mounts["prometheus"] == {
        "observability/prometheus.yml": "/etc/prometheus/prometheus.yml",
        "observability/rules.yml": "/etc/prometheus/rules.yml",
    }
    assert mounts["statsd-exporter"] == {
        "observability/statsd_mapping.yml": "/etc/statsd/mapping.yml"
    }
    assert mounts["alertmanager"] == {
        "observability/alertmanager.yml": "/etc/alertmanager/alertmanager.yml"
    }
    assert set(mounts["grafana"]) == {
        "observability/grafana/datasources.yml",
        "observability/grafana/dashboards.yml",
        "observability/grafana/nightjar.json",
    }
    for name, service in services.items():  # pinned, never :latest (the one we build aside)
        if "build" not in service:
            assert not service["image"].endswith(":latest") and ":" in service["image"], name


@mock.patch.dict(os.environ)  # a Settings with object storage exports its AWS_* variables
def test_the_stack_keeps_its_data_in_one_bucket_configured_like_the_tests(config):
    """The jobs and the Connect server read the same NIGHTJAR_S3_* settings the object-storage
    tests use; every library's S3 configuration is derived from them, none is written twice."""
    from jobs.common.settings import Settings
    from jobs.platform.services import spark_connect_service

    services = config["services"]
    scheduler = services["airflow-scheduler"]["environment"]
    assert scheduler["NIGHTJAR_S3_BUCKET"] == "nightjar"
    assert scheduler["NIGHTJAR_S3_ENDPOINT"] == "http://minio:9000"
    assert not [
        k for k in scheduler if k.startswith("AWS_") or k.endswith(("LAKEHOUSE_URI", "LANDING_URI"))
    ]
    connect = services["spark-connect"]
    assert connect["command"] == ["nightjar", "services", "exec", "spark-connect"]
    env = {k: str(v) for k, v in connect["environment"].items() if k.startswith("NIGHTJAR_")}
    with mock.patch.dict(os.environ, env):
        settings = Settings()
    assert settings.lakehouse == "s3://nightjar/lakehouse"
    assert settings.mlflow_artifacts == "s3://nightjar/mlflow"
    command = spark_connect_service(settings).command
    confs = dict(c.split("=", 1) for c in command[command.index("--name") + 3 :: 2])
    assert command[command.index("--master") + 1] == "spark://spark-master:7077"
    assert confs["spark.connect.grpc.binding.address"] == "0.0.0.0"
    assert confs["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    assert confs["spark.hadoop.fs.s3a.access.key"] == scheduler["NIGHTJAR_S3_ACCESS_KEY"]
    assert "hadoop-aws" in confs["spark.jars"]
    assert "http://mlflow:5000" in scheduler["NIGHTJAR_MLFLOW_TRACKING_URI"]
    assert "s3://nightjar/mlflow" in services["mlflow"]["command"]
