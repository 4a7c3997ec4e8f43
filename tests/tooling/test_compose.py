"""docker-compose.yml validates with Debian's docker-compose and keeps its promises: secrets
only from .env, only the UIs published (on loopback), one image with Spark-native Delta; and it is
locked down: pinned images, no secret in a process's arguments, one least-privilege object-store
user per service (the root credentials in the init container only), MLflow behind its basic-auth
app, Airflow on its FAB auth manager with Admin/Op/Viewer users, no Airflow secret in the Spark
containers, and every jar the image downloads checked against a pinned sha256."""

from __future__ import annotations

import configparser
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

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
    "MINIO_AIRFLOW_SECRET_KEY",
    "MINIO_SPARK_SECRET_KEY",
    "MINIO_MLFLOW_SECRET_KEY",
    "MINIO_FEAST_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_OP_PASSWORD",
    "AIRFLOW_VIEWER_PASSWORD",
    "AIRFLOW_SECRET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_FERNET_KEY",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_AIRFLOW_PASSWORD",
    "MLFLOW_SECRET_KEY",
    "GRAFANA_ADMIN_PASSWORD",
}
AIRFLOW = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
SPARK = ("spark-master", "spark-worker", "spark-connect")
INIT_WITH_ROOT = ("minio", "minio-init")  # the only holders of the object store's root
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


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


def example_env() -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )


def test_every_secret_comes_from_the_env_file_which_is_not_committed():
    example = example_env()
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
        "mlflow-init",
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
    assert "postgresql+psycopg2://mlflow@postgres:5432/mlflow" in services["mlflow"]["command"]
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


@mock.patch.dict(os.environ)  # a Settings with object storage exports its AWS_* variables
def test_the_stack_keeps_its_data_in_one_bucket_configured_like_the_tests(
    config, monkeypatch, tmp_path
):
    """The jobs and the Connect server read the same NIGHTJAR_S3_* settings the object-storage
    tests use; every library's S3 configuration is derived from them, none is written twice.
    The Connect server's credentials stay in its environment (AWS_*, read by S3A's default
    provider chain), and its configuration is a properties file, not `--conf` arguments."""
    from jobs.common.settings import Settings
    from tooling.services import spark_connect_service

    services = config["services"]
    scheduler = services["airflow-scheduler"]["environment"]
    assert scheduler["NIGHTJAR_S3_BUCKET"] == "nightjar"
    assert scheduler["NIGHTJAR_S3_ENDPOINT"] == "http://minio:9000"
    assert not [
        k for k in scheduler if k.startswith("AWS_") or k.endswith(("LAKEHOUSE_URI", "LANDING_URI"))
    ]
    connect = services["spark-connect"]
    assert connect["command"] == ["nightjar", "services", "exec", "spark-connect"]
    env = {k: str(v) for k, v in connect["environment"].items()}
    for key in ("NIGHTJAR_S3_ACCESS_KEY", "NIGHTJAR_S3_SECRET_KEY"):  # the suite's own
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NIGHTJAR_STATE_DIR", str(tmp_path))  # the properties file goes there
    settings = Settings()
    assert settings.lakehouse == "s3://nightjar/lakehouse"
    assert settings.mlflow_artifacts == "s3://nightjar/mlflow"
    service = spark_connect_service(settings)
    command = service.command
    properties = command[command.index("--properties-file") + 1]
    confs = dict(line.split(" ", 1) for line in Path(properties).read_text().splitlines())
    assert command[command.index("--master") + 1] == "spark://spark-master:7077"
    assert confs["spark.connect.grpc.binding.address"] == "0.0.0.0"
    assert confs["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    assert "hadoop-aws" in confs["spark.jars"]
    secret = env["AWS_SECRET_ACCESS_KEY"]
    assert secret == example_env()["MINIO_SPARK_SECRET_KEY"]
    assert not [arg for arg in command if secret in arg]
    assert not [key for key in confs if key.endswith(("s3a.access.key", "s3a.secret.key"))]
    assert "spark.hadoop.fs.s3a.aws.credentials.provider" not in confs  # S3A's default chain
    assert (service.env["AWS_ACCESS_KEY_ID"], service.env["AWS_SECRET_ACCESS_KEY"]) == (
        "spark",
        secret,
    )
    assert "http://mlflow:5000" in scheduler["NIGHTJAR_MLFLOW_TRACKING_URI"]
    assert "s3://nightjar/mlflow" in services["mlflow"]["command"]


# --- Locked down ----------------------------------------------------------------------------


def pinned(image: str) -> bool:
    """A tag naming one release (7.4.6, v0.28.0, RELEASE.2025-09-07T16-13-09Z) or a digest; not
    a moving one (latest, 7, 3.11-slim)."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False  # no tag at all (the colon was a registry's port)
    release = r"v?\d+\.\d+\.\d+|RELEASE\.\d{4}-\d\d-\d\d"
    if name.endswith("postgres"):  # PostgreSQL numbers its releases MAJOR.MINOR (16.10)
        release += r"|\d+\.\d+\b"
    return bool(re.match(rf"({release})", tag))


def test_every_image_is_pinned_to_a_release(config):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in config["services"].items():
        assert pinned(service["image"]), f"{name}: {service['image']}"
        if "build" in service:  # ours: tagged with the project's version
            assert service["image"] == f"nightjar:{project}", name
    bases = re.findall(r"^FROM\s+(\S+)", (ROOT / "docker/Dockerfile").read_text(), re.M)
    assert bases and all(pinned(base) for base in bases), bases
    for tag in ("redis:7", "redis:7.4", "postgres:16", "python:3.11-slim", "x:latest", "minio"):
        assert not pinned(tag), tag  # the moving tags this check exists to refuse


def process_arguments(service: dict) -> str:
    """What a service's processes get as arguments: its command, entrypoint and health check,
    with compose's `$$` escapes read as the shell will see them."""
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts += [value] if isinstance(value, str) else value
    test = (service.get("healthcheck") or {}).get("test") or []
    parts += [test] if isinstance(test, str) else test
    return "\n".join(map(str, parts)).replace("$$", "$")


def outside_stdin_and_environment(script: str) -> str:
    """A shell script less what never becomes an argument: here-document bodies (stdin) and
    the NAME=value assignments before a command (its environment)."""
    kept, end = [], None
    for line in script.splitlines():
        if end is not None:
            end = None if line.strip() == end else end
            continue
        if heredoc := re.search(r"<<-?\s*['\"]?(\w+)", line):
            end = heredoc.group(1)
        kept.append(line)
    return re.sub(
        r"((?:^|[;&|(\n])\s*)(?:[A-Za-z_]\w*=(?:\"[^\"]*\"|'[^']*'|\S*)\s+)+",
        r"\1",
        "\n".join(kept),
    )


def test_no_secret_is_a_process_argument(config):
    """No secret value, nor a shell reference to a variable holding one, in any command,
    entrypoint or health check (the process list shows arguments to every user): secrets
    travel in the environment, on stdin, or in a file."""
    example = example_env()
    values = {example[name] for name in SECRETS}
    for name, service in config["services"].items():
        arguments = process_arguments(service)
        assert not [v for v in values if v in arguments], name
        environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        holders = SECRETS | {k for k, v in environment.items() if any(s in v for s in values)}
        script = outside_stdin_and_environment(arguments)
        leaked = [h for h in holders if re.search(rf"\$\{{?{h}\b", script)]
        assert not leaked, f"{name} passes {leaked} as arguments"
    # the check itself sees the forms that leak, and lets the ones that do not pass
    leaks = 'redis-server --requirepass "$REDIS_PASSWORD"'
    safe = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli\nx <<EOF\nrequirepass "$REDIS_PASSWORD"\nEOF'
    assert "$REDIS_PASSWORD" in outside_stdin_and_environment(leaks)
    assert "$REDIS_PASSWORD" not in outside_stdin_and_environment(safe)


def fake_commands(folder: Path, *names: str) -> Path:
    """Stand-ins that log their arguments and their stdin to $LOG, and answer PONG."""
    folder.mkdir()
    for name in names:
        fake = folder / name
        fake.write_text(
            "#!/bin/sh\n"
            f'printf "ARGS {name}%s\\n" "$(printf " %s" "$@")" >> "$LOG"\n'
            'env | grep "^REDISCLI_AUTH=" | sed "s/^/ENV /" >> "$LOG" || true\n'
            '[ -t 0 ] || sed "s/^/STDIN /" >> "$LOG"\n'
            "echo PONG\n"
        )
        fake.chmod(0o755)
    return folder


def test_redis_gets_its_password_on_stdin_and_its_health_check_from_the_environment(
    config, tmp_path
):
    redis = config["services"]["redis"]
    password = example_env()["REDIS_PASSWORD"]
    assert redis["environment"]["REDIS_PASSWORD"] == password
    fakes = fake_commands(tmp_path / "bin", "docker-entrypoint.sh", "redis-cli")
    log = tmp_path / "log"
    env = {"PATH": f"{fakes}:/usr/bin:/bin", "REDIS_PASSWORD": password, "LOG": str(log)}
    command = [part.replace("$$", "$") for part in redis["command"]]
    subprocess.run(command, env=env, check=True, stdin=subprocess.DEVNULL)
    check = redis["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL"
    subprocess.run(["sh", "-c", check[1].replace("$$", "$")], env=env, check=True)
    lines = log.read_text().splitlines()
    args = [line for line in lines if line.startswith("ARGS")]
    assert args[0].split()[1:4] == ["docker-entrypoint.sh", "redis-server", "-"]
    assert f'STDIN requirepass "{password}"' in lines
    assert f"ENV REDISCLI_AUTH={password}" in lines
    assert not [line for line in args if password in line]


def test_minio_init_makes_one_user_per_service_and_sends_every_secret_on_stdin(config, tmp_path):
    init = config["services"]["minio-init"]
    mounts = dict(bind_mount(v) for v in init["volumes"] if bind_mount(v))
    assert mounts == {
        "docker/minio/init.sh": "/etc/nightjar/minio/init.sh",
        "docker/minio/policies": "/etc/nightjar/minio/policies",
    }
    assert [*init["entrypoint"], *init["command"]] == ["/bin/sh", "/etc/nightjar/minio/init.sh"]
    fakes = fake_commands(tmp_path / "bin", "mc")
    log = tmp_path / "log"
    env = {k: str(v) for k, v in init["environment"].items()}
    env |= {"PATH": f"{fakes}:/usr/bin:/bin", "LOG": str(log), "POLICIES": "/policies"}
    subprocess.run(
        ["sh", str(ROOT / "docker/minio/init.sh")], env=env, check=True, stdin=subprocess.DEVNULL
    )
    lines = log.read_text().splitlines()
    example = example_env()
    root = example["MINIO_ROOT_PASSWORD"]
    alias = f"ARGS mc alias set local http://minio:9000 {example['MINIO_ROOT_USER']}"
    assert lines[:2] == [alias, f"STDIN {root}"]
    for user in ("airflow", "spark", "mlflow", "feast"):
        secret = example[f"MINIO_{user.upper()}_SECRET_KEY"]
        added = lines.index(f"ARGS mc admin user add local {user}")
        assert lines[added + 1] == f"STDIN {secret}", user
        assert f"ARGS mc admin policy create local nightjar-{user} /policies/{user}.json" in lines
        assert f"ARGS mc admin policy attach local nightjar-{user} --user {user}" in lines
    secrets = {v for k, v in example.items() if k.startswith("MINIO_") and k.endswith("_KEY")}
    secrets.add(root)
    assert not [
        line for line in lines if line.startswith("ARGS") and any(s in line for s in secrets)
    ]


# What each object-store user may do, by prefix of the `nightjar` bucket: "rw" or "r".
LEAST_PRIVILEGE = {
    "airflow": {"landing": "rw", "lakehouse": "rw", "mlflow": "rw"},  # tasks write MLflow runs
    "spark": {"landing": "r", "lakehouse": "rw"},
    "mlflow": {"mlflow": "rw"},
    "feast": {"lakehouse": "r"},
}
WRITES = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}


def test_each_object_store_user_reaches_only_its_prefixes():
    """docker/minio/policies/<user>.json, as MinIO evaluates them (checked against a MinIO
    server with boto3, pyarrow, delta-rs and Spark's S3A when they were written)."""
    folder = ROOT / "docker/minio/policies"
    assert {p.stem for p in folder.glob("*.json")} == set(LEAST_PRIVILEGE)
    for user, expected in LEAST_PRIVILEGE.items():
        granted: dict[str, str] = {}
        for statement in json.loads((folder / f"{user}.json").read_text())["Statement"]:
            assert statement["Effect"] == "Allow" and "NotAction" not in statement, user
            actions = set(statement["Action"])
            assert all(a.startswith("s3:") and "*" not in a for a in actions), (user, actions)
            for resource in statement["Resource"]:
                if resource == "arn:aws:s3:::nightjar":  # the bucket: listing only
                    assert actions <= {"s3:ListBucket", "s3:GetBucketLocation"}, user
                    condition = (statement.get("Condition") or {}).get("StringLike", {})
                    if "s3:ListBucket" in actions and user != "airflow":  # it owns all there is
                        listed = {p.split("/")[0] for p in condition["s3:prefix"]}
                        assert listed == set(expected), user
                    continue
                key = resource.removeprefix("arn:aws:s3:::nightjar/")
                assert key != resource and key.split("/")[0] in expected, (user, resource)
                assert re.fullmatch(r"[a-z]+(/\*)?", key), (user, resource)
                access = "rw" if actions & WRITES else "r"
                granted[key.split("/")[0]] = max(granted.get(key.split("/")[0], ""), access)
        assert granted == expected, user


def s3_user(environment: dict) -> tuple[str | None, str | None]:
    return (
        environment.get("NIGHTJAR_S3_ACCESS_KEY") or environment.get("AWS_ACCESS_KEY_ID"),
        environment.get("NIGHTJAR_S3_SECRET_KEY") or environment.get("AWS_SECRET_ACCESS_KEY"),
    )


def test_only_the_init_service_holds_the_object_store_root(config):
    example = example_env()
    root_user, root = example["MINIO_ROOT_USER"], example["MINIO_ROOT_PASSWORD"]
    users = {name: "airflow" for name in AIRFLOW}
    users |= {"airflow-init": "feast", "spark-connect": "spark", "spark-worker": "spark"}
    users |= {"mlflow": "mlflow"}
    for name, service in config["services"].items():
        environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        if name in INIT_WITH_ROOT:
            assert environment["MINIO_ROOT_PASSWORD"] == root
            continue
        assert root not in json.dumps(environment) + process_arguments(service), name
        assert s3_user(environment)[0] != root_user, name
        user = users.get(name)
        secret = example[f"MINIO_{user.upper()}_SECRET_KEY"] if user else None
        assert s3_user(environment) == (user, secret), name


def test_mlflow_signs_everyone_in_and_the_jobs_sign_in_as_their_own_user(config):
    services = config["services"]
    example = example_env()
    mlflow = services["mlflow"]
    command, environment = mlflow["command"], mlflow["environment"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    store = urlsplit(command[command.index("--backend-store-uri") + 1])
    assert (store.username, store.password) == ("mlflow", None)  # libpq reads PGPASSWORD
    assert environment["PGPASSWORD"] == example["MLFLOW_DB_PASSWORD"]
    assert environment["MLFLOW_AUTH_ADMIN_PASSWORD"] == example["MLFLOW_ADMIN_PASSWORD"]
    assert environment["MLFLOW_FLASK_SERVER_SECRET_KEY"] == example["MLFLOW_SECRET_KEY"]
    mounts = {t: s for s, t in (bind_mount(v) for v in mlflow["volumes"]) if s}
    assert mounts[environment["MLFLOW_AUTH_CONFIG_PATH"]] == "docker/mlflow/basic_auth.ini"
    ini = configparser.ConfigParser()
    ini.read(ROOT / "docker/mlflow/basic_auth.ini")
    auth = ini["mlflow"]
    assert auth["default_permission"] in ("READ", "NO_PERMISSIONS")
    assert auth["admin_username"] == "admin" and "admin_password" not in auth
    assert auth["authorization_function"].endswith(":authenticate_request_basic_auth")
    assert urlsplit(auth["database_uri"]).password is None
    assert mlflow["healthcheck"]["test"][-1] == "http://localhost:5000/health"
    # mlflow-init, as the admin, gives the jobs their own user; the jobs sign in as it
    init = services["mlflow-init"]
    assert init["command"] == ["python", "/opt/nightjar/docker/mlflow/users.py"]
    assert dict(bind_mount(v) for v in init["volumes"]) == {
        "docker/mlflow/users.py": "/opt/nightjar/docker/mlflow/users.py"
    }
    assert init["environment"]["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert init["environment"]["MLFLOW_TRACKING_PASSWORD"] == example["MLFLOW_ADMIN_PASSWORD"]
    users = load(ROOT / "docker/mlflow/users.py").USERS
    assert users == (("airflow", "MLFLOW_AIRFLOW_PASSWORD"),)
    assert init["environment"]["MLFLOW_AIRFLOW_PASSWORD"] == example["MLFLOW_AIRFLOW_PASSWORD"]
    assert init["depends_on"]["mlflow"] == {"condition": "service_healthy"}
    for name in AIRFLOW:
        environment = services[name]["environment"]
        assert environment["MLFLOW_TRACKING_USERNAME"] == "airflow", name
        assert environment["MLFLOW_TRACKING_PASSWORD"] == example["MLFLOW_AIRFLOW_PASSWORD"]
        assert example["MLFLOW_ADMIN_PASSWORD"] not in json.dumps(environment), name
        assert services[name]["depends_on"]["mlflow-init"] == {
            "condition": "service_completed_successfully"
        }


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_airflow_signs_in_through_fab_with_admin_op_and_viewer_users(config):
    services = config["services"]
    example = example_env()
    for name in (*AIRFLOW, "airflow-init"):
        environment = services[name]["environment"]
        assert environment["AIRFLOW__CORE__AUTH_MANAGER"] == FAB, name
        assert not [k for k in environment if "SIMPLE_AUTH_MANAGER" in k], name
    init = services["airflow-init"]
    script = init["command"][-1]
    migrate = script.index("airflow db migrate")  # FAB's tables and roles
    assert migrate < script.index("python /opt/nightjar/docker/airflow/users.py")
    assert dict(bind_mount(v) for v in init["volumes"] if bind_mount(v)) == {
        "docker/airflow/users.py": "/opt/nightjar/docker/airflow/users.py"
    }
    users = load(ROOT / "docker/airflow/users.py").USERS
    assert {role for _, role, _ in users} == {"Admin", "Op", "Viewer"}
    for _, _, variable in users:
        assert init["environment"][variable] == example[variable], variable
        for name in AIRFLOW:  # the users' passwords stay in the init container
            assert variable not in services[name]["environment"], name


def test_the_spark_containers_get_no_airflow_state_or_secret(config):
    services = config["services"]
    example = example_env()
    airflow_volumes = {
        v.split(":")[0] for name in (*AIRFLOW, "airflow-init") for v in services[name]["volumes"]
    }
    assert "nightjar-state" in airflow_volumes
    allowed = {example["MINIO_SPARK_SECRET_KEY"]}
    for name in SPARK:
        service = services[name]
        volumes = {v.split(":")[0] for v in service.get("volumes") or []}
        assert not volumes & airflow_volumes, name
        assert not [v for v in service.get("volumes") or [] if bind_mount(v)], name
        environment = {k: str(v) for k, v in (service.get("environment") or {}).items()}
        assert not [k for k in environment if k.startswith("AIRFLOW")], name
        held = {example[s] for s in SECRETS if example[s] in json.dumps(environment)}
        assert held <= allowed, (name, held)


def run_verify(sums: Path, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(ROOT / "docker/verify-jars.sh"), str(sums), str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_downloaded_jar_is_checked_against_a_pinned_sha256(tmp_path):
    from jobs.common.spark_jars import installed_jars, jars_dir, packages

    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    assert "COPY docker/spark-jars.sha256 docker/verify-jars.sh ./docker/" in dockerfile
    fetch = dockerfile.index("python -m jobs.common.spark_jars")
    verify = dockerfile.index("sh docker/verify-jars.sh docker/spark-jars.sha256 .cache")
    assert fetch < verify < dockerfile.index("cp .cache/spark-jars/*.jar")  # checked before use
    assert not re.search(r"\b(wget|curl\s+-|ADD\s+https?:)", dockerfile)  # no other download
    lines = [
        line.split()
        for line in (ROOT / "docker/spark-jars.sha256").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest, _ in lines)
    pinned = {path for _, path in lines}
    assert all(re.fullmatch(r"spark-jars(-s3)?/[\w.-]+\.jar", path) for path in pinned)
    for jar_set, folder in (("delta", "spark-jars"), ("s3", "spark-jars-s3")):
        for coordinate in packages(jar_set):  # the locked versions' jars are the pinned ones
            _, artifact, version = coordinate.split(":")
            assert f"{folder}/{artifact}-{version}.jar" in pinned, coordinate
    # the script fails the build on a changed, a missing or an unpinned jar
    (tmp_path / "spark-jars").mkdir()
    (tmp_path / "spark-jars/a-1.0.jar").write_bytes(b"a")
    (tmp_path / "spark-jars/b-1.0.jar").write_bytes(b"b")
    sums = tmp_path / "sums"
    sums.write_text(
        "# pinned\n"
        + subprocess.run(
            ["sha256sum", "spark-jars/a-1.0.jar", "spark-jars/b-1.0.jar"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert run_verify(sums, tmp_path).returncode == 0
    (tmp_path / "spark-jars/c-1.0.jar").write_bytes(b"c")
    assert run_verify(sums, tmp_path).returncode != 0  # unpinned
    (tmp_path / "spark-jars/c-1.0.jar").unlink()
    (tmp_path / "spark-jars/b-1.0.jar").write_bytes(b"B")
    assert run_verify(sums, tmp_path).returncode != 0  # changed
    (tmp_path / "spark-jars/b-1.0.jar").unlink()
    assert run_verify(sums, tmp_path).returncode != 0  # missing
    # and the pinned sums are those of the jars `make setup` fetched here, when it has
    root = jars_dir("delta").parent
    fetched = installed_jars(jar_set="delta") and installed_jars(jar_set="s3")
    if fetched and [jars_dir("delta"), jars_dir("s3")] == [
        root / "spark-jars",
        root / "spark-jars-s3",
    ]:
        done = run_verify(ROOT / "docker/spark-jars.sha256", root)
        assert done.returncode == 0, done.stderr


def test_every_ui_the_make_targets_start_listens_on_loopback_only(tmp_path):
    """`make airflow` (the API server, Spark's master and worker UIs, which bind
    SPARK_LOCAL_IP), `make mlflow`, `make monitoring-ui` and `nightjar feast ui`; the
    metrics stack's web addresses are checked in tests/observability/test_rules.py."""
    from jobs import cli
    from jobs.common.settings import Settings
    from jobs.features import store
    from tooling import airflow_env, services

    settings = Settings(state_dir=tmp_path)
    assert airflow_env.airflow_env(settings, base={})["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert settings.spark_connect_bind == "127.0.0.1"
    master = services.spark_master_service(settings)
    assert master.command[master.command.index("--host") + 1] == "127.0.0.1"
    assert master.env["SPARK_LOCAL_IP"] == "127.0.0.1"
    worker = services.spark_worker_service(settings, 1)
    assert worker.command[worker.command.index("--host") + 1] == "127.0.0.1"
    for command in (cli.model_ui, cli.monitoring_ui):
        assert inspect.signature(command).parameters["host"].default.default == "127.0.0.1"
    with mock.patch.object(store.subprocess, "run") as run:
        store.feast_cli(["ui"], settings)
    args = run.call_args.args[0]
    assert args[args.index("--host") + 1] == "127.0.0.1"
